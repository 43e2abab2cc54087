"""Populate on a Ray cluster: the same run as on this machine, many machines.

CPU tasks decode clips and run Holistic (``decode.py``); a pool of encoder actors, one per
GPU, encodes the frames and writes the store, each actor into a segment of its own
(``actor.py``, ``pool.py``); the driver sizes the run from the cluster (``plan.py``), cuts
it into shards and hands them out (``run.py``). The options, the preparing step and the
decode, encode and write stages are the local runner's (``PopulateOptions``, ``prepare``,
``stages``); only the scheduling differs. ``add_features_with_ray`` runs the add-features
step (``prepare_features``) the same way: the tasks only decode, each shard is one base
block's videos, and each actor owns a feature writer, so the new set's blocks line up with
the base blocks.

Before any actor starts, ``plan_ray`` sizes the run from the cluster's nodes so that the
actors' CPU claims always leave room for decode tasks (Ray never preempts an actor), and
refuses hand-given numbers that cannot run. Whatever Ray has not scheduled within
``schedule_timeout_s`` (an actor, a replacement actor, decode tasks) ends the run with
``RaySchedulingError``, naming what it waits for; committed shards stay committed.

Ray actors rather than Ray Data: frames stay numpy objects in the object store instead of
going through Arrow tensor columns, each writer's segment is explicit, and a shard lost
with its worker is retried with the committed ids skipped.

The entry points are here; everything else loads on first use (PEP 562), so that the
resource plan can be read without Ray installed and Ray's task workers, which import this
package, load only the decode task.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any, TypedDict

from ..._lazy import lazy_getattr
from ..options import PopulateOptions, RayCluster

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from ...manifest import ManifestEntry
    from .actor import ShardResult
    from .summary import RayPopulateSummary

_EXPORTS = {
    "ShardResult": "actor",
    "DEFAULT_SCHEDULE_TIMEOUT_S": "plan",
    "RayPlan": "plan",
    "RayPlanError": "plan",
    "plan_ray": "plan",
    "RaySchedulingError": "pool",
    "add_on_ray": "run",
    "run_on_ray": "run",
    "RayPopulateSummary": "summary",
}

__all__ = sorted(
    [
        *_EXPORTS,
        "AddFeaturesKeywords",
        "PopulateKeywords",
        "add_features_with_ray",
        "populate_with_ray",
    ]
)


class _ClusterKeywords(TypedDict, total=False):
    """``RayCluster``'s fields, as keywords of the entry points."""

    address: str | None
    num_workers: int | None
    gpus_per_worker: float | None
    cpus_per_worker: float | None
    cpus_per_task: float
    schedule_timeout_s: float
    max_retries: int
    ray_init: dict | None


class _EncodeKeywords(_ClusterKeywords, total=False):
    """The ``PopulateOptions`` fields that both entry points take."""

    encoder: str | None
    num_frames: int | None
    device: str | None
    batch_size: int
    pooling: str
    flash_attention: bool
    revision: str | None
    fast_path: str
    sdpa_backend: str
    overwrite: bool
    limit: int | None
    progress: bool
    storage_options: dict | None


class PopulateKeywords(_EncodeKeywords, total=False):
    """``populate_with_ray``'s keywords: the cluster's, then populate's."""

    landmarks: bool
    face: bool
    labels: dict[int, str] | None


class AddFeaturesKeywords(_EncodeKeywords, total=False):
    """``add_features_with_ray``'s keywords: the cluster's, then add_features'."""

    shard_index: int
    num_shards: int


def populate_with_ray(
    store_url: str,
    entries: Iterable[ManifestEntry],
    *,
    shard_size: int | None = None,
    on_shard: Callable[[ShardResult], None] | None = None,
    **keywords: Unpack[PopulateKeywords],
) -> RayPopulateSummary:
    """``populate`` on a Ray cluster: the same store contents, many machines.

    The keywords are ``RayCluster``'s and ``populate``'s (``PopulateOptions``; ``device``
    None: cuda when the workers have GPUs). ``address``: a Ray cluster (``auto``,
    ``127.0.0.1:6379``, ``ray://host:10001``); None starts a local Ray unless one is running.
    ``num_workers`` encoder actors with ``gpus_per_worker`` GPUs and ``cpus_per_worker`` CPUs
    each, decoding and landmarks as tasks of ``cpus_per_task`` CPUs: None sizes them from the
    cluster (``plan_ray``: one actor per GPU, device ``cuda``, when there are GPUs) and a plan
    that cannot run raises RayPlanError before any work. Work Ray leaves unscheduled for
    ``schedule_timeout_s`` raises RaySchedulingError (committed shards stay; rerun).
    Video paths must be readable on every node. ``shard_size`` (default: the store's block
    size) videos are committed together; at most two shards per worker are in flight, which
    bounds memory. A shard whose worker died is retried ``max_retries`` times on a fresh
    worker; after that its videos are reported as lost and a rerun finishes them.
    ``on_shard`` is called after every committed shard.
    """
    from .run import run_on_ray

    options, cluster = _typed("populate_with_ray", keywords, PopulateKeywords)
    options = replace(options, commit_every=shard_size)
    return run_on_ray(store_url, entries, options, cluster, on_shard)


def add_features_with_ray(
    store_url: str,
    name: str,
    *,
    on_shard: Callable[[ShardResult], None] | None = None,
    **keywords: Unpack[AddFeaturesKeywords],
) -> RayPopulateSummary:
    """``add_features`` on a Ray cluster: decode tasks (no Holistic) feed encoder actors,
    each writing feature set ``name`` into a segment of its own, one base block per shard.

    The keywords are ``RayCluster``'s (as ``populate_with_ray`` takes them) and
    ``add_features``'s.
    """
    from .run import add_on_ray

    options, cluster = _typed("add_features_with_ray", keywords, AddFeaturesKeywords)
    return add_on_ray(store_url, name, options, cluster, on_shard)


def _typed(
    function: str, keywords: Mapping[str, Any], accepted: Any
) -> tuple[PopulateOptions, RayCluster]:
    """An entry point's keywords as the run's two typed values; a keyword it does not take
    is a TypeError, as from a signature that lists them."""
    for key in keywords:
        if key not in accepted.__optional_keys__:
            raise TypeError(f"{function}() got an unexpected keyword argument {key!r}")
    cluster = {f.name for f in fields(RayCluster)}
    return (
        PopulateOptions(**{k: v for k, v in keywords.items() if k not in cluster}),
        RayCluster(**{k: v for k, v in keywords.items() if k in cluster}),
    )


__getattr__ = lazy_getattr(__name__, _EXPORTS)


def __dir__() -> list[str]:
    return __all__
