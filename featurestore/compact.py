"""Merge all segments into one, ordered by split then id, so each split streams contiguously.

Crash-safe without locks: the merged copies are committed first (newer records win), and
only then are the old records and segments deleted; an interrupted compact leaves duplicates
that resolve to identical bytes, and a rerun finishes the job. Run it while no writer runs.
"""

from __future__ import annotations

from tqdm import tqdm

from .index import COMMITS
from .store import FeatureStore


def compact_store(store: FeatureStore, progress: bool = False) -> dict[str, int]:
    store._require_writable()
    store.refresh()
    index = store._index
    old_records = list(index.records)
    old_segments = {key.split("/")[1] for key in old_records}
    order = sorted(index.entries.values(), key=lambda e: (e.split, e.video_id))
    bar = tqdm(total=len(order), desc="compact", unit="video", disable=not progress)
    with store.writer(overwrite=True) as w:
        w.segment = w.segment.replace("seg-", "compact-", 1)
        for start in range(0, len(order), store.block_size):
            chunk = order[start : start + store.block_size]
            batch = store.get_many([e.video_id for e in chunk])
            for i, e in enumerate(chunk):
                arrays = {s: a[i] for s, a in batch.arrays.items()}
                w.put(
                    e.video_id, arrays, label=e.label, gloss=e.gloss, split=e.split, source=e.source
                )
            bar.update(len(chunk))
        for vid, reason in index.failures.items():
            w.fail(vid, reason)
    bar.close()
    for key in old_records:
        store._files.delete(key)
    for seg in old_segments - {w.segment}:
        store._backend.delete_segment(seg)
        store._files.delete(f"{COMMITS}/{seg}")
    store.refresh()
    return {"videos": len(order), "segments_removed": len(old_segments - {w.segment})}
