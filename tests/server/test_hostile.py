"""Hostile and careless clients against the real `asl-serve` on loopback: a clip with huge
frames, a decompression-bomb frame, a close reason that would not fit, a stream that sends
nothing, and API keys in URLs, which must never reach the log."""

from __future__ import annotations

import io
import json
import os
import re
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import av
import httpx
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.processes import stop
from tests.server.builders import build_checkpoint, build_store, upload_schema

ROOT = Path(__file__).resolve().parents[2]
KEY = "hostile-test-key-5f3a9c"
pytestmark = pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="peak memory is read from /proc"
)


@dataclass
class Server:
    proc: subprocess.Popen
    log: Path
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stream(self, query: str = "") -> ClientConnection:
        url = f"ws://127.0.0.1:{self.port}/v1/stream?api_key={KEY}{query}"
        return connect(url, open_timeout=30)

    def peak_rss_mb(self) -> float:
        """VmHWM: the most resident memory the server process has had so far."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


def start(root: Path, name: str, **env: str) -> Server:
    log = root / f"{name}.log"
    with log.open("w") as out:  # the child keeps its own handle
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "server.cli",
                "--store",
                str(root / "store.zarr"),
                "--checkpoint",
                str(root / "model.pt"),
                "--port",
                "0",
            ],  # fmt: skip
            cwd=ROOT,
            env={**os.environ, "ASL_API_KEY": KEY, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return Server(proc, log)


def wait_ready(server: Server, timeout: float = 180) -> None:
    """The port uvicorn logs (we ask for any free one), then uploads ready (encoder loaded)."""
    deadline = time.monotonic() + timeout
    while not server.port:
        found = re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", server.log.read_text())
        if found:
            server.port = int(found.group(1))
        elif server.proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError("asl-serve did not start:\n" + server.log.read_text())
        time.sleep(0.1)
    while httpx.get(server.url + "/readyz").json().get("upload") != "ready":
        assert time.monotonic() < deadline, "uploads never became ready"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Two servers, started together: one as configured by default, one whose streams
    go idle after a second, with a single stream slot."""
    root = tmp_path_factory.mktemp("hostile")
    store = build_store(root / "store.zarr", n=6, schema=upload_schema())
    build_checkpoint(root / "model.pt", store.schema)
    main = start(root, "main")
    idle = start(root, "idle", ASL_STREAM_IDLE_SECONDS="1", ASL_MAX_STREAMS="1")
    try:
        wait_ready(main)
        wait_ready(idle)
        yield {"main": main, "idle": idle, "root": root}
    finally:
        stop(main.proc, 20)
        stop(idle.proc, 20)


def h264(side: int, frames: int) -> bytes:
    """A raw H.264 stream of black `side` x `side` frames (its header says the size)."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="h264") as out:
        options = {"preset": "ultrafast", "tune": "zerolatency"}
        stream = out.add_stream("libx264", rate=25, options=options)
        stream.width = stream.height = side
        stream.pix_fmt = "yuv420p"
        black = np.zeros((side * 3 // 2, side), np.uint8)
        frame = av.VideoFrame.from_ndarray(black, format="yuv420p")
        for i in range(frames):
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return buf.getvalue()


def upload(server: Server, data: bytes, name: str) -> httpx.Response:
    return httpx.post(
        server.url + "/v1/predict/video",
        files={"file": (name, data, "application/octet-stream")},
        headers={"X-API-Key": KEY},
        timeout=120,
    )


def test_huge_frames_are_refused_before_decoding_and_memory_stays_flat(servers):
    server = servers["main"]
    huge = h264(8192, 2)  # 200 KB; decoded, 2 frames would take ~3.5 GB (issue 24)
    ordinary = h264(64, 10)
    assert upload(server, ordinary, "warm-up.h264").status_code == 200
    before = server.peak_rss_mb()
    r = upload(server, huge, "huge.h264")
    assert r.status_code == 413, r.text
    assert "8192x8192" in r.json()["detail"]
    grown = server.peak_rss_mb() - before  # refused from the header: no frame decoded
    assert grown < 64, f"peak memory grew by {grown:.0f} MB"  # one 8192^2 frame: 96 MB
    # A header that lies: small frames, then 8192x8192 ones. The decoder itself refuses
    # them, and the clip is what decoded before. What it may cost is the one frame that
    # gives the lie away (96 MB, when the decoder has written it before we see it), never
    # the 3.5 GB of converting and keeping the frames.
    r = upload(server, ordinary + huge, "grows.h264")
    assert r.status_code in (200, 422), r.text
    grown = server.peak_rss_mb() - before
    assert grown < 128, f"peak memory grew by {grown:.0f} MB"


def png_bomb(side: int = 30000) -> bytes:
    """A one-colour side x side PNG (1 bit a pixel) of about 100 KB, written row by row."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    row = bytes(1 + (side + 7) // 8)  # the filter byte, then the row's bits
    packer = zlib.compressobj(9)
    data = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


def jpeg(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (48, 64, 3), np.uint8)
    buf = io.BytesIO()
    av.VideoFrame.from_ndarray(pixels, format="rgb24").to_image().save(buf, "JPEG")
    return buf.getvalue()


def messages(ws: ClientConnection, kind: str, count: int) -> list[dict]:
    """The next `count` messages of `kind` (an error message fails, unless asked for)."""
    out = []
    while len(out) < count:
        m = json.loads(ws.recv(timeout=60))
        if m["type"] == "error" and kind != "error":
            raise AssertionError(m)
        if m["type"] == kind:
            out.append(m)
    return out


def test_a_decompression_bomb_frame_gets_an_error_then_predictions(servers):
    bomb = png_bomb()
    assert len(bomb) < 1024 * 1024  # under the frame size limit: it reaches the decoder
    with servers["main"].stream("&every=1") as ws:
        messages(ws, "ready", 1)
        ws.send(bomb)
        (error,) = messages(ws, "error", 1)
        assert error["frame"] == 1 and "too large" in error["detail"]
        ws.send(jpeg(1))
        ws.send(jpeg(2))
        frames = [m["frame"] for m in messages(ws, "prediction", 1)]
        while frames[-1] < 3:  # the second may replace the first while it waits
            frames += [m["frame"] for m in messages(ws, "prediction", 1)]
        assert frames[-1] == 3


def test_a_long_non_ascii_parameter_closes_with_1008(servers):
    with servers["main"].stream("&top_k=" + quote("é" * 100)) as ws:
        (error,) = messages(ws, "error", 1)
        assert "top_k must be an integer" in error["detail"]
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=30)
    assert closed.value.rcvd.code == 1008  # not 1006: the reason was cut to fit
    assert "top_k must be an integer" in closed.value.rcvd.reason
    assert len(closed.value.rcvd.reason.encode()) <= 123


def test_an_idle_stream_is_closed_and_its_slot_reused(servers):
    server = servers["idle"]  # idle after 1 s, one stream slot
    with server.stream() as ws:
        messages(ws, "ready", 1)
        with pytest.raises(ConnectionClosed) as closed:
            while True:  # the server says why, then closes
                ws.recv(timeout=60)
    assert closed.value.rcvd.code == 1001
    assert "idle: no frame for 1 s" in closed.value.rcvd.reason
    with server.stream("&every=1") as ws:  # the only slot is free again
        messages(ws, "ready", 1)
        ws.send(jpeg(0))
        assert messages(ws, "prediction", 1)[0]["frame"] == 1


def test_keys_never_reach_the_log(servers):
    server = servers["main"]
    with httpx.Client(base_url=server.url, timeout=30) as c:
        assert c.get("/v1/info", headers={"X-API-Key": KEY}).status_code == 200
        assert c.get(f"/healthz?api_key={KEY}").status_code == 200  # careless, but logged
        r = c.get(f"/v1/videos?API%5Fkey={KEY}")
        assert r.status_code in (401, 422) and KEY not in r.text
        r = c.get(f"/v1/videos/api_key={KEY}", headers={"X-API-Key": KEY})
        assert r.status_code == 404 and KEY not in r.text
    with server.stream() as ws:
        messages(ws, "ready", 1)
    wrong = f"ws://127.0.0.1:{server.port}/v1/stream?api_key=not-{KEY}"
    with connect(wrong, open_timeout=30) as ws:
        assert "wrong API key" in messages(ws, "error", 1)[0]["detail"]
    log = server.log.read_text()
    assert KEY not in log
    assert "/healthz?api_key=*** HTTP/1.1" in log  # the access log still shows the request
    assert '"WebSocket /v1/stream?api_key=***" [accepted]' in log
    assert "Traceback" not in log and "ProtocolError" not in log
