"""Feature bodies: .npy and JSON read back to exactly the stored array, for every dtype."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from server.encoding import json_bytes, npy_bytes


def from_json(body: bytes) -> np.ndarray:
    d = json.loads(body)
    out = np.array(d["data"], dtype=d["dtype"])
    assert list(out.shape) == d["shape"]
    return out


def test_every_finite_float16_reads_back_bit_for_bit():
    values = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16)
    finite = values[np.isfinite(values)]  # the store refuses NaN and inf
    back = from_json(json_bytes(finite))
    np.testing.assert_array_equal(back.view(np.uint16), finite.view(np.uint16))  # -0.0 too


@pytest.mark.parametrize(
    "arr",
    [
        np.random.default_rng(0).standard_normal((16, 48)).astype(np.float16),
        np.random.default_rng(1).standard_normal((4, 75, 3)).astype(np.float16),
        np.random.default_rng(2).standard_normal((4, 75, 3)).astype(np.float32),
        np.random.default_rng(3).random((16, 3)) > 0.5,
        np.arange(12, dtype=np.int64).reshape(3, 4),
    ],
    ids=["float16-2d", "float16-3d", "float32", "bool", "int64"],
)
def test_json_and_npy_round_trip(arr):
    back = from_json(json_bytes(arr))
    assert back.dtype == arr.dtype
    np.testing.assert_array_equal(back, arr)
    npy = np.load(io.BytesIO(npy_bytes(arr)), allow_pickle=False)
    assert npy.dtype == arr.dtype
    np.testing.assert_array_equal(npy, arr)


def test_float16_json_is_the_shortest_text():
    body = json.loads(json_bytes(np.array([0.1, 1.0, -2.5], dtype=np.float16)))
    assert body["data"] == [0.1, 1.0, -2.5]  # not 0.0999755859375
