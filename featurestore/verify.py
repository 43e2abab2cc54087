"""Read back every committed video and report every problem, naming the video and field.

Added feature sets are read back too, block by block of their own segments, and a set's
row for a video the store no longer holds is reported. Every video's label must name its
own gloss in the label map (``repair.label_problems``).
"""

from __future__ import annotations

import numpy as np
from tqdm import tqdm

from ._storage import Storage
from .backends import RowRange
from .errors import CorruptDataError
from .index import Block
from .repair import label_problems


def verify_store(storage: Storage, progress: bool = False) -> list[str]:
    storage.refresh()
    index = storage.index
    problems = list(index.problems)
    problems += label_problems(list(index.entries.values()), storage.schema.labels)
    work = [(block, list(storage.schema.streams)) for block in index.blocks()]
    for name, feature in index.features.items():
        work += [(block, [name]) for block in feature.blocks()]
        problems += [
            f"feature set {name!r}: video {vid!r} is not in the store"
            for vid in sorted(set(feature.rows) - set(index.entries))
        ]
    for block, streams in tqdm(work, desc="verify", unit="block", disable=not progress):
        problems += _check_block(storage, block, streams)
    return problems


def _check_block(storage: Storage, block: Block, streams: list[str]) -> list[str]:
    specs = storage.schema.all_streams
    try:
        arrays = storage.read_stored(block, streams)
    except CorruptDataError:
        # find exactly which videos and fields are unreadable
        return [p for i in range(len(block)) for p in _check_row(storage, block, i, streams)]
    problems = []
    for name in streams:
        arr, spec = arrays[name], specs[name]
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


def _check_row(storage: Storage, block: Block, i: int, streams: list[str]) -> list[str]:
    offset, what = block.offsets[i], f"video {block.video_ids[i]!r}"
    rows = RowRange(block.segment, block.block, offset, offset + 1)
    problems = []
    for name in streams:
        try:
            storage.read(rows, [name], what)
        except CorruptDataError as exc:
            problems.append(str(exc))
    return problems
