"""The epoch plan: which rows are read together, in what order, by which process.

Computed from the store's index alone (no array reads), identically in every process, so
the order of samples depends only on (seed, epoch, world size) and never on the number of
DataLoader workers:

1. The split's chunk-aligned blocks are cut into pieces of ``window_rows /
   PIECES_PER_WINDOW`` rows (at least MIN_PIECE_ROWS), and the pieces are shuffled
   with the seed. A store is usually written in the order of its source (one gloss
   after another), so a block holds one or two classes; a window of whole blocks held
   a handful of classes and so did every batch drawn from it, which stalled training
   (real signs: 24% train top-1 after 3 epochs instead of 78% with rows drawn at
   random). Pieces from across the split make a window a fair sample of it, for more,
   smaller reads.
2. Their rows, in that order, are cut into *windows* of at most ``window_rows`` rows, as
   equal as possible and a multiple of the world size in number (so ranks get equal
   shares); a window is a few dozen contiguous reads (pieces, or whole blocks in order
   when not shuffling).
3. Window ``i`` goes to DDP rank ``i % world``; a rank's ``j``-th window (counted from
   where the epoch resumes) to DataLoader worker ``j % workers``. Each row of the split
   lands in exactly one window of one rank.
4. Each window's rows are permuted with a generator seeded by (seed, epoch, window):
   the seeded shuffle buffer is the window.

A DataLoader delivers worker outputs round-robin, which is exactly the rank's window
order, so a rank sees the same windows in the same order with 0, 1 or N workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from featurestore import Block

PIECES_PER_WINDOW, MIN_PIECE_ROWS = 64, 4
"""A shuffled window is made of about this many pieces of blocks from across the split,
each of at least this many rows (fewer only at a block's end)."""


@dataclass(frozen=True)
class Piece:
    """A contiguous run of one block's rows: ``block.offsets[start:stop]``."""

    block: Block
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class Window:
    """Rows read and shuffled together."""

    index: int
    """Position in the epoch's global window order."""
    pieces: tuple[Piece, ...]

    def __len__(self) -> int:
        return sum(len(p) for p in self.pieces)

    @property
    def video_ids(self) -> list[str]:
        return [v for p in self.pieces for v in p.block.video_ids[p.start : p.stop]]


def rng_for(seed: int, *keys: int) -> np.random.Generator:
    """An independent generator per (seed, keys): order-free and process-free."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, *(int(k) for k in keys)])


def window_sizes(total: int, window_rows: int, world_size: int = 1) -> list[int]:
    """Near-equal window sizes, at most `window_rows`, in a multiple of `world_size`
    windows, so DDP ranks get the same number of rows give or take one per window."""
    if window_rows < 1:
        raise ValueError(f"window_rows must be >= 1, got {window_rows}")
    n = -(-total // window_rows)
    n = -(-n // world_size) * world_size
    base, extra = divmod(total, max(n, 1))
    return [base + (i < extra) for i in range(n)]


def plan_epoch(
    blocks: list[Block],
    window_rows: int,
    seed: int,
    epoch: int,
    shuffle: bool = True,
    world_size: int = 1,
) -> list[Window]:
    """All windows of one epoch in global order."""
    sizes = iter(window_sizes(sum(len(b) for b in blocks), window_rows, world_size))
    windows: list[Window] = []
    current: list[Piece] = []
    filled, target = 0, next(sizes, 0)
    for piece in _pieces(blocks, window_rows, seed, epoch, shuffle):
        block, start, end = piece.block, piece.start, piece.stop
        while start < end:
            stop = min(end, start + target - filled)
            current.append(Piece(block, start, stop))
            filled += stop - start
            start = stop
            if filled == target:
                windows.append(Window(len(windows), tuple(current)))
                current, filled, target = [], 0, next(sizes, 0)
    return windows


def _pieces(
    blocks: list[Block], window_rows: int, seed: int, epoch: int, shuffle: bool
) -> list[Piece]:
    """The blocks in order, or cut into pieces and shuffled (see the module notes)."""
    if not shuffle:
        return [Piece(b, 0, len(b)) for b in blocks]
    size = max(MIN_PIECE_ROWS, window_rows // PIECES_PER_WINDOW)
    pieces = [Piece(b, i, min(i + size, len(b))) for b in blocks for i in range(0, len(b), size)]
    return [pieces[i] for i in rng_for(seed, epoch, 0).permutation(len(pieces))]


def rank_windows(windows: list[Window], rank: int, world_size: int) -> list[Window]:
    """The windows one DDP rank reads, in the order it reads them."""
    return windows[rank::world_size]
