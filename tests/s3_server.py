"""A local S3-compatible server (moto's server mode) on 127.0.0.1 for tests and benchmarks.

Nothing leaves the machine: the server runs in this process (a thread) or, for benchmarks
that must not share the GIL with it, in a child process. Stores reach it through the
standard AWS environment variables or explicit fsspec ``storage_options``.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass

from tests.processes import free_port, stop

KEY, SECRET, REGION = "testing", "testing", "us-east-1"


@dataclass(frozen=True)
class S3Server:
    """Where the server listens and how to reach it."""

    endpoint: str
    """``http://127.0.0.1:PORT``"""

    @property
    def storage_options(self) -> dict:
        """fsspec/s3fs options that point at this server explicitly."""
        return {
            "key": KEY,
            "secret": SECRET,
            "client_kwargs": {"endpoint_url": self.endpoint},
        }

    @property
    def env(self) -> dict[str, str]:
        """The standard AWS variables that point any AWS client at this server."""
        return {
            "AWS_ACCESS_KEY_ID": KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ENDPOINT_URL": self.endpoint,
        }

    def make_bucket(self, name: str | None = None) -> str:
        """Create a fresh bucket; returns its name."""
        import s3fs

        name = name or f"b-{uuid.uuid4().hex[:12]}"
        fs = s3fs.S3FileSystem(**self.storage_options, skip_instance_cache=True)
        fs.mkdir(name)
        return name


_shared: S3Server | None = None


def shared_s3_server() -> S3Server:
    """One threaded server per process, started on first use.

    Shared because s3fs caches filesystem objects by their arguments: a store opened
    through the environment alone would keep talking to a server a test already stopped.
    """
    global _shared
    if _shared is None:
        context = threaded_s3_server()
        _shared = context.__enter__()
        atexit.register(context.__exit__, None, None, None)
    return _shared


@contextmanager
def threaded_s3_server():
    """moto's ThreadedMotoServer on a free loopback port, stopped on exit."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield S3Server(f"http://{host}:{port}")
    finally:
        server.stop()


@contextmanager
def process_s3_server(timeout_s: float = 30.0):
    """moto's server in a child process (its own GIL), stopped on exit."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the local moto S3 server did not start") from None
                time.sleep(0.1)
        yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        stop(proc, timeout=10)
