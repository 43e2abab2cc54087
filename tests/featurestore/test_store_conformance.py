"""The store contract (``BackendTests``), run against every backend: Zarr folder, Zarr on
memory://, HDF5 here; S3 in test_s3_store.py."""

from __future__ import annotations

import pickle
import uuid

import numpy as np
import pytest

from featurestore import (
    InvalidVideoError,
    SchemaMismatchError,
    StoreError,
    StreamNotFoundError,
    VideoNotFoundError,
    create_store,
    open_store,
)
from tests.helpers import random_video, small_schema


def fill(url, rng, n=20, block_size=8, splits=("train", "val")):
    store = create_store(url, small_schema(), block_size=block_size)
    data = {}
    with store.writer() as w:
        for i in range(n):
            vid = f"v{i:03d}"
            data[vid] = random_video(rng)
            w.put(
                vid,
                data[vid],
                label=i % 3,
                split=splits[i % len(splits)],
                source={"path": f"{vid}.mp4"},
            )
    return data


def assert_same(video_arrays, expected):
    assert set(video_arrays) == set(expected)
    for name, arr in expected.items():
        assert video_arrays[name].dtype == arr.dtype
        np.testing.assert_array_equal(video_arrays[name], arr)


class BackendTests:
    """The contract every backend keeps. A subclass per backend provides ``store_url``, a
    fresh location on it (zarr's ``StoreTests`` is subclassed the same way)."""

    def test_round_trip_get(self, store_url, rng):
        data = fill(store_url, rng)
        store = open_store(store_url)
        assert len(store) == 20 and store.ids() == sorted(data)
        for vid, arrays in data.items():
            video = store.get(vid)
            assert_same(video.arrays, arrays)
            assert video.gloss == store.labels[video.label]
            assert video.source == {"path": f"{vid}.mp4"}

    def test_get_one_stream_and_unknown_stream(self, store_url, rng):
        data = fill(store_url, rng, n=3)
        store = open_store(store_url)
        video = store.get("v001", ["landmarks"])
        assert list(video.arrays) == ["landmarks"]
        np.testing.assert_array_equal(video.arrays["landmarks"], data["v001"]["landmarks"])
        with pytest.raises(StreamNotFoundError, match="unknown stream 'nope'"):
            store.get("v001", ["nope"])

    def test_get_many_keeps_requested_order(self, store_url, rng):
        data = fill(store_url, rng)
        store = open_store(store_url)
        ids = ["v017", "v002", "v009", "v002"]
        batch = store.get_many(ids)
        assert batch.ids == ids
        for i, vid in enumerate(ids):
            assert_same({k: a[i] for k, a in batch.arrays.items()}, data[vid])
        assert list(batch.labels) == [int(v[1:]) % 3 for v in ids]

    def test_splits_and_streaming(self, store_url, rng):
        data = fill(store_url, rng, n=21)
        store = open_store(store_url)
        assert store.splits() == {"train": 11, "val": 10}
        seen = []
        for batch in store.iter_batches("train", batch_size=4):
            assert len(batch) <= 4
            assert batch.arrays["gemma"].shape[1:] == (4, 8)
            for i, vid in enumerate(batch.ids):
                np.testing.assert_array_equal(batch.arrays["gemma"][i], data[vid]["gemma"])
            seen += batch.ids
        assert sorted(seen) == store.ids("train")
        blocks = store.blocks("val")
        assert sum(len(b) for b in blocks) == 10
        assert [v for b in blocks for v in b.video_ids] == [
            v for b in blocks for v in store.read_block(b).ids
        ]

    def test_unknown_video(self, store_url, rng):
        fill(store_url, rng, n=2)
        store = open_store(store_url)
        with pytest.raises(VideoNotFoundError, match="'zzz' is not in store"):
            store.get("zzz")
        assert "zzz" not in store and "v000" in store

    def test_invisible_until_flushed_then_visible_after_refresh(self, store_url, rng):
        store = create_store(store_url, small_schema(), block_size=4)
        reader = open_store(store_url)
        assert len(reader) == 0
        w = store.writer()
        w.put("a", random_video(rng), label=0)
        assert len(open_store(store_url)) == 0  # buffered, not committed
        w.flush()
        assert len(reader) == 0  # a reader sees the index it loaded ...
        reader.refresh()
        assert reader.ids() == ["a"]  # ... until it refreshes
        for i in range(4):
            w.put(f"b{i}", random_video(rng), label=1)  # a full block commits by itself
        assert len(open_store(store_url)) == 5
        w.close()

    def test_overwrite_needs_flag(self, store_url, rng):
        fill(store_url, rng, n=2)
        store = open_store(store_url, "r+")
        new = random_video(rng)
        with (
            store.writer() as w,
            pytest.raises(InvalidVideoError, match="already in the store; pass overwrite=True"),
        ):
            w.put("v000", new, label=0)
        with store.writer(overwrite=True) as w:
            w.put("v000", new, label=2)
        store = open_store(store_url)
        assert_same(store.get("v000").arrays, new)
        assert store.get("v000").label == 2 and len(store) == 2

    def test_reopen_and_append(self, store_url, rng):
        data = fill(store_url, rng, n=5)
        store = open_store(store_url, "r+")
        with store.writer() as w:
            more = random_video(rng)
            w.put("extra", more, label=1, split="test")
        store = open_store(store_url)
        assert len(store) == 6 and store.splits()["test"] == 1
        assert_same(store.get("v004").arrays, data["v004"])

    def test_failures_recorded_and_superseded(self, store_url, rng):
        store = create_store(store_url, small_schema())
        with store.writer() as w:
            w.fail("bad1", "not a video")
            w.fail("bad2", "no frames")
        assert open_store(store_url).failures() == {"bad1": "not a video", "bad2": "no frames"}
        with store.writer() as w:
            w.put("bad2", random_video(rng), label=0)
        assert open_store(store_url).failures() == {"bad1": "not a video"}

    def test_verify_and_compact_preserve_content(self, store_url, rng):
        data = fill(store_url, rng, n=13, block_size=4)
        store = open_store(store_url, "r+")
        with store.writer() as w:  # a second segment
            data["late"] = random_video(rng)
            w.put("late", data["late"], label=0, split="val")
        assert store.verify() == []
        result = store.compact()
        assert result["videos"] == 14 and result["segments_removed"] == 2
        store = open_store(store_url)
        assert store.verify() == []
        assert len({b.segment for b in store.blocks()}) == 1
        for vid, arrays in data.items():
            assert_same(store.get(vid).arrays, arrays)
        # compact orders by split then id: each split is a contiguous run of rows
        val_blocks = store.blocks("val")
        assert [v for b in val_blocks for v in b.video_ids] == store.ids("val")

    def test_labels_are_add_only(self, store_url):
        store = create_store(store_url, small_schema())
        store.set_labels({3: "no"})
        assert open_store(store_url).labels[3] == "no"
        with pytest.raises(SchemaMismatchError, match="labels cannot change"):
            store.set_labels({0: "goodbye"})

    def test_create_exist_ok_checks_schema(self, store_url):
        create_store(store_url, small_schema())
        with pytest.raises(StoreError, match="already exists"):
            create_store(store_url, small_schema())
        assert create_store(store_url, small_schema(), exist_ok=True).schema.num_frames == 4
        with pytest.raises(SchemaMismatchError, match="num_frames"):
            create_store(store_url, small_schema(num_frames=5), exist_ok=True)
        with pytest.raises(SchemaMismatchError, match="stream 'gemma'"):
            create_store(store_url, small_schema(dim=9), exist_ok=True)

    def test_check_compatible_names_what_differs(self, store_url):
        store = create_store(store_url, small_schema())
        store.check_compatible(encoder=store.schema.encoder, num_frames=4)
        with pytest.raises(SchemaMismatchError, match="encoder fingerprint"):
            store.check_compatible(encoder={"model_id": "other"})

    def test_read_only_store_refuses_writers(self, store_url, rng):
        fill(store_url, rng, n=1)
        with pytest.raises(PermissionError, match="read-only"):
            open_store(store_url).writer()

    def test_pickled_store_reads_in_new_process_state(self, store_url, rng):
        data = fill(store_url, rng, n=3)
        store = open_store(store_url)
        store.get("v000")  # open handles
        clone = pickle.loads(pickle.dumps(store))
        assert_same(clone.get("v002").arrays, data["v002"])

    def test_info_describes_store(self, store_url, rng):
        fill(store_url, rng, n=4)
        info = open_store(store_url).info()
        assert info["videos"] == 4 and info["num_frames"] == 4
        assert info["streams"]["gemma"] == {"shape": [4, 8], "dtype": "float16"}
        assert info["encoder"]["model_id"] == "test" and info["num_classes"] == 3


class TestZarrFolder(BackendTests):
    @pytest.fixture
    def store_url(self, tmp_path) -> str:
        return str(tmp_path / "store.zarr")


class TestZarrMemory(BackendTests):
    @pytest.fixture
    def store_url(self) -> str:
        return f"memory://{uuid.uuid4().hex}/store.zarr"


class TestHDF5(BackendTests):
    @pytest.fixture
    def store_url(self, tmp_path) -> str:
        return str(tmp_path / "store.h5")
