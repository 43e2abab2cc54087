"""Training from RAM: a split that fits is read once and every epoch is cut from memory.

`SplitInMemory` is `StoreWindows` with one change: a window's rows are gathered from arrays
holding the whole split (read block by block, once) instead of read from the store. The
plan, the shuffles, the unusable-row checks and the augmentation are the streaming code, so
a seed gives the same batches, byte for byte, in both modes.

The arrays are torch tensors in shared memory: DataLoader workers receive a handle, not a
copy, so N workers still hold the split once. Under DDP every rank holds the whole split
(a rank's windows change each epoch), so the automatic choice counts ranks per machine.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from training.dataset import StoreWindows
from training.plan import Window

if TYPE_CHECKING:
    from featurestore import FeatureStore

MODES = ("auto", "on", "off")

MEMORY_FRACTION = 0.25
"""`auto` holds the splits in memory when they take at most this share of the memory
available now (the rest stays for the model, workers' windows and everything else)."""


def split_nbytes(store: FeatureStore, split: str, streams: list[str]) -> int:
    """Bytes a split's rows take in memory for these streams, from the schema alone."""
    per_row = sum(store.schema.spec(s).nbytes for s in streams)
    return per_row * sum(len(b) for b in store.blocks(split, streams=streams))


def available_memory() -> int | None:
    """Bytes this process can still allocate: MemAvailable, capped by a cgroup (v2) limit
    as in a container; None where neither can be read (not Linux)."""
    try:
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        free = next(
            int(line.split()[1]) * 1024 for line in meminfo if line.startswith("MemAvailable:")
        )
    except (OSError, StopIteration, ValueError, IndexError):
        return None
    try:
        cgroup = Path("/sys/fs/cgroup")
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            free = min(free, int(limit) - int((cgroup / "memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return max(free, 0)


def shared_memory_free() -> int | None:
    """Free bytes in /dev/shm, where workers' shared tensors live (64 MiB in a default
    Docker container); None where there is no such folder."""
    try:
        st = os.statvfs("/dev/shm")
    except (OSError, AttributeError):
        return None
    return st.f_bavail * st.f_frsize


def choose_in_memory(
    mode: str, nbytes: int, available: int | None, ranks_per_machine: int = 1
) -> tuple[bool, str]:
    """Whether to hold `nbytes` of splits in memory (once per rank on this machine), and
    why, for the log. `on` refuses only when the splits plainly do not fit."""
    if mode not in MODES:
        raise ValueError(f"data in memory must be one of {MODES}, got {mode!r}")
    need = nbytes * ranks_per_machine
    have = "unknown" if available is None else f"{available / 2**20:,.0f} MiB"
    what = f"{need / 2**20:,.1f} MiB" + (
        f" ({ranks_per_machine} ranks)" if ranks_per_machine > 1 else ""
    )
    if mode == "off":
        return False, f"streaming (--data-in-memory off; {what}, {have} available)"
    if mode == "on":
        if available is not None and need > available:
            raise MemoryError(f"--data-in-memory on: the splits need {what}, only {have} available")
        return True, f"in memory (--data-in-memory on; {what}, {have} available)"
    if available is None:
        return False, f"streaming (auto: available memory unknown; {what})"
    fits = need <= MEMORY_FRACTION * available
    return fits, (
        f"{'in memory' if fits else 'streaming'} (auto: {what} "
        f"{'<=' if fits else '>'} {MEMORY_FRACTION:.0%} of {have} available)"
    )


def hold_in_memory(
    mode: str, store: FeatureStore, splits: list[str], streams: list[str], workers: int = 0
) -> tuple[bool, str]:
    """The trainer's choice for its splits, and why: their bytes against the memory
    available (and /dev/shm's free space when workers share them), once per rank on this
    machine (torchrun's LOCAL_WORLD_SIZE)."""
    nbytes = sum(split_nbytes(store, s, streams) for s in splits)
    available = available_memory()
    shm = shared_memory_free() if workers > 0 else None
    if available is not None and shm is not None:
        available = min(available, shm)
    ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return choose_in_memory(mode, nbytes, available, ranks)


class SplitInMemory(StoreWindows):
    """`StoreWindows` over a copy of the split in memory (see the module notes)."""

    def __init__(self, *args: Any, shared: bool = False, **kwargs: Any):
        """`StoreWindows`' arguments; ``shared``: the split in shared memory (for workers)."""
        super().__init__(*args, **kwargs)
        self.arrays, self.labels, self.unusable = self._read_split(shared)

    def _read_split(
        self, shared: bool
    ) -> tuple[dict[str, torch.Tensor], np.ndarray, dict[str, str]]:
        """Every row of the split, block by block into preallocated tensors; the rows unfit
        to train on are found once, here, with the streaming checks."""
        rows = sum(len(b) for b in self.blocks)
        arrays = {}
        for s in self.streams:
            spec = self.store.schema.spec(s)
            t = torch.from_numpy(np.empty((0,), spec.dtype)).new_empty((rows, *spec.shape))
            # Shared before it is filled, so the split is never held twice.
            arrays[s] = t.share_memory_() if shared else t
        labels = np.empty(rows, np.int64)
        unusable: dict[str, str] = {}
        self._start: dict[tuple[str, int], int] = {}
        pos = 0
        for block in self.blocks:
            batch = self.store.read_block(block, self.streams)
            n = len(block)
            self._start[block.segment, block.block] = pos
            for s in self.streams:
                arrays[s][pos : pos + n] = torch.from_numpy(np.ascontiguousarray(batch.arrays[s]))
            labels[pos : pos + n] = batch.labels
            unusable.update(super()._usable(batch.ids, batch.labels, batch.arrays)[1])
            pos += n
        return arrays, labels, unusable

    def _read(
        self, window: Window
    ) -> tuple[list[str], np.ndarray, dict[str, np.ndarray], np.ndarray]:
        """The window's ids and labels, and the whole split with each id's row in it: the
        batch is then gathered once, straight from the split."""
        source = np.concatenate(
            [
                np.arange(p.start, p.stop) + self._start[p.block.segment, p.block.block]
                for p in window.pieces
            ]
        )
        arrays = {s: self.arrays[s].numpy() for s in self.streams}
        return window.video_ids, self.labels[source], arrays, source

    def _usable(
        self, ids: list[str], labels: np.ndarray, arrays: dict[str, np.ndarray]
    ) -> tuple[np.ndarray, dict[str, str]]:
        """As streaming decides, from the verdicts taken when the split was read (`arrays`
        is the whole split here)."""
        skipped = {v: self.unusable[v] for v in ids if v in self.unusable}
        keep = [i for i, v in enumerate(ids) if v not in skipped]
        return np.asarray(keep, dtype=np.int64), skipped
