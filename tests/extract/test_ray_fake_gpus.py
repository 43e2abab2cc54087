"""The GPU-node plan, run for real on a Ray that declares 2 GPUs it does not have (Ray only
counts them): one encoder worker per GPU, each claiming its GPU and no CPU, both CPUs left
to the decode tasks, and the store equal to a local populate (the workers encode on CPU)."""

from __future__ import annotations

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from featurestore import open_store  # noqa: E402
from featurestore.extract import populate, populate_with_ray, read_manifest  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.mark.timeout(300)
def test_gpu_plan_one_worker_per_gpu_and_no_cpu_claim(synth_set, tmp_path):
    entries = read_manifest(synth_set)
    local, url = str(tmp_path / "local.zarr"), str(tmp_path / "ray.zarr")
    populate(local, entries, num_frames=8, landmarks=False, workers=1, progress=False)
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False)
    try:
        summary = populate_with_ray(url, entries, device="cpu", num_frames=8, landmarks=False,
                                    shard_size=2, progress=False)  # fmt: skip
    finally:
        ray.shutdown()
    plan = summary.plan
    assert (plan.workers, plan.gpus_per_worker, plan.cpus_per_worker) == (2, 1, 0)
    assert plan.tasks_at_once == 2 and plan.device == "cpu"
    assert summary.done == 6 and len(summary.worker_nodes) == 2
    want, got = open_store(local), open_store(url)
    assert got.ids() == want.ids()
    for vid in want.ids():
        np.testing.assert_array_equal(got.get(vid).arrays["gemma"], want.get(vid).arrays["gemma"])
    assert len({got.entry(v).segment for v in got.ids()}) == 2
