"""Read back every committed video and report every problem, naming the video and field."""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from ._storage import Storage
from .errors import CorruptDataError
from .index import Block


def verify_store(storage: Storage, progress: bool = False) -> list[str]:
    storage.refresh()
    index = storage.index
    problems = list(index.problems)
    labels = storage.schema.labels
    for e in index.entries.values():
        if e.label != -1 and e.label not in labels:
            problems.append(f"video {e.video_id!r}: label {e.label} is not in the label map")
    blocks = index.blocks()
    for block in tqdm(blocks, desc="verify", unit="block", disable=not progress):
        problems += _check_block(storage, block)
    return problems


def _check_block(storage: Storage, block: Block) -> list[str]:
    streams = storage.schema.streams
    try:
        arrays = storage.read_block(block, list(streams))
    except CorruptDataError:
        # find exactly which videos and fields are unreadable
        return [p for vid in block.video_ids for p in _check_video(storage, vid)]
    problems = []
    for name, spec in streams.items():
        arr = arrays[name]
        if arr.shape[1:] != spec.shape or arr.dtype != np.dtype(spec.dtype):
            problems.append(
                f"videos of block {block.block} in {block.segment}: field {name!r} is "
                f"{arr.shape[1:]} {arr.dtype}, schema says {spec.shape} {spec.dtype}"
            )
            continue
        if arr.dtype.kind == "f":
            bad = ~np.isfinite(arr.reshape(len(arr), -1)).all(axis=1)
            problems += [
                f"video {block.video_ids[i]!r}: field {name!r} has non-finite values"
                for i in np.flatnonzero(bad)
            ]
    return problems


def _check_video(storage: Storage, video_id: str) -> list[str]:
    e = storage.index.entries[video_id]
    problems = []
    for name in storage.schema.streams:
        try:
            storage.read(e.segment, e.block, e.offset, e.offset + 1, [name], f"video {video_id!r}")
        except CorruptDataError as exc:
            problems.append(str(exc))
    return problems
