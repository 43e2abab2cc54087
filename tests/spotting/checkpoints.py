"""Small untrained checkpoints for the door tests (what a model answers does not matter
there, only what reaches it and what comes out)."""

from __future__ import annotations

from pathlib import Path

from featurestore.extract import landmark_layout
from model import HybridASLModel, ModelConfig, save_checkpoint

LABELS = {0: "-", 1: "hello", 2: "thankyou", 3: "yes"}
T = 8


def tiny_checkpoint(path: Path, modalities: str = "landmarks", encoder: dict | None = None) -> Path:
    """A landmarks-only model, or one that also reads `encoder`'s features (its fingerprint)."""
    layout = landmark_layout()
    dim = int(encoder["feature_dim"]) if encoder else 0
    cfg = ModelConfig.from_layout(
        layout,
        num_classes=len(LABELS),
        gemma_dim=dim,
        num_frames=T,
        hidden_dim=32,
        num_heads=2,
        modalities=modalities,
    )
    streams = {
        "landmarks": {"shape": [T, 75, 3], "dtype": "float32"},
        "landmark_mask": {"shape": [T, 3], "dtype": "bool"},
    }
    if encoder:
        streams["gemma"] = {"shape": [T, dim], "dtype": "float16"}
    return save_checkpoint(
        path,
        HybridASLModel(cfg),
        labels=LABELS,
        encoder=encoder or {},
        landmark_layout=layout,
        num_frames=T,
        streams=streams,
        features="gemma" if encoder else None,
    )
