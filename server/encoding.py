"""Feature arrays as response bodies: `.npy` bytes, or JSON `{shape, dtype, data}`.

float16 features (the Gemma stream) are most of what clients fetch, and Python's float
formatting makes JSON for a (16, 2560) array take tens of milliseconds. A float16 has only
65,536 bit patterns, so each one's shortest text that reads back as the same float16 is
computed once, and an array becomes a table lookup and a join (about 15x faster).
"""

from __future__ import annotations

import functools
import io
import json

import numpy as np


def npy_bytes(arr: np.ndarray) -> bytes:
    """The `.npy` file of `arr` (C order). numpy's writer takes longer to build the header
    than to copy a lookup's 80 KB, and every lookup of a stream has the same header."""
    return _npy_header(arr.dtype, arr.shape) + arr.tobytes()


@functools.lru_cache(maxsize=256)
def _npy_header(dtype: np.dtype, shape: tuple[int, ...]) -> bytes:
    """numpy's own header for a C-order array of this dtype and shape."""
    empty = np.empty(shape, dtype)
    buf = io.BytesIO()
    np.lib.format.write_array(buf, empty, allow_pickle=False)
    return buf.getvalue()[: len(buf.getvalue()) - empty.nbytes]


def json_bytes(arr: np.ndarray) -> bytes:
    head = f'{{"shape":{json.dumps(list(arr.shape))},"dtype":"{arr.dtype}","data":'
    if arr.dtype == np.float16 and arr.ndim >= 1:
        data = _nested(float16_text_table()[arr.view(np.uint16)])
    else:
        data = json.dumps(arr.tolist(), separators=(",", ":"))
    return (head + data + "}").encode()


@functools.lru_cache(maxsize=1)
def float16_text_table() -> np.ndarray:
    """Text for every float16 bit pattern: the shortest decimal that parses back to it."""
    values = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16)
    return np.array(
        [repr(float(str(v))) if np.isfinite(v) else "null" for v in values], dtype=object
    )


def _nested(text: np.ndarray) -> str:
    if text.ndim == 1:
        return "[" + ",".join(text.tolist()) + "]"
    return "[" + ",".join(_nested(sub) for sub in text) + "]"
