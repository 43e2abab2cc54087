"""Find and mend commit records whose label names another gloss than their own.

Stores written before labels were claimed atomically could get them: two imports that
brought new glosses at once both took the next free label, and the later label map won.
A record's gloss came from its source, so it is the truth; its label is rewritten to the
label map's label for that gloss (claimed if the map lacks it). Records are never edited
in place: the mended copy is a new record with the same time (so it replaces the old one
exactly, and mirrors of the store see a new key), then the old one is deleted. A rerun
finds nothing left to do.
"""

from __future__ import annotations

import json
import posixpath
import re

from . import leases
from ._storage import Storage
from .index import COMMITS, IndexEntry
from .labels import claim, label_map

_KEY = re.compile(r"^(?P<block>\d+)(?:\.r(?P<n>\d+))?\.json$")


def mislabelled(label: int, gloss: str, labels: dict[int, str]) -> bool:
    """A record's label that does not name its gloss (or names nothing at all)."""
    if not gloss:
        return label != -1 and label not in labels
    return labels.get(label) != gloss


def label_problems(entries: list[IndexEntry], labels: dict[int, str]) -> list[str]:
    """One line per video whose label and gloss disagree with the label map."""
    out = []
    for e in entries:
        if not mislabelled(e.label, e.gloss, labels):
            continue
        if not e.gloss:
            out.append(f"video {e.video_id!r}: label {e.label} is not in the label map")
        elif e.label in labels:
            out.append(
                f"video {e.video_id!r}: label {e.label} is {labels[e.label]!r} in the label map, "
                f"but its gloss is {e.gloss!r} (featurestore repair-labels fixes it)"
            )
        else:
            out.append(
                f"video {e.video_id!r}: gloss {e.gloss!r} has label {e.label}, which is not in "
                "the label map (featurestore repair-labels fixes it)"
            )
    return out


def repair_labels(storage: Storage, dry_run: bool = False) -> list[str]:
    """Mend every mislabelled record; returns one line per video fixed (or to fix)."""
    storage.require_writable()
    lease = leases.acquire_maintenance(storage.files, "repair-labels")
    try:
        storage.refresh()
        records = {}
        for key in storage.files.list(COMMITS):
            if _KEY.match(posixpath.basename(key)):
                records[key] = json.loads(storage.files.read(key) or b"{}")
        glosses = {v.get("gloss") for r in records.values() for v in r.get("videos", [])}
        where = f"store {storage.url}"
        claimed = lambda meta: claim(meta, [g for g in glosses if g], None, where)  # noqa: E731
        if dry_run:  # the labels a real run would claim, claimed nowhere
            labels = label_map(claimed(storage.meta) or storage.meta)
        else:
            storage.update_meta(claimed)
            labels = storage.schema.labels
        fixed = []
        for key, record in records.items():
            fixed += _mend(storage, key, record, labels, dry_run)
        return fixed
    finally:
        leases.release(storage.files, lease)


def _mend(
    storage: Storage, key: str, record: dict, labels: dict[int, str], dry_run: bool
) -> list[str]:
    by_gloss = {g: n for n, g in labels.items()}
    fixed, videos = [], []
    for v in record.get("videos", []):
        label, gloss = int(v.get("label", -1)), str(v.get("gloss", ""))
        if gloss and mislabelled(label, gloss, labels) and gloss in by_gloss:
            fixed.append(f"video {v['video_id']!r}: label {label} -> {by_gloss[gloss]} ({gloss!r})")
            v = {**v, "label": by_gloss[gloss]}
        videos.append(v)
    if fixed and not dry_run:
        match = _KEY.match(posixpath.basename(key))
        assert match is not None
        n = int(match["n"] or 0) + 1
        mended = posixpath.join(posixpath.dirname(key), f"{match['block']}.r{n:04d}.json")
        storage.files.write(mended, json.dumps({**record, "videos": videos}).encode())
        storage.files.delete(key)
    return fixed
