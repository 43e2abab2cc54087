"""Feature sets: visual streams added to stored videos, each with its own encoder fingerprint.

Run on every backend (Zarr folder, Zarr on memory://, HDF5; S3 in test_s3_store.py): rows
join the videos by id on every read path, a set half added shows only its videos, the
landmarks never change, verify and compact cover the sets, drop removes them, and stores
written before feature sets existed read, verify and take a set as they are.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from featurestore import (
    InvalidVideoError,
    SchemaMismatchError,
    StreamNotFoundError,
    create_store,
    fingerprint_digest,
    open_store,
)
from featurestore.cli import main as cli_main
from tests.helpers import random_video, small_schema

SIGLIP = {"model_id": "test-siglip", "feature_dim": 6, "pooling": "mean_soft_tokens"}
OLD_STORES = Path(__file__).parent / "data"


def _row(vid: str, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(abs(hash((vid, seed))) % 2**32)
    return rng.standard_normal((4, 6)).astype(np.float16)


@pytest.fixture
def store(store_url, rng):
    s = create_store(store_url, small_schema(), block_size=4)
    with s.writer() as w:
        for i in range(10):
            w.put(f"v{i:02d}", random_video(rng), label=i % 3, split="train" if i < 7 else "test")
    return s


def _add(store, ids, name="siglip", encoder=SIGLIP, block_size=None, overwrite=False):
    store.add_feature_set(name, encoder, (4, 6))
    with store.feature_writer(name, overwrite=overwrite, block_size=block_size) as w:
        for vid in ids:
            w.put(vid, _row(vid))


def test_added_set_joins_on_every_read_path(store):
    before = store.get_many(store.ids(), ["landmarks", "gemma"])
    _add(store, store.ids())
    store = open_store(store.url)
    assert store.schema.feature_names() == ["gemma", "siglip"]
    assert store.schema.fingerprint("siglip") == SIGLIP
    for vid in store.ids():
        np.testing.assert_array_equal(store.get(vid, ["siglip"]).arrays["siglip"], _row(vid))
    batch = store.get_many(["v09", "v00", "v05"], ["landmarks", "siglip"])
    np.testing.assert_array_equal(batch.arrays["siglip"], [_row(v) for v in batch.ids])
    seen = []
    for b in store.iter_batches("train", batch_size=3, streams=["landmarks", "siglip", "gemma"]):
        np.testing.assert_array_equal(b.arrays["siglip"], [_row(v) for v in b.ids])
        seen += b.ids
    assert seen == store.ids("train")
    after = store.get_many(store.ids(), ["landmarks", "gemma"])
    for s in ("landmarks", "gemma"):  # the add never touches the videos' own streams
        assert after.arrays[s].tobytes() == before.arrays[s].tobytes()
    assert store.verify() == []


def test_a_half_added_set_shows_only_its_videos(store):
    _add(store, ["v01", "v02", "v08"])
    assert store.ids(streams=["siglip"]) == ["v01", "v02", "v08"]
    assert store.ids("train", streams=["landmarks", "siglip"]) == ["v01", "v02"]
    assert sum(len(b) for b in store.blocks(streams=["siglip"])) == 3
    assert len(store.ids()) == 10  # the videos themselves are all still there
    with pytest.raises(StreamNotFoundError, match=r"video 'v03' has no feature set 'siglip'"):
        store.get("v03", ["siglip"])
    info = store.info()["feature_sets"]
    assert info["siglip"]["videos"] == 3 and info["siglip"]["stored"] == "added"
    assert info["siglip"]["fingerprint"] == fingerprint_digest(SIGLIP)
    assert info["gemma"]["videos"] == 10 and info["gemma"]["encoder"] == "test"


def test_register_is_idempotent_and_refuses_another_encoder(store):
    store.add_feature_set("siglip", SIGLIP, (4, 6))
    store.add_feature_set("siglip", dict(SIGLIP), (4, 6))
    other = {**SIGLIP, "pooling": "cls"}
    with pytest.raises(SchemaMismatchError, match="feature set 'siglip'.*drop it first"):
        store.add_feature_set("siglip", other, (4, 6))
    with pytest.raises(SchemaMismatchError, match="stream 'landmarks'"):
        store.add_feature_set("landmarks", SIGLIP, (4, 6))
    with pytest.raises(SchemaMismatchError, match="T = 4"):
        store.add_feature_set("wide", SIGLIP, (5, 6))
    store.add_feature_set("gemma", store.schema.encoder, (4, 8))  # populate made exactly this


def test_feature_writer_refuses_bad_rows_and_keeps_going(store):
    store.add_feature_set("siglip", SIGLIP, (4, 6))
    with store.feature_writer("siglip") as w:
        with pytest.raises(InvalidVideoError, match="'nope' is not in store"):
            w.put("nope", _row("nope"))
        with pytest.raises(InvalidVideoError, match="field 'siglip' has shape"):
            w.put("v00", np.zeros((4, 7), np.float16))
        with pytest.raises(InvalidVideoError, match="non-finite"):
            w.put("v00", np.full((4, 6), np.nan, np.float32))
        w.put("v00", _row("v00"))
        w.fail("v01", "source clips/v01.mp4 is gone")
    assert store.feature_ids("siglip") == {"v00"}
    assert store.feature_failures("siglip") == {"v01": "source clips/v01.mp4 is gone"}
    with store.feature_writer("siglip") as w:
        with pytest.raises(InvalidVideoError, match="already has feature set 'siglip'"):
            w.put("v00", _row("v00"))
        w.put("v01", _row("v01"))  # a later success supersedes the failure
    store.refresh()
    assert store.feature_failures("siglip") == {}
    assert store.feature_ids("siglip") == {"v00", "v01"}


def test_two_sets_and_compact_keep_every_row(store):
    _add(store, store.ids()[:6], block_size=3)
    _add(store, store.ids()[4:], block_size=2, overwrite=True)  # rows 4, 5 twice
    _add(store, store.ids(), name="small", encoder={"model_id": "tiny", "seed": 2})
    store = open_store(store.url, "r+")
    before = store.get_many(store.ids(), ["gemma", "landmarks", "landmark_mask"])
    result = store.compact()
    assert result["videos"] == 10
    store = open_store(store.url)
    for name in ("siglip", "small"):
        assert store.feature_ids(name) == set(store.ids())
        for vid in store.ids():
            np.testing.assert_array_equal(store.get(vid, [name]).arrays[name], _row(vid))
    after = store.get_many(store.ids(), list(before.arrays))
    for s, a in before.arrays.items():
        assert after.arrays[s].tobytes() == a.tobytes()
    assert store.verify() == []
    # one segment per set after compact, in the videos' block order
    features = store._storage.index.features
    assert len({r.segment for r in features["siglip"].rows.values()}) == 1


def test_drop_an_added_set_and_the_base_gemma(store):
    _add(store, store.ids())
    result = store.drop_feature_set("siglip")
    assert result["rows"] == 10 and result["segments_removed"] >= 1
    store = open_store(store.url, "r+")
    assert "siglip" not in store.schema.all_streams
    assert store.verify() == []
    _add(store, ["v00"])  # re-adding the same set starts empty
    assert store.feature_ids("siglip") == {"v00"}
    store.drop_feature_set("gemma")
    store = open_store(store.url, "r+")
    assert store.schema.feature_names() == ["siglip"]
    with store.writer() as w:  # new videos no longer carry gemma
        video = random_video(np.random.default_rng(1))
        w.put("new", {k: v for k, v in video.items() if k != "gemma"}, label=0)
    store.compact()
    assert open_store(store.url).verify() == []
    with pytest.raises(StreamNotFoundError, match="no feature set 'gemma'"):
        store.drop_feature_set("gemma")


def test_verify_names_a_corrupt_row_of_an_added_set(tmp_path, rng):
    store = create_store(str(tmp_path / "s.zarr"), small_schema(), block_size=4)
    with store.writer() as w:
        for i in range(4):
            w.put(f"v{i}", random_video(rng), label=0)
    _add(store, store.ids())
    chunks = [p for p in (tmp_path / "s.zarr").rglob("*") if p.is_file() and "siglip" in str(p)]
    chunk = next(p for p in chunks if p.name != "zarr.json")
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # somewhere inside the second row
    chunk.write_bytes(bytes(raw))
    problems = open_store(store.url).verify()
    assert problems and all("'siglip'" in p for p in problems)
    assert any("video 'v1'" in p or "video 'v2'" in p for p in problems)


@pytest.mark.parametrize("name", ["store_v1.zarr", "store_v1.h5"])
def test_a_store_made_before_feature_sets_reads_and_takes_one(tmp_path, name):
    url = str(tmp_path / name)
    copy = shutil.copytree if (OLD_STORES / name).is_dir() else shutil.copy
    copy(OLD_STORES / name, url)
    store = open_store(url, "r+")
    assert len(store) == 10 and store.failures() == {"broken": "decode error: test"}
    assert store.schema.feature_names() == ["gemma"] and store.schema.feature_sets == {}
    assert store.verify() == []
    assert store.get("v03").arrays["gemma"].shape == (4, 8)
    _add(store, store.ids())
    store = open_store(url)
    assert store.get("v03", ["siglip"]).arrays["siglip"].shape == (4, 6)
    assert store.verify() == []
    meta = json.loads(Path(url, "featurestore.json").read_text()) if Path(url).is_dir() else None
    if meta is not None:  # the metadata only grows a key an older reader ignores
        assert set(meta["feature_sets"]) == {"siglip"} and "siglip" not in meta["streams"]


def test_cli_lists_and_drops_feature_sets(store, capsys):
    _add(store, store.ids()[:4])
    assert cli_main(["info", store.url]) == 0
    out = capsys.readouterr().out
    assert "siglip" in out and fingerprint_digest(SIGLIP) in out and "videos 4" in out
    assert cli_main(["drop-features", store.url, "siglip"]) == 0
    assert "dropped feature set 'siglip'" in capsys.readouterr().out
    assert cli_main(["drop-features", store.url, "siglip"]) == 2
    assert "no feature set 'siglip'" in capsys.readouterr().err
