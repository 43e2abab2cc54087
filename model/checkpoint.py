"""One-file checkpoints: weights plus everything needed to use them without the store
(config, label map, the feature set read and its encoder fingerprint, landmark layout, T,
stream specs, training args, metrics), so a server can refuse features from another
encoder."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model.config import ModelConfig
from model.hybrid import HybridASLModel
from model.inputs import GEMMA_STREAM, input_streams

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
    """Encoder fingerprint of the feature set the model reads ({} for landmarks only)."""
    landmark_layout: dict | None
    num_frames: int
    streams: dict[str, dict]
    train_args: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    state: dict = field(default_factory=dict)
    """Training state for resume (optimizer, scheduler, step, loader position); empty in
    checkpoints meant only for inference."""
    features: str | None = GEMMA_STREAM
    """The feature set feeding the visual input (None: a landmarks-only model). Files
    from before feature sets have no such field and mean `gemma`, whose fingerprint is
    the store-level encoder's."""

    @property
    def input_streams(self) -> list[str]:
        """The store streams the model reads: its feature set, then the landmark streams."""
        return [s for s in input_streams(self.features) if s in self.streams]

    def check_store(self, store) -> None:
        """CheckpointError unless `store` (a featurestore.FeatureStore) holds this model's
        feature set with the same encoder fingerprint, the same T and the same stream
        shapes. Duck-typed so the model package needs no store."""
        problems = store_problems(self, store.schema)
        if problems:
            raise CheckpointError(
                f"store {store.url} is incompatible with the checkpoint: " + "; ".join(problems)
            )


def store_problems(ckpt: Checkpoint, schema: Any) -> list[str]:
    """What keeps `ckpt` from reading a store of this schema (a featurestore.StoreSchema)."""
    problems = []
    if int(schema.num_frames) != int(ckpt.num_frames):
        problems.append(
            f"num_frames (T): store has {schema.num_frames}, checkpoint expects {ckpt.num_frames}"
        )
    name, have_sets = ckpt.features, schema.feature_names()
    if name is not None and name not in have_sets:
        problems.append(
            f"feature set {name!r}: missing from the store (its feature sets: {have_sets or 'none'})"
        )
    elif name is not None:
        diff = fingerprint_diff(schema.fingerprint(name), ckpt.encoder)
        if diff:
            problems.append(f"feature set {name!r}: encoder fingerprint differs ({diff})")
    for stream, want in ckpt.streams.items():
        if stream == name and name not in have_sets:
            continue  # said above
        try:
            have = schema.spec(stream)
        except KeyError:
            problems.append(f"stream {stream!r}: missing from the store")
            continue
        if list(have.shape) != list(want["shape"]) or str(have.dtype) != str(want["dtype"]):
            problems.append(
                f"stream {stream!r}: store has {tuple(have.shape)} {have.dtype}, "
                f"checkpoint expects {tuple(want['shape'])} {want['dtype']}"
            )
    return problems


def fingerprint_digest(fingerprint: dict) -> str:
    """12 hex characters naming a fingerprint; the same digest `featurestore info` shows
    (a test checks they agree)."""
    canon = json.dumps(fingerprint or {}, sort_keys=True, default=str)
    return hashlib.sha256(canon.encode()).hexdigest()[:12]


def fingerprint_diff(store_fp: dict, other_fp: dict, other: str = "checkpoint") -> str:
    """'' when equal; else both digests and the fields that differ."""
    if fingerprint_digest(store_fp) == fingerprint_digest(other_fp):
        return ""
    fields = [
        f"{k}: store {store_fp.get(k)!r}, {other} {other_fp.get(k)!r}"
        for k in sorted(set(store_fp) | set(other_fp))
        if store_fp.get(k) != other_fp.get(k)
    ]
    digests = f"store {fingerprint_digest(store_fp)}, {other} {fingerprint_digest(other_fp)}"
    return digests + ": " + "; ".join(fields[:6])


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
    features: str | None = GEMMA_STREAM,
) -> Path:
    """Write atomically (temp file + rename): a crash mid-save leaves the old file intact.
    `features` names the feature set the model reads, `encoder` is its fingerprint."""
    bare = _unwrap(model)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": bare.config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in bare.state_dict().items()},
        "labels": {int(k): str(v) for k, v in labels.items()},
        "features": features,
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
        features=payload["features"] if "features" in payload else _legacy_features(payload),
    )


def _legacy_features(payload: dict) -> str | None:
    """A file from before feature sets read base `gemma`, if it read features at all."""
    return GEMMA_STREAM if GEMMA_STREAM in payload.get("streams", {}) else None
