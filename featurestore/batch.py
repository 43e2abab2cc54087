"""What reads return: one ``Video``, or a ``Batch`` of videos stacked along a leading axis,
and ``take_batch``, which re-cuts the blocks ``iter_batches`` read into batches of n rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .rows import take_rows

__all__ = ["Batch", "Video", "take_batch"]


@dataclass(frozen=True)
class Video:
    """One committed video: metadata and its arrays by stream name."""

    video_id: str
    label: int
    gloss: str
    split: str
    source: dict[str, Any]
    arrays: dict[str, np.ndarray]


@dataclass(frozen=True)
class Batch:
    """Videos stacked along a leading batch axis."""

    ids: list[str]
    labels: np.ndarray
    arrays: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.ids)


def take_batch(pending: list[Batch], n: int, streams: list[str]) -> tuple[Batch, list[Batch]]:
    """The first n rows of the pending batches as one batch, and the batches left."""
    taken, rest = take_rows(pending, n, len, _cut)
    if len(taken) == 1:
        return taken[0], rest
    batch = Batch(
        [i for b in taken for i in b.ids],
        np.concatenate([b.labels for b in taken]),
        {s: np.concatenate([b.arrays[s] for b in taken]) for s in streams},
    )
    return batch, rest


def _cut(b: Batch, k: int) -> tuple[Batch, Batch]:
    """A batch's first k rows and the rest."""
    head = Batch(b.ids[:k], b.labels[:k], {s: a[:k] for s, a in b.arrays.items()})
    return head, Batch(b.ids[k:], b.labels[k:], {s: a[k:] for s, a in b.arrays.items()})
