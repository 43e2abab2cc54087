"""The worker side of streaming: an IterableDataset that reads, cleans, shuffles and
augments one window of store rows at a time (see `training.plan` for which windows)."""

from __future__ import annotations

from multiprocessing.context import BaseContext
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from training.augment import Augmenter
from training.plan import Window, plan_epoch, rank_windows, rng_for

if TYPE_CHECKING:
    from featurestore import FeatureStore


class StoreWindows(IterableDataset):
    """Yields one dict per window of this rank, round-robin over DataLoader workers.

    Each item: ``window`` (the rank-local window number), ``ids``, ``label`` (int64),
    one tensor per stream, and ``skipped`` ({video id: reason} for rows dropped because
    they are unlabeled or hold NaN/inf). Every window yields exactly one item (possibly
    empty) so the DataLoader's round-robin order stays the window order.

    The store is a picklable FeatureStore that opens its files lazily in the process that
    reads, so workers never share a parent's HDF5 handle or Zarr event loop.
    """

    def __init__(
        self,
        store: FeatureStore,
        split: str,
        streams: list[str],
        *,
        window_rows: int,
        seed: int,
        shuffle: bool,
        augmenter: Augmenter | None,
        rank: int = 0,
        world_size: int = 1,
    ):
        super().__init__()
        self.store, self.split, self.streams = store, split, list(streams)
        self.window_rows, self.seed, self.shuffle = window_rows, seed, shuffle
        self.augmenter = augmenter
        self.rank, self.world_size = rank, world_size
        self.blocks = store.blocks(split, streams=self.streams)  # the videos holding them all
        self._position = [0, 0, 0]  # epoch, start window, rows of it already consumed
        self._buffers: dict[str, np.ndarray] = {}  # per stream, a window's rows (see _joined)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_buffers": {}}  # a worker makes its own

    def share_position(self, ctx: BaseContext) -> None:
        """Keep the position in shared memory, so persistent workers see each new epoch
        (their copy of the dataset was pickled once, when they started)."""
        shared = ctx.RawArray("q", 3)
        shared[:] = self._position
        self._position = shared

    def set_position(self, epoch: int, window: int = 0, offset: int = 0) -> None:
        """Where the next iteration starts; set before the DataLoader's iter()."""
        self._position[:] = [epoch, window, offset]

    @property
    def epoch(self) -> int:
        return int(self._position[0])

    @property
    def start_window(self) -> int:
        return int(self._position[1])

    @property
    def start_offset(self) -> int:
        return int(self._position[2])

    def windows(self, epoch: int | None = None, rank: int | None = None) -> list[Window]:
        """A rank's windows for an epoch, in delivery order (default: this rank, the
        position's epoch)."""
        epoch = self.epoch if epoch is None else epoch
        plan = plan_epoch(
            self.blocks, self.window_rows, self.seed, epoch, self.shuffle, self.world_size
        )
        return rank_windows(plan, self.rank if rank is None else rank, self.world_size)

    def __iter__(self):
        info = get_worker_info()
        worker, num_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        epoch, start, offset = self.epoch, self.start_window, self.start_offset
        for j, window in enumerate(self.windows(epoch)):
            # Count workers from the resume point so window `start` goes to worker 0,
            # which the DataLoader asks first.
            if j < start or (j - start) % num_workers != worker:
                continue
            yield self.load(window, j, offset if j == start else 0, epoch)

    def load(
        self, window: Window, local_index: int, skip: int = 0, epoch: int | None = None
    ) -> dict:
        """Read a window's rows, drop unusable rows, shuffle, augment, skip `skip` rows."""
        epoch = self.epoch if epoch is None else epoch
        ids, labels, arrays, source = self._read(window)
        keep, skipped = self._usable(ids, labels, arrays)
        order = keep[self._permutation(window, len(keep), epoch)]
        ids = [ids[i] for i in order]
        labels = labels[order]
        if self.augmenter is not None and len(ids):
            rng = rng_for(self.seed, epoch, 2, window.index)
            arrays = self.augmenter(arrays, rng, rows=source[order])
            item: dict[str, Any] = {
                s: torch.from_numpy(np.ascontiguousarray(a[skip:])) for s, a in arrays.items()
            }
        else:
            rows = torch.from_numpy(source[order[skip:]])
            item = {s: _gather_shared(torch.from_numpy(a), rows) for s, a in arrays.items()}
        item.update(
            window=local_index,
            ids=ids[skip:],
            label=torch.from_numpy(labels[skip:]),
            skipped=skipped,
        )
        return item

    def _read(
        self, window: Window
    ) -> tuple[list[str], np.ndarray, dict[str, np.ndarray], np.ndarray]:
        """One contiguous read per piece and stream: the window's ids and labels, arrays
        holding its rows, and where each id's row sits in them (here: in order)."""
        parts = []
        for piece in window.pieces:
            sub = piece.block.part(piece.start, piece.stop)
            parts.append(self.store.read_block(sub, self.streams))
        ids = [v for p in parts for v in p.ids]
        labels = np.concatenate([p.labels for p in parts]).astype(np.int64)
        arrays = {
            s: parts[0].arrays[s]
            if len(parts) == 1
            else self._joined(s, [p.arrays[s] for p in parts])
            for s in self.streams
        }
        return ids, labels, arrays, np.arange(len(ids))

    def _joined(self, stream: str, pieces: list[np.ndarray]) -> np.ndarray:
        """The pieces one after another, in this worker's buffer for the stream, reused from
        window to window: what ``load`` hands on is always gathered out of it (a copy), and
        fresh memory would cost a page fault per 4 KB on every window (2.5x the copy)."""
        n = sum(len(p) for p in pieces)
        buf = self._buffers.get(stream)
        if buf is None or len(buf) < n or buf.shape[1:] != pieces[0].shape[1:]:
            buf = np.empty((max(n, self.window_rows), *pieces[0].shape[1:]), pieces[0].dtype)
            self._buffers[stream] = buf
        return np.concatenate(pieces, out=buf[:n])

    def _usable(
        self, ids: list[str], labels: np.ndarray, arrays: dict[str, np.ndarray]
    ) -> tuple[np.ndarray, dict[str, str]]:
        """Indices of rows fit to train on, and why the others are not."""
        ok = labels >= 0
        skipped = {ids[i]: "unlabeled (label -1)" for i in np.flatnonzero(~ok)}
        for name, a in arrays.items():
            if a.dtype.kind != "f":
                continue
            # NaN and inf propagate through a sum, so a row whose sum is finite is (4x
            # faster than max and min on float16); a sum can also overflow, so rows whose
            # sum is not are judged by their max and min, which are finite exactly when
            # the row is (~15x faster than isfinite().all()).
            rows = torch.from_numpy(a.reshape(len(a), -1))
            finite = rows.sum(dim=1).isfinite().numpy()
            if not finite.all():
                doubt = torch.from_numpy(np.flatnonzero(~finite))
                sub = rows[doubt]
                finite[doubt.numpy()] = (
                    sub.amax(dim=1).isfinite() & sub.amin(dim=1).isfinite()
                ).numpy()
            for i in np.flatnonzero(ok & ~finite):
                skipped[ids[i]] = f"non-finite values (NaN/inf) in {name!r}"
            ok &= finite
        return np.flatnonzero(ok), skipped

    def _permutation(self, window: Window, n: int, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(n)
        return rng_for(self.seed, epoch, 1, window.index).permutation(n)


def _gather_shared(src: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``src[rows]``; in a DataLoader worker written straight into shared memory, as
    torch's default_collate does, so handing it to the main process copies nothing
    more (otherwise the pickler copies the whole window into shared memory again)."""
    if get_worker_info() is None or not len(rows):
        return src[rows]
    numel = len(rows) * int(np.prod(src.shape[1:]))
    storage = src._typed_storage()._new_shared(numel, device="cpu")
    out = src.new(storage).view(len(rows), *src.shape[1:])
    return torch.index_select(src, 0, rows, out=out)
