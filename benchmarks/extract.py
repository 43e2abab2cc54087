"""Extraction throughput: our pipeline against the seed's way of populating features.

The seed (SEED.md) populates in two scripts run one after the other, each reading every
video with OpenCV and seeking to each sampled frame: ``preprocess_landmarks.py`` runs
MediaPipe Holistic frame by frame, then ``preprocess_gemma_features.py`` calls the
encoder once per frame. The baseline here does exactly that, in one process.

Ours: PyAV decodes each clip once in a thread pool, Holistic runs in ``--workers``
processes, the encoder batches the frames of several videos per forward pass, and the
three stages overlap (``featurestore.extract.populate``).

Rows (videos/s; ratio = ours / seed-style): ``decode``, ``landmarks``, ``encoder``,
``pipeline``; then ``pipeline_vs_slowest_stage`` (target >= 0.8) and MediaPipe's cost
per frame. Synthetic clips (``featurestore synth``), tiny-random encoder, CPU.

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


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure_decode(paths, num_frames: int, threads: int) -> tuple[float, float]:
    with ThreadPoolExecutor(threads) as pool:
        ours = timed(lambda: list(pool.map(lambda p: decode_clip(p, num_frames), paths)))
    seed = timed(lambda: [seed_decode(p, num_frames) for p in paths])
    return len(paths) / ours, len(paths) / seed


def measure_landmarks(clips, workers: int) -> tuple[float, float, float]:
    with LandmarkPool(workers) as pool:
        pool.warm_up()
        ours = timed(lambda: [f.result() for f in [pool.submit(c) for c in clips]])
    with LandmarkExtractor() as holistic:
        holistic.extract(clips[0][:1])  # load the graph outside the timing
        seed = timed(lambda: [seed_landmarks(holistic, c) for c in clips])
    ms_per_frame = 1000 * seed / sum(len(c) for c in clips)
    return len(clips) / ours, len(clips) / seed, ms_per_frame


def measure_encoder(encoder, clips) -> tuple[float, float]:
    encoder.encode_videos(clips[:2])  # warm-up
    videos_per_forward = max(1, encoder.batch_size // len(clips[0]))
    ours = timed(
        lambda: [
            encoder.encode_videos(clips[i : i + videos_per_forward])
            for i in range(0, len(clips), videos_per_forward)
        ]
    )
    seed = timed(lambda: [seed_encode(encoder, c) for c in clips])
    return len(clips) / ours, len(clips) / seed


def seed_pipeline(url, entries, encoder, num_frames: int) -> float:
    """Landmarks script, then Gemma script, each decoding every clip; then one store write."""
    extractor = ClipExtractor(encoder=encoder, num_frames=num_frames, landmarks=True)
    store = create_store(url, extractor.schema({0: "x"}))
    start = time.perf_counter()
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
    return len(entries) / (time.perf_counter() - start)


def our_pipeline(url, entries, encoder, num_frames: int, workers: int):
    """populate() with a loaded encoder: (steady videos/s, end-to-end videos/s, summary).

    Steady excludes the start-up (landmark workers loading MediaPipe, store checks), as
    the per-stage numbers do; end-to-end includes it."""
    summary = populate(
        url, entries, encoder=encoder, num_frames=num_frames, workers=workers, progress=False
    )
    assert summary.done == len(entries), summary.format()
    steady = summary.done / (summary.elapsed_s - summary.startup_s)
    return steady, summary.done / summary.elapsed_s, summary


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
    args = p.parse_args()
    T, workers = args.num_frames, args.workers
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

        dec = measure_decode(paths, T, decode_threads)
        print(f"decode     ours {dec[0]:8.1f}  seed-style {dec[1]:8.1f} videos/s")
        enc = measure_encoder(encoder, decoded)
        print(f"encoder    ours {enc[0]:8.1f}  seed-style {enc[1]:8.1f} videos/s")
        lm = measure_landmarks(decoded, workers)
        print(f"landmarks  ours {lm[0]:8.2f}  seed-style {lm[1]:8.2f} videos/s")
        ours, ours_e2e, summary = our_pipeline(
            os.path.join(tmp, "ours.zarr"), entries, encoder, T, workers
        )
        busy = {k: round(v, 1) for k, v in summary.stage_seconds.items()}
        print(
            f"pipeline   ours {ours:8.2f} videos/s steady, {ours_e2e:.2f} with "
            f"{summary.startup_s:.1f}s start-up (stage busy s: {busy})"
        )
        seed = seed_pipeline(os.path.join(tmp, "seed.zarr"), entries, encoder, T)
        print(f"pipeline   seed-style {seed:8.2f} videos/s")

        slowest = min(dec[0], enc[0], lm[0])
        rows = [
            Row("decode", dec[0], dec[1], dec[0] / dec[1], "videos/s"),
            Row("landmarks", lm[0], lm[1], lm[0] / lm[1], "videos/s"),
            Row("encoder", enc[0], enc[1], enc[0] / enc[1], "videos/s"),
            Row("pipeline", ours, seed, ours / seed, "videos/s"),
            Row("pipeline_with_startup", ours_e2e, seed, ours_e2e / seed, "videos/s"),
            Row("pipeline_vs_slowest_stage", ours / slowest, None, None, "fraction"),
            Row("mediapipe_ms_per_frame", lm[2], None, None, "ms/frame"),
        ]
        report(rows, args.json, f"extraction ({what}, tiny-random, CPU)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
