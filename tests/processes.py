"""Child processes in the tests: a free local port to give a server, a stop that cannot
hang, and a bulk run held at a known point so a test can signal it without a race."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from featurestore._test_hold import HOLD_ENV

__all__ = ["free_port", "hold_env", "interruptible", "stop", "wait_for_hold"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM, then SIGKILL if ``proc`` has not exited within ``timeout`` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def interruptible() -> None:
    """`preexec_fn` for a child a test will Ctrl-C: a shell that runs the tests in the
    background (`make test &`) ignores SIGINT, its children inherit that, and Python then
    never raises KeyboardInterrupt. The child takes SIGINT as a terminal's Ctrl-C again."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def hold_env(videos: int, marker: Path) -> dict[str, str]:
    """The environment for a child bulk run (populate, add-features, import) that stops
    and waits for a signal once it has handed ``videos`` videos to its writer."""
    return {**os.environ, HOLD_ENV: f"{videos}:{marker}"}


def wait_for_hold(proc: subprocess.Popen, marker: Path, timeout: float = 120.0) -> None:
    """Return once the child holds (it created ``marker``); fail if it ends first."""
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"the run ended ({proc.returncode}) before its hold: {err!r}")
        assert time.monotonic() < deadline, f"the run did not reach its hold in {timeout}s"
        time.sleep(0.05)
