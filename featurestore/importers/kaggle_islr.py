"""``kaggle-islr``: Google's Isolated Sign Language Recognition set (Kaggle, 2023).

``train.csv`` (``path,participant_id,sequence_id,sign``) lists one parquet per sequence
with rows ``frame,row_id,type,landmark_index,x,y,z`` (543 landmarks a frame: face 468,
left hand 21, pose 33, right hand 21), NaN where a part was not found. The signer is
``participant_id``. Reading parquet needs pyarrow.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from .scan import BadInput, Item, Loaded, Scan, holistic_frames

__all__ = ["scan", "PARTS", "COLUMNS"]

#: Kaggle's ``type`` values, their sizes, in the order of a frame's 543 rows.
PARTS = {"face": 468, "left_hand": 21, "pose": 33, "right_hand": 21}
COLUMNS = ("frame", "type", "landmark_index", "x", "y", "z")
_CSV_COLUMNS = ("path", "participant_id", "sequence_id", "sign")
_POINTS = sum(PARTS.values())


def _pyarrow():
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError(
            "reading Kaggle ISLR parquet files needs pyarrow: pip install 'pyarrow<21'"
        ) from None
    return pa, pc, pq


def _csv(source: str) -> Path:
    path = Path(source)
    csv_path = path / "train.csv" if path.is_dir() else path
    if not csv_path.is_file():
        raise ValueError(f"{source}: no train.csv (a Kaggle ISLR folder has one)")
    return csv_path


def _rows(csv_path: Path):
    with csv_path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in _CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(
                f"{csv_path}: not a Kaggle ISLR train.csv (missing column(s) {', '.join(missing)})"
            )
        yield from enumerate(reader, 2)


def _items(source: str, csv_path: Path) -> list[Item]:
    items = []
    for line, row in _rows(csv_path):
        rel, seq = (row["path"] or "").strip(), (row["sequence_id"] or "").strip()
        item = Item(
            source,
            rel or f"{csv_path.name} line {line}",
            (row["sign"] or "").strip(),
            seq or f"line{line}",
            ref=csv_path.parent / rel,
            signer=(row["participant_id"] or "").strip() or None,
        )
        if not rel or not seq:
            item.error = f"{csv_path} line {line}: empty path or sequence_id"
        elif not item.ref.is_file():
            item.error = f"{item.ref}: file not found"
        items.append(item)
    return items


def _table(path: Path):
    pa, pc, pq = _pyarrow()
    try:
        names = pq.read_schema(path).names
        missing = [c for c in COLUMNS if c not in names]
        if missing:
            raise BadInput(f"{path}: parquet lacks column(s) {', '.join(missing)}")
        return pq.read_table(path, columns=list(COLUMNS)), pa, pc
    except (OSError, pa.ArrowException) as exc:
        raise BadInput(f"{path}: unreadable parquet ({exc})") from None


def _load(face: bool):
    offsets = dict(zip(PARTS, np.cumsum([0, *PARTS.values()])[:-1].tolist(), strict=True))

    def load(item: Item) -> Loaded:
        table, pa, pc = _table(item.ref)
        if table.num_rows == 0:
            raise BadInput(f"{item.ref}: no rows")
        kinds = pc.index_in(table["type"].cast(pa.string()), value_set=pa.array(list(PARTS)))
        if kinds.null_count:
            bad = table["type"][pc.index(pc.is_null(kinds), True).as_py()]
            raise BadInput(f"{item.ref}: unknown type {bad} (expected {', '.join(PARTS)})")
        kind = kinds.to_numpy().astype(np.int64)
        index = table["landmark_index"].to_numpy().astype(np.int64)
        sizes = np.array(list(PARTS.values()))
        if (index < 0).any() or (index >= sizes[kind]).any():
            raise BadInput(f"{item.ref}: landmark_index out of range for its type")
        frames, row = np.unique(table["frame"].to_numpy(), return_inverse=True)
        xyz = np.full((len(frames), _POINTS, 3), np.nan, np.float32)
        point = np.array(list(offsets.values()))[kind] + index
        for c, name in enumerate("xyz"):
            xyz[row, point, c] = table[name].to_numpy()
        parts, present = {}, {}
        for name, size in PARTS.items():
            block = xyz[:, offsets[name] : offsets[name] + size]
            parts[name], present[name] = block, ~np.isnan(block).all(axis=(1, 2))
        return Loaded(holistic_frames(parts, present, face, str(item.ref)), "543")

    return load


def _count_frames(item: Item) -> int:
    pa, _, pq = _pyarrow()
    try:
        return pq.read_metadata(item.ref).num_rows // _POINTS
    except (OSError, pa.ArrowException) as exc:
        raise BadInput(f"{item.ref}: unreadable parquet ({exc})") from None


def scan(sources: list[str], *, face: bool = False) -> Scan:
    """Every row of each SOURCE's train.csv (a train.csv file or its folder)."""
    _pyarrow()
    items, folders = [], []
    for source in sources:
        csv_path = _csv(source)
        folder = str(csv_path.parent)
        folders.append(folder)
        items += _items(folder, csv_path)
    return Scan(
        items,
        load=_load(face),
        count_frames=_count_frames,
        gloss_in_id=False,
        sources=folders,
    )
