"""`asl-serve`: check the store and checkpoint, then run uvicorn.

Every option also reads from its `ASL_*` environment variable (`--batch-max-size` from
`ASL_BATCH_MAX_SIZE`); a flag wins over the variable. Options travel to uvicorn workers as
environment variables, so `--workers N` processes all see the same settings.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

from pydantic import ValidationError

from .loading import Resources, StartupError, open_resources
from .settings import Settings

#: (flag, settings field, type, help); booleans get --flag / --no-flag.
OPTIONS = [
    ("--store", "store", str, "feature store URL"),
    ("--checkpoint", "checkpoint", str, "checkpoint written by asl-train"),
    ("--host", "host", str, "interface to bind (default 127.0.0.1)"),
    ("--port", "port", int, "port (default 8000)"),
    ("--workers", "workers", int, "uvicorn worker processes (default 1)"),
    ("--api-key", "api_key", str, "require this X-API-Key on /v1 (prefer ASL_API_KEY)"),
    ("--device", "device", str, "torch device for model and encoder (default cpu)"),
    ("--micro-batching", "micro_batching", bool, "merge concurrent predictions (default on)"),
    ("--batch-max-size", "batch_max_size", int, "most videos per forward (default 64)"),
    ("--batch-max-wait-ms", "batch_max_wait_ms", float, "batch fill wait (default 2)"),
    ("--max-predict-ids", "max_predict_ids", int, "most ids per request (default 256)"),
    ("--cache-mb", "cache_mb", float, "feature cache size, 0 = off (default 256)"),
    ("--refresh-s", "refresh_s", float, "look for new commits every N s, 0 = never (default 2)"),
    ("--upload", "upload_enabled", bool, "load the encoder, accept uploads (default on)"),
    ("--max-upload-bytes", "max_upload_bytes", int, "largest upload (default 50 MiB)"),
    ("--max-clip-seconds", "max_clip_seconds", float, "longest clip (default 30)"),
    ("--max-upload-pixels", "max_upload_pixels", int, "largest upload frame, pixels (1920*1920)"),
    ("--upload-memory-mb", "upload_memory_mb", float, "MB queued uploads may take (4096)"),
    ("--max-spot-seconds", "max_spot_seconds", float, "longest recording to spot (default 600)"),
    ("--spot-window-s", "spot_window_s", str, "spotting windows, s (0.8,1.2,1.8,2.7)"),
    ("--spot-min-score", "spot_min_score", float, "spotting: a sign's least probability (0.5)"),
    ("--spot-min-hands", "spot_min_hands", float, "spotting: share of frames with hands (0.5)"),
    ("--torch-threads", "torch_threads", int, "torch intra-op threads"),
    ("--max-streams", "max_streams", int, "concurrent /v1/stream connections (default 8)"),
    ("--stream-every", "stream_every", int, "live frames per prediction (default 4)"),
    ("--stream-idle-seconds", "stream_idle_seconds", float, "close a silent stream after (60)"),
    ("--stream-fps", "stream_fps", float, "live frames/s when the client gives none (10)"),
    ("--stream-queue-frames", "stream_queue_frames", int, "live frames waiting at most (64)"),
    ("--stream-finish-seconds", "stream_finish_seconds", float, "decide after N s quiet (1)"),
    ("--allow-writes", "allow_writes", bool, "add takes, train, swap models (default off)"),
    ("--runs", "runs", str, "training runs folder (default: runs/ in a local store)"),
    ("--encoder", "encoder", str, "a new store also keeps this encoder's features"),
    ("--num-frames", "num_frames", int, "T of a new store (default 16)"),
]
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="asl-serve",
        description="Serve feature lookups and sign predictions over HTTP.",
        epilog="Every option can also be set as ASL_<NAME> (e.g. ASL_STORE, ASL_API_KEY).",
    )
    for flag, dest, typ, help_ in OPTIONS:
        if typ is bool:
            p.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, help=help_)
        else:
            p.add_argument(flag, dest=dest, type=typ, help=help_)
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=True)
    return p


def export_settings(args: argparse.Namespace) -> None:
    """Flags become ASL_* variables: the one channel that reaches uvicorn's workers."""
    for _, dest, _, _ in OPTIONS:
        value = getattr(args, dest)
        if value is not None:
            os.environ[f"ASL_{dest.upper()}"] = (
                str(value).lower() if isinstance(value, bool) else str(value)
            )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    export_settings(args)
    try:
        settings = Settings()
        loaded = open_resources(settings)  # refuse a bad pair before binding
    except ValidationError as exc:
        print(f"asl-serve: bad settings:\n{exc}", file=sys.stderr)
        return 2
    except StartupError as exc:
        print(f"asl-serve: {exc}", file=sys.stderr)
        return 2

    import uvicorn

    from .logs import log_config
    from .protocol import CoalescingHttpToolsProtocol

    host = announce(settings, loaded)
    common = dict(
        host=host,
        port=settings.port,
        log_config=log_config(args.log_level),  # API keys cut from every line
        log_level=args.log_level,
        access_log=args.access_log,
        http=CoalescingHttpToolsProtocol,  # a response's head and body in one write
    )
    if settings.workers == 1:
        from .app import create_app

        uvicorn.run(create_app(settings, resources=loaded), **common)
    else:
        # Workers are separate processes: metrics are merged through files.
        own_dir = None
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            own_dir = tempfile.mkdtemp(prefix="asl-metrics-")
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = own_dir
        try:
            uvicorn.run("server.app:app_from_env", factory=True, workers=settings.workers, **common)
        finally:
            if own_dir:
                shutil.rmtree(own_dir, ignore_errors=True)
    return 0


def announce(settings: Settings, loaded: Resources) -> str:
    """Say what this server serves and allows; the host to bind. A server that takes
    writes without an API key listens on this machine only."""
    if loaded.checkpoint is None:
        print("asl-serve: no model yet: add takes and train (POST /v1/train)", file=sys.stderr)
    if not settings.allow_writes:
        return settings.host
    if settings.api_key is None and settings.host not in LOOPBACK:
        print(
            f"asl-serve: writes are on and there is no API key: listening on 127.0.0.1 only, "
            f"not {settings.host} (set ASL_API_KEY to serve other machines)",
            file=sys.stderr,
        )
        return "127.0.0.1"
    guard = "each write needs the API key" if settings.api_key else "no API key: this machine only"
    print(f"asl-serve: writes are on ({guard})", file=sys.stderr)
    return settings.host


if __name__ == "__main__":
    sys.exit(main())
