"""Where the frozen encoder's weights come from: seeded random presets or safetensors shards.

Either way the values are written straight into modules already built on the target
device in its dtype (no full CPU copy of the model first, no ``.to()`` pass after), and the
weights are hashed as they are made or read, before any cast: ``weights_sha256`` names
the weights, not the device or dtype they run in.
"""

from __future__ import annotations

import hashlib
import json
import re
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "EncoderError",
    "commit_from_cache_path",
    "load_weights",
    "resolve_file",
    "seed_weights",
    "weight_files",
]


class EncoderError(ValueError):
    """An encoder that cannot be loaded: unknown id, not a Gemma 3 model, missing weights."""


def _hash(digest, name: str, tensor: torch.Tensor) -> None:
    """One tensor into the weights digest: its name, dtype, shape and bytes."""
    t = tensor.detach().cpu().contiguous()
    digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
    digest.update(t.reshape(-1).view(torch.uint8).numpy())  # the buffer itself, no copy


def seed_weights(modules: dict[str, torch.nn.Module], seed: int) -> str:
    """Deterministic random weights from numpy's PCG64, independent of transformers' init
    code and of the device; returns their sha256.

    Scaled by fan-in (std 1/sqrt(fan_in)), as a random network that keeps its activations
    at unit size: Gemma's flat std-0.02 init leaves a small tower nearly linear, and a
    linear tower's mean-pooled features cannot tell where in the frame anything is.
    Position embeddings get std 1 for the same reason. Norm scales start at identity (1
    for LayerNorm, 0 for Gemma's ``1 + w`` RMSNorm) and biases at 0.

    The values are drawn on the CPU (one stream defines the preset on every device), one
    tensor at a time: straight into a float32 CPU parameter, else into one of two reused
    buffers that a second thread hashes and copies to the device while the next is drawn
    (numpy, hashlib and copies release the GIL; fresh pages cost more than drawing).
    """
    rng = np.random.default_rng(seed)
    digest = hashlib.sha256()
    params = [
        (f"{prefix}.{name}", param)
        for prefix, module in modules.items()
        for name, param in sorted(module.named_parameters())
    ]
    largest = max(p.numel() for _, p in params)
    buffers: list[np.ndarray] = []
    placed: Future | None = None
    with ThreadPoolExecutor(1, thread_name_prefix="weights") as worker, torch.no_grad():
        for i, (name, param) in enumerate(params):
            if param.device.type == "cpu" and param.dtype == torch.float32:
                target = param.detach().numpy()
            else:
                if len(buffers) < 2:
                    buffers.append(np.empty(largest, np.float32))
                target = buffers[i % 2][: param.numel()].reshape(param.shape)
                if placed is not None:
                    placed.result()  # the other buffer's copy, and the digest, in order
            _draw(rng, name, target)
            if placed is not None:
                placed.result()
            placed = worker.submit(_hash_and_place, digest, name, param, target)
        if placed is not None:
            placed.result()
    return digest.hexdigest()


def _draw(rng: np.random.Generator, name: str, out: np.ndarray) -> None:
    if "mm_soft_emb_norm" in name:
        out.fill(0)
    elif "norm" in name and name.endswith("weight"):  # the prefixes hold no "norm"
        out.fill(1)
    elif name.endswith("bias"):
        out.fill(0)
    else:
        rng.standard_normal(dtype=np.float32, out=out)
        if "position_embedding" not in name:
            out /= np.sqrt(_fan_in(name, out.shape))


@torch.no_grad()
def _hash_and_place(digest, name: str, param: torch.Tensor, value: np.ndarray) -> None:
    tensor = torch.from_numpy(value)
    _hash(digest, name, tensor)
    if tensor.data_ptr() != param.data_ptr():
        param.copy_(tensor)  # onto the device, cast to its dtype


def _fan_in(name: str, shape: tuple[int, ...]) -> int:
    """Inputs per output: Linear and Conv weights are (out, in, ...); Gemma's projector
    matrix is (vision hidden, text hidden), applied as ``x @ w``."""
    if "mm_input_projection" in name:
        return int(shape[0])
    return int(np.prod(shape[1:]))


def resolve_file(source: str, filename: str, revision: str | None) -> Path | None:
    """A file of a local folder or a Hugging Face model (from the local cache or fetched)."""
    local = Path(source)
    if local.is_dir():
        path = local / filename
        return path if path.is_file() else None
    from transformers.utils import cached_file

    cached = cached_file(
        source,
        filename,
        revision=revision,
        _raise_exceptions_for_missing_entries=False,
        _raise_exceptions_for_connection_errors=False,
    )
    return None if cached is None else Path(cached)


def commit_from_cache_path(path: Path) -> str | None:
    parts = path.parts
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts else None


def weight_files(source: str, revision: str | None) -> list[Path]:
    """Only the shards that hold vision tower or projector tensors."""
    index = resolve_file(source, "model.safetensors.index.json", revision)
    if index is None:
        single = resolve_file(source, "model.safetensors", revision)
        if single is None:
            raise EncoderError(f"{source}: no model.safetensors or safetensors index found")
        return [single]
    weight_map = json.loads(index.read_text())["weight_map"]
    shards = sorted(
        {f for k, f in weight_map.items() if "vision_tower." in k or "multi_modal_projector." in k}
    )
    files = [f for f in (resolve_file(source, s, revision) for s in shards) if f is not None]
    if not shards or len(files) < len(shards):
        raise EncoderError(f"{source}: vision tower weights missing from its safetensors shards")
    return files


_PREFIX = re.compile(r"^(?:.*?\.)?(vision_tower|multi_modal_projector)\.(.*)$")


def load_weights(files: list[Path], modules: dict[str, torch.nn.Module], source: str) -> str:
    """Read the needed tensors from safetensors into the modules (strict: nothing missing),
    cast to the modules' dtype on their device as they are copied; returns the sha256 of
    the tensors as stored."""
    from safetensors import safe_open

    wanted = {prefix: dict(m.state_dict()) for prefix, m in modules.items()}
    loaded: dict[str, dict[str, torch.Tensor]] = {prefix: {} for prefix in modules}
    for file in files:
        with safe_open(str(file), framework="pt") as fh:
            for key in fh.keys():
                match = _PREFIX.match(key)
                if not match or match.group(1) not in wanted:
                    continue
                prefix, name = match.groups()
                # transformers 4.x nests SigLIP under "vision_model."; 5.x does not
                for candidate in (name, name.removeprefix("vision_model."), f"vision_model.{name}"):
                    if candidate in wanted[prefix]:
                        loaded[prefix][candidate] = fh.get_tensor(key)
                        break
    digest = hashlib.sha256()
    for prefix, module in modules.items():
        missing = sorted(set(wanted[prefix]) - set(loaded[prefix]))
        if missing:
            raise EncoderError(f"{source}: {prefix} weights missing: {missing[:3]}...")
        for name, tensor in sorted(loaded[prefix].items()):
            _hash(digest, f"{prefix}.{name}", tensor)
        module.load_state_dict(loaded[prefix], strict=True)  # copies into device and dtype
    return digest.hexdigest()
