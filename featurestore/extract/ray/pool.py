"""The encoder actors of a run and their watchdog.

``Pool`` starts the actors where ``worker_nodes`` says (spread over the nodes), replaces a
dead one with a fresh one (a fresh segment), and asks them what the driver needs from the
encoder, which it never loads itself. ``Watch`` stops the run with ``RaySchedulingError``
when Ray leaves an actor or the decode tasks unscheduled for ``schedule_timeout_s``.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Callable
from itertools import count, zip_longest
from typing import TYPE_CHECKING, Any

import ray
from ray.exceptions import RayActorError, RayTaskError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from .actor import EncoderWriter
from .plan import RayPlan

if TYPE_CHECKING:
    from ...schema import StoreSchema, StreamSpec
    from ..options import PopulateOptions

__all__ = ["Pool", "RaySchedulingError", "Watch", "actor_maker", "aws_env", "worker_nodes"]

_AWS_ENV = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "AWS_REGION",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_PROFILE",
)


class RaySchedulingError(TimeoutError):
    """Ray did not schedule a worker or decode task in time; the message names the resource."""


def aws_env() -> dict[str, str]:
    """The driver's AWS variables, so workers reach the same bucket the same way."""
    return {k: os.environ[k] for k in _AWS_ENV if k in os.environ}


class Pool:
    """Encoder actors; dead ones are replaced with fresh ones (fresh segments). Each new
    actor is pending until it answers ``node()``, which Ray runs once it has placed it."""

    def __init__(self, size: int, make: Callable[[str], Any]):
        self.run_id = uuid.uuid4().hex[:8]
        self._make, self._count = make, 0
        self.pending: dict = {}  # ObjectRef of node() -> (actor name, time asked)
        self.nodes: dict[str, str] = {}  # actor name -> node id
        self.actors = [self._new() for _ in range(size)]
        self.restarts = 0

    def _new(self):
        name = f"featurestore-writer-{self.run_id}-{self._count}"
        self._count += 1
        actor = self._make(name)
        self.pending[actor.node.remote()] = (name, time.monotonic())
        return actor

    def replace(self, dead) -> object:
        self.restarts += 1
        fresh = self._new()
        self.actors[self.actors.index(dead)] = fresh
        return fresh

    def poll(self, timeout: float = 0) -> float:
        """Note the actors placed since; returns how long the oldest unplaced one waited."""
        if self.pending:
            placed, _ = ray.wait(list(self.pending), num_returns=len(self.pending),
                                 timeout=timeout, fetch_local=True)  # fmt: skip
            for ref in placed:
                name, _ = self.pending.pop(ref)
                try:
                    self.nodes[name] = ray.get(ref)
                except RayActorError:
                    pass  # died at once: its shards say so and replace it
        now = time.monotonic()
        return max((now - since for _, since in self.pending.values()), default=0.0)

    def schema(self) -> StoreSchema:
        """The run's schema (labels aside), from the workers."""
        return self._ask(lambda actor: actor.schema.remote())[1]

    def feature_encoder(self) -> tuple[dict, StreamSpec]:
        """The workers' encoder fingerprint and the (T, D) spec of its features."""
        fingerprints, spec = self._ask(lambda actor: actor.feature_spec.remote())
        return fingerprints[0], spec

    def _ask(self, ask: Callable[[Any], Any]) -> tuple[list[dict], Any]:
        """Every worker's encoder fingerprint (all the same) and ``ask(first worker)``'s
        answer: the workers build the encoder, the driver never loads it."""
        try:
            fingerprints = ray.get([a.fingerprint.remote() for a in self.actors])  # in parallel
            answer = ray.get(ask(self.actors[0]))
        except RayTaskError as exc:  # the encoder failed to load: its own error, not Ray's
            raise exc.cause if isinstance(exc.cause, Exception) else exc from None
        except RayActorError as exc:
            raise RuntimeError(f"the encoder workers could not start: {exc}") from exc
        for fp in fingerprints:
            if fp != fingerprints[0]:
                raise RuntimeError(f"workers loaded different encoders: {fp} != {fingerprints[0]}")
        return fingerprints, answer

    def close(self) -> None:
        for actor in self.actors:
            ray.kill(actor)


class Watch:
    """Stops the run when Ray leaves work unscheduled for ``plan.schedule_timeout_s``: an
    actor (first or replacement) not placed, or decode tasks none of which finished."""

    def __init__(self, plan: RayPlan, pool: Pool):
        self.plan, self.pool = plan, pool
        self.timeout = plan.schedule_timeout_s
        self.tasks: set = set()  # decode task refs not known to have finished
        self.moved = time.monotonic()

    @property
    def poll_s(self) -> float:
        return min(5.0, max(0.2, self.timeout / 10))

    def workers_placed(self) -> None:
        """Wait up to the timeout for every actor to be placed; raise if one is not."""
        if self.pool.poll(timeout=self.timeout) > 0:
            raise self._worker_error()

    def check(self) -> None:
        """Raise if an actor or the decode tasks have waited longer than the timeout."""
        if self.pool.poll() > self.timeout:
            raise self._worker_error()
        if self.tasks:
            finished, _ = ray.wait(list(self.tasks), num_returns=len(self.tasks), timeout=0,
                                   fetch_local=False)  # fmt: skip
            if finished:
                self.tasks.difference_update(finished)
                self.moved = time.monotonic()
        if self.tasks and time.monotonic() - self.moved > self.timeout:
            raise RaySchedulingError(
                f"Ray ran none of {len(self.tasks)} waiting decode tasks in {self.timeout:g} s: "
                f"each needs {{CPU: {self.plan.cpus_per_task:g}}} free on one node; free CPUs "
                "(another job?), lower --cpus-per-task, or raise --schedule-timeout"
            )

    def cancel(self) -> None:
        for ref in self.tasks:
            ray.cancel(ref)

    def _worker_error(self) -> RaySchedulingError:
        return RaySchedulingError(
            f"Ray did not schedule an encoder worker in {self.timeout:g} s: it needs "
            f"{{{self.plan.worker_resources()}}} free on one node; free them (another job?), "
            "lower --num-workers / --gpus-per-worker, or raise --schedule-timeout"
        )


def worker_nodes(nodes: list[dict], resources: RayPlan) -> list[str]:
    """Node ids to place encoder actors on in turn: every node's GPU shares (one slot per
    node without GPUs), interleaved, so actors spread over the nodes instead of piling up
    on one (Ray's SPREAD does not spread actors that claim no CPU)."""
    slots = []
    for n in nodes:
        res = n["Resources"]
        if resources.gpus_per_worker > 0:
            share = int(res.get("GPU", 0) / resources.gpus_per_worker + 1e-9)
        else:
            share = int(res.get("CPU", 0) >= resources.cpus_per_worker)
        slots.append([n["NodeID"]] * share)
    return [node for turn in zip_longest(*slots) for node in turn if node]


def actor_maker(
    resources: RayPlan,
    targets: list[str],
    store_url: str,
    options: PopulateOptions,
    features: str | None = None,
) -> Callable:
    """Encoder actors as the plan sizes them, placed on ``targets`` in turn, with the driver's
    AWS variables. The first ones are pinned to their node (Ray's soft affinity sometimes
    puts them all on the driver's node); replacements only prefer it, as it may be gone."""
    actor_cls = ray.remote(EncoderWriter)
    claims: dict[str, Any] = dict(
        num_cpus=resources.cpus_per_worker, num_gpus=resources.gpus_per_worker, max_restarts=0
    )
    if env := aws_env():
        claims["runtime_env"] = {"env_vars": env}
    turn = count()

    def make(name: str):
        i = next(turn)
        where = NodeAffinitySchedulingStrategy(targets[i % len(targets)], soft=i >= len(targets))
        return actor_cls.options(name=name, scheduling_strategy=where, **claims).remote(
            name, store_url, options, features
        )

    return make
