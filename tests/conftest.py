"""Fixtures every test folder shares: a seeded generator and store URLs on every backend.

The builders they share (``small_schema``, ``random_video``) live in ``tests/helpers.py``;
each folder's own fixtures live in its ``conftest.py``.
"""

from __future__ import annotations

import uuid

import numpy as np
import pytest


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
