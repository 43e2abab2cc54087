"""The feature cache: bounded by bytes, least recently used out first, never shared mutable."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from featurestore import FeatureStore
from server import Settings, create_app
from server.cache import FeatureCache
from tests.server.builders import build_checkpoint, build_store


def arr(n: int, fill: float = 0.0) -> np.ndarray:
    return np.full(n, fill, dtype=np.uint8)


def test_evicts_least_recently_used_to_stay_under_its_bytes():
    cache = FeatureCache(300)
    for i in range(3):
        cache.put(f"v{i}", "s", arr(100, i))
    cache.get("v0", "s")  # v0 is now the most recent
    cache.put("v3", "s", arr(100, 3))
    assert cache.nbytes == 300 and len(cache) == 3
    assert cache.get("v1", "s") is None  # the least recently used went
    assert cache.get("v0", "s")[0] == 0 and cache.get("v3", "s")[0] == 3


def test_replacing_a_key_keeps_the_byte_count_right():
    cache = FeatureCache(1000)
    cache.put("v", "s", arr(100))
    cache.put("v", "s", arr(300))
    assert cache.nbytes == 300 and len(cache) == 1


def test_zero_bytes_disables_it_and_oversized_items_are_not_kept():
    off = FeatureCache(0)
    assert off.put("v", "s", arr(10)).shape == (10,)
    assert off.get("v", "s") is None and len(off) == 0
    small = FeatureCache(50)
    small.put("big", "s", arr(51))
    assert len(small) == 0


def test_cached_arrays_are_private_read_only_copies():
    cache = FeatureCache(1000)
    source = arr(10)
    kept = cache.put("v", "s", source)
    source[:] = 7
    assert cache.get("v", "s")[0] == 0
    with pytest.raises(ValueError):
        kept[0] = 1


@pytest.mark.parametrize("cache_mb", [0, 1])
def test_lookups_and_predictions_are_the_same_with_or_without_cache(tmp_path, cache_mb):
    store = build_store(tmp_path / "store.zarr", n=6)
    ckpt = build_checkpoint(tmp_path / "model.pt", store.schema)
    settings = Settings(
        store=str(tmp_path / "store.zarr"),
        checkpoint=str(ckpt),
        upload_enabled=False,
        cache_mb=cache_mb,
    )
    expected = FeatureStore(str(tmp_path / "store.zarr")).get("v002").arrays["landmarks"]
    with TestClient(create_app(settings)) as c:
        first = [c.get("/v1/videos/v002/features/landmarks").json() for _ in range(3)]
        preds = [
            c.post("/v1/predict", json={"video_ids": ["v002", "v003"]}).json() for _ in range(2)
        ]
        cache = c.get("/v1/info").json()["serving"]["cache"]
    for body in first:
        np.testing.assert_array_equal(np.array(body["data"], dtype="float32"), expected)
    assert preds[0] == preds[1]
    if cache_mb:
        assert cache["hits"] >= 2 + 3 * 2  # 2 repeat lookups, 3 streams x 2 ids predicted again
        assert 0 < cache["bytes"] <= 1024 * 1024
    else:
        assert cache["hits"] == 0 and cache["bytes"] == 0
