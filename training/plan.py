"""The epoch plan: which rows are read together, in what order, by which process.

Computed from the store's index alone (no array reads), identically in every process, so
the order of samples depends only on (seed, epoch, world size) and never on the number of
DataLoader workers:

1. The split's chunk-aligned blocks are shuffled with the seed.
2. Their rows, in that order, are cut into *windows* of at most ``window_rows`` rows, as
   equal as possible and a multiple of the world size in number (so ranks get equal
   shares); a window is a handful of contiguous reads (whole blocks, or a block's slice
   at the window's edges).
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

import numpy as np


@dataclass(frozen=True)
class Piece:
    """A contiguous run of one block's rows: ``block.offsets[start:stop]``."""

    block: object
    """A featurestore Block."""
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
    blocks, window_rows: int, seed: int, epoch: int, shuffle: bool = True, world_size: int = 1
) -> list[Window]:
    """All windows of one epoch in global order."""
    order = rng_for(seed, epoch, 0).permutation(len(blocks)) if shuffle else range(len(blocks))
    sizes = iter(window_sizes(sum(len(b) for b in blocks), window_rows, world_size))
    windows, current, filled, target = [], [], 0, next(sizes, 0)
    for b in order:
        block, start = blocks[b], 0
        while start < len(block):
            stop = min(len(block), start + target - filled)
            current.append(Piece(block, start, stop))
            filled += stop - start
            start = stop
            if filled == target:
                windows.append(Window(len(windows), tuple(current)))
                current, filled, target = [], 0, next(sizes, 0)
    return windows


def rank_windows(windows: list[Window], rank: int, world_size: int) -> list[Window]:
    """The windows one DDP rank reads, in the order it reads them."""
    return windows[rank::world_size]
