"""Shared fixtures: small schemas, random videos, and store URLs on every backend."""

from __future__ import annotations

import uuid

import numpy as np
import pytest

from featurestore import StoreSchema, StreamSpec

T, D = 4, 8


def small_schema(num_frames: int = T, dim: int = D, labels: dict | None = None) -> StoreSchema:
    return StoreSchema(
        num_frames=num_frames,
        streams={
            "gemma": StreamSpec((num_frames, dim), "float16"),
            "landmarks": StreamSpec((num_frames, 75, 3), "float32"),
            "landmark_mask": StreamSpec((num_frames, 3), "bool"),
        },
        encoder={"model_id": "test", "feature_dim": dim, "pooling": "mean_soft_tokens"},
        landmark_layout={"parts": ["pose", "left_hand", "right_hand"], "sizes": [33, 21, 21]},
        labels=labels if labels is not None else {0: "hello", 1: "thankyou", 2: "yes"},
    )


def random_video(
    rng: np.random.Generator, num_frames: int = T, dim: int = D
) -> dict[str, np.ndarray]:
    return {
        "gemma": rng.standard_normal((num_frames, dim)).astype(np.float16),
        "landmarks": rng.standard_normal((num_frames, 75, 3)).astype(np.float32),
        "landmark_mask": rng.random((num_frames, 3)) > 0.3,
    }


@pytest.fixture(params=["zarr", "memory", "hdf5"])
def store_url(request, tmp_path) -> str:
    """A fresh store location on each backend: Zarr folder, Zarr on memory://, HDF5."""
    if request.param == "zarr":
        return str(tmp_path / "store.zarr")
    if request.param == "hdf5":
        return str(tmp_path / "store.h5")
    return f"memory://{uuid.uuid4().hex}/store.zarr"


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
