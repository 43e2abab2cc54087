"""The commit log: one small JSON record per written block, and the index built from it.

A writer writes a block's arrays first and its commit record second, so a video is visible
exactly when its record exists. Readers load all records once (video id -> location); when
an id appears in several records (overwrite, compact) the newest record wins.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from typing import Any

from ._files import Files

COMMITS = "commits"


@dataclass(frozen=True)
class Entry:
    """Where one committed video lives, and its metadata."""

    video_id: str
    segment: str
    block: int
    offset: int
    label: int
    gloss: str
    split: str
    source: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    order: tuple = ((0, "", 0),)


def commit_key(segment: str, block: int) -> str:
    return f"{COMMITS}/{segment}/{block:08d}.json"


def encode_record(
    segment: str, block: int, time_ns: int, videos: list[dict], failures: list[dict]
) -> bytes:
    record = {
        "segment": segment,
        "block": block,
        "time_ns": time_ns,
        "videos": videos,
        "failures": failures,
    }
    return json.dumps(record, separators=(",", ":")).encode()


@dataclass
class Index:
    """Live entries by id, failures by id, and the problems met while loading."""

    entries: dict[str, Entry] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    records: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, files: Files) -> Index:
        index = cls()
        parsed = []
        for key in files.list(COMMITS):
            if not key.endswith(".json"):
                continue
            try:
                rec = json.loads(files.read(key) or b"")
                order = (int(rec["time_ns"]), str(rec["segment"]), int(rec["block"]))
                parsed.append((order, rec))
                index.records.append(key)
            except (ValueError, KeyError, TypeError) as e:
                msg = f"unreadable commit record {key}: {e}"
                index.problems.append(msg)
                warnings.warn(msg + " (its videos are not visible)", stacklevel=2)
        parsed.sort(key=lambda p: p[0])
        failed_at: dict[str, tuple] = {}
        for order, rec in parsed:
            for v in rec.get("videos", []):
                index.entries[v["video_id"]] = Entry(
                    video_id=v["video_id"],
                    segment=rec["segment"],
                    block=int(rec["block"]),
                    offset=int(v["offset"]),
                    label=int(v.get("label", -1)),
                    gloss=str(v.get("gloss", "")),
                    split=str(v.get("split", "")),
                    source=v.get("source") or {},
                    order=order,
                )
            for f in rec.get("failures", []):
                index.failures[f["video_id"]] = f["reason"]
                failed_at[f["video_id"]] = order
        for vid, order in failed_at.items():
            entry = index.entries.get(vid)
            if entry is not None and entry.order > order:
                del index.failures[vid]  # a later successful put supersedes the failure
        return index
