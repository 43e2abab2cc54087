"""Adding another encoder's features to a populated store: only the new set is written, from
the recorded sources, MediaPipe never runs; resumable after SIGKILL; concurrent adders."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from featurestore import SchemaMismatchError, StreamNotFoundError, open_store
from featurestore.cli import main as cli_main
from featurestore.extract import (
    ManifestEntry,
    add_features,
    decode_clip,
    load_encoder,
    populate,
    read_manifest,
    synthesize,
)
from tests.processes import hold_env, interruptible, wait_for_hold

T = 8
NAME = "patches"
VARIANT = dict(encoder="tiny-random", pooling="mean_vision_patches")
"""tiny-random pooled before the projector: another fingerprint, width 32 instead of 48."""
BASE = ("gemma", "landmarks", "landmark_mask")


def _clips(folder: Path, per_class: int) -> list[ManifestEntry]:
    return read_manifest(
        synthesize(folder, classes=2, per_class=per_class, frames=20, size=(64, 64))
    )


def _populated(
    url: str, entries: list[ManifestEntry], encoder, landmarks: bool, commit_every: int = 2
) -> str:
    summary = populate(
        url,
        entries,
        encoder=encoder,
        num_frames=T,
        workers=1,
        landmarks=landmarks,
        commit_every=commit_every,  # several base blocks, so alignment and shards are tested
        progress=False,
    )
    assert summary.done == len(entries) and not summary.failed
    return url


@pytest.fixture(scope="module")
def variant():
    return load_encoder(VARIANT["encoder"], pooling=VARIANT["pooling"])


@pytest.fixture(scope="module")
def landmark_store(tmp_path_factory, tiny_encoder) -> str:
    """Six clips and one with a WLASL frame range, populated with landmarks in blocks of 2."""
    folder = tmp_path_factory.mktemp("add")
    entries = _clips(folder / "clips", per_class=3)
    ranged = ManifestEntry("ranged", entries[0].path, "sign00", "val", frame_start=5, frame_end=16)
    return _populated(str(folder / "base.zarr"), [*entries, ranged], tiny_encoder, True)


@pytest.fixture
def store_copy(tmp_path, landmark_store) -> str:
    url = str(tmp_path / "s.zarr")
    shutil.copytree(landmark_store, url)
    return url


@pytest.fixture
def own_clips_store(tmp_path, tiny_encoder) -> tuple[str, list[ManifestEntry]]:
    """Eight clips of this test's own (it may delete some), encoder only, blocks of 2."""
    entries = _clips(tmp_path / "clips", per_class=4)
    return _populated(str(tmp_path / "own.zarr"), entries, tiny_encoder, False), entries


def _files(url: str) -> dict[str, bytes]:
    root = Path(url)
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _feature_records(url: str) -> list[set[str]]:
    """The video ids of each commit record of the added sets (the lead's on-disk layout)."""
    records = sorted(Path(url).glob("features/*/commits/**/*.json"))
    return [{v["video_id"] for v in json.loads(r.read_text())["videos"]} for r in records]


def _no_mediapipe(monkeypatch) -> list[str]:
    """Make every way into MediaPipe Holistic fail loudly, and count the attempts."""
    import mediapipe as mp

    from featurestore.extract import holistic

    calls: list[str] = []

    def refuse(what):
        def call(*args, **kwargs):
            calls.append(what)
            raise AssertionError(f"{what} was called while adding features")

        return call

    monkeypatch.setattr(mp.solutions.holistic, "Holistic", refuse("Holistic"))
    monkeypatch.setattr(holistic.LandmarkExtractor, "__init__", refuse("LandmarkExtractor"))
    monkeypatch.setattr(holistic.LandmarkPool, "__init__", refuse("LandmarkPool"))
    return calls


def test_add_writes_only_the_new_set_from_the_recorded_sources(store_copy, variant, monkeypatch):
    url = store_copy
    before = open_store(url)
    ids = before.ids()
    arrays = {vid: before.get(vid, BASE).arrays for vid in ids}
    files = _files(url)
    calls = _no_mediapipe(monkeypatch)

    summary = add_features(url, NAME, **VARIANT, progress=False)

    assert calls == []  # MediaPipe never ran
    assert (summary.done, summary.skipped, summary.failed) == (len(ids), 0, {})
    assert summary.feature_set == NAME and "landmarks" not in summary.stage_seconds
    store = open_store(url)
    assert store.feature_ids(NAME) == set(ids) and store.ids() == ids
    assert store.schema.fingerprint(NAME) == variant.fingerprint
    assert store.schema.fingerprint(NAME) != store.schema.fingerprint("gemma")
    assert store.schema.spec(NAME).shape == (T, 32) and store.schema.spec(NAME).dtype == "float16"
    for vid in ids:  # the base streams are bitwise unchanged
        now = store.get(vid, BASE).arrays
        for stream in BASE:
            assert now[stream].dtype == arrays[vid][stream].dtype
            assert now[stream].tobytes() == arrays[vid][stream].tobytes(), (vid, stream)
    after = _files(url)
    changed = [k for k, v in files.items() if after.get(k) != v and k != "featurestore.json"]
    assert changed == []  # no file of the base streams was rewritten

    for vid in ids:  # sampled as populate sampled: the WLASL range of "ranged" too
        source = store.entry(vid).source
        frames = decode_clip(source["path"], T, source["frame_start"], source["frame_end"]).frames
        want = variant.encode(frames).astype(np.float16)
        assert np.allclose(store.get(vid, [NAME]).arrays[NAME], want, atol=2e-3), vid
    path = store.entry("ranged").source["path"]
    [whole] = [v for v in ids if v != "ranged" and store.entry(v).source["path"] == path]
    ranged, full = (store.get(v, [NAME]).arrays[NAME] for v in ("ranged", whole))
    assert not np.allclose(ranged, full)  # same clip, another range: other frames

    base_blocks = [set(b.video_ids) for b in store.blocks()]
    records = _feature_records(url)
    assert sorted(v for r in records for v in r) == ids  # each video once
    assert all(any(r <= b for b in base_blocks) for r in records)  # aligned with base blocks
    assert store.verify() == []

    forwards = variant.forward_calls
    again = add_features(url, NAME, encoder=variant, progress=False)
    assert (again.done, again.skipped) == (0, len(ids)) and variant.forward_calls == forwards


@pytest.fixture(params=["hdf5", "memory", "s3"])
def backend(request, tmp_path) -> tuple[str, dict | None]:
    """Store locations on the other backends (the tests above use local Zarr)."""
    if request.param == "hdf5":
        return str(tmp_path / "s.h5"), None
    if request.param == "memory":
        return f"memory://{tmp_path.name}/s.zarr", None
    pytest.importorskip("s3fs")
    pytest.importorskip("moto")
    from tests.s3_server import shared_s3_server

    s3 = shared_s3_server()
    return f"s3://{s3.make_bucket()}/s.zarr", s3.storage_options


def test_add_and_overwrite_on_every_backend(backend, tmp_path, tiny_encoder, variant):
    url, opts = backend
    entries = _clips(tmp_path / "clips", per_class=2)
    populate(url, entries, encoder=tiny_encoder, num_frames=T, landmarks=False,
             commit_every=2, progress=False, storage_options=opts)  # fmt: skip
    ids = sorted(e.video_id for e in entries)
    first = add_features(url, NAME, encoder=variant, storage_options=opts, progress=False)
    assert (first.done, first.failed) == (len(ids), {})
    again = add_features(url, NAME, encoder=variant, overwrite=True, storage_options=opts,
                         progress=False)  # fmt: skip
    assert (again.done, again.skipped) == (len(ids), 0)  # --overwrite redoes every video
    store = open_store(url, storage_options=opts)
    assert store.feature_ids(NAME) == set(ids) and len(store.ids(streams=[NAME])) == len(ids)
    want = {e.video_id: variant.encode(decode_clip(e.path, T).frames) for e in entries}
    got = store.get_many(ids, [NAME]).arrays[NAME]
    assert np.allclose(got, np.stack([want[v] for v in ids]), atol=2e-3)
    assert store.verify() == []


def test_another_encoder_under_the_same_name_is_refused(store_copy, tiny_encoder):
    add_features(store_copy, NAME, **VARIANT, progress=False)
    with pytest.raises(SchemaMismatchError, match=NAME):
        add_features(store_copy, NAME, encoder=tiny_encoder, progress=False)
    with pytest.raises(ValueError, match="T = 8"):
        add_features(store_copy, "other", **VARIANT, num_frames=16, progress=False)


def test_missing_file_and_imported_video_are_recorded_failures(own_clips_store, tiny_encoder):
    url, entries = own_clips_store
    with open_store(url, "r+").writer() as w:  # an imported video: landmarks, no clip
        spec = open_store(url).schema.streams["gemma"]
        w.put("imported", {"gemma": np.zeros(spec.shape, np.float16)}, label=0,
              source={"format": "mpdata", "path": "MP_Data.zip", "frames": 20})  # fmt: skip
    gone = entries[2]
    moved = gone.path.with_suffix(".away")
    gone.path.rename(moved)

    summary = add_features(url, NAME, **VARIANT, progress=False)

    store = open_store(url)
    assert set(summary.failed) == {gone.video_id, "imported"}
    assert summary.failed[gone.video_id].startswith("missing:")
    assert str(gone.path) in summary.failed[gone.video_id]
    assert (
        summary.failed["imported"].startswith("no_source:")
        and "mpdata" in summary.failed["imported"]
    )
    assert store.feature_failures(NAME) == summary.failed
    assert store.feature_ids(NAME) == {e.video_id for e in entries} - {gone.video_id}
    assert summary.done == len(entries) - 1

    moved.rename(gone.path)  # the file is back: a rerun adds it, and only it
    again = add_features(url, NAME, **VARIANT, progress=False)
    assert (again.done, again.skipped) == (1, len(entries) - 1)
    assert set(again.failed) == {"imported"}
    store.refresh()
    assert gone.video_id in store.feature_ids(NAME) and store.verify() == []
    assert set(store.feature_failures(NAME)) == {"imported"}  # the success supersedes it


@pytest.mark.parametrize("name", ["store_v1.zarr", "store_v1.h5"])
def test_a_store_from_before_feature_sets_takes_one(name, tmp_path, variant):
    """Its videos were written by hand (no clips): each is a recorded failure, nothing breaks."""
    url = str(tmp_path / name)
    shutil.copytree(Path(__file__).parents[1] / "featurestore" / "data" / name, url)
    before = {v: open_store(url).get(v).arrays for v in open_store(url).ids()}
    summary = add_features(url, NAME, encoder=variant, progress=False)
    store = open_store(url)
    assert summary.done == 0 and set(summary.failed) == set(before)
    assert all(r.startswith("no_source:") for r in store.feature_failures(NAME).values())
    assert store.feature_ids(NAME) == set() and store.schema.spec(NAME).shape == (4, 32)
    for vid, arrays in before.items():
        assert all(np.array_equal(store.get(vid).arrays[s], a) for s, a in arrays.items())
    assert store.verify() == []


def test_a_clip_changed_since_populate_is_refused(own_clips_store, tmp_path):
    url, entries = own_clips_store
    other = synthesize(tmp_path / "longer", classes=1, per_class=1, frames=40, size=(64, 64))
    shutil.copy(read_manifest(other)[0].path, entries[0].path)
    summary = add_features(url, NAME, **VARIANT, progress=False)
    assert set(summary.failed) == {entries[0].video_id}
    assert summary.failed[entries[0].video_id].startswith("changed:")
    assert "total_frames" in summary.failed[entries[0].video_id]


def test_cli_adds_features_and_refuses_nonsense(store_copy, tmp_path, capsys):
    out = tmp_path / "summary.json"
    args = ["populate", "--store", store_copy, "--add-features", NAME, "--encoder", "tiny-random"]
    assert (
        cli_main([*args, "--pooling", "mean_vision_patches", "--quiet", "--summary-json", str(out)])
        == 0
    )
    assert f"add-features {NAME!r} finished" in capsys.readouterr().err
    result = json.loads(out.read_text())
    assert (result["done"], result["skipped"], result["failed"]) == (7, 0, 0)
    assert result["feature_set"] == NAME
    assert cli_main([*args, "--quiet"]) == 2  # same name, another encoder fingerprint
    err = capsys.readouterr().err
    assert NAME in err and len(err.strip().splitlines()) == 1
    assert cli_main([*args, "--manifest", "m.csv"]) == 2
    assert "--add-features" in capsys.readouterr().err
    assert (
        cli_main(["populate", "--store", str(tmp_path / "none.zarr"), "--add-features", NAME]) == 2
    )
    assert "none.zarr" in capsys.readouterr().err


# -- other processes: SIGKILL, then a rerun; two adders at once ----------------------------

_SLOW_ENCODER = """
import sys, time
from featurestore.extract import gemma
encode_videos = gemma.GemmaEncoder.encode_videos
def slow(self, videos):
    time.sleep(0.3 * len(videos))  # slow enough for two adders to overlap
    return encode_videos(self, videos)
gemma.GemmaEncoder.encode_videos = slow
from featurestore.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _start_add(url: str, summary: Path, *extra: str, env=None) -> subprocess.Popen:
    cmd = [sys.executable, "-c", _SLOW_ENCODER, "populate", "--store", url,
           "--add-features", NAME, "--encoder", "tiny-random", "--pooling", "mean_vision_patches",
           "--batch-size", str(T), "--quiet", "--summary-json", str(summary), *extra]  # fmt: skip
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, preexec_fn=interruptible
    )


def _start_held(url: str, summary: Path, tmp_path: Path) -> subprocess.Popen:
    """An add that holds (featurestore._test_hold) once one base block of 2 is committed."""
    marker = tmp_path / "held"
    proc = _start_add(url, summary, env=hold_env(2, marker))
    wait_for_hold(proc, marker)
    return proc


def _added(url: str) -> int:
    try:
        return len(open_store(url).feature_ids(NAME))
    except StreamNotFoundError:  # the set is not registered yet
        return 0


def _finished(proc: subprocess.Popen, summary: Path) -> dict:
    assert proc.wait(timeout=180) == 0, proc.stderr.read().decode() if proc.stderr else ""
    return json.loads(summary.read_text())


def _each_video_once(url: str, ids: list[str]) -> None:
    store = open_store(url)
    assert store.feature_ids(NAME) == set(ids)
    assert store.get_many(ids, [NAME]).arrays[NAME].shape == (len(ids), T, 32)
    assert store.verify() == []


def test_sigkill_mid_add_then_rerun(own_clips_store, tmp_path):
    url, entries = own_clips_store
    ids = sorted(e.video_id for e in entries)
    proc = _start_held(url, tmp_path / "killed.json", tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    committed = _added(url)
    assert 2 <= committed < len(ids), "kill the run while it is still running"
    assert open_store(url).verify() == []  # nothing half-written is visible

    result = _finished(_start_add(url, tmp_path / "rerun.json"), tmp_path / "rerun.json")
    assert (result["skipped"], result["done"], result["failed"]) == (
        committed, len(ids) - committed, 0,
    )  # fmt: skip
    _each_video_once(url, ids)
    assert sorted(v for r in _feature_records(url) for v in r) == ids  # no row twice


@pytest.mark.slow
def test_ctrl_c_mid_add_commits_whole_blocks_then_rerun(own_clips_store, tmp_path):
    url, entries = own_clips_store
    ids = sorted(e.video_id for e in entries)
    out = tmp_path / "interrupted.json"
    proc = _start_held(url, out, tmp_path)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    result = json.loads(out.read_text())
    committed = _added(url)
    assert result["interrupted"] is True and result["done"] == committed < len(ids)
    assert committed % 2 == 0  # whole base blocks only
    rerun = _finished(_start_add(url, tmp_path / "rerun.json"), tmp_path / "rerun.json")
    assert (rerun["skipped"], rerun["done"]) == (committed, len(ids) - committed)
    _each_video_once(url, ids)


def test_two_processes_on_disjoint_shards(own_clips_store, tmp_path):
    url, entries = own_clips_store
    ids = sorted(e.video_id for e in entries)
    outs = [tmp_path / f"shard{i}.json" for i in range(2)]
    procs = [_start_add(url, out, "--shard-index", str(i), "--num-shards", "2")
             for i, out in enumerate(outs)]  # fmt: skip
    results = [_finished(p, out) for p, out in zip(procs, outs, strict=True)]
    assert [r["done"] for r in results] == [4, 4]  # 4 base blocks of 2, two each
    _each_video_once(url, ids)
    assert sorted(v for r in _feature_records(url) for v in r) == ids  # no video encoded twice


@pytest.mark.slow
def test_two_processes_on_the_same_videos(own_clips_store, tmp_path):
    url, entries = own_clips_store
    ids = sorted(e.video_id for e in entries)
    outs = [tmp_path / f"same{i}.json" for i in range(2)]
    procs = [_start_add(url, out) for out in outs]
    results = [_finished(p, out) for p, out in zip(procs, outs, strict=True)]
    assert all(r["failed"] == 0 for r in results)
    assert sum(r["done"] for r in results) >= len(ids)
    _each_video_once(url, ids)  # both wrote some rows; the store shows each video once
    again = add_features(url, NAME, **VARIANT, progress=False)
    assert (again.done, again.skipped) == (0, len(ids))


# -- Ray ---------------------------------------------------------------------------------


@pytest.mark.ray
@pytest.mark.slow
def test_ray_adds_the_same_features_as_local(landmark_store, tmp_path, tiny_encoder):
    """Shard 0 of 2 through the Python API, shard 1 through ``populate --ray``; then a
    worker killed mid-run is replaced and nothing is lost or written twice."""
    ray = pytest.importorskip("ray")
    from featurestore.extract import add_features_with_ray

    # 6 videos in base blocks of 1: 6 shards, 2 queued on each of the 2 workers, so when
    # the first result comes back shards are still waiting and the killed worker is given
    # one (with blocks of 2 it could finish all its shards first: no restart to see)
    killed = _populated(
        str(tmp_path / "killed.zarr"), _clips(tmp_path / "clips", 3), tiny_encoder, False, 1
    )
    local, on_ray = str(tmp_path / "local.zarr"), str(tmp_path / "ray.zarr")
    shutil.copytree(landmark_store, local)
    shutil.copytree(landmark_store, on_ray)
    add_features(local, NAME, **VARIANT, progress=False)
    out = tmp_path / "cli.json"
    cli = ["populate", "--store", on_ray, "--add-features", NAME, "--encoder", "tiny-random",
           "--pooling", "mean_vision_patches", "--ray", "--shard-index", "1", "--num-shards", "2",
           "--quiet", "--summary-json", str(out)]  # fmt: skip
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        summary = add_features_with_ray(
            on_ray, NAME, **VARIANT, num_workers=2, cpus_per_worker=0.5, progress=False,
            shard_index=0, num_shards=2,
        )  # fmt: skip
        assert cli_main(cli) == 0  # joins the running Ray
        victims: list[str] = []

        def kill_first_worker(result) -> None:
            if not victims and result.done:
                victims.append(result.worker)
                ray.kill(ray.get_actor(result.worker))

        survived = add_features_with_ray(
            killed, NAME, **VARIANT, num_workers=2, cpus_per_worker=0.5,
            progress=False, on_shard=kill_first_worker,
        )  # fmt: skip
    finally:
        ray.shutdown()
    assert victims and survived.worker_restarts >= 1 and not survived.lost
    # the dead worker's queued block was redone by its replacement, or found committed (the
    # kill can land after the worker finished it): skipped, never lost or written twice
    assert survived.done + survived.skipped == 6 and not survived.failed
    _each_video_once(killed, open_store(killed).ids())
    want, got = open_store(local), open_store(on_ray)
    # 7 videos in base blocks of 2, 2, 2, 1: shard 0 has blocks 0 and 2, shard 1 the others
    assert (summary.done, summary.failed, summary.lost) == (4, {}, {})
    assert json.loads(out.read_text())["done"] == 3
    assert "landmarks" not in summary.stage_seconds  # the decode tasks ran no Holistic
    assert got.feature_ids(NAME) == want.feature_ids(NAME) == set(want.ids())
    assert got.schema.fingerprint(NAME) == want.schema.fingerprint(NAME)
    for vid in want.ids():
        a, b = want.get(vid, [NAME, *BASE]).arrays, got.get(vid, [NAME, *BASE]).arrays
        assert all(a[s].tobytes() == b[s].tobytes() for s in (NAME, *BASE)), vid
    base_blocks = [set(b.video_ids) for b in got.blocks()]
    records = _feature_records(on_ray)
    assert sorted(v for r in records for v in r) == want.ids()
    assert all(any(r <= b for b in base_blocks) for r in records)
    assert got.verify() == []
