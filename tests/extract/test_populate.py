"""Bulk population end to end: contents, resume, bad inputs, refusals, backends, WLASL, CLI."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from featurestore import SchemaMismatchError, StoreSchema, StreamSpec, create_store, open_store
from featurestore.cli import main as cli_main
from featurestore.extract import (
    ClipExtractor,
    LandmarkExtractor,
    decode_clip,
    landmark_layout,
    load_encoder,
    populate,
    read_manifest,
    read_wlasl,
    write_video,
)
from tests.extract.clips import frame_indices, indexed_frames

T = 8


def test_end_to_end_with_landmarks_then_resume(tmp_path, synth_set, tiny_encoder):
    url = str(tmp_path / "s.zarr")
    entries = read_manifest(synth_set)
    summary = populate(url, entries, encoder=tiny_encoder, num_frames=T, workers=1, progress=False)
    assert (summary.done, summary.skipped, summary.failed) == (6, 0, {})
    assert summary.frames_encoded == 6 * T
    assert set(summary.stage_seconds) >= {"decode", "landmarks", "encoder", "write"}

    store = open_store(url)
    assert store.ids() == sorted(e.video_id for e in entries)
    assert store.labels == {0: "sign00", 1: "sign01"}
    assert store.schema.encoder == tiny_encoder.fingerprint
    assert store.schema.landmark_layout == landmark_layout()
    assert store.schema.streams == {
        "gemma": StreamSpec((T, 48), "float16"),
        "landmarks": StreamSpec((T, 75, 3), "float32"),
        "landmark_mask": StreamSpec((T, 3), "bool"),
    }
    assert store.verify() == []

    e = entries[0]
    video = store.get(e.video_id)
    assert (video.label, video.gloss, video.split) == (0, "sign00", e.split)
    assert video.source["path"] == str(e.path)
    assert video.source["num_real_frames"] == T and video.source["total_frames"] == 20
    frames = decode_clip(e.path, T).frames
    expected = tiny_encoder.encode(frames).astype(np.float16)
    assert np.allclose(video.arrays["gemma"], expected, atol=2e-3)  # batching changed nothing
    with LandmarkExtractor() as lm:
        points, mask = lm.extract(frames)
    assert np.array_equal(video.arrays["landmarks"], points)
    assert np.array_equal(video.arrays["landmark_mask"], mask)

    calls = tiny_encoder.forward_calls
    again = populate(url, entries, encoder=tiny_encoder, num_frames=T, workers=1, progress=False)
    assert (again.done, again.skipped, again.failed) == (0, 6, {})
    assert tiny_encoder.forward_calls == calls  # nothing committed was redone
    assert len(open_store(url)) == 6


def _bad_inputs(tmp_path, good):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "empty.mp4").write_bytes(b"")
    (d / "text.mp4").write_text("this is not a video\n" * 10)
    corrupt = bytearray(good.read_bytes())
    corrupt[: len(corrupt) // 2] = b"\0" * (len(corrupt) // 2)
    (d / "corrupt.mp4").write_bytes(bytes(corrupt))
    write_video(d / "short.mp4", indexed_frames(12))
    rows = [
        "video_id,path,gloss,split,start_frame,end_frame",
        f"good,{good},sign00,train,,",
        f"empty,{d / 'empty.mp4'},sign00,train,,",
        f"text,{d / 'text.mp4'},sign00,train,,",
        f"corrupt,{d / 'corrupt.mp4'},sign00,train,,",
        f"gone,{d / 'gone.mp4'},sign00,train,,",
        f"late_start,{d / 'short.mp4'},sign00,train,40,50",
        f"clamped,{d / 'short.mp4'},sign01,val,5,400",
        f"badrow,{d / 'short.mp4'},sign01,val,five,",
    ]
    (d / "m.csv").write_text("\n".join(rows) + "\n")
    return d / "m.csv"


def test_bad_inputs_are_recorded_and_the_rest_completes(tmp_path, synth_set, tiny_encoder):
    good = read_manifest(synth_set)[0].path
    url = str(tmp_path / "s.zarr")
    summary = populate(
        url,
        read_manifest(_bad_inputs(tmp_path, good)),
        encoder=tiny_encoder,
        num_frames=T,
        landmarks=False,
        progress=False,
    )
    store = open_store(url)
    assert store.ids() == ["clamped", "good"]
    failures = store.failures()
    assert failures == summary.failed
    reasons = {vid: why.split(":", 1)[0] for vid, why in failures.items()}
    assert reasons == {
        "empty": "empty",
        "text": "not_video",
        "corrupt": "not_video",
        "gone": "missing",
        "late_start": "bad_range",
        "badrow": "m.csv line 9",
    }
    assert "gone.mp4" in failures["gone"] and "start_frame" in failures["badrow"]
    assert summary.failed_by_reason["missing"] == 1 and summary.done == 2

    clamped = store.get("clamped")
    assert clamped.source["range_clamped"] is True
    assert clamped.source["frames_used"] == [5, 12] and clamped.source["num_real_frames"] == T
    assert store.verify() == []


def test_mismatched_store_is_refused_before_any_extraction(tmp_path, synth_set, tiny_encoder):
    url = str(tmp_path / "s.zarr")
    entries = read_manifest(synth_set)[:2]
    populate(url, entries, encoder=tiny_encoder, num_frames=T, landmarks=False, progress=False)
    counting = load_encoder("tiny-random")
    with pytest.raises(SchemaMismatchError, match="num_frames"):
        populate(url, read_manifest(synth_set), encoder=counting, num_frames=12, landmarks=False)
    other_pooling = load_encoder("tiny-random", pooling="mean_vision_patches")
    with pytest.raises(SchemaMismatchError, match="encoder fingerprint"):
        populate(
            url, read_manifest(synth_set), encoder=other_pooling, num_frames=T, landmarks=False
        )
    with pytest.raises(SchemaMismatchError, match="landmarks"):
        populate(url, read_manifest(synth_set), encoder=tiny_encoder, num_frames=T, landmarks=True)
    assert counting.forward_calls == 0 and other_pooling.forward_calls == 0
    assert len(open_store(url)) == 2


def test_landmarks_only_store(tmp_path, synth_set):
    url = str(tmp_path / "lm.zarr")
    summary = populate(
        url, read_manifest(synth_set)[:2], encoder=None, num_frames=T, workers=1, progress=False
    )
    assert summary.done == 2
    store = open_store(url)
    assert set(store.schema.streams) == {"landmarks", "landmark_mask"}
    assert store.schema.encoder == {}


def test_encoder_only_store_on_hdf5_with_overwrite(tmp_path, synth_set, tiny_encoder):
    url = str(tmp_path / "s.h5")
    entries = read_manifest(synth_set)[:3]
    populate(url, entries, encoder=tiny_encoder, num_frames=T, landmarks=False, progress=False)
    store = open_store(url)
    assert set(store.schema.streams) == {"gemma"} and len(store) == 3
    redo = populate(
        url,
        entries,
        encoder=tiny_encoder,
        num_frames=T,
        landmarks=False,
        overwrite=True,
        progress=False,
    )
    assert (redo.done, redo.skipped) == (3, 0)
    store = open_store(url)
    assert len(store) == 3 and store.verify() == []


def test_label_map_grows_add_only_across_runs(tmp_path, synth_set, tiny_encoder):
    url = str(tmp_path / "s.zarr")
    entries = read_manifest(synth_set)
    only_b = [e for e in entries if e.gloss == "sign01"]
    populate(url, only_b, encoder=tiny_encoder, num_frames=T, landmarks=False, progress=False)
    assert open_store(url).labels == {0: "sign01"}
    populate(url, entries, encoder=tiny_encoder, num_frames=T, landmarks=False, progress=False)
    store = open_store(url)
    assert store.labels == {0: "sign01", 1: "sign00"}
    assert {store.get(e.video_id).label for e in only_b} == {0}


def test_limit_takes_the_first_entries(tmp_path, synth_set, tiny_encoder):
    url = str(tmp_path / "s.zarr")
    entries = read_manifest(synth_set)
    populate(
        url, entries, encoder=tiny_encoder, num_frames=T, landmarks=False, limit=2, progress=False
    )
    assert open_store(url).ids() == sorted(e.video_id for e in entries[:2])


def test_wlasl_folder_with_subset_and_missing_clip(tmp_path, synth_set, tiny_encoder):
    root = tmp_path / "wlasl"
    (root / "videos").mkdir(parents=True)
    clips = [e.path for e in read_manifest(synth_set)]
    for vid, clip in zip(("100", "101", "102"), clips, strict=False):
        shutil.copy(clip, root / "videos" / f"{vid}.mp4")
    glosses = [
        {
            "gloss": "hello",
            "instances": [
                {"video_id": "100", "split": "train"},
                {"video_id": "103", "split": "train"},
            ],
        },
        {
            "gloss": "thanks",
            "instances": [
                {"video_id": "101", "split": "val"},
                {"video_id": "102", "split": "test"},
            ],
        },
    ]
    (root / "WLASL_v0.3.json").write_text(json.dumps(glosses))
    (root / "missing.txt").write_text("103\n")
    subset = {
        "100": {"subset": "train", "action": [0, 1, -1]},
        "101": {"subset": "val", "action": [1, 3, 15]},
        "103": {"subset": "train", "action": [0, 1, -1]},
    }
    (root / "nslt_2.json").write_text(json.dumps(subset))
    entries, labels = read_wlasl(root, "nslt_2.json")
    url = str(tmp_path / "w.zarr")
    summary = populate(
        url,
        entries,
        encoder=tiny_encoder,
        num_frames=T,
        landmarks=False,
        labels=labels,
        progress=False,
    )
    store = open_store(url)
    assert store.ids() == ["100", "101"] and store.labels == {0: "hello", 1: "thanks"}
    assert store.get("101").source["frames_used"] == [3, 15]
    assert summary.failed_by_reason == {"missing": 1}


def test_clip_extractor_for_store_rebuilds_the_same_features(tmp_path, synth_set, tiny_encoder):
    url = str(tmp_path / "s.zarr")
    entries = read_manifest(synth_set)[:1]
    populate(url, entries, encoder=tiny_encoder, num_frames=T, landmarks=False, progress=False)
    store = open_store(url)
    extractor = ClipExtractor.for_store(store)
    out = extractor.extract(entries[0].path)
    assert set(out) == {"gemma"} and out["gemma"].dtype == np.float16
    assert np.allclose(out["gemma"], store.get(entries[0].video_id).arrays["gemma"], atol=2e-3)

    other = create_store(
        str(tmp_path / "other.zarr"),
        StoreSchema(
            T,
            {"gemma": StreamSpec((T, 48), "float16")},
            encoder={**tiny_encoder.fingerprint, "weights_sha256": "0" * 64},
        ),
    )
    with pytest.raises(SchemaMismatchError, match="encoder fingerprint"):
        ClipExtractor.for_store(other)


def _cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "featurestore", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )


def test_cli_synth_then_populate(tmp_path, capsys):
    assert (
        cli_main(
            [
                "synth",
                str(tmp_path / "syn"),
                "--classes",
                "2",
                "--per-class",
                "2",
                "--frames",
                "10",
                "--size",
                "48x48",
            ]
        )
        == 0
    )
    url, summary_file = str(tmp_path / "s.zarr"), tmp_path / "summary.json"
    args = ["populate", "--store", url, "--manifest", str(tmp_path / "syn" / "manifest.csv")]
    common = ["--workers", "1", "--summary-json", str(summary_file)]
    assert cli_main([*args, "--encoder", "tiny-random", "--num-frames", "8", *common]) == 0
    assert "4 done" in capsys.readouterr().err
    summary = json.loads(summary_file.read_text())
    assert (summary["done"], summary["skipped"], summary["failed"]) == (4, 0, 0)
    assert len(open_store(url)) == 4
    # the seed's spellings still work, and a rerun skips everything
    assert (
        cli_main([*args, "--model_name", "tiny-random", "--num_frames", "8", "--quiet", *common])
        == 0
    )
    assert json.loads(summary_file.read_text())["skipped"] == 4


def test_cli_refusals_are_one_line_errors(tmp_path, synth_set, capsys):
    url = str(tmp_path / "s.zarr")
    base = ["populate", "--store", url, "--manifest", str(synth_set), "--no-landmarks", "--quiet"]
    assert cli_main([*base, "--encoder", "tiny-random", "--num-frames", "8"]) == 0
    capsys.readouterr()
    assert cli_main([*base, "--encoder", "tiny-random", "--num-frames", "16"]) == 2
    err = capsys.readouterr().err
    assert "incompatible" in err and "num_frames" in err and len(err.strip().splitlines()) == 1
    missing = ["populate", "--store", url, "--manifest", str(tmp_path / "none.csv")]
    assert cli_main(missing) == 2
    assert "none.csv" in capsys.readouterr().err


def test_cli_unknown_encoder_has_no_traceback(tmp_path, synth_set):
    out = _cli(
        "populate",
        "--store",
        str(tmp_path / "s.zarr"),
        "--manifest",
        str(synth_set),
        "--encoder",
        "no-such-org/no-such-model",
        "--quiet",
    )
    assert out.returncode == 2
    assert "unknown encoder 'no-such-org/no-such-model'" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "s.zarr").exists()  # refused before creating anything


def test_frame_indices_helper_roundtrip(tmp_path):
    path = write_video(tmp_path / "c.mp4", indexed_frames(9))
    assert frame_indices(decode_clip(path, 9).frames).tolist() == list(range(9))


def test_cli_videos_folder_labels_from_subfolders(tmp_path, synth_set, capsys):
    clips = [e.path for e in read_manifest(synth_set)]
    for gloss, clip in (("hello", clips[0]), ("hello", clips[1]), ("bye", clips[3])):
        (tmp_path / "videos" / gloss).mkdir(parents=True, exist_ok=True)
        shutil.copy(clip, tmp_path / "videos" / gloss / clip.name)
    shutil.copy(clips[4], tmp_path / "videos" / "loose.mp4")
    url = str(tmp_path / "v.zarr")
    args = [
        "populate",
        "--store",
        url,
        "--videos",
        str(tmp_path / "videos"),
        "--encoder",
        "tiny-random",
    ]
    assert cli_main([*args, "--num-frames", "8", "--no-landmarks", "--quiet"]) == 0
    store = open_store(url)
    assert store.labels == {0: "bye", 1: "hello"}
    assert store.splits() == {"train": 3, "unlabeled": 1}
    assert store.get("loose").label == -1
