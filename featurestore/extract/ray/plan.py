"""How a Ray populate run uses the cluster: encoder actors, their claims, decode task size.

Ray never preempts: an actor holds its CPUs for its whole life, so encoder actors whose
claims leave no node room for a decode task wait forever on tasks that can never start.
``plan_ray`` picks claims that cannot do that whatever nodes Ray places the actors on, and
refuses hand-given numbers that could, before any actor starts. It reads only the nodes'
resources (``ray.nodes()``), so it needs no running Ray to be tested.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from ..options import DEFAULT_SCHEDULE_TIMEOUT_S

__all__ = ["DEFAULT_SCHEDULE_TIMEOUT_S", "RayPlan", "RayPlanError", "plan_ray"]

CPUS_PER_CPU_WORKER = 4
"""On a cluster without GPUs: one encoder actor per this many CPUs, the rest decode."""
_EPS = 1e-9


class RayPlanError(ValueError):
    """A plan that can never run on this cluster; the message says what to change."""


@dataclass(frozen=True)
class RayPlan:
    """What a run will ask Ray for."""

    nodes: int
    cpus: float
    """CPUs of the whole cluster."""
    gpus: float
    workers: int
    """Encoder actors, each owning one store segment."""
    cpus_per_worker: float
    gpus_per_worker: float
    cpus_per_task: float
    """CPUs of one decode + landmarks task (one per video)."""
    tasks_at_once: int
    """Decode tasks that fit in the CPUs the actors leave free."""
    schedule_timeout_s: float
    device: str = "cpu"
    """What the workers encode on: cuda when they have GPUs, unless given."""

    def worker_resources(self) -> str:
        return f"CPU: {self.cpus_per_worker:g}, GPU: {self.gpus_per_worker:g}"

    def to_json(self) -> dict:
        return asdict(self)

    def format(self) -> str:
        return (
            f"ray plan: {_n(self.nodes, 'node')}, {self.cpus:g} CPUs, {self.gpus:g} GPUs -> "
            f"{_n(self.workers, 'encoder worker')} ({self.cpus_per_worker:g} "
            f"CPU, {self.gpus_per_worker:g} GPU each, on {self.device}), decode+landmark tasks "
            f"of {self.cpus_per_task:g} CPU, {self.tasks_at_once} at once; unscheduled work "
            f"stops the run after {self.schedule_timeout_s:g} s"
        )


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'s' * (count != 1)}"


def plan_ray(
    nodes: Sequence[dict[str, float]],
    *,
    num_workers: int | None = None,
    gpus_per_worker: float | None = None,
    cpus_per_worker: float | None = None,
    cpus_per_task: float = 1,
    schedule_timeout_s: float = DEFAULT_SCHEDULE_TIMEOUT_S,
) -> RayPlan:
    """The run's plan on nodes with these resources (``{"CPU": 8, "GPU": 1}`` each).

    None picks: ``gpus_per_worker`` 1 when the cluster has GPUs, else 0 (encode on CPU);
    ``num_workers`` one per GPU share, or one per 4 CPUs without GPUs; ``cpus_per_worker``
    0 for GPU actors and on clusters under 4 CPUs, else 1 unless that could leave no node
    room for a decode task. Raises RayPlanError for a plan that can never run.
    """
    cpus = [float(n.get("CPU", 0)) for n in nodes]
    gpus = [float(n.get("GPU", 0)) for n in nodes]
    total_cpu, total_gpu = sum(cpus), sum(gpus)
    if schedule_timeout_s <= 0:
        raise RayPlanError("--schedule-timeout must be more than 0 seconds")
    if cpus_per_task <= 0:
        raise RayPlanError("--cpus-per-task must be more than 0")
    if cpus_per_task > max(cpus, default=0) + _EPS:
        raise RayPlanError(
            f"--cpus-per-task {cpus_per_task:g}: no node of the Ray cluster has that many "
            f"CPUs (the largest has {max(cpus, default=0):g}); pass --cpus-per-task "
            f"{max(cpus, default=0):g} or less, or add a bigger node"
        )
    gpw = _gpus_per_worker(gpus_per_worker, gpus)
    workers = _workers(num_workers, gpw, gpus, total_cpu)
    cpw = _cpus_per_worker(cpus_per_worker, workers, gpw, cpus, gpus, cpus_per_task)
    free = total_cpu - workers * cpw
    return RayPlan(
        nodes=len(nodes),
        cpus=total_cpu,
        gpus=total_gpu,
        workers=workers,
        cpus_per_worker=cpw,
        gpus_per_worker=gpw,
        cpus_per_task=float(cpus_per_task),
        tasks_at_once=int(free / cpus_per_task + _EPS),
        schedule_timeout_s=float(schedule_timeout_s),
        device="cuda" if gpw > 0 else "cpu",
    )


def _gpus_per_worker(given: float | None, gpus: list[float]) -> float:
    if given is None:
        return 1.0 if max(gpus, default=0) >= 1 else 0.0
    if given < 0:
        raise RayPlanError("--gpus-per-worker must be 0 or more")
    if given > 0 and sum(gpus) == 0:
        raise RayPlanError(
            f"--gpus-per-worker {given:g}: the Ray cluster has no GPUs; leave the flag out to "
            "encode on CPUs, or add GPU nodes"
        )
    if given > max(gpus, default=0) + _EPS:
        raise RayPlanError(
            f"--gpus-per-worker {given:g}: no node has that many GPUs (the largest has "
            f"{max(gpus):g}); pass --gpus-per-worker {max(gpus):g} or less"
        )
    return float(given)


def _workers(given: int | None, gpw: float, gpus: list[float], total_cpu: float) -> int:
    if gpw > 0:  # actors cannot share a GPU across nodes: count what fits node by node
        fit = sum(int(g / gpw + _EPS) for g in gpus)
        if given is not None and given > fit:
            raise RayPlanError(
                f"--num-workers {given} x --gpus-per-worker {gpw:g} needs {given * gpw:g} GPUs; "
                f"the Ray cluster has {sum(gpus):g} on {sum(g > 0 for g in gpus)} nodes: pass "
                f"--num-workers {fit} or less (or leave it out: one worker per GPU share)"
            )
        workers = fit if given is None else given
    else:
        workers = max(1, int(total_cpu // CPUS_PER_CPU_WORKER)) if given is None else given
    if workers < 1:
        raise RayPlanError("--num-workers must be at least 1")
    return workers


def _cpus_per_worker(
    given: float | None,
    workers: int,
    gpw: float,
    cpus: list[float],
    gpus: list[float],
    cpt: float,
) -> float:
    if given is None:
        want = 0.0 if gpw > 0 or sum(cpus) < CPUS_PER_CPU_WORKER else 1.0
        return want if _leaves_room(cpus, workers, want, cpt) else 0.0
    if given < 0:
        raise RayPlanError("cpus_per_worker must be 0 or more")
    if not any(c + _EPS >= given and g + _EPS >= gpw for c, g in zip(cpus, gpus, strict=True)):
        raise RayPlanError(
            f"an encoder worker asks for {given:g} CPUs and {gpw:g} GPUs and no node has both; "
            "lower cpus_per_worker"
        )
    if not _leaves_room(cpus, workers, given, cpt):
        raise RayPlanError(
            f"{workers} encoder workers x {given:g} CPUs could leave no node a free "
            f"{cpt:g} CPU for a decode task ({sum(cpus):g} CPUs on {_n(len(cpus), 'node')}), and "
            "the run would wait forever: lower cpus_per_worker (0 is fine: the encoder then "
            "shares cores), --num-workers or --cpus-per-task"
        )
    return float(given)


def _leaves_room(cpus: list[float], workers: int, cpw: float, cpt: float) -> bool:
    """Whether some node keeps ``cpt`` CPUs free however Ray places ``workers`` actors of
    ``cpw`` CPUs: fewer actors than it takes to fill every node past that point."""
    if cpw <= 0:
        return any(c + _EPS >= cpt for c in cpus)
    to_block = 0
    for c in cpus:
        if c + _EPS < cpt:
            continue  # never runs a task anyway
        block = math.floor((c - cpt) / cpw + _EPS) + 1  # actors that leave < cpt here
        if block * cpw > c + _EPS:
            return True  # that many do not fit: this node always has room
        to_block += block
    return workers < to_block
