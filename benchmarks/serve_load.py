"""HTTP load on the real server (uvicorn in a subprocess on 127.0.0.1).

Questions: feature lookups per second (JSON and .npy) and predictions per second by id,
with p50/p95/p99 latency, at concurrency 1, 8 and 32; micro-batching on against off in
the same run, on the same store and checkpoint. Lookups are measured with the feature cache
(the default) against the cache turned off (every lookup reads the Zarr store).

The store has real sizes (T=16, Gemma dim 2560 float16, 75 landmarks) and the checkpoint
is an untrained model of the real shape (hidden 256): speed does not depend on weights.
The load generator is an asyncio httpx client with one keep-alive connection per worker;
each cell runs for a fixed time after a warm-up, so the load is bounded.

Live (`/v1/stream`): windows per second and latency per window (last frame sent ->
prediction received) for 1 and 8 concurrent streams on a tiny-random store, against the
baseline a client without the WebSocket has: upload its last T frames as a clip per window.

    python benchmarks/serve_load.py [--quick] [--json FILE]
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import LAYOUT, D, K, Row, T, parser, real_size_schema, report  # noqa: E402
from load_gen import Cell, Request, Server, cpu_seconds, drive  # noqa: E402

from featurestore import create_store  # noqa: E402
from model import HybridASLModel, ModelConfig, save_checkpoint  # noqa: E402

CLASSES = 100
CONCURRENCY = (1, 8, 32)
NPY = "application/x-npy"


# -- fixtures -------------------------------------------------------------------------------
def build(root: Path, videos: int) -> tuple[str, str]:
    """A store of `videos` random videos at real sizes, and an untrained checkpoint for it."""
    labels = {i: f"sign{i:03d}" for i in range(CLASSES)}
    schema = real_size_schema(labels, model_id="bench-encoder")
    url = str(root / "store.zarr")
    rng = np.random.default_rng(0)
    with create_store(url, schema).writer() as w:
        for i in range(videos):
            arrays = {
                "gemma": rng.standard_normal((T, D), dtype=np.float32).astype(np.float16),
                "landmarks": rng.random((T, K, 3), dtype=np.float32),
                "landmark_mask": rng.random((T, 3)) > 0.2,
            }
            w.put(f"v{i:05d}", arrays, label=i % CLASSES, gloss=labels[i % CLASSES], split="test")
    config = ModelConfig.from_layout(LAYOUT, num_classes=CLASSES, gemma_dim=D, num_frames=T)
    ckpt = save_checkpoint(
        root / "model.pt",
        HybridASLModel(config),
        labels=labels,
        encoder=schema.encoder,
        landmark_layout=LAYOUT,
        num_frames=T,
        streams={k: v.to_json() for k, v in schema.streams.items()},
    )
    return url, str(ckpt)


def lookups(ids: list[str], accept: str | None) -> list[Request]:
    headers = {"Accept": accept} if accept else {}
    return [Request("GET", f"/v1/videos/{v}/features/gemma", headers) for v in ids]


def predictions(ids: list[str]) -> list[Request]:
    headers = {"Content-Type": "application/json"}
    return [
        Request("POST", "/v1/predict", headers, json.dumps({"video_ids": [v], "top_k": 5}).encode())
        for v in ids
    ]


def check_responses(url: str, ids: list[str]) -> None:
    """Before timing anything: the requests the load sends get real answers."""
    with httpx.Client(base_url=url) as c:
        r = c.get(f"/v1/videos/{ids[0]}/features/gemma", headers={"Accept": NPY})
        assert np.load(io.BytesIO(r.content)).shape == (T, D), r.text
        assert len(c.get(f"/v1/videos/{ids[0]}/features/gemma").json()["data"]) == T
        r = c.post("/v1/predict", json={"video_ids": [ids[0]], "top_k": 5})
        assert len(r.json()["predictions"][0]["top_k"]) == 5, r.text


def warm_cache(url: str, ids: list[str]) -> None:
    """Read every video once, so cached lookups measure a hot cache (the whole store fits
    the default 256 MB); the uncached server reads Zarr on every request instead."""
    with httpx.Client(base_url=url) as c:
        for vid in ids:
            c.get(f"/v1/videos/{vid}/features/gemma", headers={"Accept": NPY})


def batch_stats(url: str) -> str:
    """Mean videos per forward and model time per forward, from the server's /metrics."""
    text = httpx.get(f"{url}/metrics").text

    def value(name: str) -> float:
        m = re.search(rf"^{name} (\S+)$", text, re.M)
        return float(m.group(1)) if m else 0.0

    n = value("asl_predict_batch_size_count")
    if not n:
        return "no forwards"
    size = value("asl_predict_batch_size_sum") / n
    model_ms = value("asl_model_seconds_sum") / n * 1000
    return f"{n:.0f} forwards, {size:.1f} videos each, model {model_ms:.1f} ms per forward"


# -- live: the /v1/stream WebSocket against re-uploading the window as a clip ------------
LIVE_T, LIVE_EVERY, LIVE_STREAMS = 16, 1, (1, 8)


def build_live(root: Path) -> tuple[str, str, list[bytes], bytes]:
    """A tiny-random store (what a server extracting live frames needs), an untrained
    checkpoint for it, the frames of a synthetic signing clip as JPEGs (320x240, as the
    page sends them), and the last T of them as an H.264 clip (the baseline's upload)."""
    from PIL import Image

    from featurestore.extract import ClipExtractor, synthesize, write_video

    labels = {i: f"sign{i:02d}" for i in range(10)}
    schema = ClipExtractor("tiny-random", num_frames=LIVE_T).schema(labels)
    url = str(root / "live.zarr")
    rng = np.random.default_rng(0)
    with create_store(url, schema).writer() as w:
        for i in range(10):
            arrays = {k: rng.random(v.shape).astype(v.dtype) for k, v in schema.streams.items()}
            w.put(f"l{i:02d}", arrays, label=i, gloss=labels[i], split="test")
    dim = schema.streams["gemma"].shape[1]
    config = ModelConfig.from_layout(
        schema.landmark_layout, num_classes=len(labels), gemma_dim=dim, num_frames=LIVE_T
    )
    ckpt = save_checkpoint(
        root / "live.pt",
        HybridASLModel(config),
        labels=labels,
        encoder=schema.encoder,
        landmark_layout=schema.landmark_layout,
        num_frames=LIVE_T,
        streams={k: v.to_json() for k, v in schema.streams.items()},
    )
    manifest = synthesize(root / "clips", classes=1, per_class=1, frames=48, size=(320, 240))
    import av

    clip = next((manifest.parent / "clips").glob("*.mp4"))
    with av.open(str(clip)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    jpegs = []
    for f in frames:
        buf = io.BytesIO()
        Image.fromarray(f).save(buf, "JPEG", quality=80)
        jpegs.append(buf.getvalue())
    window = write_video(root / "window.mp4", np.stack(frames[-LIVE_T:]))
    return url, str(ckpt), jpegs, window.read_bytes()


async def live_streams(url: str, jpegs: list[bytes], streams: int, seconds: float) -> Cell:
    """`streams` WebSockets, each sending one frame and waiting for the prediction of the
    window it ends (`every=1`; closed loop, so no frame waits and none is dropped: this is
    the server's capacity); latency = frame sent -> its window's prediction received."""
    from websockets.asyncio.client import connect

    cell = Cell()
    ws_url = url.replace("http://", "ws://") + f"/v1/stream?every={LIVE_EVERY}"
    loop = asyncio.get_running_loop()

    async def one(k: int, stop_at: float) -> None:
        async with connect(ws_url, max_size=None) as ws:
            assert json.loads(await ws.recv())["type"] == "ready"
            i = k
            while loop.time() < stop_at:
                for _ in range(LIVE_EVERY):
                    await ws.send(jpegs[i % len(jpegs)])
                    i += 1
                t0 = loop.time()
                m = json.loads(await asyncio.wait_for(ws.recv(), 60))
                cell.sent += 1
                if m["type"] == "prediction" and loop.time() < stop_at:
                    cell.latencies_ms.append((loop.time() - t0) * 1000)
                elif m["type"] != "prediction":
                    cell.errors += 1

    start = loop.time()
    await asyncio.gather(*(one(k, start + seconds) for k in range(streams)))
    cell.seconds = loop.time() - start
    return cell


async def live_uploads(url: str, clip: bytes, clients: int, seconds: float) -> Cell:
    """The baseline: each client uploads its last T frames as a clip per window."""
    cell = Cell()
    loop = asyncio.get_running_loop()

    async def one(stop_at: float) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=120) as c:
            while loop.time() < stop_at:
                t0 = loop.time()
                r = await c.post("/v1/predict/video", files={"file": ("w.mp4", clip, "video/mp4")})
                cell.sent += 1
                if r.status_code == 200 and loop.time() < stop_at:
                    cell.latencies_ms.append((loop.time() - t0) * 1000)
                elif r.status_code != 200:
                    cell.errors += 1

    start = loop.time()
    await asyncio.gather(*(one(start + seconds) for _ in range(clients)))
    cell.seconds = loop.time() - start
    return cell


def wait_uploads_ready(url: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if httpx.get(f"{url}/readyz").json().get("upload") == "ready":
            return
        time.sleep(0.2)
    raise RuntimeError("the live server's encoder did not load")


def run_live(tmp: Path, seconds: float) -> tuple[list[Row], float]:
    """Windows/s and latency per window over the WebSocket against uploads, on one server."""
    store, ckpt, jpegs, clip = build_live(tmp)
    server = Server(store, ckpt, tmp / "live.log", "--max-streams", "8", upload=True)
    rows = []
    try:
        wait_uploads_ready(server.url)
        asyncio.run(live_streams(server.url, jpegs, 1, 1.0))  # warm-up: MediaPipe, encoder
        asyncio.run(live_uploads(server.url, clip, 1, 1.0))
        for n in LIVE_STREAMS:
            o = asyncio.run(live_streams(server.url, jpegs, n, seconds))
            b = asyncio.run(live_uploads(server.url, clip, n, seconds))
            name = f"live c{n}"
            rows.append(
                Row(
                    f"{name} windows",
                    o.rate,
                    b.rate,
                    o.rate / b.rate if b.rate else None,
                    "windows/s",
                )
            )
            for q in (50, 95):
                ov, bv = o.pct(q), b.pct(q)
                rows.append(Row(f"{name} p{q}", ov, bv, bv / ov if ov else None, "ms/window"))
            rows.append(Row(f"{name} errors", o.errors, b.errors, None, "count"))
            print(f"{name}: done", flush=True)
        rss = server.peak_rss_mib()
    finally:
        server.stop()
    return rows, rss


# -- main -----------------------------------------------------------------------------------
def rows_for(name: str, ours: dict[int, Cell], base: dict[int, Cell]) -> list[Row]:
    rows = []
    for c in CONCURRENCY:
        o, b = ours[c], base[c]
        rows.append(
            Row(f"{name} c{c}", o.rate, b.rate, o.rate / b.rate if b.rate else None, "req/s")
        )
        for q in (50, 95, 99):
            ov, bv = o.pct(q), b.pct(q)
            rows.append(Row(f"{name} c{c} p{q}", ov, bv, bv / ov if ov else None, "ms"))
        ov, bv = o.cpu_ms_per_request, b.cpu_ms_per_request
        rows.append(Row(f"{name} c{c} cpu", ov, bv, bv / ov if ov else None, "server CPU ms/req"))
    return rows


#: (what, ours, baseline): the server configurations each comparison runs against.
COMPARISONS = (
    ("lookup npy", "default", "uncached"),
    ("lookup json", "default", "uncached"),
    ("predict", "default", "unbatched"),
)
SERVERS = {
    "default": [],  # micro-batching on, 256 MB feature cache: what asl-serve does by default
    "unbatched": ["--no-micro-batching"],
    "uncached": ["--cache-mb", "0"],
}


def requests_for(what: str, ids: list[str]) -> list[Request]:
    if what == "predict":
        return predictions(ids)
    return lookups(ids, NPY if what == "lookup npy" else None)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--videos", type=int, help="videos in the store (default 1000; quick 256)")
    p.add_argument("--seconds", type=float, help="measured seconds per cell (default 8; quick 2)")
    p.add_argument("--client", choices=["raw", "httpx"], default="raw", help="load generator")
    p.add_argument("--no-live", action="store_true", help="skip the /v1/stream rows")
    args = p.parse_args()
    videos = args.videos or (256 if args.quick else 1000)
    seconds = args.seconds or (2.0 if args.quick else 8.0)
    warmup = 0.5 if args.quick else 1.5
    load_before = os.getloadavg()[0]
    tmp = Path(tempfile.mkdtemp(prefix="serve_load_"))
    servers: dict[str, Server] = {}
    results: dict[tuple[str, str], dict[int, Cell]] = {}
    try:
        store, ckpt = build(tmp, videos)
        ids = [f"v{i:05d}" for i in range(videos)]
        for name, flags in SERVERS.items():
            servers[name] = Server(store, ckpt, tmp / f"{name}.log", *flags)
            check_responses(servers[name].url, ids)
        warm_cache(servers["default"].url, ids)
        # Ours and its baseline back to back, cell by cell, so that both see the same
        # machine (other processes come and go on a shared box).
        for what, ours, base in COMPARISONS:
            for name in (ours, base):
                results[(what, name)] = {}
            for c in CONCURRENCY:
                for name in (ours, base):
                    server = servers[name]
                    before = cpu_seconds(server.proc.pid)
                    cell = asyncio.run(
                        drive(server.url, requests_for(what, ids), c, seconds, warmup, args.client)
                    )
                    cell.server_cpu_s = cpu_seconds(server.proc.pid) - before
                    results[(what, name)][c] = cell
                print(f"{what} c{c}: done", flush=True)
        for name in ("default", "unbatched"):
            print(f"[{name}] {batch_stats(servers[name].url)}")
        rss = {name: s.peak_rss_mib() for name, s in servers.items()}
        for server in servers.values():
            server.stop()
        live_rows, live_rss = [], None
        if not args.no_live:
            live_rows, live_rss = run_live(tmp, max(seconds, 3.0))
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    rows = []
    for what, ours, base in COMPARISONS:
        rows += rows_for(what, results[(what, ours)], results[(what, base)])
    errors = {k: sum(c.errors for c in v.values()) for k, v in results.items()}
    ours_errors = sum(n for (what, name), n in errors.items() if name == "default")
    base_errors = sum(n for (what, name), n in errors.items() if name != "default")
    rows.append(Row("errors", ours_errors, base_errors, None, "count"))
    rows.append(Row("server peak RSS", rss["default"], rss["uncached"], None, "MiB"))
    rows += live_rows
    if live_rss is not None:
        rows.append(Row("live server peak RSS", live_rss, live_rss, None, "MiB"))
    report(
        rows,
        args.json,
        f"serve_load: {videos} videos, {seconds:.0f} s per cell, {args.client} client, "
        f"{os.cpu_count()} CPUs, load average {load_before:.1f} before / {os.getloadavg()[0]:.1f} "
        f"after; lookups = gemma ({T},{D}) float16; ours = asl-serve defaults (micro-batching, "
        "warm 256 MB cache); baseline = --no-micro-batching (predict) / --cache-mb 0 (lookups); "
        "latency and CPU ratios = baseline/ours; live = /v1/stream (tiny-random, T="
        f"{LIVE_T}, a window every {LIVE_EVERY} JPEG frames 320x240) against uploading the "
        "window as an H.264 clip to /v1/predict/video, on the same server",
    )


if __name__ == "__main__":
    main()
