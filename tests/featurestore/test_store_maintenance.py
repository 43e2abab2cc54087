"""Labels claimed atomically, mislabelled records found and mended, deletes, and
maintenance (compact) that writers and readers can live beside (issue 22)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from featurestore import (
    InvalidVideoError,
    SchemaMismatchError,
    StoreError,
    VideoNotFoundError,
    create_store,
    open_store,
)
from featurestore.cli import main as cli_main
from tests.helpers import random_video, small_schema

OLD_STORES = Path(__file__).with_name("data")


@pytest.fixture
def store(tmp_path, rng):
    """Six videos in two blocks of three, labels 0-2."""
    store = create_store(str(tmp_path / "s.zarr"), small_schema(), block_size=3)
    with store.writer() as w:
        for i in range(6):
            label = i % 3
            w.put(f"v{i}", random_video(rng), label=label, gloss=store.labels[label])
    return open_store(store.url, "r+")


# -- labels --------------------------------------------------------------------------------


def test_two_stale_views_claiming_new_glosses_get_distinct_labels(store):
    a, b = open_store(store.url, "r+"), open_store(store.url, "r+")
    assert a.claim_labels(["cat"]) == {0: "hello", 1: "thankyou", 2: "yes", 3: "cat"}
    # b still holds the map from before a's claim: its claim lands on a's, not over it
    assert b.claim_labels(["dog", "cat"]) == {
        0: "hello",
        1: "thankyou",
        2: "yes",
        3: "cat",
        4: "dog",
    }
    assert open_store(store.url).labels == b.labels
    assert b.claim_labels(["dog"]) == b.labels  # nothing new: no new generation
    assert len(os.listdir(Path(store.url, "meta"))) == 2


def test_a_writer_claims_the_label_of_a_gloss_given_alone(store, rng):
    with store.writer() as w:
        w.put("new", random_video(rng), gloss="owl")
    fresh = open_store(store.url)
    assert fresh.labels[fresh.entry("new").label] == "owl"


def test_fixed_labels_that_contradict_the_map_are_refused(store):
    with pytest.raises(SchemaMismatchError, match="labels cannot change"):
        store.claim_labels(fixed={1: "other"})
    with pytest.raises(SchemaMismatchError, match="share one gloss"):
        store.claim_labels(fixed={9: "hello"})


@pytest.mark.parametrize("name", ["store_v1.zarr", "store_v1.h5"])
def test_an_old_store_takes_new_labels_and_keeps_its_own(tmp_path, rng, name):
    url = str(tmp_path / name)
    copy = shutil.copytree if (OLD_STORES / name).is_dir() else shutil.copy
    copy(OLD_STORES / name, url)
    old = open_store(url).labels
    store = open_store(url, "r+")
    with store.writer() as w:
        w.put("added", random_video(rng), gloss="brand-new")
    fresh = open_store(url)
    assert fresh.labels == {**old, max(old) + 1: "brand-new"}
    assert fresh.verify() == []
    if Path(url).is_dir():  # the root document follows, for readers without this package
        meta = json.loads(Path(url, "featurestore.json").read_text())
        assert meta["labels"][str(max(old) + 1)] == "brand-new"


def _mislabel(url: str, video_id: str, label: int) -> None:
    """Rewrite a commit record by hand, as the race of old versions left them."""
    for path in Path(url, "commits").rglob("*.json"):
        record = json.loads(path.read_text())
        for v in record["videos"]:
            if v["video_id"] == video_id:
                v["label"] = label
                path.write_text(json.dumps(record))
                return
    raise AssertionError(f"no record holds {video_id}")


def test_verify_names_a_mislabelled_video_and_repair_labels_mends_it(store, capsys):
    _mislabel(store.url, "v1", 2)  # v1 is 'thankyou' (1); label 2 is 'yes'
    problems = open_store(store.url).verify()
    assert problems == [
        "video 'v1': label 2 is 'yes' in the label map, but its gloss is 'thankyou' "
        "(featurestore repair-labels fixes it)"
    ]
    assert cli_main(["verify", store.url, "--quiet"]) == 1
    assert cli_main(["repair-labels", store.url, "--dry-run"]) == 0
    assert "would fix the label of 1 video(s)" in capsys.readouterr().out
    assert open_store(store.url).entry("v1").label == 2  # a dry run changes nothing
    assert cli_main(["repair-labels", store.url]) == 0
    assert "video 'v1': label 2 -> 1 ('thankyou')" in capsys.readouterr().out
    fresh = open_store(store.url)
    assert fresh.entry("v1").label == 1 and fresh.verify() == []
    assert cli_main(["repair-labels", store.url]) == 0  # idempotent
    assert "fixed the label of 0 video(s)" in capsys.readouterr().out


def test_repair_labels_claims_a_label_for_a_gloss_the_map_lost(store):
    _mislabel(store.url, "v2", 7)
    meta_dir = Path(store.url, "commits")
    for path in meta_dir.rglob("*.json"):  # and its gloss, as if the winner's map lost it
        record = json.loads(path.read_text())
        for v in record["videos"]:
            if v["video_id"] == "v2":
                v["gloss"] = "lost"
        path.write_text(json.dumps(record))
    assert "label 7, which is not in the label map" in open_store(store.url).verify()[0]
    fixed = open_store(store.url, "r+").repair_labels()
    fresh = open_store(store.url)
    assert fixed == ["video 'v2': label 7 -> 3 ('lost')"]
    assert fresh.labels[3] == "lost" and fresh.entry("v2").label == 3
    assert fresh.verify() == []


# -- deletes -------------------------------------------------------------------------------


def test_a_deleted_video_is_gone_from_every_reader_and_compact_drops_its_bytes(store, rng):
    store.add_feature_set("extra", {"model_id": "x"}, (4, 6))
    with store.feature_writer("extra") as w:
        for vid in store.ids():
            w.put(vid, rng.standard_normal((4, 6)).astype(np.float16))
    assert cli_main(["delete", store.url, "v1", "v4"]) == 0
    fresh = open_store(store.url)
    assert fresh.ids() == ["v0", "v2", "v3", "v5"]
    assert "v1" not in fresh and fresh.ids(streams=["extra"]) == ["v0", "v2", "v3", "v5"]
    assert all("v1" not in b.video_ids for b in fresh.blocks())
    assert [v for b in fresh.iter_batches(batch_size=2) for v in b.ids] == fresh.ids()
    with pytest.raises(VideoNotFoundError):
        fresh.get("v1")
    assert fresh.verify() == []
    data = Path(store.url, "segments")
    old = _segments(data)
    open_store(store.url, "r+").compact(grace_s=0)
    after = open_store(store.url)
    assert after.ids() == ["v0", "v2", "v3", "v5"] and after.verify() == []
    assert not old & _segments(data)  # the segments that held v1 and v4 are gone
    assert b"v1" not in b"".join(p.read_bytes() for p in Path(store.url, "commits").rglob("*.json"))


def _segments(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.is_dir()}


def test_a_deleted_id_can_be_written_again(store, rng):
    store.delete(["v3"])
    again = random_video(rng)
    with store.writer() as w:
        w.put("v3", again, label=0)
    got = open_store(store.url).get("v3")
    np.testing.assert_array_equal(got.arrays["gemma"], again["gemma"])


def test_a_video_deleted_and_written_again_never_gets_its_old_features_back(store, rng):
    """Found by the state machine: compact merged the videos' log (dropping the delete
    record that masked the old feature row) before the added set's, which then kept it."""
    store.add_feature_set("extra", {"model_id": "x"}, (4, 6))
    with store.feature_writer("extra") as w:
        w.put("v3", rng.standard_normal((4, 6)).astype(np.float16))
    store.delete(["v3"])
    with store.writer() as w:
        w.put("v3", random_video(rng), label=0)
    assert "v3" not in open_store(store.url).ids(streams=["extra"])
    open_store(store.url, "r+").compact(grace_s=0)
    after = open_store(store.url)
    assert "v3" in after.ids() and "v3" not in after.ids(streams=["extra"])
    assert after.verify() == []


def test_deleting_an_unknown_video_is_refused_and_changes_nothing(store):
    with pytest.raises(VideoNotFoundError, match="'nope' is not in store"):
        store.delete(["v0", "nope"])
    with store.writer() as w, pytest.raises(InvalidVideoError, match="'nope' is not in store"):
        w.delete("nope")
    assert len(open_store(store.url)) == 6


# -- compaction beside writers and readers --------------------------------------------------


def test_compact_is_refused_while_a_writer_runs_and_runs_when_it_is_done(store, rng):
    w = store.writer()
    w.put("w1", random_video(rng), label=0)
    w.flush()  # committed: this writer now holds its lease until closed
    with pytest.raises(StoreError, match=r"1 writer\(s\) running: a writer of segment"):
        open_store(store.url, "r+").compact()
    assert cli_main(["compact", store.url, "--quiet"]) == 2
    w.close()
    assert open_store(store.url, "r+").compact()["videos"] == 7


def test_a_writer_waits_for_a_running_compact(store, rng):
    from featurestore import leases

    lease = leases.acquire_maintenance(store._storage.files, "compact")
    w = store.writer(wait_s=0.2)
    w.put("w1", random_video(rng), label=0)
    with pytest.raises(StoreError, match="busy: compact .* is running"):
        w.flush()
    leases.release(store._storage.files, lease)
    w.flush()
    w.close()
    assert "w1" in open_store(store.url)


def test_the_lease_of_a_process_that_died_does_not_block_compact(store, rng):
    child = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead = int(child.stdout)
    lease = {"kind": "writer", "what": "a writer that was killed", "pid": dead,
             "host": __import__("socket").gethostname(), "started": 0.0, "renewed": 0.0}  # fmt: skip
    Path(store.url, "writers").mkdir(exist_ok=True)
    Path(store.url, "writers", "writer-dead.json").write_text(json.dumps(lease))
    assert open_store(store.url, "r+").compact()["videos"] == 6


@pytest.mark.parametrize("grace_s", [0.0, 600.0])
def test_a_reader_on_the_old_index_reads_on_after_a_compact(store, grace_s):
    reader = open_store(store.url)
    want = {v: reader.get(v).arrays for v in reader.ids()}
    blocks = reader.blocks()
    open_store(store.url, "r+").compact(grace_s=grace_s)
    assert reader.get("v4").arrays["gemma"].tobytes() == want["v4"]["gemma"].tobytes()
    batch = reader.read_block(blocks[1])
    for i, vid in enumerate(batch.ids):
        np.testing.assert_array_equal(batch.arrays["landmarks"][i], want[vid]["landmarks"])
    assert reader.get_many(["v5", "v0"]).ids == ["v5", "v0"]


def test_old_segments_wait_out_their_grace_then_a_later_compact_removes_them(store, rng):
    segments = Path(store.url, "segments")
    first = _segments(segments)
    result = open_store(store.url, "r+").compact(grace_s=0.05)
    assert result["segments_removed"] == len(first) and first <= _segments(segments)
    time.sleep(0.1)
    assert open_store(store.url, "r+").compact(grace_s=0.05)["segments_purged"] == len(first)
    assert not first & _segments(segments)


def test_refresh_if_changed_names_what_other_writers_changed(store, rng):
    reader = open_store(store.url)
    assert reader.ids() and reader.refresh_if_changed() is None
    with open_store(store.url, "r+").writer(overwrite=True) as w:
        w.put("v0", random_video(rng), label=0)
        w.put("fresh", random_video(rng), label=1)
    store.delete(["v5"])
    assert reader.refresh_if_changed() == {"v0", "fresh", "v5"}
    assert reader.refresh_if_changed() is None
    open_store(store.url, "r+").compact(grace_s=0)
    assert reader.refresh_if_changed() == set()  # every video moved, none changed


# -- what is not the store's ---------------------------------------------------------------


def test_a_runs_folder_in_the_store_is_left_alone(tmp_path, rng):
    """asl-serve keeps training runs in <store>/runs: verify, compact and a mirror never
    read, copy or delete them, and a store can still be made beside one."""
    import fsspec

    from featurestore.remote import mirror

    url = f"memory://runs-{os.getpid()}/s.zarr"
    store = create_store(url, small_schema())
    with store.writer() as w:
        w.put("v0", random_video(rng), label=0, gloss="hello")
    fs = fsspec.filesystem("memory")
    fs.pipe(f"/runs-{os.getpid()}/s.zarr/runs/job/model.pt", b"weights")
    store.compact(grace_s=0)
    assert open_store(url).verify() == [] and open_store(url).ids() == ["v0"]
    assert fs.cat(f"/runs-{os.getpid()}/s.zarr/runs/job/model.pt") == b"weights"
    stats = mirror(url, str(tmp_path / "cache"))
    local = Path(stats.path)
    assert not (local / "runs").exists() and open_store(str(local)).ids() == ["v0"]
    (local / "runs").mkdir()
    (local / "runs" / "mine.json").write_text("{}")  # a local server's own runs
    mirror(url, str(tmp_path / "cache"))
    assert (local / "runs" / "mine.json").exists()
    folder = tmp_path / "new.zarr"
    (folder / "runs").mkdir(parents=True)
    assert create_store(str(folder), small_schema()).ids() == []
