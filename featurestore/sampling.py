"""Which frames of a clip to keep: T indices spread uniformly over a WLASL frame range.

Decoding, the importers (resampling to the store's T) and the server's live streams all
sample the same way, so this sits on the store's floor."""

from __future__ import annotations

import numpy as np

__all__ = ["resolve_range", "sample_indices"]


def resolve_range(total_frames: int, frame_start: int = 1, frame_end: int = -1) -> tuple[int, int]:
    """The effective 1-indexed inclusive range inside a clip of ``total_frames`` frames.

    WLASL ranges are 1-indexed and inclusive; ``frame_end=-1`` means the last frame. An end
    past the clip is clamped (WLASL's annotations often overshoot by a few frames); a start
    below 1 is clamped to 1. A start past the last frame leaves nothing to sample and raises.
    """
    if total_frames < 1:
        raise ValueError(f"clip has no frames (total_frames={total_frames})")
    start = max(1, int(frame_start))
    end = total_frames if frame_end == -1 or frame_end > total_frames else int(frame_end)
    if start > total_frames:
        raise ValueError(
            f"frame range starts at frame {frame_start}, past the clip's last frame {total_frames}"
        )
    if end < start:
        raise ValueError(f"frame range {frame_start}..{frame_end} is empty")
    return start, end


def sample_indices(
    total_frames: int, num_frames: int, frame_start: int = 1, frame_end: int = -1
) -> tuple[np.ndarray, int]:
    """0-based indices of ``num_frames`` frames sampled uniformly in the range, and the real count.

    The first and last frames of the range are kept (only the first when T is 1). A range shorter than
    ``num_frames`` keeps every frame and pads by repeating the last one; the second value is
    then the range length (how many of the returned indices are distinct real frames).
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    start, end = resolve_range(total_frames, frame_start, frame_end)
    length = end - start + 1
    if length >= num_frames:
        idx = np.rint(np.linspace(start - 1, end - 1, num_frames)).astype(np.int64)
        return idx, num_frames
    idx = np.concatenate(
        [np.arange(start - 1, end, dtype=np.int64), np.full(num_frames - length, end - 1)]
    )
    return idx, length
