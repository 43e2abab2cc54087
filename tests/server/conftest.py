"""Fixtures of the server tests: a 12-video store and a checkpoint that fits it."""

from __future__ import annotations

import pytest

from tests.server.builders import build_checkpoint, build_store


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> tuple[str, str]:
    """(store path, checkpoint path) for a 12-video store and a matching checkpoint."""
    root = tmp_path_factory.mktemp("served")
    store = build_store(root / "store.zarr", n=12)
    ckpt = build_checkpoint(root / "model.pt", store.schema)
    return str(root / "store.zarr"), str(ckpt)
