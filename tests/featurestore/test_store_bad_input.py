"""Bad input gets a clear error naming the video and field, and never damages the store."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from featurestore import (
    CorruptDataError,
    InvalidVideoError,
    NotAStoreError,
    SchemaMismatchError,
    StoreError,
    create_store,
    open_store,
)
from tests.helpers import random_video, small_schema


@pytest.fixture
def store(store_url, rng):
    store = create_store(store_url, small_schema(), block_size=4)
    with store.writer() as w:
        for i in range(6):
            w.put(f"ok{i}", random_video(rng), label=i % 3)
    return open_store(store_url, "r+")


def snapshot(store):
    store.refresh()
    return {vid: {k: a.copy() for k, a in store.get(vid).arrays.items()} for vid in store.ids()}


@pytest.mark.parametrize(
    "field, value, message",
    [
        (
            "gemma",
            np.zeros((4, 9), np.float16),
            r"field 'gemma' has shape \(4, 9\), store expects \(4, 8\)",
        ),
        ("landmarks", np.zeros((3, 75, 3), np.float32), r"field 'landmarks' has shape"),
        (
            "landmark_mask",
            np.zeros((4, 3), np.float32),
            r"field 'landmark_mask' has dtype float32, store expects bool",
        ),
        ("gemma", np.zeros((4, 8), np.int64), r"field 'gemma' has dtype int64"),
        ("gemma", np.full((4, 8), np.nan, np.float16), r"field 'gemma' has non-finite values"),
        ("landmarks", np.full((4, 75, 3), np.inf, np.float32), r"field 'landmarks' has non-finite"),
        (
            "gemma",
            np.full((4, 8), 1e6, np.float32),
            r"field .gemma. has non-finite values \(NaN/inf, or too large for float16\)",
        ),
    ],
)
def test_bad_arrays_are_refused_and_store_unchanged(store, rng, field, value, message):
    before = snapshot(store)
    arrays = random_video(rng)
    arrays[field] = value
    with store.writer() as w:
        with pytest.raises(InvalidVideoError, match=rf"video 'new1': {message}"):
            w.put("new1", arrays, label=0)
        w.put("new2", random_video(rng), label=1)  # the writer carries on
    after = snapshot(store)
    assert set(after) == set(before) | {"new2"}
    for vid in before:
        for k in before[vid]:
            np.testing.assert_array_equal(after[vid][k], before[vid][k])
    assert store.verify() == []


def test_missing_and_extra_streams(store, rng):
    arrays = random_video(rng)
    del arrays["landmarks"]
    arrays["extra"] = np.zeros(3)
    with (
        store.writer() as w,
        pytest.raises(InvalidVideoError, match=r"missing \['landmarks'\]; unexpected \['extra'\]"),
    ):
        w.put("x", arrays, label=0)


@pytest.mark.parametrize(
    "bad_id", ["", "../x", "a/b", "a\x00b", ".hidden", "a\\b", "x" * 201, 42, "a..b"]
)
def test_bad_ids_are_refused(store, rng, bad_id):
    with store.writer() as w, pytest.raises(InvalidVideoError, match="invalid video id"):
        w.put(bad_id, random_video(rng), label=0)
    assert len(open_store(store.url)) == 6


def test_unknown_label_and_gloss_mismatch(store, rng):
    with store.writer() as w:
        with pytest.raises(InvalidVideoError, match="label 7 is not in the store's label map"):
            w.put("x", random_video(rng), label=7)
        with pytest.raises(InvalidVideoError, match="gloss 'bye' disagrees with label 0"):
            w.put("x", random_video(rng), label=0, gloss="bye")


def test_opening_something_that_is_not_a_store(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        open_store(str(tmp_path / "nothing.zarr"))
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "file.txt").write_text("hi")
    with pytest.raises(NotAStoreError, match="is not a feature store"):
        open_store(str(tmp_path / "dir"))
    with pytest.raises(NotAStoreError, match="not empty and is not a feature store"):
        create_store(str(tmp_path / "dir"), small_schema())


def test_schema_version_mismatch(tmp_path):
    url = str(tmp_path / "s.zarr")
    create_store(url, small_schema())
    meta_path = Path(url) / "featurestore.json"
    meta = json.loads(meta_path.read_text())
    meta["schema_version"] = 99
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(
        SchemaMismatchError, match="schema version 99, this featurestore .* reads version 1"
    ):
        open_store(url)


def _block_files(url: str, stream: str) -> list[Path]:
    root = Path(url)
    if url.endswith(".h5"):
        return sorted(root.glob("segments/*/*.h5"))
    return sorted(p for p in root.glob(f"segments/*/{stream}/c/**/*") if p.is_file())


@pytest.mark.parametrize("damage", ["truncate", "flip"])
@pytest.mark.parametrize("suffix", [".zarr", ".h5"])
def test_corrupt_chunk_is_reported_with_video_and_field(tmp_path, rng, damage, suffix):
    url = str(tmp_path / f"s{suffix}")
    store = create_store(url, small_schema(), block_size=4)
    with store.writer() as w:
        for i in range(8):
            w.put(f"v{i}", random_video(rng), label=0)
    first = _block_files(url, "gemma")[0]
    raw = first.read_bytes()
    if damage == "truncate":
        first.write_bytes(raw[: len(raw) // 2])
    else:
        mid = len(raw) // 2 if suffix == ".zarr" else len(raw) - 200
        first.write_bytes(raw[:mid] + bytes([raw[mid] ^ 0xFF]) + raw[mid + 1 :])
    store = open_store(url)
    damaged_ids = [v for b in store.blocks() if b.block == 0 for v in b.video_ids]
    with pytest.raises(
        CorruptDataError, match=r"video 'v\d'.*field '(gemma|landmarks|landmark_mask)'"
    ):
        for vid in damaged_ids:
            store.get(vid)
    problems = store.verify()
    assert problems and all("v" in p for p in problems)
    # everything in the other block is intact and readable
    for vid in store.ids():
        if vid not in damaged_ids:
            store.get(vid)
    assert os.path.exists(url)
