"""Zarr v3 backend: one group per segment, one array per stream.

Arrays are created once with a large fixed capacity so their metadata is never rewritten.
By default a chunk holds one whole block of videos: benchmarks/store_io.py showed a
video-per-chunk sharded layout streaming 5-10x slower (per-chunk codec overhead) for a
small gain on single-video reads from local disk. ``chunk_rows`` < block size gives that
sharded layout (one shard per block) for stores read mostly one video at a time from
object storage. Chunks carry a CRC32C so corruption is caught on read.

On a local disk the default layout (uncompressed, one chunk per block) is read and written
as plain files (``_chunks``): no event loop on the path, and ``read_row`` fetches one row's
bytes alone, checked by the CRC32C its commit record holds. On object storage that layout
still lets ``read_row`` fetch one row by a byte-range request instead of the whole block.
"""

from __future__ import annotations

import asyncio
import json
import os

import numpy as np
import zarr
import zarr.errors
from zarr.abc.store import RangeByteRequest, Store
from zarr.codecs import Crc32cCodec, ZstdCodec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync

from .._files import is_remote, local_path
from ..schema import StreamSpec
from ._base import Backend, RowRange
from ._chunks import HAVE_PREADV, ChunkFiles

CAPACITY_BLOCKS = 2**24
_BYTES = default_buffer_prototype()


class ZarrBackend(Backend):
    name = "zarr"

    def _setup(self) -> None:
        self._store: Store | None = None
        self._arrays: dict[tuple[str, str, str], zarr.Array] = {}  # (segment, stream, mode)
        self._files: dict[tuple[str, str], ChunkFiles | None] = {}  # (segment, stream)
        self._remote = is_remote(self.url)
        self._plain = (
            self.compression == "none" and self.chunk_rows == self.block_size and HAVE_PREADV
        )

    @property
    def store(self) -> Store:
        if self._store is None:
            if is_remote(self.url):
                self._store = zarr.storage.FsspecStore.from_url(
                    self.url, storage_options=self.storage_options or None
                )
            else:
                self._store = zarr.storage.LocalStore(local_path(self.url))
        return self._store

    def initialize(self) -> None:
        try:
            zarr.open_group(
                self.store, mode="a", attributes={"featurestore": "see featurestore.json"}
            )
        except zarr.errors.ContainsGroupError:
            pass  # another process creating the same store got there first: the same group

    def _compressors(self, dtype: str):
        codecs = [ZstdCodec(level=1)] if self.compression == "zstd" else []
        return [*codecs, Crc32cCodec()]

    def create_segment(self, segment: str, streams: dict[str, StreamSpec] | None = None) -> None:
        for name, spec in (streams or self.schema.streams).items():
            arr = zarr.create_array(
                self.store,
                name=f"segments/{segment}/{name}",
                shape=(CAPACITY_BLOCKS * self.block_size, *spec.shape),
                chunks=(self.chunk_rows, *spec.shape),
                shards=None
                if self.chunk_rows == self.block_size
                else (self.block_size, *spec.shape),
                dtype=spec.dtype,
                compressors=self._compressors(spec.dtype),
                fill_value=False if spec.dtype == "bool" else 0,
                overwrite=True,
            )
            self._arrays[(segment, name, "r+")] = arr
            self._files.pop((segment, name), None)

    def _chunk_files(self, segment: str, stream: str) -> ChunkFiles | None:
        """Plain-file access to a local array with one uncompressed chunk per block, else None."""
        if not self._plain:
            return None
        key = (segment, stream)
        if key not in self._files:
            if self._remote:  # the layout only, to address rows in byte-range requests
                raw = sync(self.store.get(f"segments/{segment}/{stream}/zarr.json", _BYTES))
                meta = json.loads(raw.to_bytes()) if raw is not None else {}
                files = ChunkFiles.from_meta(f"segments/{segment}/{stream}", meta)
            else:
                path = os.path.join(os.path.abspath(local_path(self.url)), "segments", *key)
                files = ChunkFiles.open(path)
            self._files[key] = files if files and files.rows == self.block_size else None
        return self._files[key]

    def _array(self, segment: str, stream: str, mode: str = "r") -> zarr.Array:
        key = (segment, stream, mode)
        arr = self._arrays.get(key)
        if arr is None:
            arr = zarr.open_array(
                self.store, path=f"segments/{segment}/{stream}", mode=mode, zarr_format=3
            )
            self._arrays[key] = arr
        return arr

    def write_block(self, segment: str, block: int, arrays: dict[str, np.ndarray]) -> None:
        start = block * self.block_size
        for name, data in arrays.items():
            files = None if self._remote else self._chunk_files(segment, name)
            if files is not None:
                files.write_chunk(block, data)
            else:
                self._array(segment, name, "r+")[start : start + len(data)] = data

    def read_rows(self, segment: str, block: int, start: int, stop: int, stream: str) -> np.ndarray:
        files = None if self._remote else self._chunk_files(segment, stream)
        if files is not None:
            try:
                rows = files.read_chunk(block)[start:stop]
            except FileNotFoundError:
                pass  # Zarr skips writing a chunk that is all fill value: let it fill in
            else:  # a few rows must not keep the whole block's buffer alive
                return rows if stop - start == self.block_size else rows.copy()
        base = block * self.block_size
        return np.asarray(self._array(segment, stream)[base + start : base + stop])

    def read_row(
        self, segment: str, block: int, offset: int, stream: str, crc32c: int
    ) -> np.ndarray:
        files = self._chunk_files(segment, stream)
        if files is None:
            return super().read_row(segment, block, offset, stream, crc32c)
        if not self._remote:
            return files.read_row(block, offset, crc32c)
        return self.read_row_streams(segment, block, offset, {stream: crc32c})[stream]

    def read_row_streams(
        self, segment: str, block: int, offset: int, crc32c: dict[str, int]
    ) -> dict[str, np.ndarray]:
        """On object storage, one byte-range request per stream, all in flight at once."""
        found = {s: self._chunk_files(segment, s) for s in crc32c}
        files = {s: f for s, f in found.items() if f is not None}
        if not self._remote or len(files) < len(found):
            return super().read_row_streams(segment, block, offset, crc32c)

        async def fetch(f: ChunkFiles):
            at = offset * f.row_nbytes
            return await self.store.get(
                f.chunk_path(block), _BYTES, RangeByteRequest(at, at + f.row_nbytes)
            )

        async def fetch_all():
            return await asyncio.gather(*(fetch(f) for f in files.values()))

        out = {}
        for (stream, f), raw in zip(files.items(), sync(fetch_all()), strict=True):
            if raw is None:  # Zarr skips writing a chunk that is all fill value
                out[stream] = super().read_row(segment, block, offset, stream, crc32c[stream])
            else:
                out[stream] = f.check_row(
                    raw.as_numpy_array().copy(), offset, block, crc32c[stream]
                )
        return out

    def wants_row_checks(self, rows: RowRange) -> bool:
        """Part of a local plain chunk is read alone, each row checked by its CRC32C."""
        return self._plain and not self._remote and rows.stop - rows.start < self.block_size

    def read_streams(
        self, rows: RowRange, streams: list[str], crc32c: dict[str, list[int]] | None = None
    ) -> dict[str, np.ndarray]:
        """Local plain chunks: part of a block by a byte-range read per stream (rows checked
        by their CRC32Cs), a whole one mapped; elsewhere all streams' reads in flight at once
        on zarr's event loop (saves a round trip each)."""
        segment = rows.segment
        found = {s: None if self._remote else self._chunk_files(segment, s) for s in streams}
        files = {s: f for s, f in found.items() if f is not None}
        if len(files) == len(streams):
            if crc32c is not None and self.wants_row_checks(rows):
                try:
                    return {
                        s: f.read_rows(rows.block, rows.start, rows.stop, crc32c[s])
                        for s, f in files.items()
                    }
                except FileNotFoundError:
                    pass  # Zarr skips writing a chunk that is all fill value: let it fill in
            return super().read_streams(rows, streams)
        base = rows.block * self.block_size
        arrays = [self._array(segment, s)._async_array for s in streams]

        async def read_all():
            return await asyncio.gather(
                *(a.getitem(slice(base + rows.start, base + rows.stop)) for a in arrays)
            )

        return dict(zip(streams, sync(read_all()), strict=True))

    def delete_segment(self, segment: str) -> None:
        for key in [k for k in self._arrays if k[0] == segment]:
            del self._arrays[key]
        for file_key in [k for k in self._files if k[0] == segment]:
            del self._files[file_key]
        sync(self.store.delete_dir(f"segments/{segment}"))

    def close(self) -> None:
        self._arrays.clear()
        self._files.clear()
        self._store = None
