"""One populate run, before either runner starts: the store made ready and the work picked.

``prepare`` opens or creates the store for the run's schema (encoder fingerprint, T,
streams, landmark layout), refusing a mismatch before anything is extracted, with the
run's labels claimed in it in the same call (add-only, atomic), and sorts the entries into
committed (skipped), failed while reading the manifest, and to do. The local pipeline and
Ray then run the same ``PopulateRun``.

``prepare_features`` is the same step for adding a feature set to a store that exists: the
entries are the stored videos themselves, rebuilt from the sources populate recorded (path
and frame range), grouped by the base block that holds them so the new set's blocks line
up with the base blocks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..index import IndexEntry
from ..manifest import ManifestEntry, assign_labels
from ..schema import StoreSchema, StreamSpec
from ..store import FeatureStore, create_store, open_store

if TYPE_CHECKING:
    from ..summary import PopulateSummary
    from .options import PopulateOptions

__all__ = [
    "FeatureRun",
    "PopulateRun",
    "open_for_features",
    "prepare",
    "prepare_features",
    "recorded_entry",
]


@dataclass
class PopulateRun:
    """The store, checked against the run's schema, and the entries still to extract."""

    store: FeatureStore
    todo: list[ManifestEntry]


def prepare(
    store_url: str,
    entries: Iterable[ManifestEntry],
    options: PopulateOptions,
    schema: StoreSchema,
    summary: PopulateSummary,
) -> PopulateRun:
    """Open or create the store for ``schema`` (refusing a mismatch) with the run's labels
    claimed in it, and pick what to do.

    ``schema`` is the run's, labels aside (it needs the encoder, which only the runner has
    loaded). The labels fixed by the source and one for each new gloss are claimed in the
    store itself as it is opened, atomically against other writers, so runs on disjoint
    parts of a manifest never give one label two glosses. Skipped and manifest-failed
    entries go to ``summary``.
    """
    entries = list(entries)
    fixed = dict(options.labels or {})
    fixed.update({e.label: e.gloss for e in entries if e.label is not None and e.gloss})
    store = create_store(
        store_url,
        replace(schema, labels=fixed),
        exist_ok=True,
        storage_options=options.storage_options,
        glosses=(e.gloss for e in entries if e.label is None),
    )
    entries, _ = assign_labels(entries, store.labels)
    entries = entries[: options.limit] if options.limit is not None else entries
    committed = set() if options.overwrite else set(store.ids())
    todo = []
    for e in entries:
        if e.video_id in committed:
            summary.skipped += 1
        elif e.error:
            summary.failures[e.video_id] = e.error
        else:
            todo.append(e)
    return PopulateRun(store, todo)


@dataclass
class FeatureRun:
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
    store_url: str, options: PopulateOptions
) -> tuple[FeatureStore, PopulateOptions]:
    """The existing store, open for writing, and the options of adding a feature set to it:
    the store's T (``options.num_frames`` None or equal) and the encoder only, no landmarks."""
    store = open_store(store_url, "r+", options.storage_options)
    num_frames = options.num_frames
    if num_frames is not None and int(num_frames) != store.schema.num_frames:
        raise ValueError(
            f"num_frames {num_frames} disagrees with store {store_url} "
            f"(T = {store.schema.num_frames}); added features use the store's T"
        )
    return store, replace(options, num_frames=store.schema.num_frames, landmarks=False)


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


def prepare_features(
    store: FeatureStore,
    name: str,
    fingerprint: dict,
    spec: StreamSpec,
    options: PopulateOptions,
    summary: PopulateSummary,
) -> FeatureRun:
    """Register feature set ``name`` (SchemaMismatchError if it holds another encoder's
    features) and pick this shard's stored videos that lack it.

    Shard ``options.shard_index`` of ``options.num_shards`` (n) takes every n-th base block in
    storage order, so processes given disjoint shards never encode the same video. Skipped
    videos and videos that cannot be redone are counted in ``summary``.
    """
    shard_index, num_shards = options.shard_index, options.num_shards
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"shard index {shard_index} is not in 0..{num_shards - 1}")
    store.add_feature_set(name, fingerprint, tuple(spec.shape), spec.dtype)
    store.refresh()
    if name in store.schema.streams:  # base gemma, made by this very encoder: nothing to add
        summary.skipped += len(store)
        return FeatureRun(store, name, [], {})
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
                summary.failures[vid] = redo
                continue
            todo.append(redo)
            recorded[vid] = entry.source
            left = None if left is None else left - 1
        if todo:
            blocks.append(todo)
    return FeatureRun(store, name, blocks, recorded)
