"""Sizing: store bytes, object counts, GPU-hours and epoch read time for WLASL100,
WLASL2000 and a million clips, against the seed's layout (two .npy files per video).

Bytes and objects are not guessed: a real store with the production schema (T=16, gemma
2560 float16, landmarks 75x3 float32, mask 16x3 bool, block size 64) is written to a
temporary folder in both Zarr layouts (default: one chunk per block and stream; sharded:
one chunk per video inside one shard per block) and its files are counted; the sizes are
then scaled by the number of clips. Per-video bytes do not depend on the values (no
compression), so random arrays measure them exactly.

GPU-hours = clips x T / frames-per-second. The default rate is a stated estimate for
gemma-3-4b's vision tower on one H100 (SigLIP so400m at 896 px: 4096 patches x 27 layers,
about 5.5 TFLOP per frame; at 45% of the 989 TFLOP/s bf16 dense peak, about 80 frames/s);
pass ``--frames-per-s`` with a figure measured on your GPU, or ``--extract-json`` with the
output of ``benchmarks/extract.py --json`` to also show the measured CPU tiny-random rate.

Epoch read time = train-split bytes / bandwidth + GET requests x latency / parallel
requests; ours reads one object per block and stream, the seed two files per video.

    python benchmarks/sizing.py [--quick] [--json FILE] [--frames-per-s 80]
        [--bandwidth-mb-s 1000] [--latency-ms 30] [--parallel 16] [--writers 8]
"""

from __future__ import annotations

import io
import json
import math
import os
import sys
import tempfile
from dataclasses import dataclass

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import Row, parser, report  # noqa: E402

from featurestore import StoreSchema, StreamSpec, create_store  # noqa: E402

T, DIM, POINTS, PARTS, BLOCK = 16, 2560, 75, 3, 64
H100_FRAMES_PER_S = 80.0
"""Stated estimate (see the module docstring), not a measurement."""

DATASETS = {  # name -> (clips, clips in the train split)
    "WLASL100": (2038, 1442),
    "WLASL2000": (21083, 14289),
    "1M clips": (1_000_000, 700_000),
}
SOURCE = {  # what populate records per video
    "path": "/data/wlasl/videos/69241.mp4",
    "frame_start": 1,
    "frame_end": -1,
    "num_real_frames": 16,
    "total_frames": 73,
    "frames_used": [1, 73],
    "range_clamped": False,
}


def production_schema() -> StoreSchema:
    return StoreSchema(
        num_frames=T,
        streams={
            "gemma": StreamSpec((T, DIM), "float16"),
            "landmarks": StreamSpec((T, POINTS, 3), "float32"),
            "landmark_mask": StreamSpec((T, PARTS), "bool"),
        },
        encoder={
            "model_id": "google/gemma-3-4b-it",
            "pooling": "mean_soft_tokens",
            "feature_dim": DIM,
            "image_size": 896,
            "dtype": "bfloat16",
        },  # fmt: skip
        landmark_layout={
            "parts": ["pose", "left_hand", "right_hand"],
            "sizes": [33, 21, 21],
            "coords": ["x", "y", "z"],
        },  # fmt: skip
        labels={i: f"gloss{i:04d}" for i in range(100)},
    )


@dataclass
class Layout:
    """Per-video and per-block costs measured from a real store."""

    name: str
    payload_per_video: float
    """Array bytes per video, codec/shard-index overhead included."""
    commit_per_video: float
    objects_per_block: int
    """Chunk or shard objects per block (all streams) plus its commit record."""
    inner_chunks_per_block: int
    """Chunks per block (all streams): inside the shards in the sharded layout."""
    segment_overhead: tuple[int, int]
    """(bytes, objects) of array metadata per segment (one per writer)."""
    store_overhead: tuple[int, int]

    def size(self, clips: int, writers: int) -> tuple[int, int, int]:
        """(bytes, objects, chunks) of a store of ``clips`` written by ``writers`` writers."""
        blocks = math.ceil(clips / BLOCK) + max(0, writers - 1)  # one partial block per writer
        nbytes = clips * (self.payload_per_video + self.commit_per_video)
        nbytes += writers * self.segment_overhead[0] + self.store_overhead[0]
        objects = blocks * self.objects_per_block + writers * self.segment_overhead[1]
        return int(nbytes), objects + self.store_overhead[1], blocks * self.inner_chunks_per_block


def measure(chunk_rows: int | None, blocks: int) -> Layout:
    """Write ``blocks`` full blocks with one writer and classify every file it made."""
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        url = os.path.join(tmp, "s.zarr")
        store = create_store(url, production_schema(), block_size=BLOCK, chunk_rows=chunk_rows)
        n = blocks * BLOCK
        with store.writer() as w:
            for i in range(n):
                arrays = {
                    "gemma": rng.standard_normal((T, DIM)).astype(np.float16),
                    "landmarks": rng.random((T, POINTS, 3), dtype=np.float32),
                    "landmark_mask": rng.random((T, PARTS)) > 0.2,
                }
                w.put(f"{60000 + i:05d}", arrays, label=i % 100, split="train", source=SOURCE)
        sizes = {"chunk": [0, 0], "commit": [0, 0], "segment": [0, 0], "store": [0, 0]}
        for folder, _, files in os.walk(url):
            for f in files:
                rel = os.path.relpath(os.path.join(folder, f), url).split(os.sep)
                kind = (
                    "commit" if rel[0] == "commits"
                    else "chunk" if "c" in rel[3:-1]
                    else "segment" if rel[0] == "segments"
                    else "store"
                )  # fmt: skip
                sizes[kind][0] += os.path.getsize(os.path.join(folder, f))
                sizes[kind][1] += 1
    streams = 3
    return Layout(
        name="sharded (chunk per video)" if chunk_rows else "default (chunk per block)",
        payload_per_video=sizes["chunk"][0] / n,
        commit_per_video=sizes["commit"][0] / n,
        objects_per_block=(sizes["chunk"][1] + sizes["commit"][1]) // blocks,
        inner_chunks_per_block=streams * (BLOCK // (chunk_rows or BLOCK)),
        segment_overhead=tuple(sizes["segment"]),
        store_overhead=tuple(sizes["store"]),
    )


def seed_bytes_per_video() -> int:
    """The seed's two files per video: gemma float32 (T, 2560) and landmarks float32."""
    total = 0
    for shape in ((T, DIM), (T, POINTS, 3)):
        buf = io.BytesIO()
        np.save(buf, np.zeros(shape, np.float32))
        total += buf.getbuffer().nbytes
    return total


def epoch_seconds(nbytes: float, requests: int, args) -> float:
    return nbytes / (args.bandwidth_mb_s * 1e6) + requests * args.latency_ms / 1e3 / args.parallel


def measured_cpu(path: str | None) -> tuple[float | None, float | None]:
    """(frames/s of the whole CPU pipeline, Holistic ms per frame on one core) from
    ``benchmarks/extract.py --json``; (None, None) without it."""
    if not path:
        return None, None
    with open(path) as f:
        rows = {r["name"]: r["ours"] for r in json.load(f)["rows"]}
    rate = rows.get("pipeline")
    return (rate * T if rate else None), rows.get("mediapipe_ms_per_frame")


def human(nbytes: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if nbytes < 1000 or unit == "TB":
            return f"{nbytes:.1f} {unit}"
        nbytes /= 1000
    raise AssertionError


def main() -> None:
    p = parser("Store sizing for WLASL100, WLASL2000 and 1M clips")
    p.add_argument("--frames-per-s", type=float, default=H100_FRAMES_PER_S,
                   help=f"encoder frames/s on one GPU (default {H100_FRAMES_PER_S}: H100 estimate)")  # fmt: skip
    p.add_argument("--extract-json", help="benchmarks/extract.py --json output (CPU rate)")
    p.add_argument("--bandwidth-mb-s", type=float, default=1000.0, help="read bandwidth, MB/s")
    p.add_argument("--latency-ms", type=float, default=30.0, help="per-GET latency (S3: 20-50)")
    p.add_argument("--parallel", type=int, default=16, help="GETs in flight")
    p.add_argument("--writers", type=int, default=8, help="populate workers (segments)")
    args = p.parse_args()

    measure_blocks = 1 if args.quick else 3
    layouts = [measure(None, measure_blocks), measure(1, measure_blocks)]
    ours = layouts[0]
    seed_video = seed_bytes_per_video()
    cpu_rate, holistic_ms = measured_cpu(args.extract_json)

    rows: list[Row] = []
    table = []
    for name, (clips, train) in DATASETS.items():
        key = name.split()[0].lower().replace("1m", "1m_clips")
        nbytes, objects, chunks = ours.size(clips, args.writers)
        _, _, sharded_chunks = layouts[1].size(clips, args.writers)
        blocks = math.ceil(clips / BLOCK) + args.writers - 1
        seed_bytes, seed_objects = clips * seed_video, 2 * clips
        gpu_h = clips * T / args.frames_per_s / 3600
        train_blocks = math.ceil(train / BLOCK)
        ours_epoch = epoch_seconds(train * ours.payload_per_video, train_blocks * 3, args)
        seed_epoch = epoch_seconds(train * seed_video, 2 * train, args)
        rows += [
            Row(f"{key}_store_GB", nbytes / 1e9, seed_bytes / 1e9, seed_bytes / nbytes, "GB"),
            Row(f"{key}_objects", objects, seed_objects, seed_objects / objects, "objects"),
            Row(f"{key}_gpu_hours", gpu_h, None, None, "GPU-h"),
            Row(f"{key}_epoch_read_s", ours_epoch, seed_epoch, seed_epoch / ours_epoch, "s"),
        ]
        extra = []
        if cpu_rate:
            extra.append(f"{clips * T / cpu_rate / 3600:,.1f}")
        if holistic_ms:
            extra.append(f"{clips * T * holistic_ms / 3.6e6:,.1f}")
        table.append([name, f"{clips:,}", human(nbytes), human(seed_bytes), f"{blocks:,}",
                      f"{objects:,}", f"{chunks:,}", f"{blocks * 3:,} / {sharded_chunks:,}",
                      f"{seed_objects:,}", f"{gpu_h:,.2f}", *extra, f"{ours_epoch:,.1f} s",
                      f"{seed_epoch:,.1f} s"])  # fmt: skip

    print_table(table, args, ours, layouts[1], seed_video, cpu_rate, holistic_ms)
    report(rows, args.json, "sizing (ours = Zarr store, baseline = seed's two .npy per video)")


def print_table(table, args, ours: Layout, sharded: Layout, seed_video: int, cpu_rate,
                holistic_ms) -> None:  # fmt: skip
    rate = f"{args.frames_per_s:g} frames/s" + (
        " (H100 estimate)" if args.frames_per_s == H100_FRAMES_PER_S else ""
    )
    print(f"per video: {ours.payload_per_video:,.0f} B arrays + {ours.commit_per_video:,.0f} B "
          f"commit record (sharded layout {sharded.payload_per_video:,.0f} B); "
          f"seed .npy pair {seed_video:,} B")  # fmt: skip
    print(f"block {BLOCK} videos, {args.writers} writers; GPU rate {rate}; read "
          f"{args.bandwidth_mb_s:g} MB/s, {args.latency_ms:g} ms/GET, {args.parallel} in flight\n")  # fmt: skip
    head = ["dataset", "clips", "store", "seed .npy", "blocks", "objects", "chunks",
            "shards / chunks (sharded)", "seed files", "GPU-hours"]  # fmt: skip
    if cpu_rate:
        head.append(f"CPU pipeline hours ({cpu_rate:.0f} f/s)")
    if holistic_ms:
        head.append(f"Holistic core-hours ({holistic_ms:.0f} ms/f)")
    head += ["epoch read", "seed epoch read"]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for cells in table:
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
