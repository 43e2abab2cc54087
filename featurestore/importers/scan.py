"""What a format module hands the import run: the ``Scan`` of its SOURCEs, made of ``Item``s
(a cheap listing), each loaded on demand into a ``Loaded`` (per-frame arrays at the source's
own length); ``holistic_frames`` turns per-part landmarks into the store's streams.

A format module is ``scan(sources, *, face, ...) -> Scan``; the run (``core.run_import``)
gives the items ids, splits and labels, resamples them to the store's T and writes them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..layout import FACE_SUBSET, landmark_layout
from ..schema import LANDMARK_MASK_STREAM, LANDMARKS_STREAM

__all__ = ["BadInput", "Item", "Loaded", "Scan", "holistic_frames"]


class BadInput(ValueError):
    """One item cannot be imported; the message names the file and the reason."""


@dataclass
class Item:
    """One sequence to import, as listed by a format's scan (nothing loaded yet)."""

    source: str
    """The SOURCE it comes from, as resolved (recorded per video)."""
    member: str
    """Its place inside the source (``gloss/sequence``, a file path, a video id)."""
    gloss: str
    name: str
    """The sequence's own name (folder, file stem, sequence id)."""
    ref: Any = None
    """Whatever the format needs to load it."""
    frames: int | None = None
    """Its length when the listing already knows it."""
    signer: str | None = None
    split: str | None = None
    """A split fixed by the source (WLASL); None: assigned here."""
    label: int | None = None
    """A label fixed by the source (WLASL); None: assigned from the gloss."""
    video_id: str = ""
    error: str | None = None


@dataclass
class Loaded:
    """One item's arrays at its own length F (frames first), and what to record about it."""

    arrays: dict[str, np.ndarray]
    layout: str
    """The source layout detected (``258``, ``1662``, ``126``, ``543``, ``162``, ``pose``)."""
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def frames(self) -> int:
        return int(next(iter(self.arrays.values())).shape[0])


@dataclass
class Scan:
    """What a format's ``scan`` found in its SOURCEs: the items, how to load one, and what
    the format adds to the store schema beyond the landmark streams."""

    items: list[Item]
    extra_streams: dict[str, tuple[int, str]] = field(default_factory=dict)
    """Stream -> (feature dim, dtype) for (T, D) streams such as ``gemma``."""
    encoder: dict[str, Any] = field(default_factory=dict)
    landmarks: bool = True
    failures: dict[str, str] = field(default_factory=dict)
    """Files that are not sequences at all (a stray non-.npy file), by path."""
    load: Callable[[Item], Loaded] | None = None
    count_frames: Callable[[Item], int] | None = None
    """Reads an item's length when the listing does not know it (for the default T)."""
    gloss_in_id: bool = True
    """False where the sequence name is unique by itself (Kaggle's sequence_id)."""
    labels: dict[int, str] = field(default_factory=dict)
    """Labels fixed by the source (WLASL's class indices), kept even for failed videos."""
    sources: list[str] | None = None
    """The sources as items name them, where a format resolves SOURCE (train.csv -> folder)."""
    close: Callable[[], None] | None = None
    """Releases open sources (zip handles) when the run ends."""


def holistic_frames(
    parts: dict[str, np.ndarray],
    present: dict[str, np.ndarray],
    face: bool,
    where: str,
) -> dict[str, np.ndarray]:
    """Per-part (F, n, 3) coordinates and (F,) presence -> the store's landmark streams.

    ``parts`` may lack any part (it is then missing in every frame); ``face`` is the full
    468-point mesh, cut to ``FACE_SUBSET`` when the store keeps a face. NaN or inf in a
    present part is bad input; absent parts become zeros with their mask bit off.
    """
    layout = landmark_layout(face)
    frames = next(iter(parts.values())).shape[0]
    points = np.zeros((frames, sum(layout["sizes"]), 3), np.float32)
    mask = np.zeros((frames, len(layout["parts"])), bool)
    offset = 0
    for p, (name, size) in enumerate(zip(layout["parts"], layout["sizes"], strict=True)):
        xyz = parts.get(name)
        if xyz is not None:
            if name == "face":
                xyz = xyz[:, list(FACE_SUBSET)]
            here = np.asarray(present[name], bool)
            values = xyz[here]
            if not np.isfinite(values).all():
                t = int(
                    np.flatnonzero(here)[np.flatnonzero(~np.isfinite(values).all(axis=(1, 2)))[0]]
                )
                raise BadInput(f"{where}: NaN or inf in {name} of frame {t}, a part marked present")
            points[here, offset : offset + size] = values
            mask[:, p] = here
        offset += size
    return {LANDMARKS_STREAM: points, LANDMARK_MASK_STREAM: mask}
