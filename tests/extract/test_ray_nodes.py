"""A real two-node Ray cluster on this machine (`ray start --head` and `ray start --address`,
one CPU each, 127.0.0.1) and `featurestore populate --ray ADDRESS` against it: encoder
actors and decode tasks run on both nodes, and the store equals a local populate bit for
bit (landmarks and Gemma features). The nodes are stopped at the end, whatever happens."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("ray")

from featurestore import open_store  # noqa: E402
from tests.extract.ray_nodes import ENV, ray_nodes  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def populate(store, manifest, *extra) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "featurestore", "populate", "--store", str(store),
           "--manifest", str(manifest), "--encoder", "tiny-random", "--num-frames", "8",
           "--quiet", *extra]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **ENV})  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.timeout(600)
def test_two_node_run_uses_both_nodes_and_equals_local_populate(tmp_path):
    from featurestore.extract import synthesize

    manifest = synthesize(tmp_path / "clips", classes=2, per_class=4, frames=12, size=(64, 64))
    populate(tmp_path / "local.zarr", manifest, "--workers", "1")
    summary = tmp_path / "summary.json"
    with ray_nodes([1, 1]) as address:
        populate(tmp_path / "ray.zarr", manifest, "--ray", address, "--num-workers", "2",
                 "--commit-every", "2", "--summary-json", summary)  # fmt: skip
    result = json.loads(summary.read_text())
    assert result["plan"]["nodes"] == 2 and result["plan"]["cpus"] == 2
    assert result["plan"]["cpus_per_worker"] == 0  # a 1-CPU node must keep its CPU for tasks
    workers, tasks = result["nodes"]["workers"], result["nodes"]["tasks"]
    assert len(workers) == 2 and len(set(workers.values())) == 2, workers
    assert len(tasks) == 2 and sum(tasks.values()) == 8, tasks
    assert set(tasks) == set(workers.values())

    local, ray = open_store(tmp_path / "local.zarr"), open_store(tmp_path / "ray.zarr")
    assert ray.ids() == local.ids() and len(ray) == 8
    for vid in local.ids():
        a, b = local.get(vid), ray.get(vid)
        assert (b.label, b.gloss, b.split, b.source) == (a.label, a.gloss, a.split, a.source)
        for stream, arr in a.arrays.items():
            assert b.arrays[stream].dtype == arr.dtype
            np.testing.assert_array_equal(b.arrays[stream], arr, err_msg=f"{vid} {stream}")
    assert ray.verify() == []
    assert len({ray.entry(v).segment for v in ray.ids()}) == 2  # one segment per worker
