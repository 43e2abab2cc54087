"""The commit log: one small JSON record per written block, and the index built from it.

A writer writes a block's arrays first and its commit record second, so a video is visible
exactly when its record exists. Readers load all records once (video id -> location); when
an id appears in several records (overwrite, compact) the newest record wins. A record may
also list ``deleted`` ids: a deletion hides every older row of the video (its bytes stay
until ``compact``), and a newer record can bring the id back. Live rows are grouped into
``Block``s, the unit that streaming reads in one go.

A feature set added later keeps its own log (``features/<key>/commits/``): one row per video
holding it, in segments of its own; it is joined to the videos by id on read.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from typing import Any

import orjson

from ._files import Files

COMMITS = "commits"
FEATURES = "features"


@dataclass(slots=True, unsafe_hash=True)
class IndexEntry:
    """Where one committed video lives, and its metadata; treat as read-only.

    Not ``frozen``: a frozen dataclass's ``__init__`` costs 2.5x as much, and a store's
    whole log is turned into these each time it is opened (benchmarks/store_io.py).
    """

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


@dataclass(slots=True, unsafe_hash=True)
class FeatureRow:
    """Where one video's row of an added feature set lives; treat as read-only."""

    video_id: str
    segment: str
    block: int
    offset: int
    crc32c: dict[str, int] | None = field(default=None, compare=False, hash=False)
    order: tuple = ((0, "", 0),)


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

    def part(self, start: int, stop: int) -> Block:
        """Rows [start, stop) of this block (positions in ``offsets``), their CRC32Cs kept."""
        return Block(
            self.segment,
            self.block,
            self.offsets[start:stop],
            self.video_ids[start:stop],
            self.crc32c[start:stop],
        )


def commits_prefix(feature_key: str | None = None) -> str:
    """The folder of a commit log: the videos' (None), or an added feature set's."""
    return COMMITS if feature_key is None else f"{FEATURES}/{feature_key}/{COMMITS}"


def commit_key(segment: str, block: int, feature_key: str | None = None) -> str:
    return f"{commits_prefix(feature_key)}/{segment}/{block:08d}.json"


def encode_record(
    segment: str,
    block: int,
    time_ns: int,
    videos: list[dict],
    failures: list[dict],
    feature: str | None = None,
    deleted: list[str] | None = None,
) -> bytes:
    record: dict[str, Any] = {
        "segment": segment,
        "block": block,
        "time_ns": time_ns,
        "videos": videos,
        "failures": failures,
    }
    if feature is not None:
        record["feature"] = feature
    if deleted:
        record["deleted"] = [{"video_id": v} for v in deleted]
    return json.dumps(record, separators=(",", ":")).encode()


@dataclass
class FeatureIndex:
    """One added feature set's rows by video id, its failures, and its commit records."""

    rows: dict[str, FeatureRow] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    records: list[str] = field(default_factory=list)

    def blocks(self) -> list[Block]:
        """The set's own rows grouped by the block of its segments that holds them."""
        return _group(self.rows.values())


@dataclass
class Index:
    """Live entries by id, failures by id, and the problems met while loading."""

    entries: dict[str, IndexEntry] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    records: list[str] = field(default_factory=list)
    features: dict[str, FeatureIndex] = field(default_factory=dict)
    """Added feature sets by name."""
    deleted: dict[str, tuple] = field(default_factory=dict)
    """Each deleted id, with the order of its newest deletion (it may be written again
    since): its rows of added feature sets older than that went with it."""
    listed: dict[str, list[str]] = field(default_factory=dict)
    """Each commit log's keys as listed when loading (to tell cheaply if it has changed)."""
    _blocks: dict[tuple, list[Block]] = field(default_factory=dict, repr=False)

    def blocks(self, split: str | None = None, having: tuple[str, ...] = ()) -> list[Block]:
        """Live rows (of one split, or all; only videos holding the feature sets ``having``)
        grouped by the block that holds them, in storage order."""
        key = (split, tuple(sorted(having)))
        if key not in self._blocks:
            sets = [self.features[name].rows for name in having]
            rows = [e for e in self.entries.values() if split is None or e.split == split]
            if sets:
                rows = [e for e in rows if all(e.video_id in s for s in sets)]
            self._blocks[key] = _group(rows)
        return self._blocks[key]

    def changed(self, files: Files) -> bool:
        """Whether any commit log has gained or lost a record since this index was loaded."""
        return any(
            [k for k in files.list(prefix) if k.endswith(".json")] != keys
            for prefix, keys in self.listed.items()
        )

    @classmethod
    def load(cls, files: Files, feature_keys: dict[str, str] | None = None) -> Index:
        """The videos' log, and the log of each added feature set (name -> key)."""
        index = cls()
        parsed = _records(files, COMMITS, index)
        failed_at: dict[str, tuple] = {}
        entries = index.entries
        for order, rec in parsed:
            segment, block = order[1], order[2]
            for v in rec.get("videos", []):
                get = v.get
                entries[v["video_id"]] = IndexEntry(
                    v["video_id"], segment, block, int(v["offset"]), int(get("label", -1)),
                    str(get("gloss", "")), str(get("split", "")), get("source") or {}, order,
                    get("crc32c"),
                )  # fmt: skip
            for f in rec.get("failures", []):
                index.failures[f["video_id"]] = f["reason"]
                failed_at[f["video_id"]] = order
            for d in rec.get("deleted", ()):
                entries.pop(d["video_id"], None)
                index.failures.pop(d["video_id"], None)
                index.deleted[d["video_id"]] = order
        _drop_superseded(index.failures, failed_at, index.entries)
        for name, key in (feature_keys or {}).items():
            index.features[name] = _load_feature(files, key, index)
        return index


def _load_feature(files: Files, key: str, index: Index) -> FeatureIndex:
    feature = FeatureIndex()
    failed_at: dict[str, tuple] = {}
    for order, rec in _records(files, commits_prefix(key), index, feature.records):
        for v in rec.get("videos", []):
            feature.rows[v["video_id"]] = FeatureRow(
                v["video_id"], rec["segment"], int(rec["block"]), int(v["offset"]),
                v.get("crc32c"), order,
            )  # fmt: skip
        for f in rec.get("failures", []):
            feature.failures[f["video_id"]] = f["reason"]
            failed_at[f["video_id"]] = order
    _drop_superseded(feature.failures, failed_at, feature.rows)
    for vid, order in index.deleted.items():  # a deleted video's rows go with it, for good
        row = feature.rows.get(vid)
        if row is not None and row.order < order:
            del feature.rows[vid]
    return feature


def _records(
    files: Files, prefix: str, index: Index, keys: list[str] | None = None
) -> list[tuple[tuple, dict]]:
    """The commit records under ``prefix``, oldest first; unreadable ones go to ``problems``."""
    keys = index.records if keys is None else keys
    parsed = []
    listed = index.listed[prefix] = [k for k in files.list(prefix) if k.endswith(".json")]
    for key in listed:
        try:
            rec = orjson.loads(files.read(key) or b"")  # 2x json's speed: opening is mostly this
            order = (int(rec["time_ns"]), str(rec["segment"]), int(rec["block"]))
            parsed.append((order, rec))
            keys.append(key)
        except (ValueError, KeyError, TypeError) as e:
            msg = f"unreadable commit record {key}: {e}"
            index.problems.append(msg)
            warnings.warn(msg + " (its videos are not visible)", stacklevel=2)
    parsed.sort(key=lambda p: p[0])
    return parsed


def _drop_superseded(failures: dict[str, str], failed_at: dict[str, tuple], rows: dict) -> None:
    """A later successful write supersedes a failure."""
    for vid, order in failed_at.items():
        row = rows.get(vid)
        if row is not None and row.order > order:
            del failures[vid]


def _group(rows) -> list[Block]:
    """Rows (anything with segment, block, offset, video_id, crc32c) as Blocks, in storage order."""
    groups: dict[tuple[str, int], list] = {}
    for r in rows:
        groups.setdefault((r.segment, r.block), []).append(r)
    return [
        Block(
            seg,
            blk,
            tuple(r.offset for r in rs),
            tuple(r.video_id for r in rs),
            tuple(r.crc32c for r in rs),
        )
        for (seg, blk), rs in sorted(groups.items())
        for rs in [sorted(rs, key=lambda r: r.offset)]
    ]
