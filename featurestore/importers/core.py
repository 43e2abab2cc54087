"""The import run: ids, the T decision, the store's schema and labels, and the write loop.

A format module turns its SOURCEs into a ``Scan`` of ``Item``s (``scan.py``); this module
names each item, puts it in a split (``splits.py``), resamples it to the store's T and
writes it as ``populate`` would, committing block by block.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from .._test_hold import hold_after
from ..errors import SchemaMismatchError, StoreError
from ..layout import has_face, landmark_layout, landmark_streams
from ..sampling import sample_indices
from ..schema import StoreSchema, StreamSpec
from ..store import FeatureStore, create_store, open_store
from ..summary import ImportSummary
from ..writer import Writer
from .scan import BadInput, Item, Loaded, Scan
from .splits import assign_splits

__all__ = ["run_import", "store_keeps_face"]

DEFAULT_NUM_FRAMES = 16
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]")


def _same_layout(a: dict, b: dict) -> bool:
    keys = ("parts", "sizes", "coords", "face_indices")
    return all(a.get(k) == b.get(k) for k in keys)


# -- ids -----------------------------------------------------------------------------------------


def _slug(text: str, width: int = 60) -> str:
    """A store-safe id component; anything changed or cut gets a hash of the original."""
    safe = _UNSAFE.sub("_", text)[:width]
    if safe != text or not safe:
        safe = f"{safe}-{hashlib.sha1(text.encode()).hexdigest()[:6]}"
    return safe


def source_prefixes(sources: list[str]) -> dict[str, str]:
    """Source -> id prefix: its name, plus a hash of its path when two sources share a name."""
    names = {s: _slug(Path(s).stem if Path(s).is_file() else Path(s).name) for s in sources}
    counts = Counter(names.values())
    out = {}
    for s, name in names.items():
        if counts[name] > 1:
            name = f"{name}-{hashlib.sha1(s.encode()).hexdigest()[:6]}"
        out[s] = name if name[0].isalnum() or name[0] == "_" else f"_{name}"
    return out


def assign_ids(items: list[Item], sources: list[str], *, gloss_in_id: bool = True) -> None:
    """``<source>.<gloss>.<sequence>``: unique per run, stable across runs, always valid."""
    prefixes = source_prefixes(sources)
    for item in items:
        if item.video_id:
            continue
        parts = [prefixes[item.source]]
        if gloss_in_id:
            parts.append(_slug(item.gloss or "_"))
        parts.append(_slug(item.name))
        item.video_id = ".".join(parts)[:200]


# -- the run -------------------------------------------------------------------------------------


def _existing(store: str, storage_options: dict | None) -> FeatureStore | None:
    try:
        return open_store(store, storage_options=storage_options)
    except (StoreError, FileNotFoundError):
        return None


def store_keeps_face(store: str, storage_options: dict | None) -> bool:
    """Whether an existing store at ``store`` keeps the face subset, so that a later import
    into it needs no ``--face`` of its own."""
    existing = _existing(store, storage_options)
    return existing is not None and has_face(existing.schema.landmark_layout)


def _num_frames(scan: Scan, requested: int | None, existing: FeatureStore | None) -> int:
    """T: as asked, else the store's, else the sources' common length, else 16."""
    if requested is not None:
        return int(requested)
    if existing is not None:
        return existing.schema.num_frames
    live = [i for i in scan.items if i.error is None]
    lengths = set()
    for item in live:
        if item.frames is None and scan.count_frames is not None:
            try:
                item.frames = scan.count_frames(item)
            except BadInput:
                continue  # it fails when loaded; its length has no say
        lengths.add(item.frames)
        if len(lengths) > 1:
            break  # they disagree: no need to read every other length
    common = lengths.pop() if len(lengths) == 1 else None
    return common if common is not None else DEFAULT_NUM_FRAMES


def _schema(scan: Scan, num_frames: int, face: bool, labels: dict[int, str]) -> StoreSchema:
    streams = {
        name: StreamSpec((num_frames, dim), dtype)
        for name, (dim, dtype) in scan.extra_streams.items()
    }
    layout = landmark_layout(face) if scan.landmarks else {}
    if scan.landmarks:
        streams.update(landmark_streams(num_frames, layout))
    return StoreSchema(num_frames, streams, scan.encoder, layout, labels)


def _check_store(existing: FeatureStore | None, schema: StoreSchema) -> None:
    if existing is None:
        return
    existing.check_compatible(
        encoder=schema.encoder, num_frames=schema.num_frames, streams=schema.streams
    )
    extra = sorted(set(existing.schema.streams) - set(schema.streams))
    if extra:
        raise SchemaMismatchError(
            f"store {existing.url} has stream(s) {', '.join(extra)} that this import does not fill"
        )
    have = existing.schema.landmark_layout or {}
    if schema.landmark_layout and have and not _same_layout(have, schema.landmark_layout):
        raise SchemaMismatchError(
            f"store {existing.url} has landmark layout {have.get('parts')} "
            f"{have.get('sizes')}, this import writes {schema.landmark_layout['parts']} "
            f"{schema.landmark_layout['sizes']} (a store without a face takes no --face)"
        )


def _claim_labels(items: list[Item], store: FeatureStore) -> None:
    """Glosses exactly as written, each given its label in the store itself: claimed
    atomically against other writers (as populate does), never renumbered."""
    live = [i for i in items if i.error is None]
    label_map = store.claim_labels(i.gloss for i in live if i.label is None)
    by_gloss = {gloss: label for label, gloss in label_map.items()}
    for item in live:
        if item.label is None:
            item.label = by_gloss[item.gloss] if item.gloss else -1


def _todo(
    items: list[Item], existing: FeatureStore | None, overwrite: bool
) -> tuple[list[Item], int]:
    """Items still to write; an id committed by another source is an error naming both."""
    seen: dict[str, Item] = {}
    for item in items:
        other = seen.setdefault(item.video_id, item)
        if other is not item:
            raise ValueError(
                f"two sequences get the id {item.video_id!r}: {other.source}!{other.member} "
                f"and {item.source}!{item.member}"
            )
    committed = set() if existing is None or overwrite else set(existing.ids())
    todo, skipped = [], 0
    for item in items:
        if existing is None or item.video_id not in committed:
            todo.append(item)
            continue
        was = existing.entry(item.video_id).source or {}
        if (was.get("path"), was.get("member")) != (item.source, item.member):
            raise ValueError(
                f"video id {item.video_id!r} of {item.source}!{item.member} is already in "
                f"store {existing.url} from {was.get('path')}!{was.get('member')}; "
                "import into another store or pass --overwrite"
            )
        skipped += 1
    return todo, skipped


def _record(fmt: str, item: Item, loaded: Loaded) -> dict[str, Any]:
    record = {
        "format": fmt,
        "path": item.source,
        "member": item.member,
        "layout": loaded.layout,
        "frames": loaded.frames,
    }
    if item.signer is not None:
        record["signer"] = item.signer
    return {**record, **loaded.info}


def _resample(loaded: Loaded, num_frames: int) -> dict[str, np.ndarray]:
    out = {}
    for name, arr in loaded.arrays.items():
        if len(arr) == 0:
            raise BadInput("the sequence has no frames")
        idx, _ = sample_indices(len(arr), num_frames)
        out[name] = arr[idx]
    return out


def run_import(
    fmt: str,
    scan: Scan,
    sources: list[str],
    store: str,
    *,
    num_frames: int | None,
    split: str | None,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    split_by: str,
    signers: dict[tuple[str, str], str] | None,
    test_signers: list[str] | None,
    face: bool,
    overwrite: bool,
    progress: bool,
    storage_options: dict | None,
    block_size: int | None = None,
) -> ImportSummary:
    """Check everything that can be checked, then write item by item, committing by block."""
    started = time.perf_counter()
    items = scan.items
    if not items and not scan.failures:
        raise ValueError(f"nothing to import in {', '.join(sources)}")
    assign_ids(items, scan.sources or sources, gloss_in_id=scan.gloss_in_id)
    for item in items:
        if signers and item.signer is None:
            item.signer = signers.get((item.gloss, item.name))
    assign_splits(items, split, split_by, val_fraction, test_fraction, seed, test_signers)
    existing = _existing(store, storage_options)
    summary = ImportSummary()
    summary.num_frames = _num_frames(scan, num_frames, existing)
    schema = _schema(scan, summary.num_frames, face, scan.labels)
    _check_store(existing, schema)
    target = create_store(store, schema, exist_ok=True, storage_options=storage_options)
    _check_store(target, schema)  # made by another process since: the same checks
    _claim_labels(items, target)
    live = [i for i in items if i.error is None]
    todo, summary.skipped = _todo(live, target, overwrite)
    summary.failures.update(scan.failures)
    summary.failures.update({i.video_id: i.error for i in items if i.error is not None})
    bar = tqdm(total=len(todo), unit="seq", disable=not progress, smoothing=0.1)
    try:
        with target.writer(overwrite=overwrite, block_size=block_size) as writer:
            for key, reason in summary.failures.items():
                writer.fail(key, reason)
            _write(fmt, scan, todo, writer, summary, bar)
    except KeyboardInterrupt:
        summary.interrupted = True  # the writer's exit committed what was complete
    finally:
        bar.close()
    summary.splits = Counter(i.split or "train" for i in todo if i.video_id not in summary.failures)
    summary.splits = dict(sorted(summary.splits.items()))
    summary.elapsed_s = time.perf_counter() - started
    return summary


def _write(
    fmt: str, scan: Scan, todo: Iterable[Item], writer: Writer, summary: ImportSummary, bar: tqdm
) -> None:
    assert scan.load is not None, f"{fmt}: its scan gave no loader"
    for item in todo:
        try:
            loaded = scan.load(item)
            writer.put(
                item.video_id,
                _resample(loaded, summary.num_frames),
                label=item.label if item.label is not None else -1,
                gloss=item.gloss,
                split=item.split or "train",
                source=_record(fmt, item, loaded),
            )
            summary.done += 1
            summary.layout[loaded.layout] = summary.layout.get(loaded.layout, 0) + 1
        except (BadInput, StoreError) as exc:
            reason = str(exc)
            writer.fail(item.video_id, reason)
            summary.failures[item.video_id] = reason
            bar.set_postfix(failed=len(summary.failures), refresh=False)
        bar.update(1)
        hold_after(summary.done)  # test-only: a no-op unless a test asks
