"""Merge all segments into one, ordered by split then id, so each split streams contiguously.

Crash-safe without locks: the merged copies are committed first (newer records win), and
only then are the old records and segments deleted; an interrupted compact leaves duplicates
that resolve to identical bytes, and a rerun finishes the job. Run it while no writer runs.
"""

from __future__ import annotations

from tqdm import tqdm

from ._storage import Storage
from .index import COMMITS
from .writer import Writer, new_segment_id


def compact_store(storage: Storage, progress: bool = False) -> dict[str, int]:
    storage.require_writable()
    storage.refresh()
    index = storage.index
    old_records = list(index.records)
    old_segments = {key.split("/")[1] for key in old_records}
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
    for key in old_records:
        storage.files.delete(key)
    for seg in old_segments - {segment}:
        storage.backend.delete_segment(seg)
        storage.files.delete(f"{COMMITS}/{seg}")
    storage.refresh()
    return {"videos": len(order), "segments_removed": len(old_segments - {segment})}
