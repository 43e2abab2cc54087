"""`featurestore populate --ray`: the CLI path onto a local Ray gives the same store as without."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from featurestore import open_store

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def populate(store, manifest, *extra):
    cmd = [sys.executable, "-m", "featurestore", "populate", "--store", str(store),
           "--manifest", str(manifest), "--encoder", "tiny-random", "--num-frames", "8",
           "--no-landmarks", "--quiet", *extra]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_populate_ray_flag_matches_local_populate(tmp_path):
    pytest.importorskip("ray")
    from featurestore.extract import synthesize

    manifest = synthesize(tmp_path / "clips", classes=2, per_class=3, frames=12, size=(64, 64))
    populate(tmp_path / "local.zarr", manifest)
    populate(tmp_path / "ray.zarr", manifest, "--ray", "--num-workers", "1")
    local, ray = open_store(tmp_path / "local.zarr"), open_store(tmp_path / "ray.zarr")
    assert ray.ids() == local.ids() and len(ray) == 6
    for vid in local.ids():
        np.testing.assert_array_equal(ray.get(vid).arrays["gemma"], local.get(vid).arrays["gemma"])
    assert ray.verify() == []
