"""Merge all segments into one, ordered by split then id, so each split streams contiguously.

Crash-safe without locks: the merged copies are committed first (newer records win), and
only then are the old records and segments deleted; an interrupted compact leaves duplicates
that resolve to identical bytes, and a rerun finishes the job. Run it while no writer runs.
Each added feature set is merged the same way, into blocks that line up with the videos'.
"""

from __future__ import annotations

from tqdm import tqdm

from ._storage import Storage
from .index import COMMITS, IndexEntry, commits_prefix
from .writer import FeatureWriter, Writer, new_segment_id


def compact_store(storage: Storage, progress: bool = False) -> dict[str, int]:
    storage.require_writable()
    storage.refresh()
    index = storage.index
    old_records = list(index.records)
    order = sorted(index.entries.values(), key=lambda e: (e.split, e.video_id))
    streams = list(storage.schema.streams)
    bar = tqdm(total=len(order), desc="compact", unit="video", disable=not progress)
    segment = new_segment_id("compact")
    with Writer(storage, overwrite=True, segment=segment) as w:
        for start in range(0, len(order), storage.block_size):
            chunk = order[start : start + storage.block_size]
            arrays = storage.read_entries(chunk, streams)
            for i, e in enumerate(chunk):
                w.put(
                    e.video_id,
                    {s: a[i] for s, a in arrays.items()},
                    label=e.label,
                    gloss=e.gloss,
                    split=e.split,
                    source=e.source,
                )
            bar.update(len(chunk))
        for vid, reason in index.failures.items():
            w.fail(vid, reason)
    bar.close()
    removed = _remove(storage, old_records, {segment}, COMMITS, 1)
    for name in storage.schema.feature_sets:
        removed += _compact_feature(storage, name, order)
    storage.refresh()
    return {"videos": len(order), "segments_removed": removed}


def _compact_feature(storage: Storage, name: str, order: list[IndexEntry]) -> int:
    """Merge one added set into one segment, block for block with the merged videos."""
    feature = storage.index.features[name]
    old_records = list(feature.records)
    segment = new_segment_id(f"compact-{name}")
    with FeatureWriter(storage, name, overwrite=True, segment=segment) as w:
        for start in range(0, len(order), storage.block_size):
            chunk = order[start : start + storage.block_size]
            rows = [feature.rows[e.video_id] for e in chunk if e.video_id in feature.rows]
            if rows:
                arrays = storage.read_at(rows, [name])[name]
                for row, array in zip(rows, arrays, strict=True):
                    w.put(row.video_id, array)
            w.flush()
        for vid, reason in feature.failures.items():
            w.fail(vid, reason)
    key = storage.schema.feature_sets[name].key
    return _remove(storage, old_records, {segment}, commits_prefix(key), 3)


def _remove(storage: Storage, records: list[str], keep: set[str], prefix: str, at: int) -> int:
    """Delete superseded commit records, then their segments (named at path part ``at``)."""
    segments = {key.split("/")[at] for key in records} - keep
    for key in records:
        storage.files.delete(key)
    for seg in segments:
        storage.backend.delete_segment(seg)
        storage.files.delete(f"{prefix}/{seg}")
    return len(segments)
