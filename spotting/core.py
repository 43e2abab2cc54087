"""Spotting as plain functions over arrays: per-frame streams in, segments out, no I/O.

Windows of several lengths slide over the frames; each is resampled to the model's T
(as the importers resample a clip) and classified. A window is a candidate when a sign
beats both the threshold and every "no sign" class, and when hands are in view in most
of its frames. A candidate is kept when no candidate it competes with (they share more
than `overlap` of the shorter one) scores higher: the peaks of the score over time and
window length. Keeping a peak depends only on the candidates around it, so the live
spotter (`live.py`) reaches the same decisions as soon as those have been seen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from featurestore.sampling import sample_indices

#: Window lengths in seconds: about the durations of isolated-sign training clips.
DEFAULT_WINDOW_S = (0.8, 1.2, 1.8, 2.7)
#: Windows classified in one pass over a recording (bounds the resampled frames held).
WINDOWS_PER_PASS = 2048


class Classifier(Protocol):
    """What spotting needs of a model (`classify.WindowClassifier` is one)."""

    num_frames: int
    num_classes: int
    rest_ids: list[int]
    hand_columns: list[int]

    @property
    def streams(self) -> list[str]: ...

    def __call__(self, windows: dict[str, np.ndarray]) -> np.ndarray: ...

    def gloss(self, label: int) -> str: ...


@dataclass(frozen=True)
class SpotConfig:
    """How windows are laid and which of them become segments."""

    window_frames: tuple[int, ...] = (20,)
    """Window lengths in frames of the input (around the training clips' durations)."""
    stride: int = 2
    """Frames between the starts of two windows of one length."""
    min_score: float = 0.5
    """A sign's probability must reach this for its window to be a candidate."""
    overlap: float = 0.2
    """Two candidates compete when they share more than this part of the shorter one (a
    long window that reaches a little into the next sign must not silence it)."""
    fuse_iou: float = 0.0
    """A peak is named and bounded by the candidates overlapping it by at least this IoU
    (0: all that overlap it; 1: by itself)."""
    min_hands: float = 0.5
    """Share of a window's frames with a hand in view for it to hold a sign."""
    top_k: int = 5


@dataclass(frozen=True)
class Segment:
    """One sign found: frames [start_frame, end_frame) of the input."""

    start_frame: int
    end_frame: int
    start_s: float
    end_s: float
    gloss: str
    label: int
    score: float
    top_k: list[dict] = field(default_factory=list)
    """The window's best classes: {"gloss", "label", "score"}, best first."""


@dataclass(frozen=True)
class SpotResult:
    fps: float
    frames: int
    segments: list[Segment]


@dataclass
class Candidates:
    """Windows where a sign won, as parallel arrays."""

    start: np.ndarray
    end: np.ndarray
    label: np.ndarray
    score: np.ndarray
    probs: np.ndarray

    @classmethod
    def empty(cls, num_classes: int) -> Candidates:
        i = np.zeros(0, np.int64)
        return cls(i, i.copy(), i.copy(), np.zeros(0, np.float32), np.zeros((0, num_classes)))

    def __len__(self) -> int:
        return len(self.start)

    def take(self, rows: np.ndarray) -> Candidates:
        return Candidates(
            self.start[rows], self.end[rows], self.label[rows], self.score[rows], self.probs[rows]
        )

    @staticmethod
    def concat(parts: list[Candidates]) -> Candidates:
        return Candidates(
            *(np.concatenate([getattr(p, f) for p in parts]) for f in Candidates.FIELDS)
        )

    FIELDS = ("start", "end", "label", "score", "probs")


def grid(
    lengths: tuple[int, ...],
    stride: int,
    total: int,
    final: bool,
    first: dict[int, int] | None = None,
    origin: int = 0,
) -> list[tuple[int, int]]:
    """(start, length) of the windows that fit in frames [origin, total), from `first[length]`
    on (default: origin), every `stride` frames; when the stream is `final`, also the window
    that ends on its last frame, or the whole stream for a length longer than it."""
    first = first or {}
    out = []
    for length in lengths:
        start = first.get(length, origin)
        out += [(s, length) for s in range(start, total - length + 1, stride)]
        if not final:
            continue
        if total - origin >= length and (total - length - origin) % stride:
            out.append((total - length, length))
        elif total - origin < length and start == origin and total > origin:
            out.append((origin, total - origin))
    return sorted(set(out))


def window_indices(windows: list[tuple[int, int]], num_frames: int) -> np.ndarray:
    """(W, T) frame indices: each window resampled to T frames as the importers do."""
    out = np.empty((len(windows), num_frames), np.int64)
    cache: dict[int, np.ndarray] = {}
    for row, (start, length) in enumerate(windows):
        if length not in cache:
            cache[length] = sample_indices(length, num_frames)[0]
        out[row] = start + cache[length]
    return out


def used_frames(total: int, num_frames: int, config: SpotConfig) -> np.ndarray:
    """The frames that windows read (so a costly per-frame feature is computed for them only)."""
    windows = grid(config.window_frames, config.stride, total, True, {})
    return np.unique(window_indices(windows, num_frames)) if windows else np.zeros(0, np.int64)


def hand_share(mask: np.ndarray | None, columns: list[int], idx: np.ndarray) -> np.ndarray:
    """(W,) share of each window's sampled frames with a hand in view (1 without a mask)."""
    if mask is None or not columns:
        return np.ones(len(idx), np.float32)
    hands = mask[:, columns].any(axis=1)
    return hands[idx].mean(axis=1)


def candidates(
    windows: list[tuple[int, int]], probs: np.ndarray, rest_ids: list[int], config: SpotConfig
) -> Candidates:
    """The windows where a sign wins: at least `min_score`, above every rest class."""
    if not windows:
        return Candidates.empty(probs.shape[1])
    signs = probs.copy()
    signs[:, rest_ids] = -1.0
    label = signs.argmax(axis=1)
    score = probs[np.arange(len(probs)), label]
    rest = probs[:, rest_ids].max(axis=1) if rest_ids else np.zeros(len(probs), np.float32)
    start = np.array([s for s, _ in windows], np.int64)
    end = start + np.array([n for _, n in windows], np.int64)
    keep = np.flatnonzero((score >= config.min_score) & (score > rest))
    return Candidates(start[keep], end[keep], label[keep], score[keep], probs[keep])


def peaks(c: Candidates, overlap: float) -> np.ndarray:
    """Bool mask of the candidates no competitor beats (ties go to the earlier, shorter).
    Only candidates that overlap can compete: each is compared with those starting within
    the longest window before its end, so a long recording costs linear time."""
    keep = np.ones(len(c), bool)
    if not len(c):
        return keep
    order = np.argsort(c.start, kind="stable")
    starts = c.start[order]
    longest = int((c.end - c.start).max())
    for i in range(len(c)):
        near = order[
            np.searchsorted(starts, c.start[i] - longest, "right") : np.searchsorted(
                starts, c.end[i], "left"
            )
        ]
        shared = np.minimum(c.end[near], c.end[i]) - np.maximum(c.start[near], c.start[i])
        shorter = np.minimum(c.end[near] - c.start[near], c.end[i] - c.start[i])
        rivals = (shared > overlap * shorter) & (near != i)
        s = c.score[near]
        better = (s > c.score[i]) | (
            (s == c.score[i]) & ((c.start[near] < c.start[i]) | (c.end[near] < c.end[i]))
        )
        keep[i] = not (rivals & better).any()
    return keep


def fuse(c: Candidates, keep: np.ndarray, iou: float) -> Candidates:
    """Each kept peak with the windows around it (IoU >= `iou` with it): their mean
    probabilities name the sign, and their extents weighted by its probability bound it."""
    rows = np.flatnonzero(keep)
    out = c.take(rows)
    for n, i in enumerate(rows):
        inter = np.minimum(c.end, c.end[i]) - np.maximum(c.start, c.start[i])
        union = np.maximum(c.end, c.end[i]) - np.minimum(c.start, c.start[i])
        near = np.flatnonzero((inter > 0) & (inter >= iou * union))
        probs = c.probs[near].mean(axis=0)
        signs = np.full_like(probs, -1.0)
        signs[c.label[near]] = probs[c.label[near]]
        label = int(np.argmax(signs))
        weight = c.probs[near, label] + 1e-6
        out.start[n] = int(round(float(np.average(c.start[near], weights=weight))))
        out.end[n] = int(round(float(np.average(c.end[near], weights=weight))))
        out.label[n], out.score[n], out.probs[n] = label, probs[label], probs
    return out


def segments(c: Candidates, classify: Classifier, fps: float, top_k: int) -> list[Segment]:
    out = []
    for i in np.argsort(c.start, kind="stable"):
        rounded = np.round(c.probs[i].astype(np.float64), 4)
        order = np.lexsort((np.arange(len(rounded)), -rounded))[:top_k]  # ties: lower label
        out.append(
            Segment(
                start_frame=int(c.start[i]),
                end_frame=int(c.end[i]),
                start_s=round(float(c.start[i]) / fps, 3),
                end_s=round(float(c.end[i]) / fps, 3),
                gloss=classify.gloss(int(c.label[i])),
                label=int(c.label[i]),
                score=round(float(c.score[i]), 4),
                top_k=[
                    {
                        "gloss": classify.gloss(int(k)),
                        "label": int(k),
                        "score": float(rounded[k]),
                    }
                    for k in order
                ],
            )
        )
    return out


def classify_windows(
    classify: Classifier,
    arrays: dict[str, np.ndarray],
    windows: list[tuple[int, int]],
    offset: int = 0,
    config: SpotConfig | None = None,
) -> tuple[list[tuple[int, int]], np.ndarray]:
    """The windows (absolute frames) of `arrays`, whose row 0 is frame `offset`, that have
    hands enough in view, and their (W, num_classes) probabilities."""
    config = config or SpotConfig()
    if not windows:
        return [], np.zeros((0, classify.num_classes), np.float32)
    idx = window_indices(windows, classify.num_frames) - offset
    # Windows with too few hands in view cannot hold a sign: not classified at all.
    seen = hand_share(arrays.get("landmark_mask"), classify.hand_columns, idx) >= config.min_hands
    if not seen.any():
        return [], np.zeros((0, classify.num_classes), np.float32)
    idx = idx[seen]
    probs = classify({name: arrays[name][idx] for name in classify.streams})
    return [w for w, ok in zip(windows, seen, strict=True) if ok], probs


def score_windows(
    classify: Classifier,
    arrays: dict[str, np.ndarray],
    windows: list[tuple[int, int]],
    offset: int = 0,
    config: SpotConfig | None = None,
) -> Candidates:
    """Classify `windows` (absolute frames) of `arrays`, whose row 0 is frame `offset`."""
    config = config or SpotConfig()
    kept, probs = classify_windows(classify, arrays, windows, offset, config)
    if not kept:
        return Candidates.empty(classify.num_classes)
    return candidates(kept, probs, classify.rest_ids, config)


def check_length(total: int, num_frames: int) -> None:
    if total < num_frames:
        raise ValueError(f"{total} frames, fewer than the model's T={num_frames}")


def spot(
    classify: Classifier, arrays: dict[str, np.ndarray], fps: float, config: SpotConfig
) -> SpotResult:
    """Segments of a whole recording: `arrays` holds the model's streams, frames first."""
    missing = [s for s in classify.streams if s not in arrays]
    if missing:
        raise ValueError(f"the model reads {', '.join(missing)}, which the input lacks")
    total = len(arrays[classify.streams[0]])
    check_length(total, classify.num_frames)
    windows = grid(config.window_frames, config.stride, total, True, {})
    # A pass at a time: the windows' resampled frames of a long recording never all at once.
    found = Candidates.concat(
        [Candidates.empty(classify.num_classes)]
        + [
            score_windows(classify, arrays, windows[at : at + WINDOWS_PER_PASS], 0, config)
            for at in range(0, len(windows), WINDOWS_PER_PASS)
        ]
    )
    if not len(found):
        return SpotResult(fps, total, [])
    chosen = fuse(found, peaks(found, config.overlap), config.fuse_iou)
    return SpotResult(fps, total, segments(chosen, classify, fps, config.top_k))


def window_lengths(seconds: tuple[float, ...], fps: float, num_frames: int) -> tuple[int, ...]:
    """Window lengths in frames at `fps` for lengths in seconds (none shorter than T/2)."""
    return tuple(sorted({max(num_frames // 2, round(s * fps)) for s in seconds}))


def parse_seconds(text: str) -> tuple[float, ...]:
    """ "0.8,1.2" -> (0.8, 1.2); ValueError naming what is wrong (empty, not a number, <= 0)."""
    try:
        seconds = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ValueError(
            f"window lengths must be seconds separated by commas, got {text!r}"
        ) from None
    if not seconds or any(not 0 < s < 3600 for s in seconds):
        raise ValueError(f"window lengths must be seconds above 0, got {text!r}")
    return seconds
