"""Read back every committed video and report every problem, naming the video and field."""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from .errors import CorruptDataError
from .store import Block, FeatureStore


def verify_store(store: FeatureStore, progress: bool = False) -> list[str]:
    store.refresh()
    problems = list(store._index.problems)
    labels = store.labels
    for e in store._index.entries.values():
        if e.label != -1 and e.label not in labels:
            problems.append(f"video {e.video_id!r}: label {e.label} is not in the label map")
    blocks = store.blocks()
    for block in tqdm(blocks, desc="verify", unit="block", disable=not progress):
        problems += _check_block(store, block)
    return problems


def _check_block(store: FeatureStore, block: Block) -> list[str]:
    try:
        batch = store.read_block(block)
    except CorruptDataError:
        # find exactly which videos and fields are unreadable
        return [p for vid in block.video_ids for p in _check_video(store, vid)]
    problems = []
    for name, spec in store.schema.streams.items():
        arr = batch.arrays[name]
        if arr.shape[1:] != spec.shape or arr.dtype != np.dtype(spec.dtype):
            problems.append(
                f"videos of block {block.block} in {block.segment}: field {name!r} is "
                f"{arr.shape[1:]} {arr.dtype}, schema says {spec.shape} {spec.dtype}"
            )
            continue
        if arr.dtype.kind == "f":
            bad = ~np.isfinite(arr.reshape(len(arr), -1)).all(axis=1)
            problems += [
                f"video {batch.ids[i]!r}: field {name!r} has non-finite values"
                for i in np.flatnonzero(bad)
            ]
    return problems


def _check_video(store: FeatureStore, video_id: str) -> list[str]:
    problems = []
    for name in store.schema.streams:
        try:
            store.get(video_id, [name])
        except CorruptDataError as e:
            problems.append(str(e))
    return problems
