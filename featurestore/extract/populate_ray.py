"""``populate_with_ray``: the same populate run on a Ray cluster. CPU tasks decode clips and
run Holistic, a pool of encoder actors (one per GPU) encodes the frames and writes the store.
The options, the planning step and the decode, encode and write stages are the local
runner's (``plan``, ``stages``); only the scheduling differs.

Each actor owns one store ``Writer`` and so one segment of its own: Zarr v3 has no locks,
and no two writers ever touch the same object. The driver cuts the work into shards of at
most one store block; an actor commits each shard as one block (arrays first, then its
commit record), so a worker killed mid-run loses only shards that were never committed.
The driver hands those to a fresh actor (new segment), and a rerun skips every committed
id, as local populate does. The commit log is the store's index, so once every shard has
returned the driver has nothing left to write; it re-reads the index to check that every
video it was told about is visible.

``add_features_with_ray`` runs the add-features plan (``plan_features``) the same way: the
tasks only decode (no Holistic), each shard is one base block's videos, and each actor owns
a feature writer, so the new set's blocks line up with the base blocks.

Before any actor starts, ``ray_plan.plan_ray`` sizes the run from the cluster's nodes so
that the actors' CPU claims always leave room for decode tasks (Ray never preempts an
actor), and refuses hand-given numbers that cannot run. Whatever Ray has not scheduled
within ``schedule_timeout_s`` (an actor, a replacement actor, decode tasks) ends the run
with ``RaySchedulingError``, naming what it waits for; committed shards stay committed.

Ray actors rather than Ray Data: frames stay numpy objects in the object store instead of
going through Arrow tensor columns, each writer's segment is explicit, and a shard lost
with its worker is retried with the committed ids skipped.

Only decoding and Holistic are imported at module level: every CPU task worker imports
this module, and torch/transformers (needed by the actors and the driver alone) would
cost each of them about 6 s and 220 MB more.
"""

from __future__ import annotations

import logging
import os
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from itertools import count, zip_longest
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import ray
from ray.exceptions import RayActorError, RayError, RayTaskError, WorkerCrashedError
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from tqdm import tqdm

from ..schema import GEMMA_STREAM
from . import stages
from .decode import Clip
from .holistic import LandmarkExtractor
from .plan import PopulateOptions, open_for_features, plan, plan_features
from .ray_plan import DEFAULT_SCHEDULE_TIMEOUT_S, RayPlan, plan_ray
from .stages import Job
from .summary import PopulateSummary

if TYPE_CHECKING:
    from ..schema import StreamSpec
    from ..store import FeatureStore
    from ..writer import FeatureWriter, Writer
    from .clip import ClipExtractor
    from .manifest import ManifestEntry

__all__ = [
    "RayPopulateSummary",
    "RaySchedulingError",
    "ShardResult",
    "add_features_with_ray",
    "populate_with_ray",
]

log = logging.getLogger(__name__)
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


@dataclass
class RayPopulateSummary:
    """A local populate summary (``run``; its fields read through) plus what the cluster did."""

    run: PopulateSummary
    """done, skipped, failed, elapsed_s, interrupted, stage_seconds, frames_encoded."""
    workers: int = 0
    """Encoder actors at the start."""
    worker_restarts: int = 0
    """Actors replaced after they died; their uncommitted shards went to the new ones."""
    lost: dict[str, str] = field(default_factory=dict)
    """video id -> why it was not committed (its worker died too often); a rerun does it."""
    plan: RayPlan | None = None
    """The resources asked for (printed at start)."""
    worker_nodes: dict[str, str] = field(default_factory=dict)
    """Ray actor name -> id of the node it ran on."""
    task_nodes: dict[str, int] = field(default_factory=dict)
    """Node id -> decode tasks that ran there."""

    def __getattr__(self, name: str):
        if name == "run":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.run, name)

    def to_json(self) -> dict:
        cluster = dict(workers=self.workers, worker_restarts=self.worker_restarts)
        nodes = {"workers": self.worker_nodes, "tasks": self.task_nodes}
        plan = self.plan.to_json() if self.plan else None
        lost = {"lost": len(self.lost), "lost_videos": self.lost}
        return {**self.run.to_json(), **cluster, **lost, "plan": plan, "nodes": nodes}

    def format(self) -> str:
        on = len(set(self.worker_nodes.values()))
        lines = [
            self.run.format(),
            f"  ray: {self.workers} encoder worker(s) on {on} node(s), "
            f"decode tasks on {len(self.task_nodes)} node(s)",
        ]
        if self.worker_restarts:
            lines.append(f"  ray: {self.worker_restarts} workers died and were replaced")
        if self.lost:
            lines.append(
                f"  ray: {len(self.lost)} videos not committed (workers died); rerun to finish"
            )
        return "\n".join(lines)


@dataclass
class ShardResult:
    """What one actor call committed (passed to ``on_shard``)."""

    shard: int
    worker: str
    """Ray actor name of the worker that wrote it."""
    segment: str
    """The store segment that worker owns (no other writer touches it)."""
    ids: list[str]
    """Videos committed."""
    node: str
    """Id of the node the worker runs on."""
    task_nodes: dict[str, int]
    """Node id -> decode tasks of this shard that ran there."""
    done: int
    skipped: int
    failed: dict[str, str]
    stage_seconds: dict[str, float]
    frames_encoded: int


@dataclass
class _Decoded:
    """One decoded clip, with landmarks when asked: what a CPU task hands an encoder actor."""

    clip: Clip | None = None
    landmarks: np.ndarray | None = None
    mask: np.ndarray | None = None
    error: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    node: str = ""
    """Id of the node the task ran on."""


class RaySchedulingError(TimeoutError):
    """Ray did not schedule a worker or decode task in time; the message names the resource."""


# ---------------------------------------------------------------------------------------------
# CPU stage: decode + landmarks, one Ray task per video

_holistic: dict[bool, LandmarkExtractor] = {}  # per worker process: Holistic loads in ~1 s


def _decode_task(entry: ManifestEntry, num_frames: int, landmarks: bool, face: bool) -> _Decoded:
    """Decode one clip and run Holistic on it; errors come back as values, never raised."""
    out = _Decoded(node=ray.get_runtime_context().get_node_id())
    start = time.perf_counter()
    clip, out.error = stages.decode(entry, num_frames)
    out.seconds["decode"] = time.perf_counter() - start
    if clip is None:
        return out
    out.clip = clip
    if landmarks:
        start = time.perf_counter()
        try:
            if face not in _holistic:
                _holistic[face] = LandmarkExtractor(face=face)
            out.landmarks, out.mask = _holistic[face].extract(clip.frames)
        except Exception as exc:
            out.error = f"landmarks: {entry.path}: {exc}"
        out.seconds["landmarks"] = time.perf_counter() - start
    return out


# ---------------------------------------------------------------------------------------------
# GPU stage: an encoder actor that owns one writer (one segment)


class _EncoderWriter:
    """Encodes the frames of a shard's videos in batches and commits the shard as one block
    (of the base streams, or of feature set ``features`` when one is being added)."""

    def __init__(
        self,
        name: str,
        store_url: str,
        storage_options: dict | None,
        extractor: dict,
        features: str | None = None,
    ):
        self.name = name
        self.url, self.storage_options = store_url, storage_options
        self._extractor_args = extractor
        self._features = features
        self._extractor: ClipExtractor | None = None
        self._store: FeatureStore | None = None
        self._writer: Writer | FeatureWriter | None = None
        self._frames = 0
        self._task_nodes: dict[str, int] = {}  # node id -> decode tasks of this shard

    def node(self) -> str:
        """Answers as soon as Ray has placed the actor (the encoder loads on first use)."""
        return ray.get_runtime_context().get_node_id()

    @property
    def extractor(self) -> ClipExtractor:
        from .clip import ClipExtractor

        if self._extractor is None:
            self._extractor = ClipExtractor(**self._extractor_args)
        return self._extractor

    def schema(self, labels: dict[int, str]):
        return self.extractor.schema(labels)

    def fingerprint(self) -> dict:
        return self.extractor.fingerprint

    def feature_spec(self) -> StreamSpec:
        """The (T, D) spec of the features this actor's encoder makes."""
        return self.extractor.streams[GEMMA_STREAM]

    def _open(self, overwrite: bool) -> tuple[FeatureStore, Writer | FeatureWriter]:
        from ..store import open_store

        if self._store is None or self._writer is None:
            self._store = store = open_store(self.url, "r+", self.storage_options)
            if self._features is None:
                store.check_compatible(
                    encoder=self.extractor.fingerprint,
                    num_frames=self.extractor.num_frames,
                    streams=self.extractor.streams,
                )
                self._writer = store.writer(overwrite=overwrite)
            else:
                fingerprint = store.schema.fingerprint(self._features)
                if fingerprint != self.extractor.fingerprint:
                    raise RuntimeError(
                        f"feature set {self._features!r} in {self.url} was made by another "
                        f"encoder than this worker's: {fingerprint} != {self.extractor.fingerprint}"
                    )
                self._writer = store.feature_writer(self._features, overwrite=overwrite)
        return self._store, self._writer

    def _committed(self, store: FeatureStore) -> set[str]:
        store.refresh()
        return store.feature_ids(self._features) if self._features else set(store.ids())

    def write_shard(
        self,
        shard: int,
        entries: list[ManifestEntry],
        refs: list,
        overwrite: bool,
        retry: bool,
        recorded: dict[str, dict] | None = None,
    ) -> ShardResult:
        store, writer = self._open(overwrite)
        summary = PopulateSummary()
        if retry and not overwrite:  # a dead worker may have committed part of it
            committed = self._committed(store)
            keep = [i for i, e in enumerate(entries) if e.video_id not in committed]
            summary.skipped = len(entries) - len(keep)
            entries, refs = [entries[i] for i in keep], [refs[i] for i in keep]
        self._frames, self._task_nodes = 0, {}
        jobs = self._encoded(entries, refs, summary.stage_seconds)
        with tqdm(disable=True) as bar:
            if self._features is None:
                stages.write(jobs, writer, summary, bar, self.extractor.streams)
            else:  # a shard is one base block: committed as one feature block
                added = cast("FeatureWriter", writer)
                stages.write_features(jobs, added, summary, bar, [entries], recorded or {})
        writer.flush()
        return ShardResult(
            shard,
            self.name,
            writer.segment,
            [e.video_id for e in entries if e.video_id not in summary.failed],
            self.node(),
            self._task_nodes,
            summary.done,
            summary.skipped,
            summary.failed,
            dict(summary.stage_seconds),
            self._frames,
        )

    def _encoded(self, entries: list[ManifestEntry], refs: list, seconds: dict) -> Iterator[Job]:
        """Jobs in shard order, each with its features; frames of several videos per forward."""
        pending: list[tuple[Job, np.ndarray]] = []
        for entry, ref in zip(entries, refs, strict=True):
            job = Job(entry)
            try:
                decoded: _Decoded = ray.get(ref)
            except WorkerCrashedError:  # on every retry: a clip that crashes the decoder/Holistic
                decoded = _Decoded(error=f"worker: {entry.path}: worker process died")
            except RayError as exc:
                decoded = _Decoded(error=f"worker: {entry.path}: {type(exc).__name__}: {exc}")
            for stage, s in decoded.seconds.items():
                seconds[stage] = seconds.get(stage, 0.0) + s
            if decoded.node:
                self._task_nodes[decoded.node] = self._task_nodes.get(decoded.node, 0) + 1
            job.error, job.landmarks, job.mask = decoded.error, decoded.landmarks, decoded.mask
            if decoded.clip is not None:
                job.source = stages.decoded_info(entry, decoded.clip)
            if job.error is not None or self.extractor.encoder is None:
                yield from self._encode(pending, seconds)
                pending = []
                yield job
                continue
            # frames from the object store are read-only; torch wants to own writable ones
            assert decoded.clip is not None, "a task without an error decoded its clip"
            pending.append((job, np.require(decoded.clip.frames, requirements="W")))
            if sum(len(f) for _, f in pending) >= self.extractor.encoder.batch_size:
                yield from self._encode(pending, seconds)
                pending = []
        yield from self._encode(pending, seconds)

    def _encode(self, pending: list[tuple[Job, np.ndarray]], seconds: dict) -> Iterator[Job]:
        if not pending:
            return
        encoder = self.extractor.encoder
        assert encoder is not None, "videos wait for the encoder only when there is one"
        videos, paths = [f for _, f in pending], [job.entry.path for job, _ in pending]
        done = stages.encode(encoder, videos, paths)
        if done.frames:
            seconds["encoder"] = seconds.get("encoder", 0.0) + done.seconds
        self._frames += done.frames
        for (job, _), feats, error in zip(pending, done.features, done.errors, strict=True):
            job.gemma, job.error = feats, error
            yield job


# ---------------------------------------------------------------------------------------------
# driver


@dataclass
class _Shard:
    index: int
    entries: list[ManifestEntry]
    refs: list
    attempts: int = 0
    recorded: dict[str, dict] | None = None
    """For an added feature set: each video's source as populate recorded it."""


def _aws_env() -> dict[str, str]:
    """The driver's AWS variables, so workers reach the same bucket the same way."""
    return {k: os.environ[k] for k in _AWS_ENV if k in os.environ}


def _connect(address: str | None, ray_init: dict | None) -> bool:
    """Join (or start) Ray; True when this call started it and should shut it down."""
    if ray.is_initialized():
        return False
    env = _aws_env()
    kwargs: dict[str, Any] = {"address": address, "include_dashboard": False, "log_to_driver": True}
    if env:
        kwargs["runtime_env"] = {"env_vars": env}
    ray.init(**{**kwargs, **(ray_init or {})})
    return True


class _Pool:
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

    def close(self) -> None:
        for actor in self.actors:
            ray.kill(actor)


class _Watch:
    """Stops the run when Ray leaves work unscheduled for ``plan.schedule_timeout_s``: an
    actor (first or replacement) not placed, or decode tasks none of which finished."""

    def __init__(self, plan: RayPlan, pool: _Pool):
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


def populate_with_ray(
    store_url: str,
    entries: Iterable[ManifestEntry],
    *,
    address: str | None = None,
    num_workers: int | None = None,
    gpus_per_worker: float | None = None,
    cpus_per_worker: float | None = None,
    cpus_per_task: float = 1,
    schedule_timeout_s: float = DEFAULT_SCHEDULE_TIMEOUT_S,
    encoder: str | None = "tiny-random",
    num_frames: int = 16,
    device: str | None = None,
    batch_size: int = 64,
    overwrite: bool = False,
    limit: int | None = None,
    landmarks: bool = True,
    progress: bool = True,
    labels: dict[int, str] | None = None,
    face: bool = False,
    pooling: str = "mean_soft_tokens",
    flash_attention: bool = False,
    revision: str | None = None,
    shard_size: int | None = None,
    storage_options: dict | None = None,
    fast_path: str = "auto",
    sdpa_backend: str = "auto",
    max_retries: int = 2,
    on_shard: Callable[[ShardResult], None] | None = None,
    ray_init: dict | None = None,
) -> RayPopulateSummary:
    """``populate`` on a Ray cluster: the same store contents, many machines.

    ``address``: a Ray cluster (``auto``, ``127.0.0.1:6379``, ``ray://host:10001``); None
    starts a local Ray unless one is running. ``num_workers`` encoder actors with
    ``gpus_per_worker`` GPUs and ``cpus_per_worker`` CPUs each, decoding and landmarks as
    tasks of ``cpus_per_task`` CPUs: None sizes them from the cluster (``ray_plan.plan_ray``:
    one actor per GPU, device ``cuda``, when there are GPUs) and a plan that cannot run
    raises RayPlanError before any work. Work Ray leaves unscheduled for
    ``schedule_timeout_s`` raises RaySchedulingError (committed shards stay; rerun).
    Video paths must be readable on every node. ``shard_size`` (default: the store's block
    size) videos are committed together; at most two shards per worker are in flight, which
    bounds memory. A shard whose worker died is retried ``max_retries`` times on a fresh
    worker; after that its videos are reported as lost and a rerun finishes them.
    ``on_shard`` is called after every committed shard.
    """
    options = PopulateOptions.pick(locals())
    cluster = _cluster_args(locals())

    def shards(pool: _Pool, summary: RayPopulateSummary, options: PopulateOptions):
        planned = plan(store_url, entries, options, partial(_schema, pool), summary.run)
        store, todo = planned.store, planned.todo
        if summary.failed:
            with store.writer() as w:
                for vid, reason in summary.failed.items():
                    w.fail(vid, reason)
        size = max(1, min(shard_size or store.block_size, store.block_size))
        cut = [_Shard(i, todo[s : s + size], []) for i, s in enumerate(range(0, len(todo), size))]
        return store, cut, todo

    return _run_on_ray(store_url, options, cluster, None, shards, max_retries, on_shard)


def add_features_with_ray(
    store_url: str,
    name: str,
    *,
    address: str | None = None,
    num_workers: int | None = None,
    gpus_per_worker: float | None = None,
    cpus_per_worker: float | None = None,
    cpus_per_task: float = 1,
    schedule_timeout_s: float = DEFAULT_SCHEDULE_TIMEOUT_S,
    encoder: str = "tiny-random",
    device: str | None = None,
    batch_size: int = 64,
    pooling: str = "mean_soft_tokens",
    flash_attention: bool = False,
    revision: str | None = None,
    num_frames: int | None = None,
    overwrite: bool = False,
    limit: int | None = None,
    shard_index: int = 0,
    num_shards: int = 1,
    progress: bool = True,
    storage_options: dict | None = None,
    fast_path: str = "auto",
    sdpa_backend: str = "auto",
    max_retries: int = 2,
    on_shard: Callable[[ShardResult], None] | None = None,
    ray_init: dict | None = None,
) -> RayPopulateSummary:
    """``add_features`` on a Ray cluster: decode tasks (no Holistic) feed encoder actors,
    each writing feature set ``name`` into a segment of its own, one base block per shard.

    The cluster arguments are ``populate_with_ray``'s; the others are ``add_features``'s.
    """
    store = open_for_features(store_url, num_frames, storage_options)
    options = PopulateOptions(
        encoder=encoder,
        num_frames=store.schema.num_frames,
        device=device or "cpu",  # replaced by the cluster plan's device
        batch_size=batch_size,
        overwrite=overwrite,
        limit=limit,
        landmarks=False,
        progress=progress,
        pooling=pooling,
        flash_attention=flash_attention,
        revision=revision,
        storage_options=storage_options,
        fast_path=fast_path,
        sdpa_backend=sdpa_backend,
    )
    cluster = _cluster_args(locals())

    def shards(pool: _Pool, summary: RayPopulateSummary, options: PopulateOptions):
        fingerprint, spec = _feature_encoder(pool)
        planned = plan_features(
            store, name, fingerprint, spec, options, summary.run, shard_index, num_shards
        )
        if summary.failed:
            with store.feature_writer(name) as w:
                for vid, reason in summary.failed.items():
                    w.fail(vid, reason)
        cut = [
            _Shard(i, block, [], recorded={e.video_id: planned.recorded[e.video_id] for e in block})
            for i, block in enumerate(planned.blocks)
        ]
        return store, cut, planned.todo

    return _run_on_ray(store_url, options, cluster, name, shards, max_retries, on_shard)


_CLUSTER_ARGS = (
    "address",
    "num_workers",
    "gpus_per_worker",
    "cpus_per_worker",
    "cpus_per_task",
    "schedule_timeout_s",
    "device",
    "ray_init",
)


def _cluster_args(arguments: dict[str, Any]) -> dict[str, Any]:
    """The cluster arguments among a runner's ``locals()``."""
    return {name: arguments[name] for name in _CLUSTER_ARGS}


def _run_on_ray(
    store_url: str,
    options: PopulateOptions,
    cluster: dict[str, Any],
    features: str | None,
    make_shards: Callable[[_Pool, RayPopulateSummary, PopulateOptions], tuple],
    max_retries: int,
    on_shard: Callable[[ShardResult], None] | None,
) -> RayPopulateSummary:
    """Size the run from the cluster, start the actors, plan (``make_shards``: the store, the
    shards and every video to do), then run the shards; committed shards survive a stop."""
    started = time.perf_counter()
    shutdown = _connect(cluster["address"], cluster["ray_init"])
    summary = RayPopulateSummary(PopulateSummary(feature_set=features))
    pool = watch = None
    try:
        nodes = [n for n in ray.nodes() if n["Alive"]]
        summary.plan = resources = plan_ray(
            [n["Resources"] for n in nodes],
            num_workers=cluster["num_workers"],
            gpus_per_worker=cluster["gpus_per_worker"],
            cpus_per_worker=cluster["cpus_per_worker"],
            cpus_per_task=cluster["cpus_per_task"],
            schedule_timeout_s=cluster["schedule_timeout_s"],
        )
        if cluster["device"]:
            summary.plan = resources = replace(resources, device=cluster["device"])
        if options.progress:
            print(resources.format(), file=sys.stderr)
        log.info("%s", resources.format())
        options = replace(options, device=resources.device)
        targets = _worker_nodes(nodes, resources)
        make = _actor_maker(
            resources, targets, store_url, options.storage_options, options.extractor_args(),
            features,
        )  # fmt: skip
        summary.workers = resources.workers
        pool = _Pool(resources.workers, make)
        watch = _Watch(resources, pool)
        watch.workers_placed()
        store, shards, todo = make_shards(pool, summary, options)
        task = ray.remote(_decode_task).options(num_cpus=resources.cpus_per_task, max_retries=3)
        summary.run.startup_s = time.perf_counter() - started  # workers up, store checked
        prepare = (options.num_frames, options.landmarks, options.face)
        with tqdm(
            total=len(todo), unit="video", disable=not options.progress, smoothing=0.1
        ) as bar:
            _run(deque(shards), pool, watch, task, prepare, options.overwrite,
                 max_retries, summary, bar, on_shard)  # fmt: skip
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


def _worker_nodes(nodes: list[dict], resources: RayPlan) -> list[str]:
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


def _actor_maker(resources: RayPlan, targets: list[str], store_url, storage_options,
                 extractor, features: str | None = None) -> Callable:  # fmt: skip
    """Encoder actors as the plan sizes them, placed on ``targets`` in turn, with the driver's
    AWS variables. The first ones are pinned to their node (Ray's soft affinity sometimes
    puts them all on the driver's node); replacements only prefer it, as it may be gone."""
    actor_cls = ray.remote(_EncoderWriter)
    options: dict[str, Any] = dict(
        num_cpus=resources.cpus_per_worker, num_gpus=resources.gpus_per_worker, max_restarts=0
    )
    if env := _aws_env():
        options["runtime_env"] = {"env_vars": env}
    turn = count()

    def make(name: str):
        i = next(turn)
        where = NodeAffinitySchedulingStrategy(targets[i % len(targets)], soft=i >= len(targets))
        return actor_cls.options(name=name, scheduling_strategy=where, **options).remote(
            name, store_url, storage_options, extractor, features
        )

    return make


def _from_workers(pool: _Pool, ask: Callable[[Any], Any]) -> tuple[list[dict], Any]:
    """Every worker's encoder fingerprint (all the same) and ``ask(first worker)``'s answer:
    the workers build the encoder, the driver never loads it."""
    try:
        fingerprints = ray.get([a.fingerprint.remote() for a in pool.actors])  # load in parallel
        answer = ray.get(ask(pool.actors[0]))
    except RayTaskError as exc:  # the encoder failed to load: its own error, not Ray's wrapper
        raise exc.cause if isinstance(exc.cause, Exception) else exc from None
    except RayActorError as exc:
        raise RuntimeError(f"the encoder workers could not start: {exc}") from exc
    for fp in fingerprints:
        if fp != fingerprints[0]:
            raise RuntimeError(f"workers loaded different encoders: {fp} != {fingerprints[0]}")
    return fingerprints, answer


def _schema(pool: _Pool, labels: dict[int, str]):
    """The run's schema, from the workers."""
    return _from_workers(pool, lambda actor: actor.schema.remote(labels))[1]


def _feature_encoder(pool: _Pool) -> tuple[dict, StreamSpec]:
    """The workers' encoder fingerprint and the (T, D) spec of its features."""
    fingerprints, spec = _from_workers(pool, lambda actor: actor.feature_spec.remote())
    return fingerprints[0], spec


def _run(shards, pool, watch, task, prepare_args, overwrite, max_retries, summary, bar,
         on_shard):  # fmt: skip
    """Keep two shards queued on every actor; merge results; re-queue the shards of the dead."""
    inflight: dict = {}  # ObjectRef -> (shard, actor)
    waiting = {a: 0 for a in pool.actors}

    def submit(actor, shard: _Shard) -> None:
        if not shard.refs:
            shard.refs = [task.remote(e, *prepare_args) for e in shard.entries]
            watch.tasks.update(shard.refs)
        ref = actor.write_shard.remote(
            shard.index, shard.entries, shard.refs, overwrite, shard.attempts > 0, shard.recorded
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
    run.failed.update(result.failed)
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
        if e.video_id not in present and e.video_id not in summary.failed:
            summary.lost.setdefault(e.video_id, "not visible in the store after the run")
