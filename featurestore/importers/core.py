"""What every import shares: ids, the T decision, splits, the landmark layout, and the write loop.

A format module turns its SOURCEs into ``Item``s (a cheap listing) and loads one item at a
time into per-frame arrays at the source's own length; this module resamples them to the
store's T and writes them as ``populate`` would, committing block by block.
"""

from __future__ import annotations

import csv
import hashlib
import re
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from .._test_hold import hold_after
from ..errors import SchemaMismatchError, StoreError
from ..layout import FACE_SUBSET, has_face, landmark_layout, landmark_streams
from ..sampling import sample_indices
from ..schema import LANDMARK_MASK_STREAM, LANDMARKS_STREAM, StoreSchema, StreamSpec
from ..store import FeatureStore, create_store, open_store
from ..summary import ImportSummary
from ..writer import Writer

__all__ = ["BadInput", "Item", "Loaded", "ImportSummary", "run_import", "holistic_frames"]

SPLIT_BY = ("sequence", "signer")
SIGNER_COLUMNS = ("recorded_by", "signer", "participant_id")
DEFAULT_NUM_FRAMES = 16
_SIGNER_TRIES = 256  # seeded orders tried when assigning whole signers to splits
_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]")


class BadInput(ValueError):
    """One item cannot be imported; the message names the file and the reason."""


@dataclass
class Item:
    """One sequence to import, as listed by a format's scan (nothing loaded yet)."""

    source: str
    """The SOURCE it comes from, as resolved (recorded per video)."""
    member: str
    """Its place inside the source (``gloss/sequence``, a file path, a video id)."""
    gloss: str
    name: str
    """The sequence's own name (folder, file stem, sequence id)."""
    ref: Any = None
    """Whatever the format needs to load it."""
    frames: int | None = None
    """Its length when the listing already knows it."""
    signer: str | None = None
    split: str | None = None
    """A split fixed by the source (WLASL); None: assigned here."""
    label: int | None = None
    """A label fixed by the source (WLASL); None: assigned from the gloss."""
    video_id: str = ""
    error: str | None = None


@dataclass
class Loaded:
    """One item's arrays at its own length F (frames first), and what to record about it."""

    arrays: dict[str, np.ndarray]
    layout: str
    """The source layout detected (``258``, ``1662``, ``126``, ``543``, ``162``, ``pose``)."""
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def frames(self) -> int:
        return int(next(iter(self.arrays.values())).shape[0])


@dataclass
class Plan:
    """What a format contributes to the store schema beyond the landmark streams."""

    items: list[Item]
    extra_streams: dict[str, tuple[int, str]] = field(default_factory=dict)
    """Stream -> (feature dim, dtype) for (T, D) streams such as ``gemma``."""
    encoder: dict[str, Any] = field(default_factory=dict)
    landmarks: bool = True
    failures: dict[str, str] = field(default_factory=dict)
    """Files that are not sequences at all (a stray non-.npy file), by path."""
    load: Callable[[Item], Loaded] | None = None
    count_frames: Callable[[Item], int] | None = None
    """Reads an item's length when the listing does not know it (for the default T)."""
    gloss_in_id: bool = True
    """False where the sequence name is unique by itself (Kaggle's sequence_id)."""
    labels: dict[int, str] = field(default_factory=dict)
    """Labels fixed by the source (WLASL's class indices), kept even for failed videos."""
    sources: list[str] | None = None
    """The sources as items name them, where a format resolves SOURCE (train.csv -> folder)."""
    close: Callable[[], None] | None = None
    """Releases open sources (zip handles) when the run ends."""


# -- landmarks ---------------------------------------------------------------------------------


def holistic_frames(
    parts: dict[str, np.ndarray],
    present: dict[str, np.ndarray],
    face: bool,
    where: str,
) -> dict[str, np.ndarray]:
    """Per-part (F, n, 3) coordinates and (F,) presence -> the store's landmark streams.

    ``parts`` may lack any part (it is then missing in every frame); ``face`` is the full
    468-point mesh, cut to ``FACE_SUBSET`` when the store keeps a face. NaN or inf in a
    present part is bad input; absent parts become zeros with their mask bit off.
    """
    layout = landmark_layout(face)
    frames = next(iter(parts.values())).shape[0]
    points = np.zeros((frames, sum(layout["sizes"]), 3), np.float32)
    mask = np.zeros((frames, len(layout["parts"])), bool)
    offset = 0
    for p, (name, size) in enumerate(zip(layout["parts"], layout["sizes"], strict=True)):
        xyz = parts.get(name)
        if xyz is not None:
            if name == "face":
                xyz = xyz[:, list(FACE_SUBSET)]
            here = np.asarray(present[name], bool)
            values = xyz[here]
            if not np.isfinite(values).all():
                t = int(
                    np.flatnonzero(here)[np.flatnonzero(~np.isfinite(values).all(axis=(1, 2)))[0]]
                )
                raise BadInput(f"{where}: NaN or inf in {name} of frame {t}, a part marked present")
            points[here, offset : offset + size] = values
            mask[:, p] = here
        offset += size
    return {LANDMARKS_STREAM: points, LANDMARK_MASK_STREAM: mask}


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


# -- splits --------------------------------------------------------------------------------------


def read_signers(path: str | Path) -> dict[tuple[str, str], str]:
    """(gloss, sequence) -> signer from a CSV ``gloss,sequence,recorded_by|signer|participant_id``."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"signers file {path} not found")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        column = next((c for c in SIGNER_COLUMNS if c in columns), None)
        if "gloss" not in columns or "sequence" not in columns or column is None:
            raise ValueError(
                f"{path}: need columns gloss,sequence and one of {', '.join(SIGNER_COLUMNS)}; "
                f"found {', '.join(columns) or 'none'}"
            )
        return {(row["gloss"], row["sequence"]): row[column] for row in reader if row[column]}


def _rng(seed: int, key: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(key.encode())])


def _stratified(items: list[Item], val_fraction: float, test_fraction: float, seed: int) -> None:
    """Per gloss, a seeded shuffle cut into test, val and the rest train (at least one train)."""
    by_gloss: dict[str, list[Item]] = {}
    for item in items:
        by_gloss.setdefault(item.gloss, []).append(item)
    for gloss, group in by_gloss.items():
        group.sort(key=lambda i: i.video_id)
        order = _rng(seed, gloss).permutation(len(group))
        n = len(group)
        n_test = int(round(n * test_fraction))
        n_val = int(round(n * val_fraction))
        while n_test + n_val >= n and n_test + n_val > 0:
            if n_val >= n_test and n_val:
                n_val -= 1
            else:
                n_test -= 1
        for rank, i in enumerate(order):
            group[i].split = (
                "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
            )


def _by_signer(items: list[Item], val_fraction: float, test_fraction: float, seed: int) -> None:
    """Whole signers to train/val/test, as close to the fractions as seeded tries get.

    Each try takes the signers in a seeded order and gives each to the split furthest below
    its target (to an empty split while there are only as many signers left as empty splits);
    the try closest to the targets wins.
    """
    counts = Counter(item.signer for item in items if item.signer is not None)  # all have one
    signers = sorted(counts)
    total = sum(counts.values())
    targets = {
        "train": (1 - val_fraction - test_fraction) * total,
        "val": val_fraction * total,
        "test": test_fraction * total,
    }
    wanted = [name for name, target in targets.items() if target > 0]
    rng = _rng(seed, "signers")
    best, best_error = {}, float("inf")
    for _ in range(_SIGNER_TRIES):
        order = [signers[i] for i in rng.permutation(len(signers))]
        filled = dict.fromkeys(targets, 0)
        assigned = {}
        for n, signer in enumerate(order):
            empty = [k for k in wanted if filled[k] == 0]
            choices = empty if len(order) - n <= len(empty) else wanted
            split = max(choices, key=lambda k: targets[k] - filled[k])
            assigned[signer] = split
            filled[split] += counts[signer]
        error = sum(abs(filled[k] - targets[k]) for k in targets)
        if error < best_error:
            best, best_error = assigned, error
    for item in items:
        item.split = best[item.signer]


def assign_splits(
    items: list[Item],
    split: str | None,
    split_by: str,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    test_signers: list[str] | None,
) -> None:
    """Fill ``item.split``: one named split, the source's own, per gloss, or per signer."""
    if split_by not in SPLIT_BY:
        raise ValueError(f"split_by must be one of {', '.join(SPLIT_BY)}, not {split_by!r}")
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError("val and test fractions must be in [0, 1) and sum to less than 1")
    live = [i for i in items if i.error is None]
    if split:
        for item in live:
            item.split = split
        return
    free = [i for i in live if i.split is None]
    by_signer = split_by == "signer" or bool(test_signers)
    if by_signer:
        for item in free:
            if item.signer is None:
                item.error = f"split: no signer known for {item.member} (see --signers)"
        free = [i for i in free if i.error is None]
    if test_signers:
        chosen = set(test_signers)
        unknown = chosen - {i.signer for i in free}
        if unknown:
            raise ValueError(f"test signer(s) {', '.join(sorted(unknown))} have no sequences")
        for item in free:
            if item.signer in chosen:
                item.split = "test"
        _stratified([i for i in free if i.split is None], val_fraction, 0.0, seed)
    elif by_signer:
        _by_signer(free, val_fraction, test_fraction, seed)
    else:
        _stratified(free, val_fraction, test_fraction, seed)


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


def _num_frames(plan: Plan, requested: int | None, existing: FeatureStore | None) -> int:
    """T: as asked, else the store's, else the sources' common length, else 16."""
    if requested is not None:
        return int(requested)
    if existing is not None:
        return existing.schema.num_frames
    live = [i for i in plan.items if i.error is None]
    lengths = set()
    for item in live:
        if item.frames is None and plan.count_frames is not None:
            try:
                item.frames = plan.count_frames(item)
            except BadInput:
                continue  # it fails when loaded; its length has no say
        lengths.add(item.frames)
        if len(lengths) > 1:
            break  # they disagree: no need to read every other length
    common = lengths.pop() if len(lengths) == 1 else None
    return common if common is not None else DEFAULT_NUM_FRAMES


def _schema(plan: Plan, num_frames: int, face: bool, labels: dict[int, str]) -> StoreSchema:
    streams = {
        name: StreamSpec((num_frames, dim), dtype)
        for name, (dim, dtype) in plan.extra_streams.items()
    }
    layout = landmark_layout(face) if plan.landmarks else {}
    if plan.landmarks:
        streams.update(landmark_streams(num_frames, layout))
    return StoreSchema(num_frames, streams, plan.encoder, layout, labels)


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
    plan: Plan,
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
    items = plan.items
    if not items and not plan.failures:
        raise ValueError(f"nothing to import in {', '.join(sources)}")
    assign_ids(items, plan.sources or sources, gloss_in_id=plan.gloss_in_id)
    for item in items:
        if signers and item.signer is None:
            item.signer = signers.get((item.gloss, item.name))
    assign_splits(items, split, split_by, val_fraction, test_fraction, seed, test_signers)
    existing = _existing(store, storage_options)
    summary = ImportSummary()
    summary.num_frames = _num_frames(plan, num_frames, existing)
    schema = _schema(plan, summary.num_frames, face, plan.labels)
    _check_store(existing, schema)
    target = create_store(store, schema, exist_ok=True, storage_options=storage_options)
    _check_store(target, schema)  # made by another process since: the same checks
    _claim_labels(items, target)
    live = [i for i in items if i.error is None]
    todo, summary.skipped = _todo(live, target, overwrite)
    summary.failures.update(plan.failures)
    summary.failures.update({i.video_id: i.error for i in items if i.error is not None})
    bar = tqdm(total=len(todo), unit="seq", disable=not progress, smoothing=0.1)
    try:
        with target.writer(overwrite=overwrite, block_size=block_size) as writer:
            for key, reason in summary.failures.items():
                writer.fail(key, reason)
            _write(fmt, plan, todo, writer, summary, bar)
    except KeyboardInterrupt:
        summary.interrupted = True  # the writer's exit committed what was complete
    finally:
        bar.close()
    summary.splits = Counter(i.split or "train" for i in todo if i.video_id not in summary.failures)
    summary.splits = dict(sorted(summary.splits.items()))
    summary.elapsed_s = time.perf_counter() - started
    return summary


def _write(
    fmt: str, plan: Plan, todo: Iterable[Item], writer: Writer, summary: ImportSummary, bar: tqdm
) -> None:
    assert plan.load is not None, f"{fmt}: its scan gave no loader"
    for item in todo:
        try:
            loaded = plan.load(item)
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
