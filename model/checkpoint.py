"""One-file checkpoints: weights plus everything needed to use them without the store
(config, label map, encoder fingerprint, landmark layout, T, stream specs, training
args, metrics), so a server can refuse features from another encoder."""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model.config import ModelConfig
from model.hybrid import HybridASLModel

FORMAT = "signstore-checkpoint"
FORMAT_VERSION = 2
"""2: the visual stream stores its feature statistics and reads appearance and movement."""


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or does not fit the data it is used with."""


@dataclass
class Checkpoint:
    """A loaded checkpoint; `model` is in eval mode."""

    model: HybridASLModel
    config: ModelConfig
    labels: dict[int, str]
    encoder: dict
    landmark_layout: dict | None
    num_frames: int
    streams: dict[str, dict]
    train_args: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    state: dict = field(default_factory=dict)
    """Training state for resume (optimizer, scheduler, step, loader position); empty in
    checkpoints meant only for inference."""

    def check_store(self, store) -> None:
        """Raise if `store` (a featurestore.FeatureStore) holds features of another encoder,
        another T or other stream shapes. Duck-typed so the model package needs no store."""
        store.check_compatible(
            encoder=self.encoder, num_frames=self.num_frames, streams=self.streams
        )


def _unwrap(model: nn.Module) -> HybridASLModel:
    """The bare model inside DDP / torch.compile wrappers."""
    inner: Any = model
    while hasattr(inner, "module") or hasattr(inner, "_orig_mod"):
        inner = getattr(inner, "module", None) or inner._orig_mod
    return inner


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    labels: dict[int, str],
    encoder: dict,
    landmark_layout: dict | None,
    num_frames: int,
    streams: dict[str, dict],
    train_args: dict | None = None,
    metrics: dict | None = None,
    state: dict | None = None,
) -> Path:
    """Write atomically (temp file + rename): a crash mid-save leaves the old file intact."""
    bare = _unwrap(model)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": bare.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in bare.state_dict().items()},
        "labels": {int(k): str(v) for k, v in labels.items()},
        "encoder": dict(encoder or {}),
        "landmark_layout": landmark_layout,
        "num_frames": int(num_frames),
        "streams": {
            name: {"shape": list(s["shape"]), "dtype": str(s["dtype"])}
            for name, s in streams.items()
        },
        "train_args": dict(train_args or {}),
        "metrics": dict(metrics or {}),
        "state": state or {},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".partial", dir=path.parent)
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> Checkpoint:
    """Rebuild the model from the file alone; a clear CheckpointError for a missing,
    corrupt or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        # weights_only: plain tensors and containers only; never unpickle arbitrary code.
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"checkpoint {path} is unreadable (corrupt or truncated?): {exc}"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a {FORMAT} file")
    if payload.get("format_version", 0) != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format version {payload.get('format_version')}; this code reads "
            f"version {FORMAT_VERSION} (retrain, or use the release that wrote it)"
        )
    try:
        config = ModelConfig.from_dict(payload["config"])
        model = HybridASLModel(config)
        model.load_state_dict(payload["state_dict"])
    except (KeyError, ValueError, RuntimeError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path} does not rebuild its model: {exc}") from exc
    model.to(map_location if isinstance(map_location, (str, torch.device)) else "cpu").eval()
    return Checkpoint(
        model=model,
        config=config,
        labels={int(k): v for k, v in payload["labels"].items()},
        encoder=payload["encoder"],
        landmark_layout=payload["landmark_layout"],
        num_frames=payload["num_frames"],
        streams=payload["streams"],
        train_args=payload.get("train_args", {}),
        metrics=payload.get("metrics", {}),
        state=payload.get("state", {}),
    )
