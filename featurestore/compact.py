"""Merge all segments into one, ordered by split then id, so each split streams contiguously.

Crash-safe without locks: the merged copies are committed first (newer records win), and
only then are the old records deleted; an interrupted compact leaves duplicates that resolve
to identical bytes, and a rerun finishes the job. Deleted videos are not copied, so their
bytes go with the old segments. Each added feature set is merged the same way, into blocks
that line up with the videos'.

Compaction holds the maintenance lease (``leases``): it refuses to start beside a writer,
and writers wait for it. Readers are never refused: the old segments stay readable for
``grace_s`` seconds (listed under ``trash/``), so a reader still on the old index reads on,
and a later compact deletes them; a reader that finds one gone refreshes its index once and
reads the copy (``FeatureStore``).
"""

from __future__ import annotations

import json
import time

from tqdm import tqdm

from . import leases
from ._storage import Storage
from .index import COMMITS, IndexEntry, commits_prefix
from .writer import FeatureWriter, Writer, new_segment_id

TRASH = "trash"
DEFAULT_GRACE_S = 600.0


def compact_store(
    storage: Storage, progress: bool = False, grace_s: float = DEFAULT_GRACE_S, force: bool = False
) -> dict[str, int]:
    storage.require_writable()
    lease = leases.acquire_maintenance(storage.files, "compact", force)
    try:
        purged = purge_trash(storage)
        result = _compact(storage, progress, grace_s)
    finally:
        leases.release(storage.files, lease)
    return {**result, "segments_purged": purged}


def _compact(storage: Storage, progress: bool, grace_s: float) -> dict[str, int]:
    storage.refresh()
    index = storage.index
    old_records = list(index.records)
    order = sorted(index.entries.values(), key=lambda e: (e.split, e.video_id))
    streams = list(storage.schema.streams)
    # Added sets first: their rows of a deleted video are masked by the videos' delete
    # records, which the videos' merge drops; merged after it, a video deleted and written
    # again would get its old features back (an interrupted compact too).
    removed = sum(
        _compact_feature(storage, name, order, grace_s) for name in storage.schema.feature_sets
    )
    bar = tqdm(total=len(order), desc="compact", unit="video", disable=not progress)
    segment = new_segment_id("compact")
    with Writer(storage, overwrite=True, segment=segment, lease=False) as w:
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
    removed += _remove(storage, old_records, {segment}, COMMITS, 1, grace_s)
    storage.refresh()
    return {"videos": len(order), "segments_removed": removed}


def _compact_feature(storage: Storage, name: str, order: list[IndexEntry], grace_s: float) -> int:
    """Merge one added set into one segment, block for block with the merged videos."""
    feature = storage.index.features[name]
    old_records = list(feature.records)
    segment = new_segment_id(f"compact-{name}")
    with FeatureWriter(storage, name, overwrite=True, segment=segment, lease=False) as w:
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
    return _remove(storage, old_records, {segment}, commits_prefix(key), 3, grace_s)


def _remove(
    storage: Storage, records: list[str], keep: set[str], prefix: str, at: int, grace_s: float
) -> int:
    """Delete superseded commit records, then their segments (named at path part ``at``)
    now, or put the segments in the trash for ``grace_s`` seconds."""
    segments = {key.split("/")[at] for key in records} - keep
    for key in records:
        storage.files.delete(key)
    until = time.time() + grace_s
    for seg in sorted(segments):
        if grace_s > 0:
            entry = {"segment": seg, "prefix": prefix, "delete_after": until}
            storage.files.write(f"{TRASH}/{seg}.json", json.dumps(entry).encode())
        else:
            _delete_segment(storage, seg, prefix)
    return len(segments)


def _delete_segment(storage: Storage, segment: str, prefix: str) -> None:
    storage.backend.delete_segment(segment)
    storage.files.delete(f"{prefix}/{segment}")


def purge_trash(storage: Storage, now: float | None = None) -> int:
    """Delete the segments whose grace period is over; returns how many went."""
    now = time.time() if now is None else now
    purged = 0
    for key in storage.files.list(TRASH):
        try:
            entry = json.loads(storage.files.read(key) or b"")
            if float(entry["delete_after"]) > now:
                continue
            _delete_segment(storage, str(entry["segment"]), str(entry["prefix"]))
        except (ValueError, KeyError, TypeError):
            pass  # unreadable: drop the entry, delete nothing it seems to name
        else:
            purged += 1
        storage.files.delete(key)
    return purged
