"""Fixtures of the extraction tests: the tiny random Gemma encoder and a synthetic clip set."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def tiny_encoder():
    from featurestore.extract import load_encoder

    return load_encoder("tiny-random")


@pytest.fixture(scope="session")
def synth_set(tmp_path_factory) -> Path:
    """2 classes x 3 clips, 20 frames of 64x64: the manifest path."""
    from featurestore.extract import synthesize

    return synthesize(
        tmp_path_factory.mktemp("synth"), classes=2, per_class=3, frames=20, size=(64, 64)
    )
