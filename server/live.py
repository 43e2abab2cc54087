"""One live connection: frames wait in a bounded queue, become feature rows, and feed the
spotter (`spotting.LiveSpotter`, the same windows and decisions as asl-spot), whose
decisions go out as they are made.

Messages sent: `segment` when a sign ends; `prediction` every `every` processed frames
(the running top-k: the newest window the spotter classified); `pause` when no frame has
come for `stream_finish_seconds` and the spotter decided on the frames it held (a burst
then silence still ends in a decision); `error` for a frame that failed (the stream goes
on).

Memory per connection is bounded: at most `stream_queue_frames` frames wait (each at most
`max_frame_bytes`; beyond, the oldest waiting frame is dropped and counted), one frame is
decoded at a time, and the spotter holds the rows of its longest window plus two strides
and the candidates that can still compete.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections import deque
from dataclasses import asdict, dataclass, field

import numpy as np
from fastapi import HTTPException, WebSocket
from PIL import Image
from starlette.concurrency import run_in_threadpool

from featurestore import LANDMARK_MASK_STREAM
from spotting import LiveSpotter, Segment

from .spotter import model_rows
from .state import ServingState

log = logging.getLogger("server")


#: Largest frame accepted, in pixels (a webcam frame is far smaller).
MAX_PIXELS = 1920 * 1920
#: Image formats a frame may be in; Pillow's other decoders are never reached.
FRAME_FORMATS = ("JPEG", "PNG", "WEBP")


class BadFrame(ValueError):
    """A binary message that is not a usable image."""


def decode_frame(data: bytes) -> np.ndarray:
    """JPEG (or PNG, WebP) bytes -> uint8 RGB (H, W, 3); BadFrame for anything else."""
    try:
        with Image.open(io.BytesIO(data), formats=FRAME_FORMATS) as image:
            if image.width * image.height > MAX_PIXELS:
                raise BadFrame(f"frame is {image.width}x{image.height}; at most {MAX_PIXELS} px")
            return np.array(image.convert("RGB"))  # writable: torch takes it as is
    except BadFrame:
        raise
    except Image.DecompressionBombError as exc:  # its header alone is over Pillow's limit
        raise BadFrame(f"frame is too large: {exc}") from None
    except Exception as exc:  # hostile bytes make Pillow's decoders raise all kinds
        raise BadFrame(f"not a JPEG image ({type(exc).__name__}: {exc})") from None


@dataclass
class Session:
    """One connection's state: a bounded queue of frames and the spotter."""

    spotter: LiveSpotter
    every: int
    top_k: int
    queue_limit: int
    visual: str
    """The name the extracted encoder features have (the model reads them as its visual input)."""
    finish_after: float
    """Seconds without a frame after which the spotter decides on what it holds."""
    queue: deque = field(default_factory=deque)
    """(seq, arrival time, JPEG bytes) of the frames waiting, oldest first."""
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    received: int = 0
    processed: int = 0
    dropped: int = 0
    active: float = 0.0
    """Loop time of the last frame received or finished: the idle and quiet clocks start there."""
    working: bool = False
    """A frame is being decoded, extracted or spotted."""

    def offer(self, data: bytes) -> None:
        """The frame waits its turn; when the queue is full, the oldest waiting is dropped."""
        self.received += 1
        if len(self.queue) >= self.queue_limit:
            self.queue.popleft()
            self.dropped += 1
        self.queue.append((self.received, time.perf_counter(), data))
        self.wake.set()

    @property
    def busy(self) -> bool:
        return self.working or bool(self.queue)

    def stats(self) -> dict:
        return {"received": self.received, "processed": self.processed, "dropped": self.dropped}


async def send(ws: WebSocket, session: Session, message: dict) -> None:
    async with session.send_lock:
        await ws.send_json(message)


async def process_frames(ws: WebSocket, state: ServingState, session: Session) -> None:
    """Frames in arrival order; when none has come for `finish_after` seconds and the
    spotter holds frames, its decision on them."""
    loop = asyncio.get_running_loop()
    finish_after = session.finish_after
    while True:
        if not session.queue:
            quiet = session.active + finish_after - loop.time()
            try:
                await asyncio.wait_for(session.wake.wait(), quiet if session.spotter.open else None)
            except TimeoutError:
                if not session.queue and loop.time() >= session.active + finish_after:
                    await finish(ws, session)
                continue
            session.wake.clear()
            continue
        seq, arrived, data = session.queue.popleft()
        session.working = True
        try:
            await process_frame(ws, state, session, seq, arrived, data)
        finally:
            session.working = False
            session.active = loop.time()


async def process_frame(
    ws: WebSocket,
    state: ServingState,
    session: Session,
    seq: int,
    arrived: float,
    data: bytes,
) -> None:
    """One frame into the spotter; the segments it decided, and the running top-k when
    one is due. Any failure becomes an error message for this frame."""
    loop = asyncio.get_running_loop()
    try:
        rgb = await loop.run_in_executor(state.io_executor, decode_frame, data)
        rows = await state.uploads.frame_features(rgb)
    except Exception as exc:
        await send(ws, session, {"type": "error", "frame": seq, "detail": frame_error(exc)})
        return
    session.processed += 1
    batch = {name: a[None] for name, a in model_rows(rows, session.visual).items()}
    try:
        found = await run_in_threadpool(session.spotter.push, batch)
    except Exception as exc:  # one failed frame says why; the stream goes on
        log.exception("live spotting failed")
        detail = f"spotting failed: {type(exc).__name__}: {exc}"
        await send(ws, session, {"type": "error", "frame": seq, "detail": detail})
        return
    for segment in found:
        await send(ws, session, segment_message(segment))
    if session.processed % session.every == 0:
        await send(ws, session, prediction(state, session, rows, seq, arrived))


async def finish(ws: WebSocket, session: Session) -> None:
    """The stream went quiet: decide on every frame held, then say so."""
    try:
        found = await run_in_threadpool(session.spotter.finish)
    except Exception as exc:
        log.exception("live spotting failed")
        detail = f"spotting failed: {type(exc).__name__}: {exc}"
        await send(ws, session, {"type": "error", "detail": detail})
        return
    for segment in found:
        await send(ws, session, segment_message(segment))
    await send(
        ws,
        session,
        {
            "type": "pause",
            "frame": session.received,
            "segments": len(found),
            "spotted_frames": session.spotter.total,
            **session.stats(),
        },
    )


def frame_error(exc: Exception) -> str:
    """What the client is told about a frame that failed (logged when it is ours)."""
    if isinstance(exc, BadFrame):
        return str(exc)
    if isinstance(exc, HTTPException):  # the encoder failed to load meanwhile
        return str(exc.detail)
    log.exception("live frame failed", exc_info=exc)
    return f"frame failed: {type(exc).__name__}: {exc}"


def segment_message(segment: Segment) -> dict:
    return {"type": "segment", **asdict(segment)}


def prediction(
    state: ServingState, session: Session, rows: dict[str, np.ndarray], seq: int, arrived: float
) -> dict:
    """The running top-k: the newest window the spotter classified (none while too few
    hands are in view), and the hands in the newest frame."""
    latest = session.spotter.latest
    top_k: list[dict] = []
    start: int | None = None
    end: int | None = None
    window = 0
    if latest is not None:
        start, end, probs = latest
        window = end - start
        classify = session.spotter.classify
        order = np.lexsort((np.arange(len(probs)), -probs))[: session.top_k]
        top_k = [
            {"label": int(k), "gloss": classify.gloss(int(k)), "prob": float(probs[k])}
            for k in order
        ]
    return {
        "type": "prediction",
        "frame": seq,
        "window": window,
        "window_start": start,
        "window_end": end,
        "top_k": top_k,
        **hands(state, rows),
        **session.stats(),
        "latency_ms": (time.perf_counter() - arrived) * 1000,
    }


def hands(state: ServingState, rows: dict[str, np.ndarray]) -> dict:
    """Whether MediaPipe found each hand in the newest frame (None without landmarks)."""
    layout = state.uploads.layout
    mask = rows.get(LANDMARK_MASK_STREAM)
    if layout is None or mask is None:
        return {"hands_visible": None, "hands": {}}
    found = {
        part: bool(mask[i]) for i, part in enumerate(layout["parts"]) if part.endswith("_hand")
    }
    return {"hands_visible": any(found.values()), "hands": found}


def quiet_seconds(setting: float, fps: float) -> float:
    """How long without a frame ends a stretch of signing: the setting, but never less
    than two frame intervals (a slow client's gaps are not pauses)."""
    return max(setting, 2.0 / fps)
