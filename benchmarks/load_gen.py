"""The load side of benchmarks/serve_load.py: `asl-serve` in a subprocess, and a load
generator (raw keep-alive HTTP/1.1 or httpx) that counts latencies, errors and the server's
CPU per request. No measurement lives here; the script that asks the questions does.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


# -- the server -----------------------------------------------------------------------------
class Server:
    """`asl-serve` in a subprocess; the port is whatever free one uvicorn bound."""

    def __init__(self, store: str, ckpt: str, log: Path, *flags: str, upload: bool = False) -> None:
        self.log = log
        cmd = [sys.executable, "-m", "server.cli", "--store", store, "--checkpoint", ckpt]
        cmd += ["--port", "0", "--no-access-log", *flags]
        cmd += [] if upload else ["--no-upload"]
        with open(log, "w") as out:
            self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{self._wait_for_port()}"

    def _wait_for_port(self, timeout: float = 120) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", self.log.read_text())
            if m:
                return int(m.group(1))
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.proc.kill()
        raise RuntimeError("server did not start:\n" + self.log.read_text())

    def peak_rss_mib(self) -> float:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+)", status).group(1)) / 1024

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


# -- the load generator ---------------------------------------------------------------------
@dataclass
class Cell:
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0
    sent: int = 0
    """Requests sent in the whole cell, warm-up included (for CPU per request)."""
    server_cpu_s: float = 0.0
    """CPU time the server process used during the whole cell."""

    @property
    def cpu_ms_per_request(self) -> float:
        return self.server_cpu_s / self.sent * 1000 if self.sent else float("nan")

    @property
    def rate(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else float("nan")


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes | None = None

    def wire(self, host: str) -> bytes:
        """The HTTP/1.1 bytes, built once per request kind, not once per send."""
        lines = [f"{self.method} {self.path} HTTP/1.1", f"Host: {host}"]
        lines += [f"{k}: {v}" for k, v in self.headers.items()]
        if self.body is not None:
            lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + (self.body or b"")


class RawConnection:
    """A minimal keep-alive HTTP/1.1 client (Content-Length bodies only, which is what the
    server sends). httpx spends more CPU per request than the server does on this 2-core
    machine (measured 1.4-8 ms against 0.5-1 ms), so with it the benchmark would measure
    the client; `--client httpx` still runs it for comparison."""

    def __init__(self, url: str) -> None:
        hostport = url.split("//", 1)[1]
        self.host, port = hostport.rsplit(":", 1)
        self.port = int(port)
        self.hostport = hostport
        self.reader = self.writer = None

    async def __aenter__(self):
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(self, *exc):
        self.writer.close()

    async def send(self, wire: bytes) -> tuple[int, bytes]:
        self.writer.write(wire)
        head = await self.reader.readuntil(b"\r\n\r\n")
        m = CONTENT_LENGTH.search(head)
        if m is None:
            raise ValueError("response without Content-Length")
        body = await self.reader.readexactly(int(m.group(1)))
        return int(head[9:12]), body


CONTENT_LENGTH = re.compile(rb"(?i)\r\ncontent-length:\s*(\d+)")


async def drive(
    url: str, requests: list[Request], concurrency: int, seconds: float, warmup: float, client: str
) -> Cell:
    """`concurrency` workers, one keep-alive connection each, send back-to-back requests
    (drawn at random from `requests`) for `warmup + seconds`; only the requests that start
    after the warm-up count."""
    cell = Cell()
    loop = asyncio.get_running_loop()
    host = url.split("//", 1)[1]
    wires = [r.wire(host) for r in requests]

    async def raw_worker(rng, measure_from, stop_at) -> None:
        async with RawConnection(url) as conn:
            while (t0 := loop.time()) < stop_at:
                try:
                    status, _ = await conn.send(wires[rng.integers(len(wires))])
                except (OSError, ValueError, asyncio.IncompleteReadError):
                    status = 0
                record(t0, loop.time(), status, measure_from)
                if status == 0:
                    return

    async def httpx_worker(rng, measure_from, stop_at) -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as c:
            while (t0 := loop.time()) < stop_at:
                r = requests[rng.integers(len(requests))]
                try:
                    resp = await c.request(r.method, r.path, headers=r.headers, content=r.body)
                    status = resp.status_code
                except httpx.HTTPError:
                    status = 0
                record(t0, loop.time(), status, measure_from)

    def record(t0: float, t1: float, status: int, measure_from: float) -> None:
        cell.sent += 1
        if t0 >= measure_from:
            if status == 200:
                cell.latencies_ms.append((t1 - t0) * 1000)
            else:
                cell.errors += 1

    worker = raw_worker if client == "raw" else httpx_worker
    start = loop.time()
    measure_from, stop_at = start + warmup, start + warmup + seconds
    await asyncio.gather(
        *(worker(np.random.default_rng(i), measure_from, stop_at) for i in range(concurrency))
    )
    cell.seconds = loop.time() - measure_from
    return cell


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
