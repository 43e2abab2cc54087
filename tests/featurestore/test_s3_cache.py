"""A local cache of a store on S3: the mirror equals the remote, fetches only new objects
on a rerun, follows compaction, and never shows a video before its arrays."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("s3fs")
pytest.importorskip("moto")

from featurestore import create_store, open_store  # noqa: E402
from featurestore._files import Files  # noqa: E402
from featurestore.remote import cache_path, mirror, open_cached  # noqa: E402
from tests.helpers import random_video, small_schema  # noqa: E402
from tests.s3_server import shared_s3_server  # noqa: E402

pytestmark = pytest.mark.ray


@pytest.fixture
def remote(rng):
    s3 = shared_s3_server()
    url = f"s3://{s3.make_bucket()}/cached.zarr"
    store = create_store(url, small_schema(), storage_options=s3.storage_options, block_size=4)
    data = {}
    with store.writer() as w:
        for i in range(10):
            data[f"v{i:02d}"] = random_video(rng)
            w.put(f"v{i:02d}", data[f"v{i:02d}"], label=i % 3, split="train")
    return url, s3.storage_options, data


def assert_same(store, data):
    assert store.ids() == sorted(data)
    for vid, arrays in data.items():
        got = store.get(vid).arrays
        for k, a in arrays.items():
            np.testing.assert_array_equal(got[k], a, err_msg=f"{vid} {k}")


def test_cached_store_reads_like_the_remote_and_fetches_only_new_objects(remote, tmp_path, rng):
    url, opts, data = remote
    cached = open_cached(url, str(tmp_path), storage_options=opts)
    assert cached.url == cache_path(url, str(tmp_path)) and cached.url.startswith(str(tmp_path))
    assert_same(cached, data)
    assert [len(b) for b in cached.iter_batches(batch_size=4)] == [4, 4, 2]

    again = mirror(url, str(tmp_path), opts)
    assert again.fetched == 0 and again.removed == 0 and again.kept > 0

    before = set(Files(url, opts).list(""))
    writer_store = open_store(url, "r+", storage_options=opts)
    with writer_store.writer() as w:
        data["new"] = random_video(rng)
        w.put("new", data["new"], label=1, split="val")
    writer_store.set_labels({7: "seven"})
    update = mirror(url, str(tmp_path), opts)
    new = set(Files(url, opts).list("")) - before  # the new writer's segment and commit
    assert update.fetched == len(new) > 0 and update.kept == len(before) - 1  # all but metadata
    fresh = open_cached(url, str(tmp_path), storage_options=opts)
    assert_same(fresh, data)
    assert fresh.labels[7] == "seven" and fresh.get("new").split == "val"


def test_cache_follows_compaction(remote, tmp_path):
    url, opts, data = remote
    open_cached(url, str(tmp_path), storage_options=opts)
    open_store(url, "r+", storage_options=opts).compact()
    stats = mirror(url, str(tmp_path), opts)
    assert stats.removed > 0 and stats.fetched > 0
    cached = open_store(stats.path)
    assert_same(cached, data)
    assert cached.info()["segments"] == 1 and cached.verify() == []


def test_local_urls_and_no_cache_dir_open_directly(remote, tmp_path):
    url, opts, data = remote
    assert open_cached(url, None, storage_options=opts).url == url
    local = str(tmp_path / "plain.zarr")
    create_store(local, small_schema())
    assert open_cached(local, str(tmp_path / "cache")).url == local
    with pytest.raises(ValueError, match="already local"):
        mirror(local, str(tmp_path / "cache"))
