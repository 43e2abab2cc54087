"""HDF5 backend: one small HDF5 file per committed block.

HDF5 files are not safe for concurrent writers nor for a writer killed mid-write, so each
block is written to a temporary file and renamed into place when complete: a block file is
either whole or absent. Chunks are one video each, with Fletcher-32 checksums.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections import OrderedDict

import h5py
import numpy as np

from .._files import is_remote, local_path
from ._base import Backend

_MAX_OPEN = 64


class HDF5Backend(Backend):
    name = "hdf5"
    default_chunk_rows = 1

    def _setup(self) -> None:
        if is_remote(self.url):
            raise ValueError(
                f"HDF5 stores must be local paths, got {self.url!r}; use a .zarr store for URLs"
            )
        self.root = os.path.abspath(local_path(self.url))
        self._open: OrderedDict[str, h5py.File] = OrderedDict()

    def _block_path(self, segment: str, block: int) -> str:
        return os.path.join(self.root, "segments", segment, f"{block:08d}.h5")

    def initialize(self) -> None:
        os.makedirs(os.path.join(self.root, "segments"), exist_ok=True)

    def create_segment(self, segment: str) -> None:
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

    def delete_segment(self, segment: str) -> None:
        prefix = os.path.join(self.root, "segments", segment)
        for path in [p for p in self._open if p.startswith(prefix)]:
            self._open.pop(path).close()
        shutil.rmtree(prefix, ignore_errors=True)

    def close(self) -> None:
        while self._open:
            self._open.popitem()[1].close()
