"""What to extract: entries from a WLASL download, a CSV/JSONL manifest or a folder of videos.

An entry that cannot be used (bad frame range, duplicate id, bad id) carries an ``error``
instead of aborting the load; the populate run records it as that video's failure. The
importers read WLASL's labels and splits here too (``seed-npy``), hence the store's floor.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .errors import InvalidVideoError
from .schema import validate_video_id

__all__ = [
    "ManifestEntry",
    "ManifestError",
    "read_manifest",
    "read_wlasl",
    "scan_videos",
    "assign_labels",
    "VIDEO_SUFFIXES",
]

log = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".webm", ".avi", ".mov", ".mkv", ".m4v")
_REQUIRED = ("video_id", "path")


class ManifestError(ValueError):
    """A manifest that cannot be read at all (missing file, missing columns, bad JSON)."""


@dataclass(frozen=True)
class ManifestEntry:
    """One video to extract: a row of a manifest (not a committed video: ``IndexEntry``)."""

    video_id: str
    path: Path
    gloss: str = ""
    """Empty for unlabeled videos (label -1)."""
    split: str = "train"
    label: int | None = None
    """Fixed by the source (WLASL class index); None: assigned from the gloss by the store."""
    frame_start: int = 1
    """1-indexed, inclusive (WLASL convention)."""
    frame_end: int = -1
    """1-indexed, inclusive; -1 means the last frame."""
    error: str | None = None
    """Why this entry cannot be extracted, found while reading the manifest."""


def _int_field(row: dict, key: str, default: int) -> int:
    value = row.get(key)
    if value is None or str(value).strip() == "":
        return default
    try:
        return int(str(value).strip())
    except ValueError:
        raise ValueError(f"field {key!r} is {value!r}, not an integer") from None


def _entry_from_row(row: dict, base: Path, where: str) -> ManifestEntry:
    video_id = str(row.get("video_id") or "").strip()
    path = Path(str(row.get("path") or "").strip())
    path = path if path.is_absolute() else base / path
    fields: dict[str, Any] = dict(
        video_id=video_id,
        path=path,
        gloss=str(row.get("gloss") or "").strip(),
        split=str(row.get("split") or "").strip() or "train",
    )
    try:
        validate_video_id(video_id)
        if not str(row.get("path") or "").strip():
            raise ValueError("field 'path' is empty")
        start = _int_field(row, "start_frame", _int_field(row, "frame_start", 1))
        end = _int_field(row, "end_frame", _int_field(row, "frame_end", -1))
        return ManifestEntry(**fields, frame_start=start, frame_end=end)
    except (ValueError, InvalidVideoError) as exc:
        return ManifestEntry(**fields, error=f"{where}: {exc}")


def _rows(path: Path) -> Iterable[tuple[dict, str]]:
    if path.suffix.lower() == ".jsonl":
        with path.open() as fh:
            for n, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        yield json.loads(line), f"{path.name} line {n}"
                    except json.JSONDecodeError as exc:
                        raise ManifestError(f"{path} line {n}: not JSON ({exc})") from None
        return
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in _REQUIRED if c not in (reader.fieldnames or [])]
        if missing:
            raise ManifestError(
                f"{path}: missing column(s) {missing}; need video_id,path[,gloss,split]"
            )
        for n, row in enumerate(reader, 2):
            yield row, f"{path.name} line {n}"


def _dedupe(entries: list[ManifestEntry]) -> list[ManifestEntry]:
    """Keep the first entry of each id: a second one would overwrite or collide with it."""
    seen: set[str] = set()
    out = []
    for e in entries:
        if e.video_id in seen:
            log.warning("manifest: duplicate video id %r (%s) ignored", e.video_id, e.path)
            continue
        seen.add(e.video_id)
        out.append(e)
    return out


def read_manifest(path: str | Path) -> list[ManifestEntry]:
    """Rows ``video_id,path,gloss,split[,start_frame,end_frame]`` of a .csv or .jsonl file.

    Relative paths are resolved against the manifest's folder; later duplicates are dropped.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"manifest {path} not found")
    entries = [_entry_from_row(row, path.parent, where) for row, where in _rows(path)]
    return _dedupe(entries)


def read_wlasl(
    root: str | Path, subset: str | Path | None = None
) -> tuple[list[ManifestEntry], dict[int, str]]:
    """Entries and label map of a WLASL download (``WLASL_v0.3.json``, ``videos/{id}.mp4``).

    The label of a gloss is its position in ``WLASL_v0.3.json`` (how the ``nslt_*.json``
    class indices are numbered). With ``subset`` (an ``nslt_*.json`` file, absolute or
    relative to ``root``) only its videos are kept, with its splits, classes and frame
    ranges. Ids listed in ``missing.txt`` whose file is absent fail with that reason.
    """
    root = Path(root)
    index_file = root / "WLASL_v0.3.json"
    if not index_file.is_file():
        raise ManifestError(f"{root} is not a WLASL folder: {index_file.name} not found")
    try:
        glosses = json.loads(index_file.read_text())
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{index_file}: not JSON ({exc})") from None
    missing_file = root / "missing.txt"
    missing = set(missing_file.read_text().split()) if missing_file.is_file() else set()
    instances: dict[str, tuple[int, str, dict]] = {}
    for label, item in enumerate(glosses):
        for inst in item.get("instances", []):
            instances.setdefault(str(inst["video_id"]), (label, item["gloss"], inst))
    labels = {label: item["gloss"] for label, item in enumerate(glosses)}
    if subset is None:
        chosen = {
            vid: (
                label,
                inst.get("split", "train"),
                inst.get("frame_start", 1),
                inst.get("frame_end", -1),
            )
            for vid, (label, _, inst) in instances.items()
        }
    else:
        subset_path = Path(subset) if Path(subset).is_absolute() else root / subset
        if not subset_path.is_file():
            subset_path = Path(subset)
        if not subset_path.is_file():
            raise ManifestError(f"subset file {subset} not found (looked in {root} too)")
        chosen = {
            str(vid): (
                int(v["action"][0]),
                v.get("subset", "train"),
                int(v["action"][1]),
                int(v["action"][2]),
            )
            for vid, v in json.loads(subset_path.read_text()).items()
        }
    entries = []
    for vid, (label, split, start, end) in chosen.items():
        gloss = labels.get(label, "")
        path = root / "videos" / f"{vid}.mp4"
        error = None
        if not gloss:
            error = f"manifest: class {label} is not in {index_file.name}"
        elif vid in missing and not path.exists():
            error = "missing: listed in missing.txt (never downloaded)"
        entries.append(ManifestEntry(vid, path, gloss, split, label, start, end, error))
    used = {e.label for e in entries}
    return entries, {k: v for k, v in labels.items() if k in used}


def scan_videos(folder: str | Path) -> list[ManifestEntry]:
    """Video files of a folder: ``DIR/{id}.mp4`` unlabeled, ``DIR/{gloss}/{id}.mp4`` labeled.

    Unlabeled videos go to split ``unlabeled``; labeled ones to ``train``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ManifestError(f"video folder {folder} not found")
    entries = []
    for path in sorted(folder.rglob("*")):
        if path.suffix.lower() not in VIDEO_SUFFIXES or not path.is_file():
            continue
        rel = path.relative_to(folder)
        gloss = rel.parts[0] if len(rel.parts) == 2 else ""
        if len(rel.parts) > 2:
            continue
        row = {
            "video_id": path.stem,
            "path": str(path),
            "gloss": gloss,
            "split": "train" if gloss else "unlabeled",
        }
        entries.append(_entry_from_row(row, folder, str(rel)))
    return _dedupe(entries)


def assign_labels(
    entries: list[ManifestEntry], existing: dict[int, str]
) -> tuple[list[ManifestEntry], dict[int, str]]:
    """Give each labeled entry a label, keeping the store's existing label map unchanged.

    Glosses already in ``existing`` keep their label; new glosses get the next free labels
    in sorted order, so the same manifest always yields the same map. Entries with a
    fixed label (WLASL) keep it. Unlabeled entries (no gloss) get -1.
    """
    by_gloss = {gloss: label for label, gloss in existing.items()}
    for e in entries:
        if e.label is not None and e.gloss:
            by_gloss.setdefault(e.gloss, e.label)
    next_label = max(list(by_gloss.values()) + [-1]) + 1
    for gloss in sorted({e.gloss for e in entries if e.gloss} - set(by_gloss)):
        by_gloss[gloss] = next_label
        next_label += 1
    out = [
        e if e.label is not None else replace(e, label=by_gloss[e.gloss] if e.gloss else -1)
        for e in entries
    ]
    used = {e.gloss for e in out if e.gloss}
    return out, {
        label: gloss for gloss, label in by_gloss.items() if gloss in used or label in existing
    }
