"""HDF5 backend: one small HDF5 file per committed block.

HDF5 files are not safe for concurrent writers nor for a writer killed mid-write, so each
block is written to a temporary file and renamed into place when complete: a block file is
either whole or absent. Chunks are one video each, with Fletcher-32 checksums.

Where the commit records hold each row's CRC32C, uncompressed rows are read with plain file
I/O at the byte offsets HDF5 reports (one ``preadv`` straight into the output for a block),
checked by those CRC32Cs instead of HDF5's per-chunk Fletcher-32 pass, the slow part of a
block read (benchmarks/store_io.py). Anything else goes through h5py.
"""

from __future__ import annotations

import os
import shutil
import sys
import uuid
from collections import OrderedDict

import h5py
import numpy as np

from .._files import is_remote, local_path
from ..schema import StreamSpec
from ._base import Backend, RowRange
from ._chunks import HAVE_PREADV
from ._chunks import crc32c as _crc32c

_MAX_OPEN = 64
_FLETCHER = 4  # bytes of Fletcher-32 checksum after each chunk's data


class _Rows:
    """Where a dataset of one-row chunks sits in its file: chunk i at ``first + i * stride``."""

    def __init__(self, first: int, stride: int, count: int, shape: tuple, dtype: np.dtype):
        self.first, self.stride, self.count = first, stride, count
        self.shape, self.dtype = shape, dtype
        self.row_nbytes = stride - _FLETCHER


class HDF5Backend(Backend):
    name = "hdf5"
    default_chunk_rows = 1
    checks_rows = True

    def _setup(self) -> None:
        if is_remote(self.url):
            raise ValueError(
                f"HDF5 stores must be local paths, got {self.url!r}; use a .zarr store for URLs"
            )
        self.root = os.path.abspath(local_path(self.url))
        self._open: OrderedDict[str, h5py.File] = OrderedDict()
        self._rows: OrderedDict[tuple[str, str], _Rows | None] = OrderedDict()

    def _block_path(self, segment: str, block: int) -> str:
        return os.path.join(self.root, "segments", segment, f"{block:08d}.h5")

    def initialize(self) -> None:
        os.makedirs(os.path.join(self.root, "segments"), exist_ok=True)

    def create_segment(self, segment: str, streams: dict[str, StreamSpec] | None = None) -> None:
        os.makedirs(os.path.join(self.root, "segments", segment), exist_ok=True)

    def write_block(self, segment: str, block: int, arrays: dict[str, np.ndarray]) -> None:
        path = self._block_path(segment, block)
        tmp = f"{path}.{uuid.uuid4().hex}.partial"
        with h5py.File(tmp, "w") as f:
            for name, data in arrays.items():
                f.create_dataset(
                    name,
                    data=data,
                    chunks=(min(self.chunk_rows, len(data)), *data.shape[1:]),
                    fletcher32=True,
                    compression="gzip" if self.compression == "zstd" else None,
                )
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def _file(self, path: str) -> h5py.File:
        f = self._open.get(path)
        if f is None:
            f = h5py.File(path, "r")
            self._open[path] = f
            if len(self._open) > _MAX_OPEN:
                self._open.popitem(last=False)[1].close()
        else:
            self._open.move_to_end(path)
        return f

    def read_rows(self, segment: str, block: int, start: int, stop: int, stream: str) -> np.ndarray:
        return self._file(self._block_path(segment, block))[stream][start:stop]

    def read_streams(
        self, rows: RowRange, streams: list[str], crc32c: dict[str, list[int]] | None = None
    ) -> dict[str, np.ndarray]:
        if crc32c is None or self.compression != "none" or not HAVE_PREADV:
            return super().read_streams(rows, streams)
        seg, blk, start, stop = rows.segment, rows.block, rows.start, rows.stop
        return {s: self._read_checked(seg, blk, start, stop, s, crc32c[s]) for s in streams}

    def read_row(
        self, segment: str, block: int, offset: int, stream: str, crc32c: int
    ) -> np.ndarray:
        if self.compression != "none" or not HAVE_PREADV:
            return super().read_row(segment, block, offset, stream, crc32c)
        return self._read_checked(segment, block, offset, offset + 1, stream, [crc32c])[0]

    def _read_checked(
        self, segment: str, block: int, start: int, stop: int, stream: str, crcs: list[int]
    ) -> np.ndarray:
        """Rows by plain file I/O where the layout allows, else h5py; each checked by its CRC."""
        path = self._block_path(segment, block)
        rows = self._layout(path, stream)
        if rows is not None and stop <= rows.count:
            out = self._pread(path, rows, start, stop)
            if out is not None and all(
                _crc32c(r) == c for r, c in zip(out.reshape(len(out), -1), crcs, strict=True)
            ):
                return out
        out = np.ascontiguousarray(self.read_rows(segment, block, start, stop, stream))
        for i, (r, c) in enumerate(zip(out.reshape(len(out), -1), crcs, strict=True)):
            if _crc32c(r) != c:
                raise ValueError(f"row {start + i}: CRC32C differs from its commit record")
        return out

    @staticmethod
    def _pread(path: str, rows: _Rows, start: int, stop: int) -> np.ndarray | None:
        """Rows [start, stop) in one preadv: each row's bytes land in the output, checksums aside."""
        out = np.empty((stop - start, *rows.shape), rows.dtype)
        flat = out.reshape(stop - start, -1).view(np.uint8)
        tail = np.empty(_FLETCHER, np.uint8)
        views = [v for row in flat for v in (row.data, tail.data)]
        fd = os.open(path, os.O_RDONLY)
        try:
            got = os.preadv(fd, views, rows.first + start * rows.stride)
        finally:
            os.close(fd)
        return out if got == (stop - start) * rows.stride else None

    def _layout(self, path: str, stream: str) -> _Rows | None:
        key = (path, stream)
        if key not in self._rows:
            for name, rows in _find_rows(path, sorted({stream, *self.schema.streams})).items():
                self._rows[(path, name)] = rows
            while len(self._rows) > _MAX_OPEN * 4:
                self._rows.popitem(last=False)
        return self._rows.get(key)

    def delete_segment(self, segment: str) -> None:
        prefix = os.path.join(self.root, "segments", segment)
        for path in [p for p in self._open if p.startswith(prefix)]:
            self._open.pop(path).close()
        for key in [k for k in self._rows if k[0].startswith(prefix)]:
            del self._rows[key]
        shutil.rmtree(prefix, ignore_errors=True)

    def close(self) -> None:
        while self._open:
            self._open.popitem()[1].close()
        self._rows.clear()


def _find_rows(path: str, streams: list[str]) -> dict[str, _Rows | None]:
    """Each stream's plain layout in a block file, read with h5py's low-level calls (half the
    time of opening it as an ``h5py.File``): None where it is not plain or not readable."""
    try:
        fid = h5py.h5f.open(path.encode(), h5py.h5f.ACC_RDONLY)
    except (OSError, ValueError):
        return dict.fromkeys(streams)
    try:
        out: dict[str, _Rows | None] = {}
        for stream in streams:
            try:
                out[stream] = _plain_rows(h5py.h5d.open(fid, stream.encode()))
            except (OSError, KeyError, ValueError):
                out[stream] = None
        return out
    finally:
        fid.close()


def _plain_rows(d: h5py.h5d.DatasetID) -> _Rows | None:
    """The plain layout (one uncompressed row per chunk, Fletcher-32 only, stored in order).

    Only the first and last chunks are looked up: rows read from a layout that is not in
    order fail their CRC32C and are read again through h5py.
    """
    plist = d.get_create_plist()
    if plist.get_layout() != h5py.h5d.CHUNKED:
        return None
    filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
    shape, dtype = d.shape, d.dtype
    n, row = shape[0], tuple(shape[1:])
    plain = (
        plist.get_chunk() == (1, *row)
        and filters == [h5py.h5z.FILTER_FLETCHER32]
        and dtype.kind in "biuf"
        and (dtype.byteorder in "<|" or (dtype.byteorder == "=" and sys.byteorder == "little"))
        and n > 0
    )
    if not plain:
        return None
    stride = int(np.prod(row, dtype=np.int64)) * dtype.itemsize + _FLETCHER
    first = d.get_chunk_info_by_coord((0,) * len(shape))
    last = d.get_chunk_info_by_coord((n - 1,) + (0,) * len(row))
    if (
        first.size != stride
        or last.size != stride
        or first.filter_mask
        or last.filter_mask
        or last.byte_offset - first.byte_offset != (n - 1) * stride
    ):
        return None
    return _Rows(first.byte_offset, stride, n, row, dtype.newbyteorder("<"))
