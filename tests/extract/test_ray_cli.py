"""`featurestore populate --ray` from the command line, on a real 2-CPU Ray (`ray start`,
127.0.0.1) into a store on a local S3 server (moto): the issue-14 run with no resource flags
finishes and equals a local populate; a plan that cannot fit is refused before any work;
work Ray cannot schedule ends the run with one line, and a rerun then finishes it.

Every test bounds its wall time (``timeout`` marker, subprocess timeouts), so a hang fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ray = pytest.importorskip("ray")
pytest.importorskip("s3fs")
pytest.importorskip("moto")

from featurestore import open_store  # noqa: E402
from featurestore.errors import StoreError  # noqa: E402
from tests.extract.ray_nodes import ENV, ray_nodes  # noqa: E402
from tests.s3_server import shared_s3_server  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster():
    with ray_nodes([2]) as address:
        yield address


@pytest.fixture(scope="module")
def s3():
    return shared_s3_server()


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    from featurestore.extract import synthesize

    folder = tmp_path_factory.mktemp("clips")
    return synthesize(folder, classes=2, per_class=3, frames=12, size=(64, 64))


@pytest.fixture(scope="module")
def local_store(manifest, tmp_path_factory):
    url = tmp_path_factory.mktemp("local") / "local.zarr"
    populate(url, manifest)
    return url


def populate(store, manifest, *extra, env=None, ok=True, timeout=240):
    cmd = [sys.executable, "-m", "featurestore", "populate", "--store", str(store),
           "--manifest", str(manifest), "--encoder", "tiny-random", "--num-frames", "8",
           *extra]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **ENV, **(env or {})})  # fmt: skip
    if ok:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def assert_same(local_url, url, storage_options=None):
    local, got = open_store(local_url), open_store(url, storage_options=storage_options)
    assert got.ids() == local.ids() and len(got) == 6
    for vid in local.ids():
        a, b = local.get(vid), got.get(vid)
        for stream, arr in a.arrays.items():
            assert b.arrays[stream].dtype == arr.dtype
            np.testing.assert_array_equal(b.arrays[stream], arr, err_msg=f"{vid} {stream}")
    assert got.verify() == []


@pytest.mark.timeout(400)
def test_populate_ray_without_resource_flags_finishes_on_two_cpus(
    cluster, s3, manifest, local_store, tmp_path
):
    url = f"s3://{s3.make_bucket()}/ray.zarr"
    summary = tmp_path / "summary.json"
    done = populate(url, manifest, "--ray", cluster, "--summary-json", summary, env=s3.env)
    assert "ray plan: 1 node, 2 CPUs, 0 GPUs -> 1 encoder worker (0 CPU" in done.stderr
    assert "2 at once" in done.stderr
    result = json.loads(summary.read_text())
    assert result["done"] == 6 and result["plan"]["cpus_per_worker"] == 0
    assert_same(local_store, url, s3.storage_options)


@pytest.mark.timeout(200)
@pytest.mark.parametrize(
    ("flags", "says"),
    [
        (["--gpus-per-worker", "1"], "--gpus-per-worker 1: the Ray cluster has no GPUs"),
        (["--cpus-per-task", "3"], "pass --cpus-per-task 2 or less"),
    ],
)
def test_a_plan_that_cannot_fit_is_refused_before_any_work(
    cluster, manifest, tmp_path, flags, says
):
    store = tmp_path / "refused.zarr"
    done = populate(store, manifest, "--ray", cluster, *flags, ok=False, timeout=120)
    assert done.returncode == 2
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("featurestore: error: ") and says in last
    assert "Traceback" not in done.stderr
    assert not store.exists()  # refused before the store was even created


@pytest.mark.timeout(400)
def test_unschedulable_tasks_stop_the_run_and_a_rerun_finishes(
    cluster, manifest, local_store, tmp_path
):
    """Another job holds both CPUs: the decode tasks can never start. The run stops after
    --schedule-timeout with one line naming the CPU it waited for; once the CPUs are free,
    the same command finishes the store."""
    ray.init(address=cluster, include_dashboard=False, log_to_driver=False)
    try:
        hog = ray.util.placement_group([{"CPU": 2}])  # another job's reservation
        ray.get(hog.ready(), timeout=60)
        store = tmp_path / "timeout.zarr"
        args = ("--ray", cluster, "--schedule-timeout", "20")
        done = populate(store, manifest, *args, ok=False, timeout=180)
        assert done.returncode == 2, done.stderr[-3000:]
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("featurestore: error: Ray ran none of"), done.stderr[-3000:]
        assert "in 20 s: each needs {CPU: 1} free on one node" in last
        ray.util.remove_placement_group(hog)
    finally:
        ray.shutdown()
    try:
        assert open_store(store).ids() == []  # nothing half-written is visible
    except StoreError:
        pass
    populate(store, manifest, "--ray", cluster)
    assert_same(local_store, store)
