"""Zarr v3 backend: one group per segment, one sharded array per stream.

Arrays are created once with a large fixed capacity so their metadata is never rewritten;
a chunk holds one video (fast ``get``) and a shard holds one block (one object per
block_size videos, read whole when streaming). Chunks carry a CRC32C so corruption is caught.
"""

from __future__ import annotations

import numpy as np
import zarr
from zarr.codecs import Crc32cCodec, ZstdCodec

from .._files import is_remote, local_path
from ._base import Backend

CAPACITY_BLOCKS = 2**24


class ZarrBackend(Backend):
    name = "zarr"

    def __init__(self, url, schema, block_size, storage_options=None, compression="none"):
        super().__init__(url, schema, block_size, storage_options)
        self.compression = compression
        self._store = None
        self._arrays: dict[tuple[str, str], zarr.Array] = {}

    @property
    def store(self):
        if self._store is None:
            if is_remote(self.url):
                self._store = zarr.storage.FsspecStore.from_url(
                    self.url, storage_options=self.storage_options or None
                )
            else:
                self._store = zarr.storage.LocalStore(local_path(self.url))
        return self._store

    def initialize(self) -> None:
        zarr.open_group(self.store, mode="a", attributes={"featurestore": "see featurestore.json"})

    def _compressors(self, dtype: str):
        codecs = [ZstdCodec(level=1)] if self.compression == "zstd" else []
        return [*codecs, Crc32cCodec()]

    def create_segment(self, segment: str) -> None:
        for name, spec in self.schema.streams.items():
            arr = zarr.create_array(
                self.store,
                name=f"segments/{segment}/{name}",
                shape=(CAPACITY_BLOCKS * self.block_size, *spec.shape),
                chunks=(1, *spec.shape),
                shards=(self.block_size, *spec.shape),
                dtype=spec.dtype,
                compressors=self._compressors(spec.dtype),
                fill_value=False if spec.dtype == "bool" else 0,
                overwrite=True,
            )
            self._arrays[(segment, name)] = arr

    def _array(self, segment: str, stream: str) -> zarr.Array:
        key = (segment, stream)
        arr = self._arrays.get(key)
        if arr is None:
            arr = zarr.open_array(self.store, path=f"segments/{segment}/{stream}", mode="r")
            self._arrays[key] = arr
        return arr

    def write_block(self, segment, block, arrays) -> None:
        start = block * self.block_size
        for name, data in arrays.items():
            self._array(segment, name)[start : start + len(data)] = data

    def read_rows(self, segment, block, start, stop, stream) -> np.ndarray:
        base = block * self.block_size
        return self._array(segment, stream)[base + start : base + stop]

    def delete_segment(self, segment: str) -> None:
        for key in [k for k in self._arrays if k[0] == segment]:
            del self._arrays[key]
        from zarr.core.sync import sync

        sync(self.store.delete_dir(f"segments/{segment}"))

    def close(self) -> None:
        self._arrays.clear()
        self._store = None
