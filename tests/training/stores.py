"""Synthetic stores for the model and training tests: features with a learnable class
signal, written with the store's own writer. (No tests here; the tests in this folder
import it.)"""

from __future__ import annotations

import numpy as np

from featurestore import StoreSchema, create_store
from tests.helpers import LAYOUT, STREAMS, small_schema

__all__ = ["LAYOUT", "class_video", "make_store", "schema"]

ENCODER = {
    "model_id": "synthetic-test",
    "revision": "0",
    "pooling": "mean_soft_tokens",
    "feature_dim": 16,
}


def schema(
    num_frames: int = 4, dim: int = 16, classes: int = 10, streams: tuple[str, ...] = STREAMS
) -> StoreSchema:
    return small_schema(
        num_frames,
        dim,
        labels={c: f"sign{c}" for c in range(classes)},
        encoder={**ENCODER, "feature_dim": dim},
        streams=streams,
        layout=LAYOUT,
    )


def class_video(
    rng, label: int, num_frames: int, dim: int, centres: np.ndarray, noise: float = 0.6
) -> dict:
    """Gemma features near a class centre; a body with shoulders, and hands whose
    position and motion depend on the class."""
    gemma = centres[label] + noise * rng.normal(size=(num_frames, dim))
    lm = np.zeros((num_frames, 75, 3), np.float32)
    shift = rng.uniform(-0.1, 0.1, 2)
    lm[:, :33, :2] = rng.uniform(0.3, 0.7, (33, 2)) + shift
    lm[:, 11, :2], lm[:, 12, :2] = (
        (0.6 + shift[0], 0.4 + shift[1]),
        (0.4 + shift[0], 0.4 + shift[1]),
    )
    angle = 2 * np.pi * label / 10
    t = np.linspace(0, 1, num_frames)[:, None]
    for start, side in ((33, 1.0), (54, -1.0)):
        wrist = (
            np.array([0.5 + side * 0.1, 0.55]) + shift + 0.15 * t * [np.cos(angle), np.sin(angle)]
        )
        shape = 0.03 * np.stack(
            [np.cos(angle + np.arange(21)), np.sin(side * np.arange(21) * label / 7)], -1
        )
        lm[:, start : start + 21, :2] = (
            wrist[:, None] + shape[None] + 0.005 * rng.normal(size=(num_frames, 21, 2))
        )
    lm[..., 2] = 0.01 * rng.normal(size=(num_frames, 75))
    mask = np.ones((num_frames, 3), bool)
    return {"gemma": gemma, "landmarks": lm, "landmark_mask": mask}


def make_store(
    url,
    classes: int = 10,
    per_class: dict | None = None,
    num_frames: int = 4,
    dim: int = 16,
    seed: int = 0,
    block_size: int = 16,
    streams: tuple[str, ...] = STREAMS,
    noise: float = 0.6,
    labelled: bool = True,
):
    """A store with `per_class[split]` videos of each class in each split."""
    per_class = per_class or {"train": 8, "val": 4}
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim))
    sch = schema(num_frames, dim, classes if labelled else 0, streams)
    store = create_store(str(url), sch, block_size=block_size)
    with store.writer() as w:
        for split, n in per_class.items():
            for i in range(n):
                for c in range(classes):
                    arrays = class_video(rng, c, num_frames, dim, centres, noise)
                    arrays = {k: v for k, v in arrays.items() if k in streams}
                    w.put(
                        f"{split}-{c:03d}-{i:03d}",
                        arrays,
                        label=c if labelled else -1,
                        gloss=f"sign{c}" if labelled else "",
                        split=split,
                    )
    return store
