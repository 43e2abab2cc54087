"""Continuous streams from isolated sequences, and how a gloss sequence is scored.

A stream joins one recorder's sign sequences with that recorder's own `-` (no sign)
sequences between them: rest, sign, rest, sign, ..., rest. Each rest is a random stretch
of a `-` sequence, and short linear transitions join every piece to the next, so no
frame jumps. The truth is where each sign sequence lies and its gloss.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from featurestore.importers.mpdata import WIDTHS

REST = "-"
#: Where each part of a 258-value vector starts, and how wide it is (pose has visibility).
PARTS = [
    (start, 33 * width if name == "pose" else 21 * width)
    for name, (start, width) in WIDTHS[258].items()
]


@dataclass
class Stream:
    vectors: np.ndarray
    """(frames, 258) float32 raw MediaPipe vectors, as the recorder's files hold them."""
    truth: list[tuple[int, int, str]]
    """(start_frame, end_frame, gloss) of each sign, in order."""


def transition(a: np.ndarray, b: np.ndarray, frames: int) -> np.ndarray:
    """`frames` vectors moving linearly from a to b; a part missing at either end stays missing."""
    w = np.linspace(0, 1, frames + 2, dtype=np.float32)[1:-1, None]
    out = (1 - w) * a + w * b
    for start, width in PARTS:
        if not a[start : start + width].any() or not b[start : start + width].any():
            out[:, start : start + width] = 0
    return out


def make_stream(
    signs: list[tuple[str, np.ndarray]],
    rests: list[np.ndarray],
    rng: np.random.Generator,
    rest_frames: tuple[int, int] = (10, 20),
    transition_frames: tuple[int, int] = (2, 5),
) -> Stream:
    """rest, sign, rest, ..., sign, rest, with transitions between pieces."""

    def rest() -> np.ndarray:
        seq = rests[rng.integers(len(rests))]
        n = min(len(seq), int(rng.integers(rest_frames[0], rest_frames[1] + 1)))
        start = int(rng.integers(0, len(seq) - n + 1))
        return seq[start : start + n]

    pieces: list[tuple[str | None, np.ndarray]] = [(None, rest())]
    for gloss, seq in signs:
        pieces += [(gloss, seq), (None, rest())]
    out, truth, at = [], [], 0
    for i, (gloss, seq) in enumerate(pieces):
        if i:
            n = int(rng.integers(transition_frames[0], transition_frames[1] + 1))
            out.append(transition(out[-1][-1], seq[0], n))
            at += n
        if gloss is not None:
            truth.append((at, at + len(seq), gloss))
        out.append(seq)
        at += len(seq)
    return Stream(np.concatenate(out).astype(np.float32), truth)


def straddles(
    signs: list[np.ndarray],
    rests: list[np.ndarray],
    count: int,
    rng: np.random.Generator,
    length: int = 20,
    share: tuple[int, int] = (3, 9),
) -> list[np.ndarray]:
    """`count` windows of `length` frames that hold only the start or the end of a sign
    (`share` frames of it), the rest being a rest (or, for a recorder with none, another
    sign's other end): what a spotter's windows see off a sign, to be learned as no sign."""
    out = []
    for _ in range(count):
        sign = signs[rng.integers(len(signs))]
        other = (rests or signs)[rng.integers(len(rests or signs))]
        k = int(rng.integers(share[0], share[1] + 1))
        n = int(rng.integers(2, 6))
        if rng.random() < 0.5:  # the end of the sign, then the other
            part = sign[-k:]
            out.append(np.concatenate([part, transition(part[-1], other[0], n), other])[:length])
        else:  # the other, then the start of the sign
            part = sign[:k]
            window = np.concatenate([other, transition(other[-1], part[0], n), part])
            out.append(window[-length:])
    return out


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def matched(truth: list[tuple[int, int, str]], found: list[tuple[int, int, str]]) -> int:
    """Found segments that match a true one one-to-one: the same gloss, IoU >= 0.5."""
    pairs = []
    for i, (a0, a1, ga) in enumerate(truth):
        for j, (b0, b1, gb) in enumerate(found):
            inter = min(a1, b1) - max(a0, b0)
            iou = inter / (max(a1, b1) - min(a0, b0)) if inter > 0 else 0.0
            if ga == gb and iou >= 0.5:
                pairs.append((iou, i, j))
    used_t, used_f = set(), set()
    for _, i, j in sorted(pairs, reverse=True):
        if i not in used_t and j not in used_f:
            used_t.add(i)
            used_f.add(j)
    return len(used_t)


@dataclass
class Score:
    """Totals over streams: edits and words for WER, matches and counts for F1."""

    edits: int = 0
    words: int = 0
    hits: int = 0
    found: int = 0

    def add(self, truth: list[tuple[int, int, str]], found: list[tuple[int, int, str]]) -> None:
        self.edits += edit_distance([g for *_, g in truth], [g for *_, g in found])
        self.words += len(truth)
        self.hits += matched(truth, found)
        self.found += len(found)

    @property
    def wer(self) -> float:
        return self.edits / max(1, self.words)

    @property
    def f1(self) -> float:
        return 2 * self.hits / max(1, self.words + self.found)
