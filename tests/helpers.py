"""Builders every test folder shares: one small schema and random videos that fit it.

The store, extraction, training and server tests all build their stores from
``small_schema``; each passes the labels, encoder block and streams it needs.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from featurestore import (
    GEMMA_STREAM,
    LANDMARK_MASK_STREAM,
    LANDMARKS_STREAM,
    StoreSchema,
    StreamSpec,
)

T, D = 4, 8
STREAMS = (GEMMA_STREAM, LANDMARKS_STREAM, LANDMARK_MASK_STREAM)
PARTS = {"parts": ["pose", "left_hand", "right_hand"], "sizes": [33, 21, 21]}
LAYOUT = {**PARTS, "coords": ["x", "y", "z"]}
"""The Holistic layout as extraction records it (pose + two hands, x/y/z)."""


def small_schema(
    num_frames: int = T,
    dim: int = D,
    labels: dict[int, str] | None = None,
    encoder: dict | None = None,
    streams: Iterable[str] = STREAMS,
    layout: dict | None = None,
) -> StoreSchema:
    """A schema of ``num_frames`` frames of ``dim``-wide Gemma features and 75 landmarks."""
    specs = {
        GEMMA_STREAM: StreamSpec((num_frames, dim), "float16"),
        LANDMARKS_STREAM: StreamSpec((num_frames, 75, 3), "float32"),
        LANDMARK_MASK_STREAM: StreamSpec((num_frames, 3), "bool"),
    }
    return StoreSchema(
        num_frames=num_frames,
        streams={name: specs[name] for name in streams},
        encoder=encoder or {"model_id": "test", "feature_dim": dim, "pooling": "mean_soft_tokens"},
        landmark_layout=layout or PARTS,
        labels=labels if labels is not None else {0: "hello", 1: "thankyou", 2: "yes"},
    )


def random_video(
    rng: np.random.Generator, num_frames: int = T, dim: int = D
) -> dict[str, np.ndarray]:
    """Arrays for one video of ``small_schema(num_frames, dim)``."""
    return {
        GEMMA_STREAM: rng.standard_normal((num_frames, dim)).astype(np.float16),
        LANDMARKS_STREAM: rng.standard_normal((num_frames, 75, 3)).astype(np.float32),
        LANDMARK_MASK_STREAM: rng.random((num_frames, 3)) > 0.3,
    }
