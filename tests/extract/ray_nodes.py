"""A real Ray cluster of several nodes on this machine, for tests: ``ray start --head`` and
``ray start --address`` processes (each with a share of the CPUs) reached at 127.0.0.1.

Each node runs ``ray start --block`` in a process group of its own; teardown ends those
groups (SIGTERM, then SIGKILL), so no Ray process outlives the test and a Ray someone else
runs on the machine is left alone (``ray stop`` would end every Ray of this user).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from tests.processes import free_port

RAY = str(Path(sys.executable).with_name("ray"))
ENV = {
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",  # loopback test cluster; Ray >= 2.5x turns tokens on otherwise
}


def _start(args: list[str], log: Path, env: dict, deadline: float) -> subprocess.Popen:
    out = log.open("w")
    proc = subprocess.Popen(
        [RAY, "start", *args, "--block", "--disable-usage-stats"],
        stdout=out,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,  # its own process group: teardown ends exactly this node
    )
    while "Ray runtime started" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"ray start failed or hung:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)
    return proc


def _stop(proc: subprocess.Popen) -> None:
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        end = time.monotonic() + wait
        while time.monotonic() < end:
            try:
                os.killpg(proc.pid, 0)  # anything of the group still alive?
            except ProcessLookupError:
                proc.wait()
                return
            time.sleep(0.2)
    proc.wait(timeout=5)


@contextmanager
def ray_nodes(cpus: list[int], timeout_s: float = 120):
    """Yields ``127.0.0.1:PORT`` of a cluster with one node per entry of ``cpus``."""
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray's socket paths
    env = {**os.environ, **ENV}
    port = free_port()
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    procs: list[subprocess.Popen] = []
    try:
        for i, n in enumerate(cpus):
            where = (
                ["--head", f"--port={port}", "--include-dashboard=false"]
                if i == 0
                else [f"--address={address}"]
            )
            args = [*where, "--node-ip-address=127.0.0.1", f"--num-cpus={n}", "--num-gpus=0",
                    f"--temp-dir={temp}", f"--dashboard-agent-listen-port={free_port()}"]  # fmt: skip
            procs.append(_start(args, temp / f"node{i}.log", env, deadline))
        yield address
    finally:
        for proc in reversed(procs):
            _stop(proc)
        shutil.rmtree(temp, ignore_errors=True)
