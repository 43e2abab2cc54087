"""The encoder's fast path: same features as eager, a flag turns it off, a failed compile
falls back with one warning, and the fingerprint rules (kernels are not in it, dtype is)."""

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from featurestore import SchemaMismatchError, open_store
from featurestore.cli import main as cli_main
from featurestore.extract import EncoderError, fastpath, load_encoder, populate, read_manifest
from featurestore.extract.gemma import _build_modules, preset_config
from model import fingerprint_diff

ROOT = Path(__file__).resolve().parents[2]


def _frames(n=7, h=80, w=72, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def _fast_path_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == fastpath.__name__]


@pytest.fixture(scope="session")
def inductor_cache(request, tmp_path_factory) -> Path:
    """One compile cache for the tests that run inductor (the same batch shape): in
    pytest's cache folder, so reruns here compile nothing; never the user's."""
    cache = getattr(request.config, "cache", None)
    return cache.mkdir("inductor") if cache else tmp_path_factory.mktemp("inductor")


@pytest.fixture
def traced_only(monkeypatch):
    """The fast path's code (dynamo, padding to buckets, fallback) without inductor's
    code generation, which takes 15-30 s per batch shape on these CPUs."""
    monkeypatch.setattr(fastpath, "COMPILE_BACKEND", "eager")


@pytest.fixture
def broken_compiler(monkeypatch):
    def broken(graph, inputs):
        raise RuntimeError("no compiler here\nand a second line")

    monkeypatch.setattr(fastpath, "COMPILE_BACKEND", broken)


@pytest.mark.slow
def test_compiled_features_equal_eager(inductor_cache, monkeypatch, tiny_encoder):
    """Real inductor on CPU; one batch shape (7 frames in forwards of 4: 4, then 3 padded)."""
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(inductor_cache))
    fast = load_encoder("tiny-random", batch_size=4, fast_path="on")
    x = _frames()
    features = fast.encode(x)
    assert fast.forward_path == "compiled"  # it did not fall back
    assert _cosines(features, tiny_encoder.encode(x)).min() >= 0.999
    assert np.allclose(features, tiny_encoder.encode(x), atol=1e-4)
    assert any(inductor_cache.iterdir())  # the compile cache persists where it was told


def test_traced_fast_path_pads_batches_and_keeps_features(traced_only, tiny_encoder):
    fast = load_encoder("tiny-random", batch_size=4, fast_path="on")
    x = _frames()
    assert np.allclose(fast.encode(x), tiny_encoder.encode(x), atol=1e-5)
    assert fast.forward_path == "compiled" and fast.forward_calls == 2


def test_auto_is_eager_on_cpu_and_on_for_cuda():
    assert load_encoder("tiny-random", fast_path="auto").forward_path == "eager"
    assert load_encoder("tiny-random", fast_path="on").forward_path == "compiled"
    assert load_encoder("tiny-random", fast_path="off").forward_path == "eager"
    assert load_encoder("tiny-random").forward_path == "eager"  # one-off encodes
    assert fastpath.use_fast_path("auto", torch.device("cuda"))
    assert not fastpath.use_fast_path("off", torch.device("cuda"))
    with pytest.raises(EncoderError, match="fast path"):
        load_encoder("tiny-random", fast_path="yes")


def test_compile_cache_lives_in_a_user_cache_folder_unless_told(monkeypatch, tmp_path):
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert fastpath.compile_cache_dir() == tmp_path / "signstore" / "inductor"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "mine"))
    assert fastpath.compile_cache_dir() == tmp_path / "mine"
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    # torch puts its /tmp default in the environment itself; that is not a user's choice
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", os.path.abspath(default_cache_dir()))
    assert fastpath.compile_cache_dir() == tmp_path / "signstore" / "inductor"


def test_batch_buckets_stay_under_the_recompile_limit():
    assert fastpath.batch_buckets(64) == [1, 2, 4, 8, 16, 32, 64]
    assert fastpath.batch_buckets(4) == [1, 2, 4]
    assert fastpath.batch_buckets(1024) == [1, 32, 64, 128, 256, 512, 1024]


@pytest.mark.parametrize(
    "flag, expected", [(["--fast-path", "off"], "off"), (["--fast-path", "on"], "on"), ([], "auto")]
)
def test_populate_flag_reaches_the_encoder(tmp_path, synth_set, monkeypatch, flag, expected):
    import featurestore.extract.clip as clip

    seen = []

    def spy(*args, fast_path, **kwargs):
        seen.append(fast_path)
        return load_encoder(*args, **kwargs)  # eager: this test is about the flag

    monkeypatch.setattr(clip, "load_encoder", spy)
    args = ["populate", "--store", str(tmp_path / "s.zarr"), "--manifest", str(synth_set)]
    common = ["--encoder", "tiny-random", "--num-frames", "4", "--no-landmarks", "--quiet"]
    assert cli_main([*args, *common, "--limit", "2", *flag]) == 0
    assert seen == [expected]


def test_failed_compile_falls_back_with_one_warning(broken_compiler, caplog, tiny_encoder):
    fast = load_encoder("tiny-random", batch_size=4, fast_path="on")
    x = _frames()
    with caplog.at_level(logging.WARNING):
        first, again = fast.encode(x), fast.encode(x)
    assert fast.forward_path == "eager"
    assert np.array_equal(first, tiny_encoder.encode(x)) and np.array_equal(again, first)
    (line,) = _fast_path_warnings(caplog)
    assert "running eager" in line and "no compiler here" in line and "\n" not in line


def test_torch_compile_raising_falls_back_at_load(monkeypatch, caplog):
    def refuse(*args, **kwargs):
        raise RuntimeError("torch.compile is not supported here")

    monkeypatch.setattr(torch, "compile", refuse)
    with caplog.at_level(logging.WARNING):
        fast = load_encoder("tiny-random", fast_path="on")
    assert fast.forward_path == "eager"
    assert fast.encode(_frames(n=2)).shape == (2, 48)
    assert len(_fast_path_warnings(caplog)) == 1


def test_bulk_run_with_a_failing_compile_completes(broken_compiler, tmp_path, synth_set, caplog):
    fast = load_encoder("tiny-random", batch_size=8, fast_path="on")
    entries = read_manifest(synth_set)
    with caplog.at_level(logging.WARNING):
        summary = populate(
            str(tmp_path / "s.zarr"),
            entries,
            encoder=fast,
            num_frames=4,
            landmarks=False,
            progress=False,
        )
    assert (summary.done, summary.failed) == (len(entries), {})
    assert len(_fast_path_warnings(caplog)) == 1


def test_bad_input_is_its_own_error_and_keeps_the_fast_path(traced_only):
    fast = load_encoder("tiny-random", batch_size=4, fast_path="on")
    with pytest.raises(RuntimeError):
        fast.encode_pixels(torch.zeros(2, 5, 64, 64))  # 5 channels: eager fails too
    assert fast.forward_path == "compiled"


def test_fingerprint_names_meaning_not_kernels(traced_only, tiny_encoder):
    """Eager, compiled and any attention kernel compute the same function in the same
    dtype: one fingerprint, so stores and checkpoints accept either. Another dtype changes
    the arithmetic: another fingerprint, which checkpoints refuse."""
    fast = load_encoder("tiny-random", fast_path="on", sdpa_backend="math")
    assert fast.fingerprint == tiny_encoder.fingerprint
    assert fingerprint_diff(tiny_encoder.fingerprint, fast.fingerprint) == ""
    bf16 = load_encoder("tiny-random", fast_path="on", dtype="bfloat16")
    assert "dtype" in fingerprint_diff(tiny_encoder.fingerprint, bf16.fingerprint)


def test_store_begun_eager_is_resumed_on_the_fast_path(traced_only, tmp_path, synth_set):
    url, entries = str(tmp_path / "s.zarr"), read_manifest(synth_set)
    eager = load_encoder("tiny-random")
    populate(url, entries[:3], encoder=eager, num_frames=4, landmarks=False, progress=False)
    fast = load_encoder("tiny-random", fast_path="on")
    summary = populate(url, entries, encoder=fast, num_frames=4, landmarks=False, progress=False)
    assert (summary.done, summary.skipped) == (3, 3)
    assert len(open_store(url).ids()) == 6
    bf16 = load_encoder("tiny-random", dtype="bfloat16")
    with pytest.raises(SchemaMismatchError, match="fingerprint"):
        populate(url, entries, encoder=bf16, num_frames=4, landmarks=False, progress=False)


def test_sdpa_backend_is_checked_before_any_video(tiny_encoder):
    math = load_encoder("tiny-random", sdpa_backend="math")
    assert np.allclose(math.encode(_frames()), tiny_encoder.encode(_frames()), atol=1e-5)
    with pytest.raises(EncoderError, match="efficient"):
        load_encoder("tiny-random", sdpa_backend="efficient")  # a CUDA kernel
    with pytest.raises(EncoderError, match="SDPA backend"):
        load_encoder("tiny-random", sdpa_backend="fastest")


def test_modules_are_allocated_on_the_target_device_in_its_dtype():
    """Built under the device (here meta, which holds no memory), never on the CPU first."""
    vision, projector = _build_modules(
        preset_config("tiny-random"),
        "sdpa",
        "mean_soft_tokens",
        torch.device("meta"),
        torch.bfloat16,
    )
    tensors = [*vision.parameters(), *vision.buffers(), *projector.parameters()]
    assert {t.device.type for t in tensors} == {"meta"}
    assert {p.dtype for p in [*vision.parameters(), *projector.parameters()]} == {torch.bfloat16}


@pytest.mark.slow
def test_gpu_benchmark_quick_runs_on_cpu_and_says_so(tmp_path, inductor_cache):
    """One batch shape (4, as above), short timings: the script's plumbing, not its figures."""
    out = tmp_path / "rows.json"
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(inductor_cache), "CUDA_VISIBLE_DEVICES": ""}
    run = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "extract_gpu.py"),
            "--quick",
            *("--batches", "4", "--seconds", "0.2", "--clips", "2"),
            *("--json", str(out)),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert "CPU, not the GPU figures" in run.stdout
    names = {row["name"] for row in json.loads(out.read_text())["rows"]}
    assert {"matmul_peak", "startup_load", "populate_vs_encoder"} <= names
    assert any(n.startswith("encoder_b") for n in names)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("sdpa", ["auto", "cudnn", "flash", "efficient"])
def test_cuda_fast_path_equals_eager_bf16(sdpa):
    eager = load_encoder("tiny-random", device="cuda", fast_path="off")
    fast = load_encoder("tiny-random", device="cuda", fast_path="on", sdpa_backend=sdpa)
    x = _frames(n=20)
    a, b = eager.encode(x), fast.encode(x)
    assert fast.forward_path == "compiled"
    assert fast.fingerprint == eager.fingerprint
    assert _cosines(a, b).min() >= 0.999
