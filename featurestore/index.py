"""The commit log: one small JSON record per written block, and the index built from it.

A writer writes a block's arrays first and its commit record second, so a video is visible
exactly when its record exists. Readers load all records once (video id -> location); when
an id appears in several records (overwrite, compact) the newest record wins. Live rows are
grouped into ``Block``s, the unit that streaming reads in one go.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from typing import Any

from ._files import Files

COMMITS = "commits"


@dataclass(frozen=True)
class IndexEntry:
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
    crc32c: dict[str, int] | None = field(default=None, compare=False, hash=False)
    """CRC32C of the row's bytes per stream (None in stores written before they were kept)."""


@dataclass(frozen=True)
class Block:
    """A chunk-aligned run of committed rows: the unit that streaming reads in one go."""

    segment: str
    block: int
    offsets: tuple[int, ...]
    video_ids: tuple[str, ...] = field(compare=False)
    crc32c: tuple[dict[str, int] | None, ...] = field(default=(), compare=False, repr=False)
    """Per row (in ``offsets`` order), its streams' CRC32C from the commit record, if kept."""

    def __len__(self) -> int:
        return len(self.offsets)


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

    entries: dict[str, IndexEntry] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    records: list[str] = field(default_factory=list)
    _blocks: dict[str | None, list[Block]] = field(default_factory=dict, repr=False)

    def blocks(self, split: str | None = None) -> list[Block]:
        """Live rows (of one split, or all) grouped by the block that holds them, in storage order."""
        if split not in self._blocks:
            groups: dict[tuple[str, int], list[IndexEntry]] = {}
            for e in self.entries.values():
                if split is None or e.split == split:
                    groups.setdefault((e.segment, e.block), []).append(e)
            self._blocks[split] = [
                Block(
                    seg,
                    blk,
                    tuple(e.offset for e in es),
                    tuple(e.video_id for e in es),
                    tuple(e.crc32c for e in es),
                )
                for (seg, blk), es in sorted(groups.items())
                for es in [sorted(es, key=lambda e: e.offset)]
            ]
        return self._blocks[split]

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
                index.entries[v["video_id"]] = IndexEntry(
                    video_id=v["video_id"],
                    segment=rec["segment"],
                    block=int(rec["block"]),
                    offset=int(v["offset"]),
                    label=int(v.get("label", -1)),
                    gloss=str(v.get("gloss", "")),
                    split=str(v.get("split", "")),
                    source=v.get("source") or {},
                    order=order,
                    crc32c=v.get("crc32c"),
                )
            for f in rec.get("failures", []):
                index.failures[f["video_id"]] = f["reason"]
                failed_at[f["video_id"]] = order
        for vid, order in failed_at.items():
            entry = index.entries.get(vid)
            if entry is not None and entry.order > order:
                del index.failures[vid]  # a later successful put supersedes the failure
        return index
