"""What an uploaded clip's header says before a frame is decoded, and the most memory its
extraction can take.

Decoding is what costs memory: the decoder's pictures, then the T sampled frames as RGB,
all proportional to the frame size. The header gives that size (and the pixel format) for
the stream that will be decoded, so a clip too large is refused before decoding anything,
and the upload queue can be bounded in bytes: each upload counted at the most it can take.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import av
from fastapi import HTTPException

if TYPE_CHECKING:
    from featurestore.extract import DecodeError

MB = 1024 * 1024
#: Decoded pictures a decoder holds at most: FFmpeg's H.264 decoder keeps up to 36
#: (16 references, reordering, the one being decoded); HEVC 32; VP8, VP9 and AV1 fewer.
DECODER_PICTURES = 36
#: RGB frames alive besides the T kept: the reformatted frame, its array, a rotated copy.
SPARE_RGB_FRAMES = 3
#: Opening and demuxing a clip (codec tables, I/O buffers), whatever its frame size.
CLIP_OVERHEAD = 32 * MB
#: Bytes per pixel when the header names no pixel format: the widest (4 planes, 16 bits).
WIDEST_PIXEL = 8
#: What cameras and browsers record: 8-bit 4:2:0, 1.5 bytes per pixel.
COMMON_PIXEL = 1.5


@dataclass(frozen=True)
class ClipHeader:
    """The decoded stream's frame size and pixel format, and its length."""

    width: int
    height: int
    pix_fmt: str | None
    picture_bytes: int
    """One decoded picture in the decoder's pixel format."""
    seconds: float

    @property
    def pixels(self) -> int:
        return self.width * self.height


def extraction_bytes(pixels: int, picture_bytes: float, num_frames: int) -> int:
    """The most memory extracting one clip takes: the decoder's pictures, the T kept RGB
    frames and a few in flight, and a fixed overhead."""
    rgb = 3 * pixels
    return int(
        DECODER_PICTURES * picture_bytes + (num_frames + SPARE_RGB_FRAMES) * rgb + CLIP_OVERHEAD
    )


def upload_peak_bytes(max_pixels: int, num_frames: int) -> int:
    """The most one upload may take: a clip at the pixel limit, 8-bit 4:2:0. A clip in a
    wider format (10-bit, 4:4:4) fits in it only at a smaller frame size."""
    return extraction_bytes(max_pixels, COMMON_PIXEL * max_pixels, num_frames)


def probe_clip(path: str, max_pixels: int) -> ClipHeader:
    """The header of the first video stream (the one decoded); 413 when its frames are
    over `max_pixels`, 422 when it is not a video. No frame is decoded here, save one
    that opening a container may decode to learn its format (held to the limit too)."""
    from featurestore.extract import DecodeError, open_clip

    try:
        with open_clip(path, max_pixels) as container:
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            if width * height == 0:
                raise HTTPException(422, "not a decodable video: no frame size in its header")
            fmt = stream.codec_context.format
            seconds = stream_seconds(container, stream)
    except DecodeError as exc:
        raise decode_refusal(exc, path) from None
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        detail = without_path(str(exc), path)
        raise HTTPException(422, f"not a decodable video: {detail}") from None
    return ClipHeader(
        width, height, fmt.name if fmt else None, picture_bytes(fmt, width * height), seconds
    )


def decode_refusal(exc: DecodeError, path: str) -> HTTPException:
    """413 for frames over the limit, 422 for anything else that does not decode."""
    if exc.reason == "too_large":
        return HTTPException(413, f"clip {exc.detail}")
    return HTTPException(422, f"not a decodable video: {without_path(exc.detail, path)}")


def picture_bytes(fmt: av.VideoFormat | None, pixels: int) -> int:
    """Bytes of one picture in `fmt` (the header's size), each component rounded up to
    whole bytes as decoders store them; the widest format when the header names none."""
    if fmt is None or not fmt.components:
        return WIDEST_PIXEL * pixels
    return sum(math.ceil(c.bits / 8) * c.width * c.height for c in fmt.components)


def stream_seconds(container: av.container.InputContainer, stream: av.VideoStream) -> float:
    """Length of the stream that will be decoded, from its own packets: their time span, or
    their count at its frame rate when that is longer (a file can under-report its times;
    demuxing is cheap, decoding is not). Not the container's duration: that is the
    longest stream's, and only this one is decoded."""
    rate = float(stream.average_rate or stream.guessed_rate or 0) or 25.0
    packets, first, end = 0, None, None
    for packet in container.demux(stream):
        if not packet.size:
            continue
        packets += 1
        if packet.pts is not None:
            first = packet.pts if first is None else min(first, packet.pts)
            last = packet.pts + (packet.duration or 0)
            end = last if end is None else max(end, last)
    span = 0.0
    if first is not None and end is not None and stream.time_base:
        span = float((end - first) * stream.time_base)
    return max(span, packets / rate)


def without_path(message: str, path: str) -> str:
    """An error without our temp file's path: the client only needs the reason."""
    return message.replace(f"'{path}'", "upload").replace(path, "upload")
