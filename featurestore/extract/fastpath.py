"""The frozen encoder's forward, eager or on the fast path: compiled, with a chosen attention
kernel, fed through pinned memory.

Why (measured on an H200, ``../shared/device/README.md``): the eager tower reaches 43% of
the bf16 matmul peak, and a quarter of its time is strided layout copies between kernels
that ``torch.compile`` fuses away (62 -> 72 frames/s); the attention kernel matters at head
size 72 (cuDNN 61, flash 52, memory-efficient 32 frames/s). Compiling costs about 40 s per
batch shape on that card, so the compile cache lives in a user cache folder and is paid
once per machine; batches are padded up to a few fixed sizes so a run compiles at most seven
shapes. CUDA graphs were left out: a forward of even one 896 px frame is ~16 ms of kernels,
so launch overhead is noise.

The fast path does not change what the features mean: it computes the same function in the
same dtype, to within rounding (per-frame cosine >= 0.999 against eager, tested), so the
encoder fingerprint does not record it (see ``gemma.load_encoder``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

import torch

from .defaults import FAST_PATHS, SDPA_BACKENDS

__all__ = [
    "Forward",
    "PinnedUpload",
    "Pooled",
    "batch_buckets",
    "compile_cache_dir",
    "sdpa_context",
    "use_fast_path",
]

log = logging.getLogger(__name__)

COMPILE_BACKEND = "inductor"
"""What ``torch.compile`` lowers with (tests swap in a cheap or a failing backend)."""

_MAX_BUCKETS = 6  # halvings compiled, plus batch 1: under dynamo's recompile limit (8)


def use_fast_path(mode: str, device: torch.device) -> bool:
    """``auto``: on for CUDA, where compiling pays back within a bulk run; eager elsewhere
    (on CPU a cold compile costs tens of seconds per shape for no measured gain)."""
    if mode not in FAST_PATHS:
        raise ValueError(f"unknown fast path {mode!r}: use one of {FAST_PATHS}")
    return mode == "on" or (mode == "auto" and device.type == "cuda")


def compile_cache_dir() -> Path:
    """Where compiled kernels persist: ``$TORCHINDUCTOR_CACHE_DIR`` when set, else
    ``$XDG_CACHE_HOME/signstore/inductor`` (``~/.cache/...``); torch's default is under
    /tmp, gone at the next reboot."""
    chosen = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    if chosen and chosen != _torch_default_cache_dir():
        return Path(chosen)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "signstore" / "inductor"


def _torch_default_cache_dir() -> str | None:
    """Torch writes its default into the environment as soon as anything asks for it
    (importing transformers' models does), so that value does not mean a user chose it."""
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir
    except ImportError:  # another torch layout: trust the variable
        return None
    return os.path.abspath(default_cache_dir())


def batch_buckets(batch_size: int) -> list[int]:
    """The batch sizes compiled, ascending: ``batch_size``, five halvings, and 1 (a single
    frame is not worth running as two)."""
    return sorted({max(1, batch_size >> k) for k in range(_MAX_BUCKETS)} | {1})


def sdpa_context(backend: str):
    """Holds PyTorch's scaled-dot-product attention to one kernel (``auto``: its own choice)."""
    if backend not in SDPA_BACKENDS:
        raise ValueError(f"unknown SDPA backend {backend!r}: use one of {SDPA_BACKENDS}")
    if backend == "auto":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    kernels = {
        "cudnn": SDPBackend.CUDNN_ATTENTION,
        "flash": SDPBackend.FLASH_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
        "math": SDPBackend.MATH,
    }
    return sdpa_kernel(kernels[backend])


def check_sdpa(backend: str, device: torch.device, dtype: torch.dtype, head_dim: int) -> None:
    """Raise ValueError, before any video, when ``backend`` cannot run here (a kernel that
    is missing would otherwise fail every batch of a bulk run)."""
    q = torch.zeros(1, 1, 8, head_dim, device=device, dtype=dtype)
    try:
        with sdpa_context(backend):
            torch.nn.functional.scaled_dot_product_attention(q, q, q)
    except RuntimeError as exc:
        raise ValueError(
            f"SDPA backend {backend!r} cannot run on {device} in {dtype} at head size "
            f"{head_dim}: {_one_line(exc)}"
        ) from None


class Pooled(torch.nn.Module):
    """Tower, projector and mean pooling as one module: the eager path, and what compiles."""

    def __init__(self, vision_tower: torch.nn.Module, projector: torch.nn.Module | None):
        super().__init__()
        self.vision_tower = vision_tower
        self.projector = projector

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        hidden = self.vision_tower(pixel_values=pixels).last_hidden_state
        if self.projector is not None:
            hidden = self.projector(hidden)
        return hidden.float().mean(dim=1)


class Forward:
    """Preprocessed pixels (N, 3, S, S) -> pooled features (N, D) float32, on the device.

    Compiled when asked. If compiling fails (no compiler, a backend bug), the batch is run
    eager and so is everything after, with one warning: a bulk run never stops for it. A
    batch that fails eager too is the input's fault, and its error is raised as usual.
    """

    def __init__(self, pooled: Pooled, batch_size: int, compiled: bool, sdpa: str = "auto"):
        self.pooled = pooled
        self.sdpa = sdpa
        self.buckets = batch_buckets(batch_size)
        self._compiled = None
        if compiled:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(compile_cache_dir())
            try:
                self._compiled = torch.compile(pooled, backend=COMPILE_BACKEND, dynamic=False)
            except Exception as exc:
                self._give_up(exc)

    @property
    def path(self) -> str:
        """``compiled`` or ``eager``: what the next batch runs."""
        return "eager" if self._compiled is None else "compiled"

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        with sdpa_context(self.sdpa):
            if self._compiled is None:
                return self.pooled(pixels)
            try:
                return self._run_compiled(pixels)
            except Exception as exc:
                out = self.pooled(pixels)  # raises if the input, not compiling, is at fault
                self._give_up(exc)
                return out

    def _run_compiled(self, pixels: torch.Tensor) -> torch.Tensor:
        """Padded with zero frames up to the next bucket, so only bucket shapes compile."""
        assert self._compiled is not None
        n = len(pixels)
        size = next((b for b in self.buckets if b >= n), n)
        if size > n:
            pad = pixels.new_zeros((size - n, *pixels.shape[1:]))
            pixels = torch.cat([pixels, pad])
        return self._compiled(pixels)[:n]

    def _give_up(self, exc: BaseException) -> None:
        self._compiled = None
        log.warning("encoder fast path off, running eager: compiling failed: %s", _one_line(exc))


class PinnedUpload:
    """uint8 frames to a CUDA device through one reused page-locked buffer, without making
    the host wait for the copy; the buffer is refilled only once its last copy is done."""

    def __init__(self, device: torch.device):
        self.device = device
        self._buffer: torch.Tensor | None = None
        self._copied: torch.cuda.Event | None = None

    def __call__(self, frames: torch.Tensor) -> torch.Tensor:
        if self._copied is not None:
            self._copied.synchronize()
        n = frames.numel()
        if self._buffer is None or self._buffer.numel() < n:
            self._buffer = torch.empty(n, dtype=frames.dtype, pin_memory=True)
        staged = self._buffer[:n].view(frames.shape)
        staged.copy_(frames)
        out = staged.to(self.device, non_blocking=True)
        self._copied = torch.cuda.Event()
        self._copied.record()
        return out


def _one_line(exc: BaseException) -> str:
    """The root cause's type and first line (dynamo wraps it in a multi-line report)."""
    root = exc
    while getattr(root, "inner_exception", None) or root.__cause__:
        root = getattr(root, "inner_exception", None) or root.__cause__  # type: ignore[assignment]
    text = str(root).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(root).__name__}: {first[:200]}"
