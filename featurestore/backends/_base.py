"""The storage contract every backend fulfils (the conformance suite in tests checks it).

A backend stores dense per-stream arrays addressed by (segment, block, offset). A segment
belongs to one writer; a block is written exactly once, whole, so committed bytes are never
rewritten and a killed writer can only leave an unreferenced block behind.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from ..schema import StoreSchema, StreamSpec
from ._crc import crc32c as _crc32c


@dataclass(frozen=True)
class RowRange:
    """Rows [start, stop) of one block of one segment: what a block read addresses."""

    segment: str
    block: int
    start: int
    stop: int


class Backend(ABC):
    name: str

    def __init__(
        self,
        url: str,
        schema: StoreSchema,
        block_size: int,
        storage_options: dict | None = None,
        compression: str = "none",
        chunk_rows: int | None = None,
    ):
        self.url = url
        self.schema = schema
        self.block_size = block_size
        self.storage_options = storage_options or {}
        self.compression = compression
        default = self.default_chunk_rows_for(compression)
        self.chunk_rows = min(chunk_rows or default or block_size, block_size)
        self._setup()

    def default_chunk_rows_for(self, compression: str) -> int | None:
        """Rows per chunk when the store names none, for this compression; None: a block."""
        return None

    @abstractmethod
    def _setup(self) -> None:
        """The backend's own state (no I/O: handles open on first use)."""

    @abstractmethod
    def initialize(self) -> None:
        """Create whatever the backend needs at the store root (called once by create)."""

    @abstractmethod
    def create_segment(self, segment: str, streams: dict[str, StreamSpec] | None = None) -> None:
        """Prepare an empty segment for one writer, holding ``streams`` (default: the schema's)."""

    @abstractmethod
    def write_block(self, segment: str, block: int, arrays: dict[str, np.ndarray]) -> None:
        """Write rows 0..n-1 of ``block`` for every stream; n <= block_size."""

    @abstractmethod
    def read_rows(self, segment: str, block: int, start: int, stop: int, stream: str) -> np.ndarray:
        """Rows [start, stop) of a block for one stream, as one contiguous read."""

    def read_row(
        self, segment: str, block: int, offset: int, stream: str, crc32c: int
    ) -> np.ndarray:
        """One row, checked against the CRC32C of its bytes that its commit record holds.

        Backends that can read a row's bytes alone override this; here it is the row read
        the usual way (checked by the backend's own chunk checksum) and compared too.
        """
        row = np.ascontiguousarray(self.read_rows(segment, block, offset, offset + 1, stream)[0])
        if _crc32c(row) != crc32c:
            raise ValueError(f"row {offset}: CRC32C differs from its commit record")
        return row

    def read_row_streams(
        self, segment: str, block: int, offset: int, crc32c: dict[str, int]
    ) -> dict[str, np.ndarray]:
        """``read_row`` for each stream named in ``crc32c``; backends may overlap the reads."""
        return {s: self.read_row(segment, block, offset, s, c) for s, c in crc32c.items()}

    def read_streams(
        self, rows: RowRange, streams: list[str], crc32c: dict[str, list[int]] | None = None
    ) -> dict[str, np.ndarray]:
        """``rows`` for several streams; backends may overlap the reads.

        ``crc32c`` (per stream, one per row, from the commit records) lets a backend check
        rows with those instead of its own chunk checksums; a backend may ignore it.
        """
        return {
            s: self.read_rows(rows.segment, rows.block, rows.start, rows.stop, s) for s in streams
        }

    def wants_row_checks(self, rows: RowRange) -> bool:
        """Whether ``read_streams`` of ``rows`` would use each row's CRC32C (its ``crc32c``),
        so the caller need only gather them from the commit records when it does."""
        return False

    @abstractmethod
    def delete_segment(self, segment: str) -> None:
        """Remove a segment's arrays (compact does this after re-committing its rows)."""

    def close(self) -> None:
        """Release open handles (they must not cross a fork)."""
        return None  # noqa: B027 - optional hook, most backends hold nothing
