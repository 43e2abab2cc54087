"""Synthetic sign-like clips: manifest, splits, decodability, determinism, class motion."""

import csv

import numpy as np
import pytest

from featurestore.extract import decode_clip, read_manifest, synthesize


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return synthesize(
        tmp_path_factory.mktemp("s"), classes=3, per_class=7, seed=4, frames=10, size=(48, 32)
    )


def test_manifest_rows_and_splits(synth):
    rows = list(csv.DictReader(synth.open()))
    assert list(rows[0]) == ["video_id", "path", "gloss", "split"]
    assert len(rows) == 21 and len({r["video_id"] for r in rows}) == 21
    for gloss in ("sign00", "sign01", "sign02"):
        splits = [r["split"] for r in rows if r["gloss"] == gloss]
        assert splits.count("val") == 1 and splits.count("test") == 1 and splits.count("train") == 5
    assert all(not r["path"].startswith("/") for r in rows)  # relative: the folder can move


def test_clips_decode_with_the_requested_size_and_length(synth):
    entry = read_manifest(synth)[0]
    clip = decode_clip(entry.path, num_frames=16)
    assert clip.total_frames == 10 and clip.num_real_frames == 10
    assert clip.frames.shape == (16, 32, 48, 3)


def test_same_seed_same_clips_other_seed_other_clips(tmp_path):
    a = synthesize(tmp_path / "a", classes=1, per_class=2, seed=1, frames=6, size=(32, 32))
    b = synthesize(tmp_path / "b", classes=1, per_class=2, seed=1, frames=6, size=(32, 32))
    c = synthesize(tmp_path / "c", classes=1, per_class=2, seed=2, frames=6, size=(32, 32))
    clip = "clips/sign00_000.mp4"
    fa, fb, fc = (decode_clip(m.parent / clip, 6).frames for m in (a, b, c))
    assert np.array_equal(fa, fb)
    assert not np.array_equal(fa, fc)


def _motion_energy(path):
    frames = decode_clip(path, num_frames=10).frames.astype(np.float32)
    return np.abs(np.diff(frames, axis=0)).mean(axis=(1, 2, 3))


def test_hands_move_and_clips_of_a_class_differ(synth):
    entries = read_manifest(synth)
    energy = _motion_energy(entries[0].path)
    assert energy.max() > 0.5  # the hands move between frames
    same_class = [e for e in entries if e.gloss == "sign00"][:2]
    f0, f1 = (decode_clip(e.path, 10).frames for e in same_class)
    assert not np.array_equal(f0, f1)  # per-clip jitter


def test_bad_sizes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="even"):
        synthesize(tmp_path, classes=1, per_class=1, size=(33, 32))
    with pytest.raises(ValueError, match=">= 1"):
        synthesize(tmp_path, classes=0)
