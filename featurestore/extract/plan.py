"""One populate run, before either runner starts: its options and its one planning step.

``plan`` merges the label map add-only with the store's, checks the run's schema (encoder
fingerprint, T, streams, landmark layout) against the store, creating it if absent, before
anything is extracted, and sorts the entries into committed (skipped), failed while reading
the manifest, and to do. The local pipeline and Ray then run the same plan.

``plan_features`` is the same step for adding a feature set to a store that exists: the
entries are the stored videos themselves, rebuilt from the sources populate recorded (path
and frame range), grouped by the base block that holds them so the new set's blocks line
up with the base blocks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import StoreError
from ..index import IndexEntry
from ..schema import StoreSchema, StreamSpec
from ..store import FeatureStore, create_store, open_store
from .manifest import ManifestEntry, assign_labels

if TYPE_CHECKING:
    from .summary import PopulateSummary

__all__ = [
    "FeaturePlan",
    "Plan",
    "PopulateOptions",
    "open_for_features",
    "plan",
    "plan_features",
    "recorded_entry",
]


@dataclass(frozen=True)
class PopulateOptions:
    """What to extract and how: the arguments both runners take."""

    encoder: Any = "tiny-random"
    """A preset, a Hugging Face id, a local folder, a loaded GemmaEncoder, or None."""
    num_frames: int = 16
    device: str = "cpu"
    batch_size: int = 64
    """Frames per encoder forward."""
    overwrite: bool = False
    limit: int | None = None
    """Only the first N entries."""
    landmarks: bool = True
    progress: bool = True
    labels: dict[int, str] | None = None
    """label -> gloss fixed by the source (WLASL); otherwise assigned from the glosses."""
    face: bool = False
    pooling: str = "mean_soft_tokens"
    flash_attention: bool = False
    revision: str | None = None
    storage_options: dict | None = None
    fast_path: str = "auto"
    """The encoder's compiled forward: auto (on for CUDA), on, off."""
    sdpa_backend: str = "auto"
    """The attention kernel: auto (PyTorch's choice), cudnn, flash, efficient, math."""

    @classmethod
    def pick(cls, arguments: dict[str, Any], **changes: Any) -> PopulateOptions:
        """The options among a runner's arguments (its ``locals()``), with ``changes``."""
        return cls(**{f.name: arguments[f.name] for f in fields(cls)} | changes)

    def extractor_args(self) -> dict[str, Any]:
        """Keyword arguments of the ``ClipExtractor`` this run extracts with."""
        return {name: getattr(self, name) for name in _EXTRACTOR_ARGS}


_EXTRACTOR_ARGS = (
    "encoder",
    "num_frames",
    "device",
    "landmarks",
    "face",
    "pooling",
    "flash_attention",
    "batch_size",
    "revision",
    "fast_path",
    "sdpa_backend",
)


@dataclass
class Plan:
    """The store, checked against the run's schema, and the entries still to extract."""

    store: FeatureStore
    todo: list[ManifestEntry]


def _existing_labels(store_url: str, storage_options: dict | None) -> dict[int, str]:
    """The store's label map, or {} when there is no store yet (create_store then reports
    anything worse than absence, such as a folder that is not a store)."""
    try:
        return open_store(store_url, storage_options=storage_options).labels
    except (StoreError, FileNotFoundError):
        return {}


def plan(
    store_url: str,
    entries: Iterable[ManifestEntry],
    options: PopulateOptions,
    schema_for: Callable[[dict[int, str]], StoreSchema],
    summary: PopulateSummary,
) -> Plan:
    """Open or create the store (refusing a mismatch), merge labels, and pick what to do.

    ``schema_for(label_map)`` is the run's schema (it needs the encoder, which only the
    runner has loaded). Skipped and manifest-failed entries are counted in ``summary``.
    """
    entries = list(entries)
    existing = _existing_labels(store_url, options.storage_options)
    entries, label_map = assign_labels(entries, existing)
    if options.labels:
        label_map = {**label_map, **options.labels}
    entries = entries[: options.limit] if options.limit is not None else entries
    store = create_store(
        store_url, schema_for(label_map), exist_ok=True, storage_options=options.storage_options
    )
    committed = set() if options.overwrite else set(store.ids())
    todo = []
    for e in entries:
        if e.video_id in committed:
            summary.skipped += 1
        elif e.error:
            summary.failed[e.video_id] = e.error
        else:
            todo.append(e)
    return Plan(store, todo)


@dataclass
class FeaturePlan:
    """The store with the new feature set registered, and its videos still to encode."""

    store: FeatureStore
    name: str
    blocks: list[list[ManifestEntry]]
    """The videos to do, grouped by the base block that holds them, in storage order."""
    recorded: dict[str, dict]
    """Video id -> its ``source`` as populate recorded it (checked again after decoding)."""

    @property
    def todo(self) -> list[ManifestEntry]:
        return [e for block in self.blocks for e in block]


def open_for_features(
    store_url: str, num_frames: int | None, storage_options: dict | None
) -> FeatureStore:
    """The existing store, open for writing; T is the store's (``num_frames`` None or equal)."""
    store = open_store(store_url, "r+", storage_options)
    if num_frames is not None and int(num_frames) != store.schema.num_frames:
        raise ValueError(
            f"num_frames {num_frames} disagrees with store {store_url} "
            f"(T = {store.schema.num_frames}); added features use the store's T"
        )
    return store


def recorded_entry(entry: IndexEntry) -> ManifestEntry | str:
    """The stored video as populate extracted it (path, frame range), or why it cannot be
    redone: imported videos and videos without a recorded clip have nothing to decode."""
    source = entry.source or {}
    vid = entry.video_id
    if "format" in source:
        return (
            f"no_source: video {vid!r} was imported ({source['format']}: "
            f"{source.get('path', '?')}), it has no video to encode"
        )
    if not source.get("path") or "frame_start" not in source:
        return f"no_source: video {vid!r} has no recorded video path and frame range"
    return ManifestEntry(
        vid,
        Path(source["path"]),
        gloss=entry.gloss,
        split=entry.split,
        label=entry.label,
        frame_start=int(source["frame_start"]),
        frame_end=int(source.get("frame_end", -1)),
    )


def plan_features(
    store: FeatureStore,
    name: str,
    fingerprint: dict,
    spec: StreamSpec,
    options: PopulateOptions,
    summary: PopulateSummary,
    shard_index: int = 0,
    num_shards: int = 1,
) -> FeaturePlan:
    """Register feature set ``name`` (SchemaMismatchError if it holds another encoder's
    features) and pick this shard's stored videos that lack it.

    Shard ``i`` of ``n`` takes every n-th base block in storage order, so processes given
    disjoint shards never encode the same video. Skipped videos and videos that cannot be
    redone are counted in ``summary``.
    """
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"shard index {shard_index} is not in 0..{num_shards - 1}")
    store.add_feature_set(name, fingerprint, tuple(spec.shape), spec.dtype)
    store.refresh()
    if name in store.schema.streams:  # base gemma, made by this very encoder: nothing to add
        summary.skipped += len(store)
        return FeaturePlan(store, name, [], {})
    have = set() if options.overwrite else store.feature_ids(name)
    blocks, recorded, left = [], {}, options.limit
    for i, block in enumerate(store.blocks()):
        if i % num_shards != shard_index:
            continue
        todo = []
        for vid in block.video_ids:
            if vid in have:
                summary.skipped += 1
                continue
            if left is not None and left <= 0:
                break
            entry = store.entry(vid)
            redo = recorded_entry(entry)
            if isinstance(redo, str):
                summary.failed[vid] = redo
                continue
            todo.append(redo)
            recorded[vid] = entry.source
            left = None if left is None else left - 1
        if todo:
            blocks.append(todo)
    return FeaturePlan(store, name, blocks, recorded)
