"""Extraction throughput: our pipeline against the seed's way of populating features.

The seed (SEED.md) populates in two scripts run one after the other, each reading every
video with OpenCV and seeking to each sampled frame: ``preprocess_landmarks.py`` runs
MediaPipe Holistic frame by frame, then ``preprocess_gemma_features.py`` calls the
encoder once per frame. The baseline here does exactly that, in one process.

Ours: PyAV decodes each clip once in a thread pool, Holistic runs in ``--workers``
processes, the encoder batches the frames of several videos per forward pass, and the
three stages overlap (``featurestore.extract.populate``).

Rows (videos/s; ratio = ours / seed-style): ``decode``, ``landmarks``, ``encoder``,
``pipeline`` (ours without its start-up, reported as ``populate_startup``); CPU seconds
per video for ``landmarks_cpu`` and ``pipeline_cpu`` (ratio = seed-style / ours: these do
not move when other programs share the cores, wall-clock numbers do); then
``pipeline_vs_slowest_stage`` (target >= 0.8) and MediaPipe's cost per frame.
Synthetic clips (``featurestore synth``), tiny-random encoder, CPU. Ours and the seed's
way alternate over ``--rounds`` chunks of the clips, so on a shared machine both see
the same load.

    python benchmarks/extract.py [--quick] [--json FILE] [--clips 64] [--workers N]
    python benchmarks/extract.py --wlasl DIR [--subset nslt_100.json] [--clips N]

Synthetic clips default to WLASL-like lengths and sizes (72 frames at 256x256; quick: 48
at 192x192): the seed's cost of seeking grows with both.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(__file__))
from common import Row, parser, report  # noqa: E402

from featurestore import create_store  # noqa: E402
from featurestore.extract import (  # noqa: E402
    ClipExtractor,
    LandmarkExtractor,
    LandmarkPool,
    decode_clip,
    load_encoder,
    populate,
    read_manifest,
    read_wlasl,
    sample_indices,
    synthesize,
)


def seed_decode(path, num_frames: int) -> np.ndarray:
    """The seed's reader: OpenCV, one seek per sampled frame, BGR -> RGB."""
    cap = cv2.VideoCapture(str(path))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    frames = []
    for i in sample_indices(total, num_frames)[0]:
        cap.set(cv2.CAP_PROP_POS_FRAMES, int(i))
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return np.stack(frames)


def seed_landmarks(holistic: LandmarkExtractor, frames: np.ndarray):
    """Holistic frame by frame in the calling process (these clips have no padding frames,
    so ``extract`` does exactly the seed's per-frame work)."""
    return holistic.extract(frames)


def seed_encode(encoder, frames: np.ndarray) -> np.ndarray:
    """One encoder call per frame."""
    return np.concatenate([encoder.encode(f[None]) for f in frames])


def timed(fn) -> np.ndarray:
    """(wall seconds, CPU seconds) spent in ``fn``: this process's CPU, plus the CPU spent
    elsewhere (landmark workers) when ``fn`` returns that as a float."""
    wall, cpu = time.perf_counter(), time.process_time()
    extra = fn()
    own = time.process_time() - cpu
    return np.array([time.perf_counter() - wall, own + (extra if isinstance(extra, float) else 0)])


def interleaved(ours, seed, chunks) -> tuple[np.ndarray, np.ndarray]:
    """Summed (wall, CPU) seconds of ``ours(chunk)`` and ``seed(chunk)`` over the chunks,
    alternating which goes first: on a shared machine both then see the same load."""
    total = {"ours": np.zeros(2), "seed": np.zeros(2)}
    for i, chunk in enumerate(chunks):
        order = [("ours", ours), ("seed", seed)]
        for name, fn in order if i % 2 == 0 else order[::-1]:
            total[name] += fn(chunk)
    return total["ours"], total["seed"]


def measure_decode(chunks, num_frames: int, threads: int):
    with ThreadPoolExecutor(threads) as pool:
        return interleaved(
            lambda paths: timed(
                lambda: list(pool.map(lambda p: decode_clip(p, num_frames), paths))
            ),
            lambda paths: timed(lambda: [seed_decode(p, num_frames) for p in paths]),
            chunks,
        )


def measure_landmarks(chunks, workers: int):
    with LandmarkPool(workers) as pool, LandmarkExtractor() as holistic:
        pool.warm_up()
        holistic.extract(chunks[0][0][:1])  # load the graph outside the timing

        def ours(clips):
            results = [f.result() for f in [pool.submit(c) for c in clips]]
            return float(sum(r[3] for r in results))  # the workers' CPU seconds

        return interleaved(
            lambda clips: timed(lambda: ours(clips)),
            lambda clips: timed(lambda: [seed_landmarks(holistic, c) for c in clips]),
            chunks,
        )


def measure_encoder(encoder, chunks):
    encoder.encode_videos(chunks[0][:2])  # warm-up
    per_forward = max(1, encoder.batch_size // len(chunks[0][0]))

    def ours(clips):
        groups = [clips[i : i + per_forward] for i in range(0, len(clips), per_forward)]
        return timed(lambda: [encoder.encode_videos(g) for g in groups])

    return interleaved(
        ours,
        lambda clips: timed(lambda: [seed_encode(encoder, c) for c in clips]),
        chunks,
    )


def seed_pipeline(store, entries, encoder, num_frames: int) -> None:
    """Landmarks script, then Gemma script, each decoding every clip; then the writes."""
    landmarks = {}
    with LandmarkExtractor() as holistic:
        for e in entries:
            landmarks[e.video_id] = seed_landmarks(holistic, seed_decode(e.path, num_frames))
    gemma = {e.video_id: seed_encode(encoder, seed_decode(e.path, num_frames)) for e in entries}
    with store.writer() as w:
        for e in entries:
            points, mask = landmarks[e.video_id]
            arrays = {"gemma": gemma[e.video_id], "landmarks": points, "landmark_mask": mask}
            w.put(e.video_id, arrays, split=e.split, source={"path": str(e.path)})


def measure_pipeline(tmp, chunks, encoder, num_frames: int, workers: int):
    """populate() with a loaded encoder against the seed's scripts, chunk by chunk.

    Ours is timed without its start-up (landmark workers loading MediaPipe, store checks),
    as the per-stage numbers are; the start-up is reported on its own."""
    runs = []

    def ours(entries):
        url = os.path.join(tmp, "ours.zarr")
        s = populate(
            url, entries, encoder=encoder, num_frames=num_frames, workers=workers, progress=False
        )
        assert s.done == len(entries), s.format()
        runs.append(s)
        return np.array([s.elapsed_s - s.startup_s, s.cpu_s])

    extractor = ClipExtractor(encoder=encoder, num_frames=num_frames, landmarks=True)
    seed_store = create_store(os.path.join(tmp, "seed.zarr"), extractor.schema({0: "x"}))
    ours_t, seed_t = interleaved(
        ours,
        lambda entries: timed(lambda: seed_pipeline(seed_store, entries, encoder, num_frames)),
        chunks,
    )
    return ours_t, seed_t, runs


def _entries(args, tmp: str):
    if args.wlasl:
        entries, _ = read_wlasl(args.wlasl, args.subset)
        entries = [e for e in entries if e.error is None][: args.clips]
        return entries, f"{len(entries)} WLASL clips from {args.wlasl}"
    clips_n = args.clips or (16 if args.quick else 64)
    frames, size = (48, (192, 192)) if args.quick else (72, (256, 256))
    classes = 8
    manifest = synthesize(
        os.path.join(tmp, "clips"),
        classes=classes,
        per_class=-(-clips_n // classes),
        frames=frames,
        size=size,
    )
    entries = read_manifest(manifest)[:clips_n]
    return entries, f"{len(entries)} synthetic clips of {frames} frames at {size[0]}x{size[1]}"


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--clips", type=int, help="how many clips (default 64; quick 16)")
    p.add_argument("--workers", type=int, default=os.cpu_count(), help="landmark processes")
    p.add_argument("--num-frames", type=int, default=16)
    p.add_argument("--wlasl", metavar="DIR", help="real clips from a WLASL folder instead")
    p.add_argument("--subset", help="WLASL subset file (with --wlasl)")
    p.add_argument(
        "--rounds",
        type=int,
        help="chunks that alternate ours and seed-style runs (default 4; quick 2)",
    )
    args = p.parse_args()
    args.rounds = args.rounds or (2 if args.quick else 4)
    T, workers = args.num_frames, args.workers
    # one torch thread for ours and the seed's alike: on 2 shared cores a second OpenMP
    # thread makes these small forwards several times slower, and populate uses one too
    torch.set_num_threads(1)
    tmp = tempfile.mkdtemp(prefix="bench-extract-")
    try:
        entries, what = _entries(args, tmp)
        paths = [e.path for e in entries]
        print(
            f"{what}, T={T}, tiny-random on CPU, {workers} landmark workers, {os.cpu_count()} cores"
        )
        encoder = load_encoder("tiny-random")
        decoded = [decode_clip(p, T).frames for p in paths]
        decode_threads = max(2, min(8, (os.cpu_count() or 1) // 4))
        n = len(entries)

        def split(items):
            bounds = np.array_split(np.arange(n), min(args.rounds, n))
            return [[items[i] for i in chunk] for chunk in bounds]

        results = {}
        results["decode"] = measure_decode(split(paths), T, decode_threads)
        results["encoder"] = measure_encoder(encoder, split(decoded))
        results["landmarks"] = measure_landmarks(split(decoded), workers)
        for name, (o, b) in results.items():
            print(f"{name:<10} ours {n / o[0]:8.2f}  seed-style {n / b[0]:8.2f} videos/s")
        ours_t, seed_t, runs = measure_pipeline(tmp, split(entries), encoder, T, workers)
        results["pipeline"] = ours_t, seed_t
        busy = {}
        for run in runs:
            for k, v in run.stage_seconds.items():
                busy[k] = round(busy.get(k, 0) + v, 1)
        startup = float(np.mean([r.startup_s for r in runs]))
        print(f"pipeline   ours {n / ours_t[0]:8.2f}  seed-style {n / seed_t[0]:8.2f} videos/s")
        print(f"           start-up per run {startup:.1f}s; stage busy seconds {busy}")

        rows = []
        for k in ("decode", "landmarks", "encoder", "pipeline"):
            o, b = results[k][0][0], results[k][1][0]
            rows.append(Row(k, n / o, n / b, b / o, "videos/s"))
        slowest = min(n / results[k][0][0] for k in ("decode", "landmarks", "encoder"))
        for k in ("landmarks", "pipeline"):
            o, b = results[k][0][1], results[k][1][1]
            rows.append(Row(f"{k}_cpu", o / n, b / n, b / o, "CPU s/video"))
        rows += [
            Row("pipeline_vs_slowest_stage", (n / ours_t[0]) / slowest, None, None, "fraction"),
            Row("populate_startup", startup, None, None, "s"),
            Row(
                "mediapipe_ms_per_frame",
                1000 * results["landmarks"][1][0] / (n * T),
                None,
                None,
                "ms/frame",
            ),
        ]
        report(rows, args.json, f"extraction ({what}, tiny-random, CPU)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
