"""Fixtures every test folder shares: a seeded generator and store URLs on every backend.

The builders they share (``small_schema``, ``random_video``) live in ``tests/helpers.py``;
each folder's own fixtures live in its ``conftest.py``.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

# Until the server, training and Ray tests move into their folders (issue 16), they import
# test_server_fixtures, test_training_fixtures and s3_server by their bare names. Appended
# (not prepended) so that tests/featurestore/ and the like never shadow the packages.
sys.path.append(str(Path(__file__).parent))


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
