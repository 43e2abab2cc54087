"""The app factory: routers, middleware, error handlers, and loading in lifespan."""

from __future__ import annotations

import asyncio
import gc
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from featurestore import FeatureStore
from model import Checkpoint

from .errors import install_error_handlers
from .limits import BodyLimitMiddleware
from .loading import Resources, check_match, open_resources
from .metrics import Metrics, MetricsMiddleware
from .routes import health, info, page, predict, spot, stream, takes, train, videos
from .security import require_api_key
from .settings import Settings
from .state import build_state
from .validation import reject_unknown_query

#: Bodies other than uploads are small JSON.
JSON_BODY_LIMIT = 1024 * 1024
#: Room for the multipart framing and the form fields around the file.
MULTIPART_OVERHEAD = 16 * 1024

DESCRIPTION = """
Feature lookups and sign predictions over a feature store and a trained checkpoint.

* `GET /v1/videos/{id}/features/{stream}`: JSON, or `.npy` bytes with
  `Accept: application/x-npy` (`numpy.load(io.BytesIO(r.content))`).
* `POST /v1/predict`: classify stored videos by id (micro-batched).
* `POST /v1/predict/video`: classify an uploaded clip. Its frames may have at most
  `ASL_MAX_UPLOAD_PIXELS` pixels (default 1920x1920), checked from the header before
  decoding (413 otherwise); each upload takes at most a bounded amount of memory, and no
  more uploads wait than fit in `ASL_UPLOAD_MEMORY_MB` (503 otherwise). See /v1/info.

* `POST /v1/spot`: find and name the signs in a long recording (a video, a `.pose`, a
  `.npy` of landmark vectors): `asl-spot --json`'s document `{fps, frames, segments}`,
  from the model served when the request came. At most `ASL_MAX_SPOT_SECONDS` (600).

* `GET /v1/videos?split=&gloss=&q=&offset=&limit=`: list stored videos (search, paging).
* `GET /v1/model/report`: the `asl-eval` report beside the checkpoint (confusion matrix).
* WebSocket `/v1/stream?api_key=&top_k=5&every=4&fps=10`: live recognition (not listed
  below: OpenAPI has no WebSocket routes). Send camera frames as binary messages, one
  JPEG each, at `fps` frames a second. They run through the spotter of `/v1/spot`. First
  message: `{"type": "ready", "num_frames": T, "fps", "window_frames", ...}`. Then:
  `{"type": "segment", "start_frame", "end_frame", "start_s", "end_s", "gloss", "label",
  "score", "top_k"}` whenever a sign ends (frames counted from the stream's first
  processed frame); every `every` processed frames `{"type": "prediction", "frame": n,
  "top_k": [{label, gloss, prob}], "window", "window_start", "window_end",
  "hands_visible": bool, "hands": {...}, "received", "processed", "dropped",
  "latency_ms"}` (the newest window the spotter classified; `top_k` is empty while too
  few hands are in view); and when no frame has come for `ASL_STREAM_FINISH_SECONDS`
  (default 1) the spotter decides on what it holds: its last segments, then
  `{"type": "pause", "segments": n, ...}`. Every frame gets an answer: a frame that
  cannot be decoded or processed gets `{"type": "error", "frame": n, "detail": ...}`
  and the stream goes on. Up to `ASL_STREAM_QUEUE_FRAMES` (64) frames wait; beyond, the
  oldest waiting one is dropped (`dropped`). A stream that sends no frame for
  `ASL_STREAM_IDLE_SECONDS` (default 60) is closed with 1001, freeing its slot: send
  frames, or reconnect. Before any close the server sends an error message saying why;
  the close reason says it too (cut to 123 bytes). Close codes: 1001 idle; 1008 missing
  or wrong key, bad parameters; 1013 too many live streams (`ASL_MAX_STREAMS`) or not
  ready; 1011 no encoder for live frames, or the stream failed on the server.
* `GET /`: a web page over these routes (try a sign, live, browse the store).

Teaching (with `--allow-writes`; otherwise 403): `POST /v1/videos` adds a take (multipart
`file` = a clip or a `.npy`/`.pose` landmark sequence, `gloss`, optional `video_id`,
`split`, `signer`; 201 once committed), `DELETE /v1/videos/{id}` removes one,
`GET /v1/glosses` counts takes per gloss and split. `POST /v1/train` (JSON options, `{}` =
the defaults for a small set) starts a job (202 `{job_id}`; 409 while one runs);
`GET /v1/train/{job_id}` follows it epoch by epoch; `DELETE` cancels it. When a job is done
its model is served at once (requests in flight finish on the old one);
`POST /v1/model/rollback` returns to the previous model. Until a model exists, predictions
answer 503 "no model yet".

Errors are JSON `{"detail": ...}`. When the server has an API key, `/v1` routes need the
`X-API-Key` header (the WebSocket takes it as `?api_key=`; asl-serve's logs show it as
`api_key=***`).
"""


def create_app(
    settings: Settings | None = None,
    *,
    store: FeatureStore | None = None,
    checkpoint: Checkpoint | None = None,
    resources: Resources | None = None,
) -> FastAPI:
    """Build the service. Give loaded `store` and `checkpoint` objects (or `resources`, as
    `open_resources` loads them), or let lifespan load them from `settings.store` /
    `settings.checkpoint` (or `ASL_*` variables).

    A checkpoint whose encoder fingerprint, T or streams differ from the store's is refused
    at start-up with a message naming what differs.
    """
    settings = settings or Settings()
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if resources is not None:
            loaded = resources
        elif store is not None and checkpoint is not None:
            check_match(store, checkpoint)
            loaded = Resources(store, checkpoint, settings.checkpoint)
        else:
            loaded = await asyncio.to_thread(open_resources, settings)
        state = build_state(settings, loaded, metrics)
        await state.start()
        _freeze_startup_objects()
        app.state.serving = state
        try:
            yield
        finally:
            gc.unfreeze()
            app.state.serving = None
            await state.stop()

    app = FastAPI(
        title="Sign recognition service",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.serving = None

    install_error_handlers(app)
    # Declared only when a key is set, so the OpenAPI schema says what the server does.
    secured = [Depends(require_api_key)] if settings.api_key else []
    checks = [*secured, Depends(reject_unknown_query)]
    # Routes are matched in order, router by router: the busiest first (lookups,
    # predictions), which takes 5-10% off a cached lookup's time in Python.
    routers = (videos.router, predict.build_router(settings), spot.build_router(settings))
    for router in (*routers, info.router, takes.build_router(settings), train.router):
        app.include_router(router, dependencies=checks)
    app.include_router(health.router)
    app.include_router(stream.router)  # checks its key itself: ?api_key= or X-API-Key
    app.state.live_streams = 0
    app.include_router(page.router)
    app.mount("/static", page.PageFiles(directory=page.STATIC_DIR), name="static")

    upload_limit = settings.max_upload_bytes + MULTIPART_OVERHEAD
    app.add_middleware(
        BodyLimitMiddleware,
        default_limit=JSON_BODY_LIMIT,
        limits={
            "/v1/predict/video": upload_limit,
            "/v1/spot": upload_limit,
            "/v1/videos": upload_limit,
        },
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: sees every response
    return app


def app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory server.app:app_from_env` (settings from ASL_*)."""
    return create_app(Settings())


def _freeze_startup_objects() -> None:
    """Keep what start-up made (torch, the model, the index, ...) out of the cyclic GC.

    Its full collections scanned all of them every few seconds under load, 60-130 ms each
    with the event loop stalled: most of the p99 of predictions and JSON
    lookups at 32 concurrent clients (benchmarks/serve_load.py). Frozen objects are still
    freed by reference counting; only cycles among them wait for shutdown, which thaws them.
    """
    gc.collect()
    gc.freeze()
