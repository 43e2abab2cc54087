"""Clips for the extraction tests: frames that encode their index, and the real WLASL
clips where this machine has them (tests that need them skip elsewhere)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def shared_data() -> Path | None:
    """The real clips folder (``shared/data`` beside the repo), or None where it is absent."""
    for candidate in (os.environ.get("SIGNSTORE_SHARED_DATA"), ROOT.parent / "shared" / "data"):
        if candidate and Path(candidate).is_dir():
            return Path(candidate)
    return None


def wlasl_mini() -> Path:
    data = shared_data()
    if data is None or not (data / "wlasl-mini" / "WLASL_v0.3.json").is_file():
        pytest.skip("real WLASL clips (shared/data/wlasl-mini) are not on this machine")
    return data / "wlasl-mini"


def indexed_frames(n: int, height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    """Frames whose brightness encodes their index (8 * k + 4), with a little texture."""
    rng = np.random.default_rng(seed)
    base = (8 * np.arange(n) + 4).reshape(n, 1, 1, 1)
    noise = rng.integers(-2, 3, (n, height, width, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def frame_indices(frames: np.ndarray) -> np.ndarray:
    """Recover the indices written by ``indexed_frames`` (lossy codecs: nearest integer)."""
    return np.rint((frames.reshape(len(frames), -1).mean(axis=1) - 4) / 8).astype(int)
