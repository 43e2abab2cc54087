"""The CPU stage on Ray: one task per video decodes its clip and runs Holistic on it.

Every CPU task worker imports this module (and the packages above it), so only decoding
and Holistic are imported here: torch and transformers, needed by the encoder actors and
the driver alone, would cost each task worker about 6 s and 220 MB more.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import ray

from .. import stages
from ..decode import Clip
from ..holistic import LandmarkExtractor

if TYPE_CHECKING:
    from ...manifest import ManifestEntry

__all__ = ["Decoded", "decode_task"]


@dataclass
class Decoded:
    """One decoded clip, with landmarks when asked: what a CPU task hands an encoder actor."""

    clip: Clip | None = None
    landmarks: np.ndarray | None = None
    mask: np.ndarray | None = None
    error: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    node: str = ""
    """Id of the node the task ran on."""


_holistic: dict[bool, LandmarkExtractor] = {}  # per worker process: Holistic loads in ~1 s


def decode_task(entry: ManifestEntry, num_frames: int, landmarks: bool, face: bool) -> Decoded:
    """Decode one clip and run Holistic on it; errors come back as values, never raised."""
    out = Decoded(node=ray.get_runtime_context().get_node_id())
    start = time.perf_counter()
    clip, out.error = stages.decode(entry, num_frames)
    out.seconds["decode"] = time.perf_counter() - start
    if clip is None:
        return out
    out.clip = clip
    if landmarks:
        start = time.perf_counter()
        try:
            if face not in _holistic:
                _holistic[face] = LandmarkExtractor(face=face)
            out.landmarks, out.mask = _holistic[face].extract(clip.frames)
        except Exception as exc:
            out.error = f"landmarks: {entry.path}: {exc}"
        out.seconds["landmarks"] = time.perf_counter() - start
    return out
