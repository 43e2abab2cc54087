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


@pytest.mark.parametrize(
    "arr",
    [
        np.arange(24, dtype=np.float16).reshape(2, 3, 4),
        np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4)),  # F order
        np.arange(40, dtype=np.int64).reshape(5, 8)[::2, 1::3],  # neither C nor F
        np.zeros((0, 75, 3), dtype=np.float32),
        np.array([True, False]),
    ],
    ids=["c-order", "f-order", "strided", "empty", "bool"],
)
def test_npy_bytes_are_what_numpy_saves(arr):
    """The cached header must be byte for byte numpy's own, whatever the array's layout."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(arr), allow_pickle=False)
    assert npy_bytes(arr) == buf.getvalue()
    assert npy_bytes(arr) == buf.getvalue()  # the second call takes the header from the cache


def test_npy_refuses_object_arrays():
    with pytest.raises(ValueError):
        npy_bytes(np.array([{"a": 1}], dtype=object))
