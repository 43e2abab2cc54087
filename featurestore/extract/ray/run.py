"""The driver of a Ray run: size it, start the actors, prepare, then hand out the shards.

The driver cuts the work into shards of at most one store block and keeps two queued on
every actor, which bounds memory. A shard whose actor died goes to a fresh actor (a new
segment) up to ``max_retries`` times, with the ids it committed skipped; after that its
videos are reported lost, and a rerun does them, as it skips every committed id. The
commit log is the store's index, so once every shard has returned the driver has nothing
left to write; it re-reads the index to check that every video it was told of is there.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import ray
from ray.exceptions import RayActorError
from tqdm import tqdm

from ...summary import PopulateSummary
from ..options import PopulateOptions, RayCluster
from ..prepare import open_for_features, prepare, prepare_features
from .actor import ShardResult
from .decode import decode_task
from .plan import plan_ray
from .pool import Pool, Watch, actor_maker, aws_env, worker_nodes
from .summary import RayPopulateSummary

if TYPE_CHECKING:
    from ...manifest import ManifestEntry

__all__ = ["add_on_ray", "run_on_ray"]

log = logging.getLogger(__name__)


@dataclass
class Shard:
    """Videos one actor commits as one block; retried on a fresh actor if its actor dies."""

    index: int
    entries: list[ManifestEntry]
    refs: list
    attempts: int = 0
    recorded: dict[str, dict] | None = None
    """For an added feature set: each video's source as populate recorded it."""


def connect(address: str | None, ray_init: dict | None) -> bool:
    """Join (or start) Ray; True when this call started it and should shut it down."""
    if ray.is_initialized():
        return False
    env = aws_env()
    kwargs: dict[str, Any] = {"address": address, "include_dashboard": False, "log_to_driver": True}
    if env:
        kwargs["runtime_env"] = {"env_vars": env}
    ray.init(**{**kwargs, **(ray_init or {})})
    return True


def run_on_ray(
    store_url: str,
    entries: Iterable[ManifestEntry],
    options: PopulateOptions,
    cluster: RayCluster,
    on_shard: Callable[[ShardResult], None] | None = None,
) -> RayPopulateSummary:
    """Populate ``store_url`` with ``entries`` on the cluster."""

    def shards(pool: Pool, summary: RayPopulateSummary, options: PopulateOptions):
        run = prepare(store_url, entries, options, pool.schema(), summary.run)
        store, todo = run.store, run.todo
        if summary.failures:
            with store.writer() as w:
                for vid, reason in summary.failures.items():
                    w.fail(vid, reason)
        size = max(1, min(options.commit_every or store.block_size, store.block_size))
        cut = [Shard(i, todo[s : s + size], []) for i, s in enumerate(range(0, len(todo), size))]
        return store, cut, todo

    return _drive(store_url, options, cluster, None, shards, on_shard)


def add_on_ray(
    store_url: str,
    name: str,
    options: PopulateOptions,
    cluster: RayCluster,
    on_shard: Callable[[ShardResult], None] | None = None,
) -> RayPopulateSummary:
    """Add feature set ``name`` to the videos ``store_url`` holds, on the cluster."""
    store, options = open_for_features(store_url, options)

    def shards(pool: Pool, summary: RayPopulateSummary, options: PopulateOptions):
        fingerprint, spec = pool.feature_encoder()
        run = prepare_features(store, name, fingerprint, spec, options, summary.run)
        if summary.failures:
            with store.feature_writer(name) as w:
                for vid, reason in summary.failures.items():
                    w.fail(vid, reason)
        cut = [
            Shard(i, block, [], recorded={e.video_id: run.recorded[e.video_id] for e in block})
            for i, block in enumerate(run.blocks)
        ]
        return store, cut, run.todo

    return _drive(store_url, options, cluster, name, shards, on_shard)


def _drive(
    store_url: str,
    options: PopulateOptions,
    cluster: RayCluster,
    features: str | None,
    make_shards: Callable[[Pool, RayPopulateSummary, PopulateOptions], tuple],
    on_shard: Callable[[ShardResult], None] | None,
) -> RayPopulateSummary:
    """Size the run from the cluster, start the actors, prepare (``make_shards``: the store,
    the shards and every video to do), then run the shards; committed shards survive a stop."""
    started = time.perf_counter()
    shutdown = connect(cluster.address, cluster.ray_init)
    summary = RayPopulateSummary(PopulateSummary(feature_set=features))
    pool = watch = None
    try:
        nodes = [n for n in ray.nodes() if n["Alive"]]
        summary.plan = resources = plan_ray(
            [n["Resources"] for n in nodes],
            num_workers=cluster.num_workers,
            gpus_per_worker=cluster.gpus_per_worker,
            cpus_per_worker=cluster.cpus_per_worker,
            cpus_per_task=cluster.cpus_per_task,
            schedule_timeout_s=cluster.schedule_timeout_s,
        )
        if options.device:
            summary.plan = resources = replace(resources, device=options.device)
        if options.progress:
            print(resources.format(), file=sys.stderr)
        log.info("%s", resources.format())
        options = replace(options, device=resources.device)
        targets = worker_nodes(nodes, resources)
        make = actor_maker(resources, targets, store_url, options, features)
        summary.workers = resources.workers
        pool = Pool(resources.workers, make)
        watch = Watch(resources, pool)
        watch.workers_placed()
        store, shards, todo = make_shards(pool, summary, options)
        task = ray.remote(decode_task).options(num_cpus=resources.cpus_per_task, max_retries=3)
        summary.run.startup_s = time.perf_counter() - started  # workers up, store checked
        decode_args = (options.frames, options.landmarks, options.face)
        with tqdm(
            total=len(todo), unit="video", disable=not options.progress, smoothing=0.1
        ) as bar:
            _loop(deque(shards), pool, watch, task, decode_args, cluster.max_retries, summary,
                  bar, on_shard)  # fmt: skip
        _check_visible(store, summary, todo, features)
    except KeyboardInterrupt:
        summary.run.interrupted = True  # committed shards stay; a rerun does the rest
    finally:
        if watch is not None:
            watch.cancel()  # a run stopped early leaves no decode tasks behind
        if pool is not None:
            pool.poll()  # note where replacement actors ran
            pool.close()
            summary.worker_restarts = pool.restarts
            summary.worker_nodes = pool.nodes
        if shutdown:
            ray.shutdown()
    summary.run.elapsed_s = time.perf_counter() - started
    return summary


def _loop(shards, pool, watch, task, decode_args, max_retries, summary, bar,
          on_shard):  # fmt: skip
    """Keep two shards queued on every actor; merge results; re-queue the shards of the dead."""
    inflight: dict = {}  # ObjectRef -> (shard, actor)
    waiting = {a: 0 for a in pool.actors}

    def submit(actor, shard: Shard) -> None:
        if not shard.refs:
            shard.refs = [task.remote(e, *decode_args) for e in shard.entries]
            watch.tasks.update(shard.refs)
        ref = actor.write_shard.remote(
            shard.index, shard.entries, shard.refs, shard.attempts > 0, shard.recorded
        )
        inflight[ref] = (shard, actor)
        waiting[actor] += 1

    def fill() -> None:
        for actor in list(waiting):
            while waiting.get(actor, 0) < 2 and shards:
                submit(actor, shards.popleft())

    watch.moved = time.monotonic()  # loading the encoder is not waiting on Ray
    fill()
    while inflight:
        ready, _ = ray.wait(list(inflight), num_returns=1, timeout=watch.poll_s)
        if not ready:
            watch.check()
            continue
        [ref] = ready
        shard, actor = inflight.pop(ref)
        if actor in waiting:
            waiting[actor] -= 1
        try:
            result: ShardResult = ray.get(ref)
        except RayActorError as exc:
            _requeue(shard, actor, exc, pool, waiting, shards, max_retries, summary, bar)
        else:
            watch.moved = time.monotonic()
            _merge(summary, result)
            bar.update(result.done + result.skipped + len(result.failed))
            if on_shard is not None:
                on_shard(result)
        fill()


def _requeue(shard, actor, exc, pool, waiting, shards, max_retries, summary, bar) -> None:
    if actor in waiting:  # the first of its failed shards replaces it
        del waiting[actor]
        fresh = pool.replace(actor)
        waiting[fresh] = 0
        log.warning("ray worker died (%s); replaced it, its shards go to the new one", exc)
    shard.attempts += 1
    if shard.attempts > max_retries:
        for e in shard.entries:
            summary.lost[e.video_id] = f"worker died {shard.attempts} times: {exc}"
        bar.update(len(shard.entries))
    else:
        shards.appendleft(shard)


def _merge(summary: RayPopulateSummary, result: ShardResult) -> None:
    run = summary.run
    run.done += result.done
    run.skipped += result.skipped
    run.failures.update(result.failed)
    run.frames_encoded += result.frames_encoded
    for node, n in result.task_nodes.items():
        summary.task_nodes[node] = summary.task_nodes.get(node, 0) + n
    for stage, s in result.stage_seconds.items():
        run.stage_seconds[stage] = run.stage_seconds.get(stage, 0.0) + s


def _check_visible(
    store, summary: RayPopulateSummary, todo: list[ManifestEntry], features: str | None = None
) -> None:
    """Every video a worker reported done must now be in the index (with the added set's
    features, when adding one), or it counts as lost."""
    store.refresh()
    present = store.feature_ids(features) if features else set(store.ids())
    for e in todo:
        if e.video_id not in present and e.video_id not in summary.failures:
            summary.lost.setdefault(e.video_id, "not visible in the store after the run")
