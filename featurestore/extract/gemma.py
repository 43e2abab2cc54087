"""Frozen Gemma 3 image features: the vision tower and multimodal projector, nothing else.

The language model never runs, so it is never built: for a Hugging Face id or a local
folder only the vision tower and projector weights are read from the safetensors shards.
Presets with random weights (``tiny-random`` for tests and CI, ``gemma-3-4b-random`` for
measuring speed at gemma-3-4b's real sizes) are built offline from a small config.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from .defaults import DEFAULT_ENCODER, POOLINGS
from .fastpath import Forward, PinnedUpload, Pooled, check_sdpa, use_fast_path
from .weights import (
    EncoderError,
    commit_from_cache_path,
    load_weights,
    resolve_file,
    seed_weights,
    weight_files,
)

if TYPE_CHECKING:
    from transformers import Gemma3Config

__all__ = [
    "GemmaEncoder",
    "EncoderError",
    "load_encoder",
    "PRESETS",
    "preset_config",
]

log = logging.getLogger(__name__)

_SEED = 20250301

_VISION_SIZES = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "image_size",
    "patch_size",
)


def _preset(vision: tuple[int, ...], text_hidden: int, mm_tokens_per_image: int) -> dict:
    """A preset's sizes: its vision tower's (in ``_VISION_SIZES`` order), the width the
    projector maps to, and the soft tokens per image."""
    return {
        "vision": dict(zip(_VISION_SIZES, vision, strict=True)),
        "text_hidden": text_hidden,
        "mm_tokens_per_image": mm_tokens_per_image,
    }


PRESETS: dict[str, dict] = {
    # vision tower (hidden, ffn, layers, heads, image px, patch), text width, soft tokens
    "tiny-random": _preset((32, 64, 2, 2, 64, 8), 48, 4),
    # SigLIP so400m as in gemma-3-4b: 896 px, patch 14, 256 soft tokens
    "gemma-3-4b-random": _preset((1152, 4304, 27, 16, 896, 14), 2560, 256),
}


def preset_config(name: str):
    """The Gemma3Config of a random-weight preset (the text model is a stub: it never runs)."""
    from transformers import Gemma3Config

    preset = PRESETS[name]
    text = dict(
        hidden_size=preset["text_hidden"],
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=16,
        vocab_size=256,
    )
    return Gemma3Config(
        text_config=text,
        vision_config=dict(preset["vision"], vision_use_head=False),
        mm_tokens_per_image=preset["mm_tokens_per_image"],
    )


@dataclass(frozen=True)
class _Preprocess:
    """Gemma 3's image preprocessing: resize to a square, rescale, normalise."""

    image_size: int
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    rescale: float = 1 / 255


class GemmaEncoder:
    """Frozen image encoder: uint8 RGB frames in, one pooled feature vector per frame out."""

    def __init__(
        self,
        vision_tower: torch.nn.Module,
        projector: torch.nn.Module | None,
        preprocess: _Preprocess,
        fingerprint: dict,
        device: torch.device,
        dtype: torch.dtype,
        batch_size: int = 64,
        fast_path: bool = False,
        sdpa_backend: str = "auto",
    ):
        self.vision_tower = vision_tower.eval().requires_grad_(False)
        self.projector = None if projector is None else projector.eval().requires_grad_(False)
        self.preprocess_spec = preprocess
        self.fingerprint = fingerprint
        self.device = device
        self.dtype = dtype
        self.batch_size = max(1, int(batch_size))
        pooled = Pooled(self.vision_tower, self.projector)
        self._forward = Forward(pooled, self.batch_size, fast_path, sdpa_backend)
        self._upload = (
            PinnedUpload(device)
            if fast_path and device.type == "cuda"
            else lambda x: x.to(device, non_blocking=True)
        )
        self.forward_calls = 0
        """Forward passes run so far (tests use it to show that committed videos are not redone)."""
        p = preprocess
        self._mean = torch.tensor(p.mean, device=device).view(1, 3, 1, 1)
        self._std = torch.tensor(p.std, device=device).view(1, 3, 1, 1)

    @property
    def feature_dim(self) -> int:
        return int(self.fingerprint["feature_dim"])

    @property
    def image_size(self) -> int:
        return self.preprocess_spec.image_size

    @property
    def forward_path(self) -> str:
        """``compiled`` (the fast path) or ``eager``: how the next batch runs."""
        return self._forward.path

    def preprocess(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, 3) -> normalised (N, 3, S, S) on the encoder's device and dtype.

        On CPU the resize runs on uint8 (channels-last): exactly PIL's bilinear result, as
        Gemma 3's image processor computes it, and about 15x faster than in float.
        """
        x = torch.as_tensor(frames)
        if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != torch.uint8:
            raise ValueError(f"expected uint8 frames (N, H, W, 3), got {x.dtype} {tuple(x.shape)}")
        x = self._upload(x).permute(0, 3, 1, 2)
        size = self.preprocess_spec.image_size
        if x.shape[-2:] != (size, size):
            if self.device.type != "cpu":
                x = x.float()
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
        x = x.float() * self.preprocess_spec.rescale
        return ((x - self._mean) / self._std).to(self.dtype).contiguous()

    @torch.inference_mode()
    def encode_pixels(self, pixels: torch.Tensor) -> np.ndarray:
        """Preprocessed (N, 3, S, S) -> float32 (N, D), in forward passes of ``batch_size``."""
        out = []
        for chunk in torch.split(pixels, self.batch_size):
            self.forward_calls += 1
            out.append(self._forward(chunk).cpu())
        return torch.cat(out).numpy()

    def encode(self, frames: np.ndarray) -> np.ndarray:
        """uint8 RGB frames (N, H, W, 3) -> float32 features (N, D)."""
        return self.encode_pixels(self.preprocess(frames))

    def encode_videos(self, videos: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Frames of several videos (each (T, H, W, 3), sizes may differ) batched together."""
        if not videos:
            return []
        pixels = torch.cat([self.preprocess(v) for v in videos])
        features = self.encode_pixels(pixels)
        bounds = np.cumsum([len(v) for v in videos])[:-1]
        return np.split(features, bounds)


# ---------------------------------------------------------------------------------------------
# loading


def _default_dtype(device: torch.device) -> torch.dtype:
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    return torch.float32


def _dtype_from_name(name: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    if name is None:
        return _default_dtype(device)
    if isinstance(name, torch.dtype):
        return name
    table = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
    if name not in table:
        raise EncoderError(f"unknown dtype {name!r}: use one of {sorted(table)}")
    return table[name]


def _attn_implementation(flash_attention: bool, device: torch.device) -> str:
    if not flash_attention:
        return "sdpa"
    from transformers.utils import is_flash_attn_2_available

    if device.type == "cuda" and is_flash_attn_2_available():
        return "flash_attention_2"
    why = "needs a CUDA device" if device.type != "cuda" else "flash-attn is not installed"
    log.warning("--flash-attention: flash_attention_2 %s; using PyTorch SDPA attention", why)
    return "sdpa"


def _skip_init():
    """transformers' own random init is wasted work: weights are loaded or seeded after."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:  # older transformers
        return contextlib.nullcontext()
    return no_init_weights()


def _build_modules(
    config: Gemma3Config, attn: str, pooling: str, device: torch.device, dtype: torch.dtype
) -> tuple[torch.nn.Module, torch.nn.Module | None]:
    """The tower and projector allocated where they run, in their dtype, left uninitialised:
    their values are seeded or read next, so a CPU copy first would only cost time."""
    from transformers import SiglipVisionModel
    from transformers.models.gemma3.modeling_gemma3 import Gemma3MultiModalProjector

    with _skip_init(), device:
        vision = SiglipVisionModel._from_config(
            config.vision_config, attn_implementation=attn, dtype=dtype
        )
        projector = None
        if pooling == "mean_soft_tokens":
            projector = Gemma3MultiModalProjector(config).to(dtype)
    return vision, projector


def _start_cuda(device: torch.device) -> None:
    """Create the CUDA context in the background while transformers imports and the weights
    are made: the first tensor on the device then finds it ready."""

    def touch() -> None:
        with contextlib.suppress(Exception):  # the main thread reports a device it lacks
            torch.zeros(1, device=device)

    if device.type == "cuda":
        threading.Thread(target=touch, name="cuda-init", daemon=True).start()


def _modules_dict(
    vision: torch.nn.Module, projector: torch.nn.Module | None
) -> dict[str, torch.nn.Module]:
    mods = {"vision_tower": vision}
    if projector is not None:
        mods["multi_modal_projector"] = projector
    return mods


def _preprocess_from(source: str, revision: str | None, image_size: int) -> _Preprocess:
    path = resolve_file(source, "preprocessor_config.json", revision)
    if path is None:
        return _Preprocess(image_size)
    cfg = json.loads(path.read_text())
    size = cfg.get("size") or {}
    return _Preprocess(
        image_size=int(size.get("height", image_size)),
        mean=tuple(cfg.get("image_mean", (0.5, 0.5, 0.5))),
        std=tuple(cfg.get("image_std", (0.5, 0.5, 0.5))),
        rescale=float(cfg.get("rescale_factor", 1 / 255)),
    )


def _load_config(source: str, revision: str | None):
    from transformers import AutoConfig, Gemma3Config

    try:
        config = AutoConfig.from_pretrained(source, revision=revision)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EncoderError(
            f"unknown encoder {source!r}: not a preset ({', '.join(PRESETS)}), not a local "
            f"folder, and not a Hugging Face model that could be fetched ({first})"
        ) from None
    if not isinstance(config, Gemma3Config):
        raise EncoderError(
            f"encoder {source!r} is a {type(config).__name__}, not a Gemma 3 multimodal model"
        )
    return config


def load_encoder(
    encoder_id: str = DEFAULT_ENCODER,
    device: str = "cpu",
    pooling: str = "mean_soft_tokens",
    flash_attention: bool = False,
    batch_size: int = 64,
    dtype: str | torch.dtype | None = None,
    revision: str | None = None,
    *,
    fast_path: str = "off",
    sdpa_backend: str = "auto",
) -> GemmaEncoder:
    """Build the frozen encoder named by a preset, a local folder or a Hugging Face id.

    ``dtype`` defaults to bfloat16 (float16 without bf16 support) on CUDA, float16 on MPS
    and float32 on CPU. ``pooling``: ``mean_soft_tokens`` averages the projector's soft
    tokens (feature dim = text hidden size); ``mean_vision_patches`` averages the vision
    tower's patches before the projector (feature dim = vision hidden size).
    ``fast_path`` (``auto``: on for CUDA): compile the forward (``fastpath``); off by
    default here, for one-off encodes that a compile would outlast, and ``auto`` in
    populate. ``sdpa_backend``: the attention kernel (``auto``: PyTorch's choice).

    The fingerprint names what the features mean: the weights, pooling, preprocessing size
    and the dtype the arithmetic runs in. How they are computed (eager or compiled, the
    attention kernel, batch size, device) is not in it: those agree to within rounding
    (cosine >= 0.999 to eager), so a store begun eager is resumed on the fast path and a
    checkpoint trained on either serves both. Lower precision changes the arithmetic and
    is a different dtype, so a different fingerprint.
    """
    if pooling not in POOLINGS:
        raise EncoderError(f"unknown pooling {pooling!r}: use one of {POOLINGS}")
    dev = torch.device(device)
    try:
        fast = use_fast_path(fast_path, dev)
    except ValueError as exc:
        raise EncoderError(str(exc)) from None
    _start_cuda(dev)
    torch_dtype = _dtype_from_name(dtype, dev)
    attn = _attn_implementation(flash_attention, dev)
    if encoder_id in PRESETS:
        config = preset_config(encoder_id)
        vision, projector = _build_modules(config, attn, pooling, dev, torch_dtype)
        weights_sha256 = seed_weights(_modules_dict(vision, projector), _SEED)
        preprocess = _Preprocess(config.vision_config.image_size)
        commit = None
    else:
        config = _load_config(encoder_id, revision)
        config.vision_config.vision_use_head = False
        files = weight_files(encoder_id, revision)
        vision, projector = _build_modules(config, attn, pooling, dev, torch_dtype)
        weights_sha256 = load_weights(files, _modules_dict(vision, projector), encoder_id)
        preprocess = _preprocess_from(encoder_id, revision, config.vision_config.image_size)
        commit = commit_from_cache_path(files[0]) or revision
    vision_cfg = config.vision_config
    if sdpa_backend != "auto":
        try:
            head_dim = vision_cfg.hidden_size // vision_cfg.num_attention_heads
            check_sdpa(sdpa_backend, dev, torch_dtype, head_dim)
        except ValueError as exc:
            raise EncoderError(str(exc)) from None
    feature_dim = (
        config.text_config.hidden_size if projector is not None else vision_cfg.hidden_size
    )
    fingerprint = {
        "model_id": encoder_id,
        "revision": commit,
        "weights_sha256": weights_sha256,
        "pooling": pooling,
        "image_size": preprocess.image_size,
        "dtype": str(torch_dtype).removeprefix("torch."),
        "feature_dim": int(feature_dim),
    }
    return GemmaEncoder(
        vision,
        projector,
        preprocess,
        fingerprint,
        dev,
        torch_dtype,
        batch_size,
        fast_path=fast,
        sdpa_backend=sdpa_backend,
    )
