"""Extraction near the card's limit: the encoder's fast path against eager, start-up, populate.

Rows (ratio > 1 = ours better):

- ``matmul_peak``: the measured matmul ceiling (bf16 8192^3 on CUDA, float32 on CPU), TFLOP/s.
- ``encoder_b{B}``: frames/s of the tower and projector at batch B on preprocessed pixels,
  fast path (ours: compiled, ``--sdpa-backend``) against eager; ``peak_fraction_b{B}``
  the same as a fraction of ``matmul_peak`` (FLOP per frame from the model's sizes);
  ``compile_b{B}``: seconds of the first fast-path call at that batch (cold or warm cache).
- ``encode_uint8_b{B}``: frames/s of uint8 256x256 frames through ``encode`` (upload,
  resize, normalise, forward) at the largest batch.
- ``sdpa_{backend}`` (``--sdpa-sweep``): eager frames/s with attention held to one kernel,
  against PyTorch's own choice.
- ``startup_load``: ``load_encoder`` in a fresh process, ours (built on the device in its
  dtype) against the old way (float32 on the CPU, then moved); ``startup_first_batch``: load
  plus the first batch, eager, imports not counted (target < 5 s on the GPU).
- ``populate_vs_encoder``: ``populate --no-landmarks`` frames/s after its start-up (ours)
  against ``encode_uint8`` at the same batch (target ratio >= 0.95).
- ``peak_gpu_memory`` (CUDA), GiB; peak RSS is printed as in every benchmark.

    python benchmarks/extract_gpu.py [--quick] [--json FILE] [--device cuda] [--encoder ID]
        [--batches 1,16,64] [--clips 128] [--sdpa-backend auto] [--sdpa-sweep]

Without a GPU (or with ``--quick``) it runs ``tiny-random`` on the CPU and says so: those
are not the GPU figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch._inductor.config

sys.path.insert(0, os.path.dirname(__file__))
from common import Row, parser, report  # noqa: E402

from featurestore.extract import load_encoder, populate, read_manifest, synthesize  # noqa: E402
from featurestore.extract.fastpath import check_sdpa, compile_cache_dir  # noqa: E402
from featurestore.extract.gemma import PRESETS, preset_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIZE = 256  # the frames' side before the encoder's resize, as decoded clips are


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_peak(device: str) -> float:
    """TFLOP/s of a large square matmul: bf16 8192^3 on CUDA, float32 2048^3 on CPU."""
    cuda = device.startswith("cuda")
    n, dtype, reps = (8192, torch.bfloat16, 20) if cuda else (2048, torch.float32, 3)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * n**3 * reps / (time.perf_counter() - start) / 1e12


def flop_per_frame(encoder_id: str, pooling: str = "mean_soft_tokens") -> float:
    """Multiply-adds x 2 of the tower (and projector) for one frame: linear layers,
    attention scores and values, the patch embedding."""
    if encoder_id not in PRESETS:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(encoder_id)
    else:
        config = preset_config(encoder_id)
    v = config.vision_config
    n, h, f = (v.image_size // v.patch_size) ** 2, v.hidden_size, v.intermediate_size
    layer = 8 * n * h * h + 4 * n * h * f + 4 * n * n * h
    total = v.num_hidden_layers * layer + 2 * n * 3 * v.patch_size**2 * h
    if pooling == "mean_soft_tokens":
        total += 2 * config.mm_tokens_per_image * h * config.text_config.hidden_size
    return float(total)


def rates(runs: list, frames: int, seconds: float, rounds: int = 4) -> list[float]:
    """Frames/s of each ``run()`` (``frames`` a call), after a warm-up, taking turns over
    ``rounds`` so that on a shared machine every one sees the same load."""
    for run in runs:
        run()
    done, spent = [0] * len(runs), [0.0] * len(runs)
    for r in range(rounds):
        order = list(range(len(runs)))
        for i in order if r % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            while time.perf_counter() - start < seconds / rounds / len(runs):
                runs[i]()
                done[i] += frames
            spent[i] += time.perf_counter() - start
    return [d / t for d, t in zip(done, spent, strict=True)]


def measure_encoder(args, eager, fast, peak: float, flop: float) -> list[Row]:
    rows, compiled = [], []
    for b in args.batches:
        pixels = eager.preprocess(np.zeros((b, SIZE, SIZE, 3), np.uint8))
        start = time.perf_counter()
        fast.encode_pixels(pixels)
        compiled.append(Row(f"compile_b{b}", time.perf_counter() - start, None, None, "s"))
        e, f = rates(
            [lambda: eager.encode_pixels(pixels), lambda: fast.encode_pixels(pixels)],  # noqa: B023
            b,
            args.seconds,
        )
        rows.append(Row(f"encoder_b{b}", f, e, f / e, "frames/s"))
        fraction = flop / peak / 1e12
        rows.append(Row(f"peak_fraction_b{b}", f * fraction, e * fraction, f / e, "fraction"))
        print(f"batch {b:4d}: eager {e:8.2f}  fast ({fast.forward_path}) {f:8.2f} frames/s")
    return rows + compiled


def measure_encode_uint8(args, eager, fast) -> tuple[Row, float]:
    b = max(args.batches)
    frames = np.random.default_rng(0).integers(0, 256, (b, SIZE, SIZE, 3), dtype=np.uint8)
    e, f = rates([lambda: eager.encode(frames), lambda: fast.encode(frames)], b, args.seconds)
    return Row(f"encode_uint8_b{b}", f, e, f / e, "frames/s"), f


def measure_sdpa(args, eager) -> list[Row]:
    """One eager encoder, its attention held to each kernel in turn (loading the 4b preset
    again per kernel would cost more device time than the measurements)."""
    b = max(args.batches)
    pixels = eager.preprocess(np.zeros((b, SIZE, SIZE, 3), np.uint8))
    head_dim = (
        eager.vision_tower.config.hidden_size // eager.vision_tower.config.num_attention_heads
    )
    found = {}
    for backend in ("auto", "cudnn", "flash", "efficient", "math"):
        try:
            check_sdpa(backend, eager.device, eager.dtype, head_dim)
        except ValueError as exc:  # this kernel cannot run here
            print(f"sdpa {backend}: {exc}")
            continue
        eager._forward.sdpa = backend
        (found[backend],) = rates([lambda: eager.encode_pixels(pixels)], b, args.seconds)
        print(f"sdpa {backend:<9} {found[backend]:8.2f} frames/s (eager, batch {b})")
    eager._forward.sdpa = "auto"
    auto = found.pop("auto")
    return [Row(f"sdpa_{k}", r, auto, r / auto, "frames/s") for k, r in found.items()]


def profile(fast, batch: int) -> None:
    """Where the fast path's forward spends its time, by kernel (what to attack next)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    pixels = fast.preprocess(np.zeros((batch, SIZE, SIZE, 3), np.uint8))
    fast.encode_pixels(pixels)
    on_gpu = fast.device.type == "cuda"
    activities = [ProfilerActivity.CUDA] if on_gpu else [ProfilerActivity.CPU]
    with torch_profile(activities=activities) as prof:
        for _ in range(2):
            fast.encode_pixels(pixels)
    key = "cuda_time_total" if on_gpu else "self_cpu_time_total"
    print(f"\nprofile: 2 forwards of {batch} frames, {fast.forward_path}")
    print(prof.key_averages().table(sort_by=key, row_limit=15, max_name_column_width=60))


_STARTUP = """
import json, sys, time
import numpy as np, torch
from featurestore.extract import load_encoder
enc_id, device, batch, old_way = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
start = time.perf_counter()
if old_way:
    enc = load_encoder(enc_id, "cpu", dtype="float32", batch_size=batch)
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    for m in (enc.vision_tower, enc.projector):
        m.to(device, dtype)
    sync()
    print(json.dumps({"load": time.perf_counter() - start}))
else:
    enc = load_encoder(enc_id, device, batch_size=batch)
    sync()
    load = time.perf_counter() - start
    enc.encode(np.zeros((batch, 256, 256, 3), np.uint8))
    print(json.dumps({"load": load, "first_batch": time.perf_counter() - start}))
"""


def measure_startup(args) -> list[Row]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    b = min(args.batches[-1], 16)

    def run(old: bool) -> dict:
        cmd = [sys.executable, "-c", _STARTUP, args.encoder, args.device, str(b), str(int(old))]
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    # taking turns, the best of each (twice each; once with --quick): the first run also
    # warms the file cache
    runs = [run(old) for _ in range(1 if args.quick else 2) for old in (True, False)]
    old = min(runs[0::2], key=lambda r: r["load"])
    ours = min(runs[1::2], key=lambda r: r["load"])
    print(
        f"start-up: load {ours['load']:.2f} s (the old way {old['load']:.2f} s), "
        f"to the first batch of {b} {ours['first_batch']:.2f} s"
    )
    return [
        Row("startup_load", ours["load"], old["load"], old["load"] / ours["load"], "s"),
        Row("startup_first_batch", ours["first_batch"], None, None, "s"),
    ]


def measure_populate(args, fast, encoder_rate: float, tmp: str) -> list[Row]:
    classes = 8
    manifest = synthesize(
        os.path.join(tmp, "clips"),
        classes=classes,
        per_class=-(-args.clips // classes),
        frames=16 if args.quick else 24,
        size=(SIZE, SIZE),
    )
    entries = read_manifest(manifest)[: args.clips]
    for videos in range(1, fast.batch_size // 16 + 1):  # the batches populate can form
        fast.encode_pixels(fast.preprocess(np.zeros((16 * videos, SIZE, SIZE, 3), np.uint8)))
    s = populate(
        os.path.join(tmp, "store.zarr"),
        entries,
        encoder=fast,
        num_frames=16,
        landmarks=False,
        progress=False,
    )
    assert s.done == len(entries), s.format()
    rate = s.frames_encoded / (s.elapsed_s - s.startup_s)
    print(
        f"populate --no-landmarks: {len(entries)} clips, {rate:.2f} frames/s after a "
        f"{s.startup_s:.1f} s start-up; stage busy seconds {dict(s.stage_seconds)}"
    )
    return [Row("populate_vs_encoder", rate, encoder_rate, rate / encoder_rate, "frames/s")]


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    cuda = torch.cuda.is_available()
    p.add_argument("--device", default="cuda" if cuda else "cpu")
    p.add_argument("--encoder", help="default gemma-3-4b-random on CUDA, else tiny-random")
    p.add_argument("--batches", help="frames per forward, comma-separated (default 1,16,64)")
    p.add_argument("--clips", type=int, help="clips to populate (default 128; quick 8)")
    p.add_argument("--seconds", type=float, help="timing per measurement (default 5; quick 1)")
    p.add_argument("--sdpa-backend", default="auto", help="the fast path's attention kernel")
    p.add_argument("--sdpa-sweep", action="store_true", help="eager rate with each kernel")
    p.add_argument("--profile", action="store_true", help="kernel table of the fast path")
    args = p.parse_args()
    on_gpu = args.device.startswith("cuda")
    args.encoder = args.encoder or (
        "tiny-random" if args.quick or not on_gpu else "gemma-3-4b-random"
    )
    default_batches = "1,16" if args.quick else "1,16,64"
    args.batches = [int(b) for b in (args.batches or default_batches).split(",")]
    args.clips = args.clips or (8 if args.quick else 128)
    args.seconds = args.seconds or (1.0 if args.quick else 5.0)
    if not on_gpu:
        # inductor's pool of compile processes would share the few cores with the
        # measurements while it warms up, and a second OpenMP thread makes small forwards
        # several times slower on shared cores (as in extract.py): one of each on CPU
        torch._inductor.config.compile_threads = 1
        torch.set_num_threads(1)
    cache = compile_cache_dir()
    warm = cache.is_dir() and any(cache.iterdir())
    if on_gpu:
        what = f"{torch.cuda.get_device_name()} ({args.device}), {args.encoder}, bf16"
    else:
        what = f"CPU, not the GPU figures: {args.encoder}, float32, {os.cpu_count()} cores"
    print(f"{what}; compile cache {cache} ({'warm' if warm else 'cold'})")

    peak = matmul_peak(args.device)
    flop = flop_per_frame(args.encoder)
    print(f"matmul peak {peak:.2f} TFLOP/s; {flop / 1e9:.3f} GFLOP per frame")
    rows = [Row("matmul_peak", peak, None, None, "TFLOP/s")]
    batch = max(args.batches)
    eager = load_encoder(args.encoder, args.device, batch_size=batch, fast_path="off")
    fast = load_encoder(
        args.encoder, args.device, batch_size=batch, fast_path="on", sdpa_backend=args.sdpa_backend
    )
    if on_gpu:
        torch.cuda.reset_peak_memory_stats()
    rows += measure_encoder(args, eager, fast, peak, flop)
    row, encoder_rate = measure_encode_uint8(args, eager, fast)
    rows.append(row)
    if args.sdpa_sweep:
        rows += measure_sdpa(args, eager)
    del eager
    if args.profile:
        profile(fast, min(16, batch))
    rows += measure_startup(args)
    with tempfile.TemporaryDirectory(prefix="bench-extract-gpu-") as tmp:
        rows += measure_populate(args, fast, encoder_rate, tmp)
    if on_gpu:
        rows.append(
            Row("peak_gpu_memory", torch.cuda.max_memory_allocated() / 2**30, None, None, "GiB")
        )
    report(rows, args.json, f"extraction near the limit ({what})")


if __name__ == "__main__":
    main()
