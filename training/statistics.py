"""Per-dimension statistics of the frozen-encoder features, which the model standardises
its input with. Estimated from a bounded, seeded sample of whole blocks, so the cost is a
few block reads however large the store is."""

from __future__ import annotations

import numpy as np

from featurestore import GEMMA_STREAM, FeatureStore
from training.plan import rng_for
from training.store_checks import DataError

SAMPLE_ROWS = 2048
"""Rows read at most: plenty for a per-dimension mean and std."""


def feature_statistics(
    store: FeatureStore,
    split: str,
    stream: str = GEMMA_STREAM,
    max_rows: int = SAMPLE_ROWS,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (each (D,), float32) of `stream` over frames of the split's rows
    that hold it (a feature set added to some videos only).

    Rows with NaN/inf are left out (the loader skips them too). A dimension whose std is
    near zero gets a floor of 1e-3 of the typical std, so standardising never divides
    by zero or blows up a dimension that barely moves.
    """
    blocks = store.blocks(split, streams=[stream])
    total = squares = 0.0
    rows = frames_seen = 0
    for b in rng_for(seed, 0xF5).permutation(len(blocks)):
        if rows >= max_rows:
            break
        a = store.read_block(blocks[b], [stream]).arrays[stream].astype(np.float64)
        a = a[np.isfinite(a.reshape(len(a), -1)).all(axis=1)]
        frames = a.reshape(-1, a.shape[-1])
        total = total + frames.sum(axis=0)
        squares = squares + np.square(frames).sum(axis=0)
        rows += len(a)
        frames_seen += len(frames)
    if not frames_seen:
        raise DataError(f"split {split!r} has no rows with finite {stream!r} features")
    mean = total / frames_seen
    std = np.sqrt(np.maximum(squares / frames_seen - np.square(mean), 0.0))
    floor = 1e-3 * float(np.median(std)) + 1e-12
    return np.asarray(mean, np.float32), np.maximum(std, floor).astype(np.float32)
