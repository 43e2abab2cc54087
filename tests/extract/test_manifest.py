"""Manifests: CSV/JSONL, WLASL (subset, ranges, missing), folders, and stable label maps."""

import json

import pytest

from featurestore.extract import (
    ManifestError,
    assign_labels,
    read_manifest,
    read_wlasl,
    scan_videos,
)
from tests.extract.clips import wlasl_mini


def test_csv_with_frame_ranges_and_relative_paths(tmp_path):
    (tmp_path / "m.csv").write_text(
        "video_id,path,gloss,split,start_frame,end_frame\n"
        "a,clips/a.mp4,hello,train,5,20\n"
        "b,/abs/b.mp4,,val,,\n"
        "c,clips/c.mp4,bye,test,x,3\n"
        "bad id,clips/d.mp4,bye,test,,\n"
        "a,clips/dup.mp4,hello,train,,\n"
    )
    a, b, c, d = read_manifest(tmp_path / "m.csv")
    assert (a.video_id, a.path, a.frame_start, a.frame_end) == (
        "a",
        tmp_path / "clips/a.mp4",
        5,
        20,
    )
    assert (b.path.as_posix(), b.gloss, b.split, b.frame_end, b.error) == (
        "/abs/b.mp4",
        "",
        "val",
        -1,
        None,
    )
    assert "start_frame" in c.error and "'x'" in c.error and "m.csv line 4" in c.error
    assert "invalid video id" in d.error


def test_jsonl_manifest(tmp_path):
    lines = [
        {"video_id": "v1", "path": "v1.webm", "gloss": "yes", "split": "train", "end_frame": 9},
        {"video_id": "v2", "path": "v2.webm", "gloss": "no"},
    ]
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    v1, v2 = read_manifest(tmp_path / "m.jsonl")
    assert (v1.frame_end, v2.split, v2.gloss) == (9, "train", "no")


def test_unreadable_manifests_raise(tmp_path):
    with pytest.raises(ManifestError, match="not found"):
        read_manifest(tmp_path / "none.csv")
    (tmp_path / "cols.csv").write_text("id,file\n1,x.mp4\n")
    with pytest.raises(ManifestError, match="missing column"):
        read_manifest(tmp_path / "cols.csv")
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(ManifestError, match="line 1"):
        read_manifest(tmp_path / "bad.jsonl")


def _fake_wlasl(root):
    glosses = [
        {
            "gloss": "book",
            "instances": [{"video_id": "001", "split": "train", "frame_start": 1, "frame_end": -1}],
        },
        {
            "gloss": "drink",
            "instances": [
                {"video_id": "002", "split": "val", "frame_start": 3, "frame_end": 40},
                {"video_id": "003", "split": "test", "frame_start": 1, "frame_end": -1},
            ],
        },
    ]
    (root / "videos").mkdir(parents=True)
    (root / "WLASL_v0.3.json").write_text(json.dumps(glosses))
    (root / "missing.txt").write_text("003\n")
    (root / "nslt_2.json").write_text(
        json.dumps({"002": {"subset": "train", "action": [1, 5, 30]}})
    )
    return root


def test_wlasl_labels_are_gloss_positions(tmp_path):
    entries, labels = read_wlasl(_fake_wlasl(tmp_path))
    assert labels == {0: "book", 1: "drink"}
    by_id = {e.video_id: e for e in entries}
    assert (by_id["002"].label, by_id["002"].frame_start, by_id["002"].frame_end) == (1, 3, 40)
    assert by_id["001"].path == tmp_path / "videos" / "001.mp4"
    assert "missing.txt" in by_id["003"].error


def test_wlasl_subset_sets_split_class_and_range(tmp_path):
    entries, labels = read_wlasl(_fake_wlasl(tmp_path), "nslt_2.json")
    (e,) = entries
    assert (e.video_id, e.label, e.gloss, e.split, e.frame_start, e.frame_end) == (
        "002",
        1,
        "drink",
        "train",
        5,
        30,
    )
    assert labels == {1: "drink"}


def test_wlasl_errors(tmp_path):
    with pytest.raises(ManifestError, match="not a WLASL folder"):
        read_wlasl(tmp_path)
    _fake_wlasl(tmp_path)
    with pytest.raises(ManifestError, match="subset file"):
        read_wlasl(tmp_path, "nslt_9999.json")


def test_real_wlasl_mini():
    entries, labels = read_wlasl(wlasl_mini(), "nslt_8.json")
    assert len(entries) == 8 and labels[0] == "hello" and labels[7] == "help"
    assert all(e.path.is_file() and e.error is None for e in entries)
    everything, _ = read_wlasl(wlasl_mini())
    (missing,) = [e for e in everything if e.error]
    assert missing.video_id == "99999"


def test_scan_videos(tmp_path):
    for rel in ("a.mp4", "hello/b.webm", "hello/c.avi", "notes.txt", "x/y/deep.mp4"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    entries = {e.video_id: e for e in scan_videos(tmp_path)}
    assert sorted(entries) == ["a", "b", "c"]
    assert (entries["a"].gloss, entries["a"].split) == ("", "unlabeled")
    assert (entries["b"].gloss, entries["b"].split) == ("hello", "train")


def test_labels_are_stable_and_add_only(tmp_path):
    (tmp_path / "m.csv").write_text("video_id,path,gloss\na,a.mp4,zebra\nb,b.mp4,apple\nc,c.mp4,\n")
    entries, labels = assign_labels(read_manifest(tmp_path / "m.csv"), existing={})
    assert labels == {0: "apple", 1: "zebra"}
    assert [e.label for e in entries] == [1, 0, -1]
    # a later run with a new gloss keeps the old labels and appends
    (tmp_path / "m2.csv").write_text("video_id,path,gloss\nd,d.mp4,mango\ne,e.mp4,zebra\n")
    entries, labels = assign_labels(read_manifest(tmp_path / "m2.csv"), existing=labels)
    assert labels == {0: "apple", 1: "zebra", 2: "mango"}
    assert [e.label for e in entries] == [2, 1]
