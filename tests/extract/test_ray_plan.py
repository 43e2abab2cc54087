"""The Ray resource plan (no Ray needed): defaults never let encoder actors take the CPUs the
decode tasks need, on any placement, and hand-given numbers that cannot run are refused."""

from __future__ import annotations

import itertools

import pytest

from featurestore.extract import RayPlanError, plan_ray


def deadlocks(cpus: list[float], workers: int, cpw: float, cpt: float) -> bool:
    """Brute force: is there a placement of the actors after which no node fits a task?"""
    for placement in itertools.product(range(len(cpus)), repeat=workers):
        used = [0.0] * len(cpus)
        for node in placement:
            used[node] += cpw
        if any(u > c + 1e-9 for u, c in zip(used, cpus, strict=True)):
            continue  # Ray would not place them so
        if all(c - u < cpt - 1e-9 for u, c in zip(used, cpus, strict=True)):
            return True
    return False


@pytest.mark.parametrize(
    "cpus", [[1], [2], [3], [4], [8], [1, 1], [2, 2], [1, 3], [4, 4, 4], [16, 2]]
)
@pytest.mark.parametrize("cpt", [0.5, 1, 2])
@pytest.mark.parametrize("workers", [None, 1, 2, 3])
def test_default_claims_never_starve_the_decode_tasks(cpus, cpt, workers):
    if cpt > max(cpus):
        with pytest.raises(RayPlanError, match="--cpus-per-task"):
            plan_ray([{"CPU": c} for c in cpus], num_workers=workers, cpus_per_task=cpt)
        return
    p = plan_ray([{"CPU": c} for c in cpus], num_workers=workers, cpus_per_task=cpt)
    assert not deadlocks(cpus, p.workers, p.cpus_per_worker, cpt)
    assert p.tasks_at_once >= 1 and p.device == "cpu" and p.gpus_per_worker == 0


def test_the_issue_machine_two_cpus():
    p = plan_ray([{"CPU": 2.0}])
    assert (p.workers, p.cpus_per_worker, p.tasks_at_once) == (1, 0, 2)
    assert "1 encoder worker (0 CPU, 0 GPU each, on cpu)" in p.format()
    assert "2 at once" in p.format() and "300 s" in p.format()


def test_big_cpu_node_reserves_a_cpu_per_encoder():
    p = plan_ray([{"CPU": 16.0}])
    assert (p.workers, p.cpus_per_worker, p.tasks_at_once) == (4, 1, 12)


def test_gpu_nodes_one_worker_per_gpu_and_no_cpu_claim():
    nodes = [{"CPU": 8, "GPU": 4}, {"CPU": 8, "GPU": 4}, {"CPU": 32}]
    p = plan_ray(nodes)
    assert (p.workers, p.gpus_per_worker, p.cpus_per_worker, p.device) == (8, 1, 0, "cuda")
    assert p.tasks_at_once == 48
    half = plan_ray(nodes, gpus_per_worker=0.5)
    assert half.workers == 16
    assert plan_ray(nodes, gpus_per_worker=0).device == "cpu"  # encode on CPUs by hand


@pytest.mark.parametrize(
    ("nodes", "given", "says"),
    [
        ([{"CPU": 2}], dict(gpus_per_worker=1), "has no GPUs; leave the flag out"),
        ([{"CPU": 8, "GPU": 1}] * 2, dict(num_workers=3), "pass --num-workers 2 or less"),
        ([{"CPU": 8, "GPU": 1}] * 2, dict(gpus_per_worker=2), "pass --gpus-per-worker 1 or less"),
        ([{"CPU": 1}, {"CPU": 1}], dict(cpus_per_task=2), "pass --cpus-per-task 1 or less"),
        ([{"CPU": 2}], dict(num_workers=2, cpus_per_worker=1), "lower cpus_per_worker"),
        ([{"CPU": 1}, {"CPU": 1}], dict(num_workers=2, cpus_per_worker=0.5), "wait forever"),
        ([{"CPU": 2}], dict(num_workers=0), "at least 1"),
        ([{"CPU": 2}], dict(cpus_per_task=0), "more than 0"),
        ([{"CPU": 2}], dict(schedule_timeout_s=0), "--schedule-timeout"),
    ],
)
def test_a_plan_that_cannot_run_is_refused_saying_what_to_change(nodes, given, says):
    with pytest.raises(RayPlanError, match=says):
        plan_ray(nodes, **given)


def test_hand_given_claims_that_fit_are_kept():
    p = plan_ray([{"CPU": 2}], num_workers=2, cpus_per_worker=0.5)
    assert (p.workers, p.cpus_per_worker, p.tasks_at_once) == (2, 0.5, 1)
    assert not deadlocks([2], 2, 0.5, 1)
    assert deadlocks([1, 1], 2, 0.5, 1)  # the refused case above really is one
