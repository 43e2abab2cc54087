"""HDF5 backend: one small HDF5 file per committed block.

HDF5 files are not safe for concurrent writers nor for a writer killed mid-write, so each
block is written to a temporary file and renamed into place when complete: a block file is
either whole or absent. Each stream is one dataset with a Fletcher-32 checksum per chunk; a
chunk holds the whole block (one video per chunk when compressed, or in stores written
before, with ``chunk_rows=1``).

Where the commit records hold each row's CRC32C, uncompressed rows are read with plain file
I/O at the byte offsets HDF5 reports, checked by those CRC32Cs instead of HDF5's Fletcher-32
pass (the slow part of an h5py read, benchmarks/store_io.py): a block's rows, contiguous in
its one chunk, are mapped copy-on-write like Zarr chunks; one-video chunks come in one
``preadv``. Anything else goes through h5py, which checks the Fletcher-32.
"""

from __future__ import annotations

import mmap
import os
import shutil
import sys
import threading
import uuid
from collections import OrderedDict

import h5py
import numpy as np

from .._files import is_remote, local_path
from ..schema import StreamSpec
from ._base import Backend, RowRange
from ._chunks import HAVE_PREADV
from ._crc import crc32c_rows

_MAX_OPEN = 64
_FLETCHER = 4  # bytes of Fletcher-32 checksum after each chunk's data


class _Rows:
    """Where a dataset's rows sit in its file: one chunk of all ``count`` rows at ``first``
    (``chunk_rows == count``), or one-row chunks, row i at ``first + i * (row + checksum)``."""

    def __init__(
        self, first: int, chunk_rows: int, count: int, shape: tuple, dtype: np.dtype
    ) -> None:
        self.first, self.chunk_rows, self.count = first, chunk_rows, count
        self.shape, self.dtype = shape, dtype
        self.row_nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        self.stride = self.row_nbytes + (_FLETCHER if chunk_rows == 1 else 0)


class HDF5Backend(Backend):
    name = "hdf5"

    def default_chunk_rows_for(self, compression: str) -> int | None:
        """A block per chunk; one video when compressed, as a chunk is inflated whole."""
        return None if compression == "none" else 1

    def _setup(self) -> None:
        if is_remote(self.url):
            raise ValueError(
                f"HDF5 stores must be local paths, got {self.url!r}; use a .zarr store for URLs"
            )
        self.root = os.path.abspath(local_path(self.url))
        self._open: OrderedDict[str, h5py.File] = OrderedDict()
        self._layouts: dict[tuple[int, str], _Rows | None] = {}  # (file size, stream)
        self._open_lock = threading.Lock()  # for reader threads sharing the cache above

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
        with self._open_lock:
            return self._file(self._block_path(segment, block))[stream][start:stop]

    def wants_row_checks(self, rows: RowRange) -> bool:
        return self.compression == "none" and HAVE_PREADV

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
        out = self._read_plain(path, start, stop, stream)
        if out is not None:
            bad = _mismatched(out, crcs)
            if not bad:
                return out
            # damage, or a layout that differs from the one assumed: h5py tells which
            self._layouts.pop((os.path.getsize(path), stream), None)
        try:
            out = np.ascontiguousarray(self.read_rows(segment, block, start, stop, stream))
        except OSError as e:
            why = "" if out is None else f"row {start + bad[0]}: CRC32C differs, and "
            raise OSError(f"{why}h5py cannot read it ({e})") from e
        bad = _mismatched(out, crcs)
        if bad:
            raise ValueError(f"row {start + bad[0]}: CRC32C differs from its commit record")
        return out

    def _read_plain(self, path: str, start: int, stop: int, stream: str) -> np.ndarray | None:
        """Rows [start, stop) at the byte offsets of the layout, or None where it is not plain.

        Block files of one size written by this backend share one layout, so it is looked up
        in the first file of each size only; a file that differs fails its CRC32Cs and is
        read again through h5py.
        """
        fd = os.open(path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            key = (size, stream)
            if key not in self._layouts:
                found = _find_rows(path, sorted({stream, *self.schema.streams}))
                self._layouts.update({(size, n): r for n, r in found.items() if r is not None})
                self._layouts.setdefault(key, found.get(stream))
            rows = self._layouts[key]
            if rows is None or stop > rows.count:
                return None
            if rows.chunk_rows > 1 and stop - start > 1:
                return _mapped(fd, size, rows, start, stop)
            return _gathered(fd, rows, start, stop)
        finally:
            os.close(fd)

    def delete_segment(self, segment: str) -> None:
        prefix = os.path.join(self.root, "segments", segment)
        with self._open_lock:
            for path in [p for p in self._open if p.startswith(prefix)]:
                self._open.pop(path).close()
        shutil.rmtree(prefix, ignore_errors=True)

    def close(self) -> None:
        with self._open_lock:
            while self._open:
                self._open.popitem()[1].close()
        self._layouts.clear()


def _mismatched(rows: np.ndarray, crcs: list[int]) -> list[int]:
    """Positions of the rows whose CRC32C is not the one their commit record holds."""
    got = crc32c_rows(rows)
    if got == list(crcs):  # the usual case, compared in C
        return []
    return [i for i, (g, want) in enumerate(zip(got, crcs, strict=True)) if g != want]


def _find_rows(path: str, streams: list[str]) -> dict[str, _Rows | None]:
    """Each stream's plain layout in a block file, read with h5py's low-level calls (half the
    time of opening it as an ``h5py.File``): None where it is not plain, nothing for a file
    HDF5 cannot open (the h5py read that follows names the damage)."""
    try:
        fid = h5py.h5f.open(path.encode(), h5py.h5f.ACC_RDONLY)
    except (OSError, ValueError):
        return {}
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
    """The plain layout: uncompressed (Fletcher-32 only), one chunk of all rows or one-row
    chunks stored in order, little-endian numbers.

    Only the first and last chunks are looked up: rows read from a layout that is not in
    order fail their CRC32C and are read again through h5py.
    """
    plist = d.get_create_plist()
    if plist.get_layout() != h5py.h5d.CHUNKED:
        return None
    filters = [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]
    shape, dtype = d.shape, d.dtype
    n, row = shape[0], tuple(shape[1:])
    chunk = plist.get_chunk()
    plain = (
        chunk[1:] == row
        and chunk[0] in (1, n)
        and filters == [h5py.h5z.FILTER_FLETCHER32]
        and dtype.kind in "biuf"
        and (dtype.byteorder in "<|" or (dtype.byteorder == "=" and sys.byteorder == "little"))
        and n > 0
    )
    if not plain:
        return None
    rows = _Rows(0, chunk[0], n, row, dtype.newbyteorder("<"))
    chunk_nbytes = chunk[0] * rows.row_nbytes + _FLETCHER
    first = d.get_chunk_info_by_coord((0,) * len(shape))
    last = d.get_chunk_info_by_coord((n - 1,) + (0,) * len(row))
    if (
        first.size != chunk_nbytes
        or last.size != chunk_nbytes
        or first.filter_mask
        or last.filter_mask
        or last.byte_offset - first.byte_offset != (n // chunk[0] - 1) * chunk_nbytes
    ):
        return None
    rows.first = first.byte_offset
    return rows


def _mapped(fd: int, size: int, rows: _Rows, start: int, stop: int) -> np.ndarray | None:
    """Rows [start, stop) of a one-chunk dataset, mapped copy-on-write: no copy, and the
    CRC32C pass reads them from the page cache in place (as Zarr chunks, ``_chunks``)."""
    at, nbytes = rows.first + start * rows.row_nbytes, (stop - start) * rows.row_nbytes
    if at + nbytes > size:
        return None
    buf = np.frombuffer(mmap.mmap(fd, 0, access=mmap.ACCESS_COPY), np.uint8)[at : at + nbytes]
    return buf.view(rows.dtype).reshape(stop - start, *rows.shape)


def _gathered(fd: int, rows: _Rows, start: int, stop: int) -> np.ndarray | None:
    """Rows [start, stop) in one ``preadv`` into a new array (checksum tails set aside)."""
    out = np.empty((stop - start, *rows.shape), rows.dtype)
    flat = out.reshape(stop - start, -1).view(np.uint8)
    if rows.chunk_rows == 1:
        tail = np.empty(_FLETCHER, np.uint8)
        views = [v for row in flat for v in (row.data, tail.data)]
    else:
        views = [flat.reshape(-1).data]
    got = os.preadv(fd, views, rows.first + start * rows.stride)
    return out if got == (stop - start) * rows.stride else None
