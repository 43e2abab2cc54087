"""Builders shared by the server tests: a tiny store and an untrained checkpoint for it.

No tests live here; the tests in this folder import these helpers.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import numpy as np
import torch

from featurestore import GEMMA_STREAM, FeatureStore, StoreSchema, create_store, open_store
from model import HybridASLModel, ModelConfig, save_checkpoint
from tests.helpers import LAYOUT, D, T, random_video, small_schema

LABELS = {0: "hello", 1: "thankyou", 2: "yes", 3: "no"}
ENCODER = {"model_id": "test-encoder", "feature_dim": D, "pooling": "mean_soft_tokens"}


def tiny_schema(num_frames: int = T, dim: int = D, encoder: dict | None = None) -> StoreSchema:
    return small_schema(
        num_frames,
        dim,
        labels=LABELS,
        encoder=encoder or {**ENCODER, "feature_dim": dim},
        layout=LAYOUT,
    )


def video_ids(n: int) -> list[str]:
    return [f"v{i:03d}" for i in range(n)]


def build_store(
    path: Path | str, n: int = 12, schema: StoreSchema | None = None, seed: int = 0
) -> FeatureStore:
    """n videos with random features; splits train/val/test by index; one unlabeled."""
    schema = schema or tiny_schema()
    rng = np.random.default_rng(seed)
    store = create_store(str(path), schema)
    with store.writer() as w:
        for i, vid in enumerate(video_ids(n)):
            t, dim = schema.streams[GEMMA_STREAM].shape
            label = -1 if i == n - 1 else i % len(LABELS)
            w.put(
                vid,
                random_video(rng, t, dim),
                label=label,
                gloss=LABELS.get(label, ""),
                split=("train", "val", "test")[i % 3],
                source={"path": f"videos/{vid}.mp4", "frame_start": 1, "frame_end": -1},
            )
    return open_store(str(path))


def build_checkpoint(path: Path | str, schema: StoreSchema, seed: int = 0, **config) -> Path:
    """An untrained model whose checkpoint matches `schema` (override fields to mismatch)."""
    torch.manual_seed(seed)
    t, dim = schema.streams[GEMMA_STREAM].shape
    cfg = ModelConfig.from_layout(
        schema.landmark_layout,
        num_classes=len(schema.labels),
        gemma_dim=dim,
        num_frames=t,
        hidden_dim=32,
        num_heads=4,
        num_landmark_layers=1,
        fusion_type=config.pop("fusion_type", "concat"),
    )
    streams = {k: v.to_json() for k, v in schema.streams.items()}
    return save_checkpoint(
        path,
        HybridASLModel(cfg),
        labels=schema.labels,
        encoder=config.pop("encoder", schema.encoder),
        landmark_layout=schema.landmark_layout,
        num_frames=config.pop("num_frames", schema.num_frames),
        streams=config.pop("streams", streams),
        train_args={"epochs": 0},
        metrics={"val_top1": 0.25},
    )


@functools.cache
def upload_schema(num_frames: int = T) -> StoreSchema:
    """The schema the tiny-random extractor writes, so the server can extract uploads."""
    from featurestore.extract import ClipExtractor

    return ClipExtractor("tiny-random", num_frames=num_frames).schema(LABELS)


def wait_for_uploads(app, timeout: float = 120) -> str:
    """Block until the app's background encoder load has finished; its upload status."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = app.state.serving.uploads.status
        if status != "loading":
            return status
        time.sleep(0.05)
    raise TimeoutError("the encoder did not load")


def landmark_take(
    rng: np.random.Generator, sign: int, frames: int = 20, width: int = 258
) -> np.ndarray:
    """One take of sign number ``sign`` as MediaPipe per-frame vectors (frames, width), as
    the importers read them: a still body, and the right hand moving in the sign's own
    direction (signs are told apart by it), with some noise."""
    angle = 2 * np.pi * sign / 7
    t = np.linspace(0, 1, frames)[:, None]
    pose = np.tile(rng.uniform(0.3, 0.7, (33, 4)), (frames, 1, 1))
    pose[:, 11, :2], pose[:, 12, :2] = (0.6, 0.5), (0.4, 0.5)  # the shoulders
    centre = np.array([0.5, 0.6]) + 0.2 * t * np.array([np.cos(angle), np.sin(angle)])
    hand = np.zeros((frames, 21, 3))
    hand[..., :2] = centre[:, None] + rng.normal(0, 0.02, (21, 2))
    hand += rng.normal(0, 0.005, hand.shape)
    parts = {
        1662: [pose.reshape(frames, -1), np.zeros((frames, 468 * 3))],
        258: [pose.reshape(frames, -1)],
        126: [],
    }
    left = np.zeros((frames, 63))
    return np.concatenate([*parts[width], left, hand.reshape(frames, -1)], axis=1)


def npy(arr: np.ndarray) -> bytes:
    """``arr`` as the bytes of a .npy file."""
    import io

    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()
