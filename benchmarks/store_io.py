"""Store I/O against the seed's layout (one .npy per stream per video in a folder).

Questions: write throughput, random get latency (p50/p99), streaming a whole store in
batches of 64 (samples/s, GB/s) against the .npy folder and against a plain in-memory copy
of the same bytes (the ceiling on this machine). Warm page cache for reads; each write starts
after an ``os.sync()`` so no earlier write's dirty pages throttle it.

    python benchmarks/store_io.py [--quick] [--json FILE]
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import D, K, Row, T, parser, real_size_schema, report  # noqa: E402

from featurestore import create_store, open_store  # noqa: E402


def make_video(rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        "gemma": rng.standard_normal((T, D), dtype=np.float32).astype(np.float16),
        "landmarks": rng.random((T, K, 3), dtype=np.float32),
        "landmark_mask": rng.random((T, 3)) > 0.2,
    }


def schema():
    return real_size_schema({0: "a"})


def write_npy(folder: str, videos: dict) -> float:
    os.sync()  # no earlier write's dirty pages left to throttle this one
    t = time.perf_counter()
    for vid, arrays in videos.items():
        for name, arr in arrays.items():
            np.save(os.path.join(folder, f"{vid}_{name}.npy"), arr)
    return time.perf_counter() - t


def write_store(url: str, videos: dict) -> float:
    os.sync()
    t = time.perf_counter()
    store = create_store(url, schema())
    with store.writer() as w:
        for vid, arrays in videos.items():
            w.put(vid, arrays, label=0)
    return time.perf_counter() - t


def npy_get(folder: str, vid: str) -> dict:
    return {
        n: np.load(os.path.join(folder, f"{vid}_{n}.npy"))
        for n in ("gemma", "landmarks", "landmark_mask")
    }


def latencies(fn, ids: list[str]) -> tuple[float, float]:
    times = []
    for vid in ids:
        t = time.perf_counter()
        fn(vid)
        times.append((time.perf_counter() - t) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def stream_npy(folder: str, ids: list[str], batch: int) -> int:
    n = 0
    for i in range(0, len(ids), batch):
        items = [npy_get(folder, v) for v in ids[i : i + batch]]
        stacked = {k: np.stack([it[k] for it in items]) for k in items[0]}
        n += len(stacked["gemma"])
    return n


def stream_store(url: str, batch: int) -> int:
    store = open_store(url)
    return sum(len(b) for b in store.iter_batches(batch_size=batch))


def stream_memory(arrays: dict[str, np.ndarray], batch: int) -> int:
    n = 0
    total = len(arrays["gemma"])
    for i in range(0, total, batch):
        copies = {k: a[i : i + batch].copy() for k, a in arrays.items()}
        n += len(copies["gemma"])
    return n


def timed(fn, *args, repeat: int = 3) -> float:
    """Best of ``repeat`` runs after one warm-up (warm page cache)."""
    fn(*args)
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    args = parser(__doc__).parse_args()
    n = 300 if args.quick else 2000
    rng = np.random.default_rng(0)
    videos = {f"{i:06d}": make_video(rng) for i in range(n)}
    nbytes = sum(a.nbytes for a in videos["000000"].values()) * n
    tmp = tempfile.mkdtemp(prefix="store_io_")
    rows: list[Row] = []
    try:
        npy_dir = os.path.join(tmp, "npy")
        os.makedirs(npy_dir)
        t_npy = write_npy(npy_dir, videos)
        ids = list(videos)
        pick = [
            ids[i] for i in np.random.default_rng(1).integers(0, n, 300 if args.quick else 1000)
        ]
        for _ in range(2):  # warm
            latencies(lambda v: npy_get(npy_dir, v), pick[:50])
        npy_p50, npy_p99 = latencies(lambda v: npy_get(npy_dir, v), pick)
        t_npy_stream = timed(stream_npy, npy_dir, ids, 64)
        memory = {k: np.stack([v[k] for v in videos.values()]) for k in videos[ids[0]]}
        t_mem = timed(stream_memory, memory, 64)
        del memory
        for backend, suffix in (("zarr", ".zarr"), ("hdf5", ".h5")):
            url = os.path.join(tmp, f"store{suffix}")
            t_w = write_store(url, videos)
            store = open_store(url)
            latencies(lambda v, s=store: s.get(v), pick[:50])
            p50, p99 = latencies(lambda v, s=store: s.get(v), pick)
            t_s = timed(stream_store, url, 64)
            rows += [
                Row(f"{backend} write", n / t_w, n / t_npy, t_npy / t_w, "videos/s"),
                Row(f"{backend} get p50", p50, npy_p50, npy_p50 / p50, "ms"),
                Row(f"{backend} get p99", p99, npy_p99, npy_p99 / p99, "ms"),
                Row(
                    f"{backend} stream", n / t_s, n / t_npy_stream, t_npy_stream / t_s, "samples/s"
                ),
                Row(
                    f"{backend} stream GB/s",
                    nbytes / t_s / 1e9,
                    nbytes / t_npy_stream / 1e9,
                    t_npy_stream / t_s,
                    "GB/s",
                ),
                Row(
                    f"{backend} stream vs mem",
                    nbytes / t_s / 1e9,
                    nbytes / t_mem / 1e9,
                    t_mem / t_s,
                    "GB/s (baseline = in-memory copy)",
                ),
            ]
            shutil.rmtree(url)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report(
        rows,
        args.json,
        f"store_io: {n} videos of ({T},{D}) float16 + ({T},{K},3) float32, {nbytes / 1e6:.0f} MB",
    )


if __name__ == "__main__":
    main()
