"""The main-process side of streaming: a DataLoader over `StoreWindows`, re-cut into
fixed-size batches, with a small state dict for mid-epoch resume."""

from __future__ import annotations

import ctypes
import multiprocessing
import warnings
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import DataLoader

from featurestore import take_rows
from training.augment import Augmenter
from training.dataset import StoreWindows
from training.in_memory import SplitInMemory

if TYPE_CHECKING:
    from featurestore import FeatureStore

#: Modules the forkserver imports once, so each worker starts with a fork, not an import.
_PRELOAD = [
    "torch",
    "numpy",
    "zarr",
    "h5py",
    "featurestore",
    "training.dataset",
    "training.in_memory",
]


class StoreLoader:
    """Batches of one split for one DDP rank: dicts with ``ids``, ``label`` and a tensor
    per stream (store dtypes, on the CPU).

    The order depends on (seed, epoch, world size), not on `num_workers`. Workers start
    once, with `mp_context` (default forkserver: no parent threads or file handles are
    inherited, and preloaded imports keep start-up quick), and persist across epochs.
    Memory stays near workers x prefetch_factor x window_rows rows, whatever the store's
    size (plus, per worker, a window's read buffer and at most 256 MB of freed memory kept
    for the next window). Iterate it once at a time: a new iteration restarts the workers' stream.

    `in_memory`: read the split once into (shared) memory and cut every epoch from there,
    in the same order (`training.in_memory`); memory then holds the split as well.
    """

    def __init__(
        self,
        store: FeatureStore,
        split: str,
        batch_size: int,
        *,
        streams: list[str] | None = None,
        window_rows: int = 512,
        seed: int = 0,
        shuffle: bool = True,
        augmenter: Augmenter | None = None,
        num_workers: int = 0,
        rank: int = 0,
        world_size: int = 1,
        mp_context: str | None = "forkserver",
        pin_memory: bool = False,
        prefetch_factor: int = 2,
        in_memory: bool = False,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        streams = list(store.schema.streams) if streams is None else list(streams)
        windows: dict[str, Any] = dict(
            window_rows=window_rows,
            seed=seed,
            shuffle=shuffle,
            augmenter=augmenter,
            rank=rank,
            world_size=world_size,
        )
        self.dataset: StoreWindows = (
            SplitInMemory(store, split, streams, shared=num_workers > 0, **windows)
            if in_memory
            else StoreWindows(store, split, streams, **windows)
        )
        self.split, self.batch_size, self.streams = split, batch_size, streams
        self.num_workers, self.pin_memory, self.prefetch_factor = (
            num_workers,
            pin_memory,
            prefetch_factor,
        )
        self.mp_context = mp_context if num_workers > 0 else None
        if self.mp_context == "forkserver":
            multiprocessing.get_context("forkserver").set_forkserver_preload(_PRELOAD)
        self.epoch = 0
        self._window, self._offset = 0, 0
        self._loader: DataLoader | None = None
        self.skipped: dict[str, str] = {}
        """Rows dropped this epoch (id -> reason), as reported by the workers."""

    # -- sizes -------------------------------------------------------------------------
    def rank_rows(self, rank: int | None = None) -> int:
        """Rows planned for a rank this epoch (before unusable rows are dropped)."""
        return sum(len(w) for w in self.dataset.windows(self.epoch, rank))

    def __len__(self) -> int:
        """Batches this rank yields in a full epoch (at most; fewer if rows are dropped)."""
        return -(-self.rank_rows() // self.batch_size)

    def steps_per_epoch(self) -> int:
        """The most batches any rank yields: every rank steps this many times (DDP lockstep)."""
        world = self.dataset.world_size
        return max(-(-self.rank_rows(r) // self.batch_size) for r in range(world))

    # -- resume ------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self._window, self._offset = epoch, 0, 0

    def state_dict(self) -> dict:
        """Where the consumer is: the next row to yield is row `offset` of window `window`."""
        return {
            "epoch": self.epoch,
            "window": self._window,
            "offset": self._offset,
            "seed": self.dataset.seed,
        }

    def load_state_dict(self, state: dict) -> None:
        if state.get("seed", self.dataset.seed) != self.dataset.seed:
            warnings.warn(
                "resuming a loader with another seed: the epoch's order changes", stacklevel=2
            )
        self.epoch, self._window, self._offset = (
            int(state["epoch"]),
            int(state["window"]),
            int(state["offset"]),
        )

    # -- iteration ---------------------------------------------------------------------
    def _dataloader(self) -> DataLoader:
        """One DataLoader for the loader's life: its workers persist across epochs (no
        per-epoch start-up) and read each epoch's position from shared memory."""
        if self._loader is not None:
            return self._loader
        kwargs: dict[str, Any] = {}
        if self.num_workers > 0:
            ctx = multiprocessing.get_context(self.mp_context)
            self.dataset.share_position(ctx)
            kwargs = {
                "multiprocessing_context": ctx,
                "prefetch_factor": self.prefetch_factor,
                "persistent_workers": True,
                "worker_init_fn": _reuse_freed_memory,
            }
        self._loader = DataLoader(
            self.dataset,
            batch_size=None,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            # Its own generator: creating an iterator must not draw from the global RNG,
            # or a resumed run's dropout would differ from an uninterrupted one.
            generator=torch.Generator().manual_seed(self.dataset.seed),
            **kwargs,
        )
        return self._loader

    def __iter__(self):
        if self._window == 0 and self._offset == 0:
            self.skipped = {}
        pending: list[dict] = []  # windows not yet fully handed out, oldest first
        count = 0
        dataloader = self._dataloader()
        start, offset = self._window, self._offset
        self.dataset.set_position(self.epoch, start, offset)
        for item in dataloader:
            if item["skipped"]:
                self.skipped.update(item["skipped"])
            # An empty window (every row unusable) queues too, so the position never runs
            # ahead of rows still pending. `base`: rows of the resume window consumed
            # before the restart.
            item["base"] = offset if item["window"] == start else 0
            pending.append(item)
            count += len(item["ids"])
            while count >= self.batch_size:
                batch, pending = self._take(pending, self.batch_size)
                count -= self.batch_size
                yield batch
        if count:
            yield self._take(pending, count)[0]
        self._window, self._offset = 0, 0  # a finished epoch restarts from its beginning

    def _take(self, pending: list[dict], n: int) -> tuple[dict, list[dict]]:
        """The first n rows of the pending windows as one batch; records the position: the
        first row still pending, or the start of the window after the last one taken."""
        parts, rest = take_rows(pending, n, _size, _cut)
        self._window, self._offset = (
            (rest[0]["window"], rest[0]["base"]) if rest else (parts[-1]["window"] + 1, 0)
        )
        batch: dict[str, Any] = {"ids": [i for p in parts for i in p["ids"]]}
        for key in ["label", *self.streams]:
            batch[key] = parts[0][key] if len(parts) == 1 else torch.cat([p[key] for p in parts])
        return batch, rest


_PER_ROW = ("ids", "label")
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters


def _reuse_freed_memory(worker_id: int) -> None:
    """Let glibc keep a worker's freed memory (up to 256 MB) for its next window.

    A window's read allocates a buffer per piece and stream, then frees them. glibc hands
    freed memory back to the OS early, so each window's fresh buffers cost a page fault per
    4 KB: 2.9x the read itself (a 512-row window: 26.8 ms, 9.2 ms with this; the loader in
    benchmarks/train_loader.py 14.4k -> 19.5k samples/s). Buffers up to 32 MB (the most
    glibc allows) come from the heap and up to 256 MB freed stays there. Not glibc: no-op.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)
        libc.mallopt(_M_TRIM_THRESHOLD, 256 << 20)
    except (OSError, AttributeError):
        pass


def _size(item: dict) -> int:
    return len(item["ids"])


def _cut(item: dict, k: int) -> tuple[dict, dict]:
    """A window item's first k rows and the rest; `base` counts the window's rows before each."""
    return _rows(item, 0, k), _rows(item, k, _size(item))


def _rows(item: dict, lo: int, hi: int) -> dict:
    """Rows lo:hi of a window item; `base` counts the window's rows before them."""
    out = {
        k: v[lo:hi] if k in _PER_ROW or isinstance(v, torch.Tensor) else v for k, v in item.items()
    }
    out["base"] = item["base"] + lo
    return out
