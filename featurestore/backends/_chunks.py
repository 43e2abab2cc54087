"""Plain file I/O on the chunks of an uncompressed, unsharded Zarr v3 array on a local disk.

Such a chunk file is the chunk's rows in C order, little-endian, followed by the CRC32C of
those bytes (codecs ``bytes`` + ``crc32c``). Reading and writing it directly skips Zarr's
event loop, thread pool and codec copies (most of a block read's time, see
benchmarks/store_io.py), and a row sits at a known offset, so one row can be read alone.
The files stay exactly what Zarr writes, so any Zarr reader still opens the store.
"""

from __future__ import annotations

import json
import mmap
import os
import uuid

import numpy as np

from ._crc import crc32c, crc32c_rows

HAVE_PREADV = hasattr(os, "preadv") and hasattr(os, "writev")  # POSIX; elsewhere Zarr/h5py
_CODECS = (  # one-byte types have no endianness to name
    [{"name": "bytes", "configuration": {"endian": "little"}}, {"name": "crc32c"}],
    [{"name": "bytes"}, {"name": "crc32c"}],
)


class ChunkFiles:
    """Chunk files of one array, or ``None`` from ``open`` if its layout is not the plain one."""

    def __init__(self, path: str, rows: int, shape: tuple[int, ...], dtype: np.dtype):
        self.path = path
        self.rows = rows
        self.shape = shape
        self.dtype = dtype
        self.row_nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        self._suffix = "/0" * len(shape)

    @classmethod
    def open(cls, path: str) -> ChunkFiles | None:
        try:
            with open(os.path.join(path, "zarr.json"), "rb") as f:
                meta = json.load(f)
        except (OSError, ValueError):
            return None
        return cls.from_meta(path, meta)

    @classmethod
    def from_meta(cls, path: str, meta: dict) -> ChunkFiles | None:
        """The layout an array's ``zarr.json`` describes, if it is the plain one."""
        shape = meta.get("shape", [])
        chunks = meta.get("chunk_grid", {}).get("configuration", {}).get("chunk_shape", [])
        dtype = meta.get("data_type")
        plain = (
            meta.get("codecs") in _CODECS
            and meta.get("chunk_key_encoding")
            == {"name": "default", "configuration": {"separator": "/"}}
            and not meta.get("storage_transformers")
            and meta.get("fill_value") in (0, False)
            and isinstance(dtype, str)
            and len(chunks) == len(shape) >= 1
            and list(chunks[1:]) == list(shape[1:])
        )
        if not plain:
            return None
        try:
            np_dtype = np.dtype(dtype).newbyteorder("<")
        except TypeError:
            return None
        return cls(path, int(chunks[0]), tuple(shape[1:]), np_dtype)

    def chunk_path(self, chunk: int) -> str:
        return f"{self.path}/c/{chunk}{self._suffix}"

    def check_row(
        self, data: bytes | np.ndarray, row: int, chunk: int, expected: int
    ) -> np.ndarray:
        """A row's bytes as an array, if they are whole and match their CRC32C."""
        buf = np.frombuffer(data, np.uint8)
        if len(buf) != self.row_nbytes:
            raise ValueError(f"row {row} of chunk {chunk} is cut short ({len(buf)} bytes)")
        if crc32c(buf) != expected:
            raise ValueError(f"row {row} of chunk {chunk}: CRC32C differs from its commit record")
        return buf.view(self.dtype).reshape(self.shape)

    def read_chunk(self, chunk: int) -> np.ndarray:
        """All rows of a chunk, CRC32C checked; FileNotFoundError if Zarr never wrote it.

        The rows are a copy-on-write map of the file: the CRC32C pass reads them from the page
        cache in place, with no copy into a buffer first (3-4x a ``readinto`` in
        benchmarks/store_io.py). Chunk files are written once and renamed in, never changed,
        so a mapped chunk cannot change under its reader; writes to the array stay private.
        """
        size = self.rows * self.row_nbytes
        with open(self.chunk_path(chunk), "rb", buffering=0) as f:
            got = os.fstat(f.fileno()).st_size
            if got != size + 4:
                raise ValueError(f"chunk {chunk} has {got} bytes, expected {size + 4}")
            buf = np.frombuffer(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY), np.uint8)
        stored = int(buf[size:].view("<u4")[0])
        if crc32c(buf[:size]) != stored:
            raise ValueError(f"chunk {chunk}: stored and computed CRC32C do not match")
        return buf[:size].view(self.dtype).reshape(self.rows, *self.shape)

    def read_row(self, chunk: int, row: int, expected_crc32c: int) -> np.ndarray:
        """One row by a byte-range read, checked against the CRC32C its commit record holds."""
        return self.read_rows(chunk, row, row + 1, [expected_crc32c])[0]

    def read_rows(self, chunk: int, start: int, stop: int, expected: list[int]) -> np.ndarray:
        """Rows [start, stop) by one byte-range read, each checked against the CRC32C its
        commit record holds: a few rows of a block cost their own bytes, not the block's."""
        out = np.empty((stop - start, *self.shape), self.dtype)
        fd = os.open(self.chunk_path(chunk), os.O_RDONLY)
        try:
            got = os.preadv(fd, [out.reshape(-1).view(np.uint8).data], start * self.row_nbytes)
        finally:
            os.close(fd)
        if got != out.nbytes:
            raise ValueError(f"rows {start}..{stop - 1} of chunk {chunk} are cut short")
        for i, (crc, want) in enumerate(zip(crc32c_rows(out), expected, strict=True)):
            if crc != want:
                raise ValueError(
                    f"row {start + i} of chunk {chunk}: CRC32C differs from its commit record"
                )
        return out

    def write_chunk(self, chunk: int, data: np.ndarray) -> None:
        """Rows 0..n-1 of a chunk (the rest fill with zeros), written whole then renamed in."""
        if len(data) < self.rows:
            full = np.zeros((self.rows, *self.shape), self.dtype)
            full[: len(data)] = data
            data = full
        data = np.ascontiguousarray(data, self.dtype)
        tail = np.array([crc32c(data)], "<u4")
        path = self.chunk_path(chunk)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{uuid.uuid4().hex}.partial"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            try:
                _write_all(fd, [data.data.cast("B"), tail.data.cast("B")])
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


def _write_all(fd: int, views: list[memoryview]) -> None:
    while views:
        n = os.writev(fd, views)
        while views and n >= len(views[0]):
            n -= len(views[0])
            views.pop(0)
        if views and n:
            views[0] = views[0][n:]
