"""Local Zarr stores read and written as plain chunk files stay Zarr, and every row is checked."""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import fsspec
import h5py
import numpy as np
import pytest
import zarr

from featurestore import CorruptDataError, create_store, open_store
from tests.helpers import random_video, small_schema


def _write(url: str, rng, n: int = 6, block_size: int = 4, **kw) -> dict:
    videos = {f"v{i}": random_video(rng) for i in range(n)}
    store = create_store(url, small_schema(), block_size=block_size, **kw)
    with store.writer() as w:
        for vid, arrays in videos.items():
            w.put(vid, arrays, label=0)
    return videos


def test_plain_zarr_reads_what_the_store_wrote(tmp_path, rng):
    url = str(tmp_path / "s.zarr")
    videos = _write(url, rng)  # one full block and a partial one
    store = open_store(url)
    for vid, arrays in videos.items():
        e = store.entry(vid)
        for stream, want in arrays.items():
            arr = zarr.open_array(f"{url}/segments/{e.segment}/{stream}", mode="r")
            np.testing.assert_array_equal(arr[e.block * 4 + e.offset], want)
    e = store.entry("v5")  # the rest of a partial block is the fill value, as Zarr writes it
    arr = zarr.open_array(f"{url}/segments/{e.segment}/gemma", mode="r")
    assert not arr[e.block * 4 + 2 : e.block * 4 + 4].any()


def test_store_reads_what_plain_zarr_wrote(tmp_path, rng):
    """A store whose chunks Zarr itself wrote (and may have skipped when all fill) reads back."""
    url = str(tmp_path / "s.zarr")
    videos = _write(url, rng, n=4)
    store = open_store(url, "r+")
    e = store.entry("v0")
    mask = zarr.open_array(f"{url}/segments/{e.segment}/landmark_mask", mode="r+")
    mask[0:4] = False  # an all-fill chunk: Zarr deletes its file
    gemma = zarr.open_array(f"{url}/segments/{e.segment}/gemma", mode="r+")
    gemma[1] = videos["v0"]["gemma"]
    store = open_store(url)
    np.testing.assert_array_equal(store.get_many(["v0"]).arrays["landmark_mask"][0], False)
    batch = next(store.iter_batches(batch_size=4))
    np.testing.assert_array_equal(batch.arrays["gemma"][1], videos["v0"]["gemma"])


def _drop_row_checksums(url: str) -> None:
    for path in Path(url).glob("commits/*/*.json"):
        rec = json.loads(path.read_text())
        for v in rec["videos"]:
            assert set(v.pop("crc32c")) == {"gemma", "landmarks", "landmark_mask"}
        path.write_text(json.dumps(rec))


@pytest.mark.parametrize("suffix", [".zarr", ".h5"])
def test_store_without_row_checksums_reads_and_catches_corruption(tmp_path, rng, suffix):
    url = str(tmp_path / f"s{suffix}")
    videos = _write(url, rng)
    _drop_row_checksums(url)
    store = open_store(url)
    for vid, arrays in videos.items():
        for stream, want in arrays.items():
            np.testing.assert_array_equal(store.get(vid).arrays[stream], want)
    if suffix == ".zarr":
        e = store.entry("v1")
        chunk = Path(url) / "segments" / e.segment / "landmarks" / "c" / "0" / "0" / "0" / "0"
        raw = bytearray(chunk.read_bytes())
        raw[0] ^= 0xFF  # row 0 (v0) is damaged; v1's bytes are intact but share the chunk
        chunk.write_bytes(bytes(raw))
        with pytest.raises(CorruptDataError, match=r"video 'v1', field 'landmarks'"):
            open_store(url).get("v1")


def _assert_only_v2_is_corrupt(store, videos: dict) -> None:
    """v2's flipped gemma bit is named on every read path; the rows beside it still read."""
    with pytest.raises(CorruptDataError, match=r"video 'v2', field 'gemma'"):
        store.get("v2")
    for vid in ("v0", "v1", "v3"):
        np.testing.assert_array_equal(store.get(vid).arrays["gemma"], videos[vid]["gemma"])
    with pytest.raises(CorruptDataError, match=r"field 'gemma'"):
        list(store.iter_batches(batch_size=4))
    block = store.blocks()[0]  # v0..v3: part of it reads only its own rows' bytes
    assert block.video_ids == ("v0", "v1", "v2", "v3")
    got = store.read_block(block.part(0, 2), ["gemma"])
    for i, vid in enumerate(("v0", "v1")):
        np.testing.assert_array_equal(got.arrays["gemma"][i], videos[vid]["gemma"])
    with pytest.raises(CorruptDataError, match=r"field 'gemma'.*row 2"):
        store.read_block(block.part(1, 3), ["gemma"])
    assert any("'v2'" in p and "gemma" in p for p in store.verify())


def test_corrupt_row_is_named_and_the_others_read(tmp_path, rng):
    url = str(tmp_path / "s.zarr")
    videos = _write(url, rng)
    store = open_store(url)
    e = store.entry("v2")
    chunk = Path(url) / "segments" / e.segment / "gemma" / "c" / "0" / "0" / "0"
    raw = bytearray(chunk.read_bytes())
    row = raw[: len(raw) - 4]
    raw[2 * len(row) // 4 + 7] ^= 0x01  # one bit of row 2 (v2)
    chunk.write_bytes(bytes(raw))
    _assert_only_v2_is_corrupt(store, videos)


@pytest.mark.parametrize("kw", [{"compression": "zstd"}, {"chunk_rows": 1}])
def test_other_layouts_go_through_zarr_and_still_read_one_row(tmp_path, rng, kw):
    url = str(tmp_path / "s.zarr")
    videos = _write(url, rng, **kw)
    store = open_store(url)
    for vid, arrays in videos.items():
        np.testing.assert_array_equal(store.get(vid).arrays["gemma"], arrays["gemma"])


@pytest.mark.parametrize("chunk_rows", [None, 1])  # a block per chunk; one video per chunk
def test_hdf5_corrupt_row_is_named_and_the_others_read(tmp_path, rng, chunk_rows):
    url = str(tmp_path / "s.h5")
    videos = _write(url, rng, chunk_rows=chunk_rows)
    store = open_store(url)
    e = store.entry("v2")
    path = Path(url) / "segments" / e.segment / f"{e.block:08d}.h5"
    with h5py.File(path, "r") as f:
        d = f["gemma"]
        assert d.chunks[0] == (chunk_rows or len(d))
        chunk = d.id.get_chunk_info_by_coord((e.offset // d.chunks[0] * d.chunks[0], 0, 0))
        at = chunk.byte_offset + e.offset % d.chunks[0] * d[0].nbytes
    raw = bytearray(path.read_bytes())
    raw[at + 11] ^= 0x01
    path.write_bytes(bytes(raw))
    _assert_only_v2_is_corrupt(store, videos)


def test_hdf5_compressed_store_reads_through_h5py(tmp_path, rng):
    url = str(tmp_path / "s.h5")
    videos = _write(url, rng, compression="zstd")
    store = open_store(url)
    for vid, arrays in videos.items():
        np.testing.assert_array_equal(store.get(vid).arrays["landmarks"], arrays["landmarks"])
    batch = next(store.iter_batches(batch_size=6))
    np.testing.assert_array_equal(batch.arrays["gemma"][5], videos["v5"]["gemma"])


def test_object_store_get_reads_only_the_row(rng):
    """On object storage a get fetches its row's bytes alone: damage elsewhere in the chunk
    does not stop it, and the damaged row is named."""
    url = f"memory://{uuid.uuid4().hex}/s.zarr"
    videos = _write(url, rng)
    store = open_store(url)
    e = store.entry("v1")
    fs = fsspec.filesystem("memory")
    key = f"{url[len('memory://') :]}/segments/{e.segment}/gemma/c/0/0/0"
    raw = bytearray(fs.cat_file(key))
    raw[7] ^= 0x01  # row 0 (v0)
    fs.pipe_file(key, bytes(raw))
    store = open_store(url)
    np.testing.assert_array_equal(store.get("v1").arrays["gemma"], videos["v1"]["gemma"])
    with pytest.raises(CorruptDataError, match=r"video 'v0', field 'gemma'"):
        store.get("v0")
    with pytest.raises(CorruptDataError, match=r"field 'gemma'"):
        store.get_many(["v1"])  # a block read checks the whole chunk


@pytest.mark.parametrize("suffix", [".zarr", ".h5"])
def test_without_preadv_zarr_and_h5py_read_everything(tmp_path, rng, monkeypatch, suffix):
    """Where the OS has no preadv/writev, stores are written and read through Zarr/h5py."""
    from featurestore.backends import _hdf5, _zarr

    monkeypatch.setattr(_zarr, "HAVE_PREADV", False)
    monkeypatch.setattr(_hdf5, "HAVE_PREADV", False)
    url = str(tmp_path / f"s{suffix}")
    videos = _write(url, rng)
    store = open_store(url)
    for vid, arrays in videos.items():
        for stream, want in arrays.items():
            np.testing.assert_array_equal(store.get(vid).arrays[stream], want)
    batch = next(store.iter_batches(batch_size=6))
    np.testing.assert_array_equal(batch.arrays["landmarks"][4], videos["v4"]["landmarks"])
    assert store.verify() == []


@pytest.mark.parametrize("suffix", [".zarr", ".h5"])
def test_streamed_rows_are_writable_and_writing_them_never_changes_the_store(tmp_path, rng, suffix):
    """Block reads map the chunk files copy-on-write: callers may change what they got
    (augmentation in place), and the store, and later reads, keep the committed bytes."""
    url = str(tmp_path / f"s{suffix}")
    videos = _write(url, rng, n=8, block_size=4)
    store = open_store(url)
    batches = list(store.iter_batches(batch_size=4))
    for batch in batches:
        for stream, arr in batch.arrays.items():
            assert arr.flags.writeable, stream
            arr[...] = 0 if arr.dtype != bool else False
    again = open_store(url)
    for batch in again.iter_batches(batch_size=4):
        for i, vid in enumerate(batch.ids):
            for stream, want in videos[vid].items():
                np.testing.assert_array_equal(batch.arrays[stream][i], want)
    assert again.verify() == []


def test_hdf5_store_of_one_video_chunks_takes_block_chunks_and_reads_both(tmp_path, rng):
    """A store written with one video per chunk (before a chunk held a block) keeps them,
    writes new blocks a block per chunk, and reads and verifies both on every path."""
    url = str(tmp_path / "s.h5")
    shutil.copytree(Path(__file__).parent / "data" / "store_v1.h5", url)
    old = open_store(url)
    before = {vid: old.get(vid).arrays for vid in old.ids()}
    store = open_store(url, "r+")
    added = {f"n{i}": random_video(rng) for i in range(6)}
    with store.writer() as w:
        for vid, arrays in added.items():
            w.put(vid, arrays, label=0)
    store = open_store(url)
    chunks = set()
    for path in Path(url, "segments").rglob("*.h5"):
        with h5py.File(path, "r") as f:
            chunks.add(f["gemma"].chunks[0] == 1)
    assert chunks == {True, False}
    want = {**before, **added}
    seen = set()
    for batch in store.iter_batches(batch_size=5):
        for i, vid in enumerate(batch.ids):
            seen.add(vid)
            for stream, arr in want[vid].items():
                np.testing.assert_array_equal(batch.arrays[stream][i], arr)
                np.testing.assert_array_equal(store.get(vid).arrays[stream], arr)
    assert seen == set(want)
    assert store.verify() == []


def test_hdf5_block_file_laid_out_otherwise_reads_through_h5py(tmp_path, rng):
    """Block files of one size are assumed to share their byte layout (looked up once); a file
    of that size laid out otherwise fails its rows' CRC32Cs and is read right through h5py."""
    url = str(tmp_path / "s.h5")
    videos = _write(url, rng, n=8, block_size=4)
    store = open_store(url)
    e = store.entry("v4")
    path = Path(url) / "segments" / e.segment / f"{e.block:08d}.h5"
    size = path.stat().st_size
    with h5py.File(path, "r") as f:
        arrays = {name: f[name][()] for name in f}
    with h5py.File(path, "w") as f:  # the same datasets, created in the other order
        for name in sorted(arrays, reverse=True):
            data = arrays[name]
            f.create_dataset(name, data=data, chunks=data.shape, fletcher32=True)
    assert path.stat().st_size == size
    for _ in range(2):  # the first file read is block 0; then block 1 reads wrong, then right
        batches = list(open_store(url).iter_batches(batch_size=4))
        for batch in batches:
            for i, vid in enumerate(batch.ids):
                for stream, want in videos[vid].items():
                    np.testing.assert_array_equal(batch.arrays[stream][i], want)
    assert open_store(url).verify() == []
