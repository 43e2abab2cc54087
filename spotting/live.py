"""Spotting frames as they arrive, in bounded memory, with the core's own functions.

Windows are scored as soon as their last frame has come; a candidate is decided (kept or
dropped by `core.peaks`) once every window that could compete with it has been scored.
Only the last longest-window's frames and the candidates that can still compete are
held, so memory does not grow with the stream. Fed a whole recording and then
`finish()`, it returns the segments `core.spot` returns (a test holds them equal).
"""

from __future__ import annotations

import numpy as np

from spotting.core import (
    Candidates,
    Classifier,
    Segment,
    SpotConfig,
    candidates,
    classify_windows,
    fuse,
    grid,
    peaks,
)
from spotting.core import segments as to_segments


class LiveSpotter:
    """`push` frames, get the segments decided so far; `finish` decides on the rest."""

    def __init__(self, classify: Classifier, fps: float, config: SpotConfig):
        self.classify, self.fps, self.config = classify, fps, config
        self.longest = max(config.window_frames)
        self.total = 0
        """Frames received so far (segment frames count from the first of them)."""
        self._origin = 0
        self._offset = 0
        self._buffer: dict[str, np.ndarray] = {}
        self._first = {n: 0 for n in config.window_frames}
        self._pool = Candidates.empty(classify.num_classes)
        self._decided = np.zeros(0, bool)
        self.latest: tuple[int, int, np.ndarray] | None = None
        """(start, end, probabilities) of the newest window classified (the one ending last,
        the longest of those): what the model makes of the frames just seen; None when the
        windows last laid had too few hands in view to be classified."""

    @property
    def buffered(self) -> int:
        """Frames held now (bounded by the longest window and the stride)."""
        return 0 if not self._buffer else len(next(iter(self._buffer.values())))

    @property
    def open(self) -> bool:
        """Frames have come since the start or the last `finish`."""
        return self.total > self._origin

    def push(self, arrays: dict[str, np.ndarray]) -> list[Segment]:
        """Add frames (each stream frames first) and return the segments now decided."""
        rows = {name: np.asarray(arrays[name]) for name in self.classify.streams}
        for name, a in rows.items():
            held = self._buffer.get(name)
            self._buffer[name] = a if held is None else np.concatenate([held, a])
        self.total += len(next(iter(rows.values())))
        windows = grid(
            self.config.window_frames, self.config.stride, self.total, False, self._first
        )
        for start, length in windows:
            self._first[length] = max(self._first[length], start + self.config.stride)
        self._add(windows)
        frontier = min(self._first.values()) - self.config.stride
        found = self._decide(frontier)
        self._trim(frontier)
        return found

    def finish(self) -> list[Segment]:
        """The stream ended (or went quiet): decide on every frame held, then start afresh."""
        if self.total - self._origin >= self.classify.num_frames:
            self._add(
                grid(
                    self.config.window_frames,
                    self.config.stride,
                    self.total,
                    True,
                    self._first,
                    self._origin,
                )
            )
        found = self._decide(None)
        self._origin = self._offset = self.total
        self._buffer = {}
        self._first = {n: self.total for n in self.config.window_frames}
        self._pool = Candidates.empty(self.classify.num_classes)
        self._decided = np.zeros(0, bool)
        return found

    def _add(self, windows: list[tuple[int, int]]) -> None:
        if not windows:
            return
        kept, probs = classify_windows(
            self.classify, self._buffer, windows, self._offset, self.config
        )
        if not kept:
            self.latest = None
            return
        newest = max(range(len(kept)), key=lambda i: (sum(kept[i]), kept[i][1]))
        start, length = kept[newest]
        self.latest = (start, start + length, probs[newest])
        found = candidates(kept, probs, self.classify.rest_ids, self.config)
        self._pool = Candidates.concat([self._pool, found])
        self._decided = np.concatenate([self._decided, np.zeros(len(found), bool)])

    def _decide(self, frontier: int | None) -> list[Segment]:
        """Decide the candidates that no window still to come can compete with."""
        ready = ~self._decided
        if frontier is not None:
            ready &= self._pool.end <= frontier
        if not ready.any():
            return []
        keep = peaks(self._pool, self.config.overlap)
        self._decided |= ready
        chosen = fuse(self._pool, ready & keep, self.config.fuse_iou)
        return to_segments(chosen, self.classify, self.fps, self.config.top_k)

    def _trim(self, frontier: int) -> None:
        """Drop frames no window will read and candidates nothing undecided competes with."""
        stale = self._decided & (self._pool.end <= frontier - self.longest)
        if stale.any():
            self._pool = self._pool.take(np.flatnonzero(~stale))
            self._decided = self._decided[~stale]
        drop = max(0, frontier - self._offset)
        if drop:
            self._buffer = {name: a[drop:] for name, a in self._buffer.items()}
            self._offset += drop
