"""Live recognition over a WebSocket: camera frames in (one JPEG per binary message),
top-k out (JSON text messages) over a sliding window of the last T frames.

Each frame becomes one row of every store stream (the encoder and MediaPipe Holistic, as
uploads are extracted) on the extraction thread, never on the event loop. A connection
holds at most T rows and one waiting frame: a frame that arrives while the one before it
waits replaces it (counted in `dropped`), so a slow model drops old frames instead of
queueing them. Every `every` processed frames the window goes through the model (shared
micro-batcher with the HTTP routes) and a prediction message goes out.

Every frame gets an answer: a frame that fails to decode or to process gets an error
message and the stream goes on. A stream that sends no frame for `stream_idle_seconds` is
closed (1001), freeing its slot; if the frame task itself dies, the stream closes (1011).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import secrets
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from fastapi import APIRouter, HTTPException, WebSocket, WebSocketDisconnect
from PIL import Image
from starlette.websockets import WebSocketState

from featurestore import LANDMARK_MASK_STREAM
from featurestore.sampling import sample_indices

from ..logs import redact
from ..models import NO_MODEL
from ..predictor import PredictJob
from ..state import ServingState

router = APIRouter(tags=["stream"])
log = logging.getLogger("server")

#: Close codes (RFC 6455): a wrong or missing key; busy or not ready (retry later);
#: live recognition cannot run on this server (encoder unavailable), or it failed;
#: no frame for too long.
CLOSE_POLICY = 1008
CLOSE_TRY_LATER = 1013
CLOSE_UNAVAILABLE = 1011
CLOSE_IDLE = 1001
#: A close frame's reason is at most 123 bytes of UTF-8.
MAX_REASON_BYTES = 123
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
    """One connection's state: bounded by T rows and one waiting frame."""

    num_frames: int
    every: int
    top_k: int
    window: deque = field(init=False)
    pending: tuple[int, float, bytes] | None = None
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    received: int = 0
    processed: int = 0
    dropped: int = 0
    active: float = 0.0
    """Loop time of the last frame received or finished: the idle clock starts there."""
    working: bool = False
    """A frame is being decoded, extracted or predicted."""

    def __post_init__(self) -> None:
        self.window = deque(maxlen=self.num_frames)  # (seq, {stream: row})

    def offer(self, data: bytes) -> None:
        """The newest frame waits; the one it replaces is dropped."""
        self.received += 1
        if self.pending is not None:
            self.dropped += 1
        self.pending = (self.received, time.perf_counter(), data)
        self.wake.set()

    @property
    def busy(self) -> bool:
        return self.working or self.pending is not None

    def arrays(self) -> dict[str, np.ndarray]:
        """The window as a batch of one, T frames sampled as a short clip is."""
        idx, _ = sample_indices(len(self.window), self.num_frames)
        rows = [self.window[i][1] for i in idx]
        return {s: np.stack([r[s] for r in rows])[None] for s in rows[0]}

    def stats(self) -> dict:
        return {"received": self.received, "processed": self.processed, "dropped": self.dropped}


def key_problem(ws: WebSocket) -> str | None:
    """The API key arrives as `?api_key=` (browsers cannot set WebSocket headers) or as
    the `X-API-Key` header; None when it is right or the server has none."""
    expected = ws.app.state.settings.api_key
    if expected is None:
        return None
    key = ws.query_params.get("api_key") or ws.headers.get("x-api-key")
    if not key:
        return "missing API key (?api_key= or X-API-Key)"
    if not secrets.compare_digest(key.encode(), expected.get_secret_value().encode()):
        return "wrong API key"
    return None


def int_param(ws: WebSocket, name: str, default: int, low: int, high: int) -> int:
    raw = ws.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        shown = raw if len(raw) <= 20 else raw[:20] + "..."
        raise ValueError(f"{name} must be an integer, got {shown!r}") from None
    if not low <= value <= high:
        raise ValueError(f"{name} must be in {low}..{high}, got {value}")
    return value


def close_reason(detail: str) -> str:
    """`detail` cut to what a close frame carries: 123 bytes of UTF-8, whole characters."""
    return detail.encode()[:MAX_REASON_BYTES].decode("utf-8", "ignore")


async def refuse(ws: WebSocket, code: int, detail: str) -> None:
    """Accept, then say why and close."""
    await ws.accept()
    await say_and_close(ws, code, detail)


async def say_and_close(ws: WebSocket, code: int, detail: str) -> None:
    """Say why in an error message and in the close reason, then close; quietly when the
    client has gone already."""
    detail = redact(detail)
    with contextlib.suppress(WebSocketDisconnect, RuntimeError):
        await ws.send_json({"type": "error", "detail": detail})
        await ws.close(code, close_reason(detail))


@router.websocket("/v1/stream")
async def stream(ws: WebSocket) -> None:
    app = ws.app
    settings = app.state.settings
    state: ServingState | None = app.state.serving
    problem = key_problem(ws)
    if problem:
        return await refuse(ws, CLOSE_POLICY, problem)
    if state is None:
        return await refuse(ws, CLOSE_TRY_LATER, "not ready: the store and model are not loaded")
    if state.models.current is None:
        return await refuse(ws, CLOSE_TRY_LATER, NO_MODEL)
    if state.uploads.status not in ("ready", "loading"):
        detail = f"live recognition is not available: {state.uploads.status}"
        return await refuse(ws, CLOSE_UNAVAILABLE, detail)
    unknown = sorted(set(ws.query_params) - {"api_key", "top_k", "every"})
    try:
        if unknown:
            raise ValueError(f"unknown query parameters {unknown}")
        top_k = int_param(ws, "top_k", 5, 1, settings.max_top_k)
        every = int_param(ws, "every", settings.stream_every, 1, 1000)
    except ValueError as exc:
        return await refuse(ws, CLOSE_POLICY, str(exc))
    if app.state.live_streams >= settings.max_streams:
        detail = f"too many live streams (limit {settings.max_streams}); retry later"
        return await refuse(ws, CLOSE_TRY_LATER, detail)

    app.state.live_streams += 1
    try:
        session = Session(state.store.schema.num_frames, every, top_k)
        session.active = asyncio.get_running_loop().time()
        await ws.accept()
        await ws.send_json(
            {"type": "ready", "num_frames": session.num_frames, "every": every, "top_k": top_k}
        )
        ending = await run_session(ws, state, session)
    finally:
        app.state.live_streams -= 1
    if ending is not None:  # the slot is free before the client learns it may reconnect
        await say_and_close(ws, *ending)


async def run_session(
    ws: WebSocket, state: ServingState, session: Session
) -> tuple[int, str] | None:
    """Receive and process concurrently until the client goes away (None), the stream
    goes idle, or the frame task dies: then the close code and reason to send."""
    worker = asyncio.create_task(process_frames(ws, state, session))
    receiver = asyncio.create_task(receive_frames(ws, state, session))
    try:
        await asyncio.wait((worker, receiver), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (worker, receiver):
            task.cancel()
        # asyncio.wait, not gather: a cancellation of this task stays its own (its message
        # tells anyio's cancel scopes it is theirs), not one of the children's.
        await asyncio.wait((worker, receiver))
    for task in (worker, receiver):  # the frame task first: its death is the news
        exc = None if task.cancelled() else task.exception()
        gone = ws.client_state == WebSocketState.DISCONNECTED
        if exc is None or gone or isinstance(exc, WebSocketDisconnect):
            continue
        log.error("live stream stopped: %s", exc, exc_info=exc)
        return CLOSE_UNAVAILABLE, f"live stream failed: {type(exc).__name__}: {exc}"
    if receiver.cancelled() or receiver.exception() is not None:
        return None  # the client went away
    return receiver.result()


async def send(ws: WebSocket, session: Session, message: dict) -> None:
    async with session.send_lock:
        await ws.send_json(message)


async def receive_frames(
    ws: WebSocket, state: ServingState, session: Session
) -> tuple[int, str] | None:
    """Take frames until the client leaves (None) or sends none for the idle time (the
    close code and reason). Time spent on its last frame is not idle time."""
    idle = state.settings.stream_idle_seconds
    loop = asyncio.get_running_loop()
    # One receive at a time, waited for with a timeout but never cancelled by it: a
    # message that arrives as the time runs out is not lost.
    receiving: asyncio.Future | None = None
    try:
        while True:
            if receiving is None:
                receiving = asyncio.ensure_future(ws.receive())
            timeout = session.active + idle - loop.time()
            done, _ = await asyncio.wait((receiving,), timeout=timeout)
            if not done:
                if not session.busy:
                    return CLOSE_IDLE, f"idle: no frame for {idle:g} s; reconnect to go on"
                session.active = loop.time()
                continue
            message, receiving = receiving.result(), None
            if message["type"] == "websocket.disconnect":
                return None
            await take(ws, state, session, message.get("bytes"))
    finally:
        if receiving is not None:
            receiving.cancel()


async def take(ws: WebSocket, state: ServingState, session: Session, data: bytes | None) -> None:
    """One client message: a frame waits for processing, anything else gets an error."""
    limit = state.settings.max_frame_bytes
    if data is None:
        detail = "send frames as binary messages, one JPEG each"
        await send(ws, session, {"type": "error", "detail": detail})
        return
    session.active = asyncio.get_running_loop().time()
    if len(data) > limit:
        session.received += 1
        detail = f"frame {session.received} is {len(data)} bytes; the limit is {limit}"
        await send(ws, session, {"type": "error", "frame": session.received, "detail": detail})
    else:
        session.offer(data)


async def process_frames(ws: WebSocket, state: ServingState, session: Session) -> None:
    loop = asyncio.get_running_loop()
    while True:
        await session.wake.wait()
        session.wake.clear()
        if session.pending is None:
            continue
        seq, arrived, data = session.pending
        session.pending = None
        session.working = True
        try:
            await process_frame(ws, state, session, seq, arrived, data)
        finally:
            session.working = False
            session.active = loop.time()


async def process_frame(
    ws: WebSocket, state: ServingState, session: Session, seq: int, arrived: float, data: bytes
) -> None:
    """One frame into the window, and a prediction when one is due; any failure becomes
    an error message for this frame."""
    loop = asyncio.get_running_loop()
    try:
        rgb = await loop.run_in_executor(state.io_executor, decode_frame, data)
        rows = await state.uploads.frame_features(rgb)
    except Exception as exc:
        await send(ws, session, {"type": "error", "frame": seq, "detail": frame_error(exc)})
        return
    session.window.append((seq, rows))
    session.processed += 1
    if session.processed % session.every == 0:
        try:
            await predict_window(ws, state, session, seq, arrived)
        except WebSocketDisconnect:
            raise
        except Exception as exc:  # one failed window says why; the stream goes on
            log.exception("live prediction failed")
            detail = f"prediction failed: {type(exc).__name__}: {exc}"
            await send(ws, session, {"type": "error", "frame": seq, "detail": detail})


def frame_error(exc: Exception) -> str:
    """What the client is told about a frame that failed (logged when it is ours)."""
    if isinstance(exc, BadFrame):
        return str(exc)
    if isinstance(exc, HTTPException):  # the encoder failed to load meanwhile
        return str(exc.detail)
    log.exception("live frame failed", exc_info=exc)
    return f"frame failed: {type(exc).__name__}: {exc}"


async def predict_window(
    ws: WebSocket, state: ServingState, session: Session, seq: int, arrived: float
) -> None:
    model = state.models.get()  # the newest model: a stream goes on across swaps
    job = PredictJob(model.predictor, session.top_k, arrays=session.arrays())
    (ranked,) = await state.batcher.submit(job)
    last = session.window[-1][1]
    message = {
        "type": "prediction",
        "frame": seq,
        "first_frame": session.window[0][0],
        "window": len(session.window),
        "top_k": [
            {"label": lab, "gloss": g, "prob": p}
            for lab, g, p in zip(ranked.labels, ranked.glosses, ranked.probs, strict=True)
        ],
        **hands(state, last),
        **session.stats(),
        "latency_ms": (time.perf_counter() - arrived) * 1000,
    }
    await send(ws, session, message)


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
