"""Decode a clip once with PyAV and keep only the T sampled frames, upright, as RGB."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from ..sampling import resolve_range, sample_indices

__all__ = [
    "Clip",
    "DecodeError",
    "decode_clip",
    "count_frames",
    "frame_rate",
    "iter_frames",
    "open_clip",
]

#: Decoders check a frame's size with its width rounded up to their stride alignment (up
#: to 64 pixels), so their limit leaves room for that.
STRIDE_ALIGN = 64
#: Opening a container may decode a frame to learn its format, before the header's size
#: can be checked: that decoder is held to this many times the limit.
PROBE_SLACK = 4


class DecodeError(ValueError):
    """A clip that cannot be read: missing, empty, not a video, or without decodable frames.

    ``reason`` is a short category for summaries: ``missing``, ``empty``, ``not_video``,
    ``no_frames``, ``bad_range`` or ``too_large`` (frames over a pixel limit); the message
    names the file.
    """

    def __init__(self, path: str | Path, reason: str, detail: str):
        super().__init__(f"{path}: {detail}")
        self.path = str(path)
        self.reason = reason
        self.detail = detail

    def __reduce__(self):  # picklable across processes despite the 3-argument constructor
        return (type(self), (self.path, self.reason, self.detail))


@dataclass(frozen=True)
class Clip:
    """T frames sampled from one clip."""

    frames: np.ndarray
    """uint8 (T, H, W, 3) RGB, already rotated as the container's display matrix asks."""
    num_real_frames: int
    """How many of the T frames are distinct real frames (the rest repeat the last one)."""
    total_frames: int
    """Frames in the whole clip."""
    frame_start: int
    """Effective first frame of the sampled range (1-indexed, inclusive)."""
    frame_end: int
    """Effective last frame of the sampled range (1-indexed, inclusive; clamped to the clip)."""


def open_clip(path: str | Path, max_pixels: int | None = None) -> av.container.InputContainer:
    """The container of a clip with a video stream; DecodeError if it has none.

    With ``max_pixels``, its first video stream (the one decoded) is checked against that
    many pixels (width x height) from the header, before a frame is decoded (reason
    ``too_large``), and its decoder then refuses frames larger than the header's (a stream
    can change size midway), so decoding memory stays bounded.
    """
    path = Path(path)
    if not path.is_file():
        raise DecodeError(path, "missing", "file not found")
    if path.stat().st_size == 0:
        raise DecodeError(path, "empty", "empty file (0 bytes)")
    probe = {} if max_pixels is None else {"max_pixels": str(PROBE_SLACK * max_pixels)}
    try:
        container = av.open(str(path), mode="r", options=probe)  # every stream's decoder
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise DecodeError(path, "not_video", f"not a readable video ({exc})") from None
    if not container.streams.video:
        container.close()
        raise DecodeError(path, "not_video", "no video stream")
    if max_pixels is not None:
        codec = container.streams.video[0].codec_context
        width, height = codec.width, codec.height
        if width * height > max_pixels:
            container.close()
            detail = f"frames are {width}x{height}; the limit is {max_pixels} pixels"
            raise DecodeError(path, "too_large", detail)
        aligned = -(-width // STRIDE_ALIGN) * STRIDE_ALIGN * height
        codec.options = {"max_pixels": str(max(max_pixels, aligned))}
    return container


def count_frames(path: str | Path, max_pixels: int | None = None) -> int:
    """Frames in the clip, counted from its packets (cheap: demuxing does not decode).

    Container metadata (``stream.frames``) is absent in WebM and wrong in some files, so
    the packet count is the number sampling relies on.
    """
    path = Path(path)
    with open_clip(path, max_pixels) as container:
        stream = container.streams.video[0]
        try:
            return sum(1 for packet in container.demux(stream) if packet.size)
        except av.FFmpegError as exc:
            raise DecodeError(path, "not_video", f"unreadable packets ({exc})") from None


def _upright(frame: av.VideoFrame, size: tuple[int, int] | None) -> np.ndarray:
    if size is None:
        rgb = frame.to_ndarray(format="rgb24")
    else:
        rgb = frame.to_ndarray(format="rgb24", width=size[0], height=size[1])
    quarter_turns = round((frame.rotation or 0) / 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, quarter_turns)) if quarter_turns else rgb


def _decode_indices(
    path: Path, wanted: np.ndarray, max_pixels: int | None
) -> tuple[np.ndarray | None, dict[int, int], int]:
    """Decode the clip front to back, converting only the wanted frames; also count frames.

    The wanted frames go straight into one array (row per distinct index, in order), so
    the clip's frames exist once, not also as a list to stack. Returns that array (None
    when nothing decoded), the rows filled by frame index, and the frames decoded.
    """
    keep = sorted(set(int(i) for i in wanted))
    slot = {index: row for row, index in enumerate(keep)}
    out: np.ndarray | None = None
    filled: dict[int, int] = {}
    size = None
    decoded = 0
    with open_clip(path, max_pixels) as container:
        stream = container.streams.video[0]
        try:
            for frame in container.decode(stream):
                if decoded in slot:
                    if size is None:  # later frames follow the first one's size
                        size = (frame.width, frame.height)
                    rgb = _upright(frame, size)
                    if out is None:
                        out = np.empty((len(keep), *rgb.shape), np.uint8)
                    out[slot[decoded]] = rgb
                    filled[decoded] = slot[decoded]
                decoded += 1
                if decoded > keep[-1]:
                    break
        except av.FFmpegError:
            pass  # a damaged tail: keep what decoded, the caller re-samples if short
    return out, filled, decoded


def decode_clip(
    path: str | Path,
    num_frames: int = 16,
    frame_start: int = 1,
    frame_end: int = -1,
    max_pixels: int | None = None,
) -> Clip:
    """Sample ``num_frames`` frames uniformly inside the WLASL range of one clip.

    One decoding pass: the frame count comes from demuxing (no decoding), then frames are
    decoded in order and only the sampled ones converted to RGB. Only when a damaged file
    decodes fewer frames than it has packets is it decoded a second time, re-sampled over
    the frames that really decode. ``max_pixels``: refuse (``too_large``) a clip whose
    header gives larger frames, and stop at a frame larger than that (a damaged tail).
    """
    path = Path(path)
    total = count_frames(path, max_pixels)
    if total == 0:
        raise DecodeError(path, "no_frames", "no video frames")
    for _ in range(2):
        try:
            idx, real = sample_indices(total, num_frames, frame_start, frame_end)
        except ValueError as exc:
            raise DecodeError(path, "bad_range", str(exc)) from None
        kept, filled, decoded = _decode_indices(path, idx, max_pixels)
        if kept is not None and len(filled) == len(kept):
            start, end = resolve_range(total, frame_start, frame_end)
            rows = [filled[int(i)] for i in idx]
            # Distinct indices fill the array in order: it is the clip, no copy.
            frames = kept if rows == list(range(len(kept))) else kept[rows]
            return Clip(frames, real, total, start, end)
        if decoded == 0:
            break
        total = decoded
    raise DecodeError(path, "no_frames", "no decodable frames")


def frame_rate(path: str | Path) -> float:
    """Frames a second the container declares (25 where it declares none)."""
    path = Path(path)
    with open_clip(path) as container:
        stream = container.streams.video[0]
        return float(stream.average_rate or stream.guessed_rate or 0) or 25.0


def iter_frames(
    path: str | Path, fps: float | None = None, max_pixels: int | None = None
) -> Iterator[np.ndarray]:
    """Every frame of a long recording in order, upright RGB, one at a time (memory does not
    grow with its length); with ``fps``, about that many a second (never more than it has);
    with ``max_pixels``, frames held to that size as `open_clip` holds them.

    A damaged tail ends the frames; a file that is missing or not a video raises DecodeError.
    """
    path = Path(path)
    rate = frame_rate(path) if fps else 0.0
    step = 1.0 / fps if fps and fps < rate else 0.0
    due, size, index = 0.0, None, 0
    with open_clip(path, max_pixels) as container:
        stream = container.streams.video[0]
        try:
            for frame in container.decode(stream):
                at = frame.time if frame.time is not None else index / (rate or 25.0)
                index += 1
                if step and at + 1e-6 < due:
                    continue
                due = (due if due else at) + step
                if size is None:  # later frames follow the first one's size
                    size = (frame.width, frame.height)
                yield _upright(frame, size)
        except av.FFmpegError:
            return
