"""Live recognition over a WebSocket: camera frames in (one JPEG per binary message), the
signs found and a running top-k out (JSON text messages).

Each frame becomes one row of every store stream (the encoder and MediaPipe Holistic, as
uploads are extracted) on the extraction thread, never on the event loop, and goes to
the spotter that asl-spot and `POST /v1/spot` run (`server/live.py`): a `segment`
message when a sign ends, a `prediction` every `every` frames, a `pause` when the client
has sent nothing for `stream_finish_seconds` and the spotter decided on what it held.

Every frame gets an answer: a frame that fails to decode or to process gets an error
message and the stream goes on. A stream that sends no frame for `stream_idle_seconds` is
closed (1001), freeing its slot; if the frame task itself dies, the stream closes (1011).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import secrets

from fastapi import APIRouter, HTTPException, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from spotting import LiveSpotter

from ..live import Session, process_frames, quiet_seconds, send
from ..logs import redact
from ..models import NO_MODEL
from ..spotter import live_stride, served_classifier, spot_config
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
#: Query parameters a stream takes.
PARAMS = {"api_key", "top_k", "every", "fps"}


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


def float_param(ws: WebSocket, name: str, default: float, low: float, high: float) -> float:
    raw = ws.query_params.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        shown = raw if len(raw) <= 20 else raw[:20] + "..."
        raise ValueError(f"{name} must be a number, got {shown!r}") from None
    if not (math.isfinite(value) and low <= value <= high):
        raise ValueError(f"{name} must be in {low:g}..{high:g}, got {raw[:20]}")
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
    unknown = sorted(set(ws.query_params) - PARAMS)
    try:
        if unknown:
            raise ValueError(f"unknown query parameters {unknown}")
        top_k = int_param(ws, "top_k", 5, 1, settings.max_top_k)
        every = int_param(ws, "every", settings.stream_every, 1, 1000)
        fps = float_param(ws, "fps", settings.stream_fps, 1, 60)
    except ValueError as exc:
        return await refuse(ws, CLOSE_POLICY, str(exc))
    try:
        classify = served_classifier(state)  # the model served now, for this connection
    except HTTPException as exc:
        return await refuse(ws, CLOSE_TRY_LATER, str(exc.detail))
    if app.state.live_streams >= settings.max_streams:
        detail = f"too many live streams (limit {settings.max_streams}); retry later"
        return await refuse(ws, CLOSE_TRY_LATER, detail)

    app.state.live_streams += 1
    try:
        config = spot_config(
            settings, fps, classify.num_frames, None, live_stride(fps), top_k=top_k
        )
        session = Session(
            LiveSpotter(classify, fps, config),
            every,
            top_k,
            settings.stream_queue_frames,
            state.uploads.visual,
            quiet_seconds(settings.stream_finish_seconds, fps),
        )
        session.active = asyncio.get_running_loop().time()
        await ws.accept()
        await ws.send_json(
            {
                "type": "ready",
                "num_frames": classify.num_frames,
                "every": every,
                "top_k": top_k,
                "fps": fps,
                "window_frames": list(config.window_frames),
                "stride": config.stride,
                "finish_seconds": session.finish_after,
            }
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
