"""The read side and the store's lifecycle: create, open, get, stream, verify, compact."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np

from . import __version__
from ._files import Files
from .backends import BACKENDS, backend_name_for
from .errors import (
    CorruptDataError,
    InvalidVideoError,
    NotAStoreError,
    SchemaMismatchError,
    StoreError,
    StreamNotFoundError,
    VideoNotFoundError,
)
from .index import Entry, Index
from .schema import FORMAT_NAME, SCHEMA_VERSION, StoreSchema, check_compatible
from .writer import Writer, new_segment_id

META_KEY = "featurestore.json"
DEFAULT_BLOCK_SIZE = 64


@dataclass(frozen=True)
class Video:
    """One committed video: metadata and its arrays by stream name."""

    video_id: str
    label: int
    gloss: str
    split: str
    source: dict[str, Any]
    arrays: dict[str, np.ndarray]


@dataclass(frozen=True)
class Batch:
    """Videos stacked along a leading batch axis."""

    ids: list[str]
    labels: np.ndarray
    arrays: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class Block:
    """A chunk-aligned run of committed rows: the unit that streaming reads in one go."""

    segment: str
    block: int
    offsets: tuple[int, ...]
    video_ids: tuple[str, ...] = field(compare=False)

    def __len__(self) -> int:
        return len(self.offsets)


class FeatureStore:
    """A store of per-video feature arrays. Picklable: handles re-open lazily in each process."""

    def __init__(self, url: str, mode: str = "r", storage_options: dict | None = None):
        if mode not in ("r", "r+"):
            raise ValueError("mode must be 'r' or 'r+'")
        self.url = url
        self.mode = mode
        self.storage_options = storage_options or {}
        self._files = Files(url, self.storage_options)
        self._meta = _read_meta(self._files, url)
        self.schema = StoreSchema.from_json(self._meta)
        self.block_size = int(self._meta.get("block_size", DEFAULT_BLOCK_SIZE))
        self.backend_name = self._meta["backend"]
        self._reset()

    # -- process-local state -------------------------------------------------------------
    def _reset(self) -> None:
        self._pid = os.getpid()
        self._backend_obj = None
        self._index_obj: Index | None = None
        self._blocks_cache: dict[str | None, list[Block]] = {}

    def __getstate__(self) -> dict:
        return {"url": self.url, "mode": self.mode, "storage_options": self.storage_options}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["url"], state["mode"], state["storage_options"])

    @property
    def _backend(self):
        if self._pid != os.getpid():  # forked: never reuse a parent's handles or event loop
            self._reset()
        if self._backend_obj is None:
            cls = BACKENDS[self.backend_name]
            self._backend_obj = cls(
                self.url,
                self.schema,
                self.block_size,
                self.storage_options,
                compression=self._meta.get("compression", "none"),
                chunk_rows=self._meta.get("chunk_rows"),
            )
        return self._backend_obj

    @property
    def _index(self) -> Index:
        if self._pid != os.getpid():
            self._reset()
        if self._index_obj is None:
            self._index_obj = Index.load(self._files)
        return self._index_obj

    def refresh(self) -> None:
        """Re-read metadata and the commit log to see what other writers committed since."""
        self._meta = _read_meta(self._files, self.url)
        self.schema = StoreSchema.from_json(self._meta)
        self._forget_index()

    def _forget_index(self) -> None:
        """Drop the loaded index; it is reloaded on next use (writers call this on commit)."""
        self._index_obj = None
        self._blocks_cache.clear()

    def close(self) -> None:
        if self._backend_obj is not None:
            self._backend_obj.close()
            self._backend_obj = None

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- metadata ------------------------------------------------------------------------
    @property
    def labels(self) -> dict[int, str]:
        return self.schema.labels

    def set_labels(self, labels: dict[int, str]) -> None:
        """Add label -> gloss pairs; existing pairs may not change (models depend on them)."""
        self._require_writable()
        self.refresh()
        merged = dict(self.schema.labels)
        for label, gloss in labels.items():
            label, gloss = int(label), str(gloss)
            if label < 0:
                raise InvalidVideoError(f"label {label} must be >= 0")
            if merged.get(label, gloss) != gloss:
                raise SchemaMismatchError(
                    f"label {label} is {merged[label]!r} in store {self.url}, not {gloss!r}; labels cannot change"
                )
            merged[label] = gloss
        glosses = list(merged.values())
        if len(set(glosses)) != len(glosses):
            raise SchemaMismatchError(f"two labels would share one gloss in store {self.url}")
        self._meta["labels"] = {str(k): v for k, v in sorted(merged.items())}
        self._files.write(META_KEY, _dump(self._meta))
        self.refresh()

    def check_compatible(self, encoder=None, num_frames=None, streams=None) -> None:
        """Raise SchemaMismatchError if features from this store cannot serve that consumer."""
        check_compatible(
            self.schema,
            f"store {self.url}",
            encoder=encoder,
            num_frames=num_frames,
            streams=streams,
        )

    def info(self) -> dict[str, Any]:
        entries = self._index.entries
        return {
            "url": self.url,
            "backend": self.backend_name,
            "schema_version": self._meta["schema_version"],
            "created_by": self._meta.get("created_by"),
            "created_at": self._meta.get("created_at"),
            "num_frames": self.schema.num_frames,
            "block_size": self.block_size,
            "compression": self._meta.get("compression", "none"),
            "streams": {k: v.to_json() for k, v in self.schema.streams.items()},
            "encoder": self.schema.encoder,
            "landmark_layout": self.schema.landmark_layout,
            "num_classes": len(self.labels),
            "labels": {str(k): v for k, v in sorted(self.labels.items())},
            "videos": len(entries),
            "splits": self.splits(),
            "failures": len(self._index.failures),
            "segments": len({e.segment for e in entries.values()}),
            "bytes_per_video": sum(s.nbytes for s in self.schema.streams.values()),
        }

    # -- listing -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._index.entries)

    def __contains__(self, video_id: object) -> bool:
        return video_id in self._index.entries

    def ids(self, split: str | None = None) -> list[str]:
        entries = self._index.entries.values()
        return sorted(e.video_id for e in entries if split is None or e.split == split)

    def splits(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for e in self._index.entries.values():
            counts[e.split] = counts.get(e.split, 0) + 1
        return dict(sorted(counts.items()))

    def entry(self, video_id: str) -> Entry:
        try:
            return self._index.entries[video_id]
        except (KeyError, TypeError):
            raise VideoNotFoundError(f"video {video_id!r} is not in store {self.url}") from None

    def failures(self) -> dict[str, str]:
        return dict(self._index.failures)

    # -- reading -------------------------------------------------------------------------
    def _streams(self, streams: Iterable[str] | None) -> list[str]:
        if streams is None:
            return list(self.schema.streams)
        streams = [streams] if isinstance(streams, str) else list(streams)
        for s in streams:
            if s not in self.schema.streams:
                raise StreamNotFoundError(
                    f"unknown stream {s!r}; store {self.url} has {sorted(self.schema.streams)}"
                )
        return streams

    def _read(self, segment: str, block: int, start: int, stop: int, streams: list[str], what: str):
        try:
            return self._backend.read_streams(segment, block, start, stop, streams)
        except Exception:
            pass  # find which field is unreadable, so the error can name it
        out = {}
        for stream in streams:
            try:
                out[stream] = self._backend.read_rows(segment, block, start, stop, stream)
            except Exception as e:
                raise CorruptDataError(
                    f"{what}, field {stream!r}: cannot read stored data in segment {segment} "
                    f"block {block} ({type(e).__name__}: {e})"
                ) from e
        return out

    def get(self, video_id: str, streams: Iterable[str] | None = None) -> Video:
        e = self.entry(video_id)
        rows = self._read(
            e.segment,
            e.block,
            e.offset,
            e.offset + 1,
            self._streams(streams),
            f"video {video_id!r}",
        )
        arrays = {s: a[0] for s, a in rows.items()}
        return Video(e.video_id, e.label, e.gloss, e.split, e.source, arrays)

    def blocks(self, split: str | None = None) -> list[Block]:
        """Committed rows grouped by the block that holds them, in storage order."""
        if split not in self._blocks_cache:
            groups: dict[tuple[str, int], list[Entry]] = {}
            for e in self._index.entries.values():
                if split is None or e.split == split:
                    groups.setdefault((e.segment, e.block), []).append(e)
            self._blocks_cache[split] = [
                Block(seg, blk, tuple(e.offset for e in es), tuple(e.video_id for e in es))
                for (seg, blk), es in sorted(groups.items())
                for es in [sorted(es, key=lambda e: e.offset)]
            ]
        return self._blocks_cache[split]

    def read_block(self, block: Block, streams: Iterable[str] | None = None) -> Batch:
        """All rows of a block with one contiguous read per stream."""
        lo, hi = min(block.offsets), max(block.offsets) + 1
        take = np.asarray(block.offsets) - lo
        dense = len(take) == hi - lo
        what = f"videos {block.video_ids[0]!r}..{block.video_ids[-1]!r}"
        rows = self._read(block.segment, block.block, lo, hi, self._streams(streams), what)
        arrays = {s: a if dense else a[take] for s, a in rows.items()}
        labels = np.array([self._index.entries[v].label for v in block.video_ids], dtype=np.int64)
        return Batch(list(block.video_ids), labels, arrays)

    def get_many(self, ids: Iterable[str], streams: Iterable[str] | None = None) -> Batch:
        """Many videos in one call, reading each block they touch once."""
        ids = list(ids)
        streams = self._streams(streams)
        groups: dict[tuple[str, int], list[Entry]] = {}
        for vid in ids:
            e = self.entry(vid)
            groups.setdefault((e.segment, e.block), []).append(e)
        rows: dict[str, dict[str, np.ndarray]] = {}
        for (seg, blk), es in groups.items():
            es = sorted(set(es), key=lambda e: e.offset)
            part = self.read_block(
                Block(seg, blk, tuple(e.offset for e in es), tuple(e.video_id for e in es)), streams
            )
            for i, vid in enumerate(part.ids):
                rows[vid] = {s: part.arrays[s][i] for s in streams}
        arrays = {
            s: np.stack([rows[v][s] for v in ids])
            if ids
            else np.empty((0, *self.schema.streams[s].shape), self.schema.streams[s].dtype)
            for s in streams
        }
        labels = np.array([self._index.entries[v].label for v in ids], dtype=np.int64)
        return Batch(ids, labels, arrays)

    def iter_batches(
        self, split: str | None = None, batch_size: int = 64, streams: Iterable[str] | None = None
    ) -> Iterator[Batch]:
        """Stream a split block by block; memory stays at about one block plus one batch."""
        streams = self._streams(streams)
        pending: list[Batch] = []
        count = 0
        for block in self.blocks(split):
            pending.append(self.read_block(block, streams))
            count += len(block)
            while count >= batch_size:
                batch, pending = _take(pending, batch_size, streams)
                count -= batch_size
                yield batch
        if count:
            yield _take(pending, count, streams)[0]

    # -- writing and maintenance -----------------------------------------------------------
    def _require_writable(self) -> None:
        if self.mode != "r+":
            raise PermissionError(f"store {self.url} is open read-only; open it with mode='r+'")

    def writer(self, overwrite: bool = False, block_size: int | None = None) -> Writer:
        self._require_writable()
        self.refresh()  # know every id committed so far, by any writer
        return Writer(self, overwrite=overwrite, block_size=block_size)

    def verify(self, progress: bool = False) -> list[str]:
        """Read back every committed video; return every problem found (empty = healthy)."""
        from .verify import verify_store

        return verify_store(self, progress=progress)

    def compact(self, progress: bool = False) -> dict[str, int]:
        """Rewrite all live videos into one segment ordered by split and id; drop the rest."""
        from .compact import compact_store

        return compact_store(self, progress=progress)


def _take(pending: list[Batch], n: int, streams: list[str]) -> tuple[Batch, list[Batch]]:
    """Split the first n rows off a list of batches."""
    taken, rest, need = [], [], n
    for b in pending:
        if need >= len(b):
            taken.append(b)
            need -= len(b)
        elif need > 0:
            taken.append(
                Batch(b.ids[:need], b.labels[:need], {s: a[:need] for s, a in b.arrays.items()})
            )
            rest.append(
                Batch(b.ids[need:], b.labels[need:], {s: a[need:] for s, a in b.arrays.items()})
            )
            need = 0
        else:
            rest.append(b)
    if len(taken) == 1:
        return taken[0], rest
    batch = Batch(
        [i for b in taken for i in b.ids],
        np.concatenate([b.labels for b in taken]),
        {s: np.concatenate([b.arrays[s] for b in taken]) for s in streams},
    )
    return batch, rest


def _dump(meta: dict) -> bytes:
    return json.dumps(meta, indent=1, sort_keys=True).encode()


def _read_meta(files: Files, url: str) -> dict:
    raw = files.read(META_KEY)
    if raw is None:
        if not files.exists():
            raise StoreError(f"no feature store at {url} (path does not exist)")
        raise NotAStoreError(f"{url} is not a feature store (no {META_KEY})")
    try:
        meta = json.loads(raw)
    except ValueError as e:
        raise NotAStoreError(f"{url}: {META_KEY} is not valid JSON ({e})") from e
    if meta.get("format") != FORMAT_NAME:
        raise NotAStoreError(
            f"{url} is not a feature store ({META_KEY} has no format {FORMAT_NAME!r})"
        )
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise SchemaMismatchError(
            f"store {url} has schema version {meta.get('schema_version')}, "
            f"this featurestore {__version__} reads version {SCHEMA_VERSION}"
        )
    return meta


def create_store(
    url: str,
    schema: StoreSchema,
    exist_ok: bool = False,
    storage_options: dict | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
    compression: str = "none",
    backend: str | None = None,
    chunk_rows: int | None = None,
) -> FeatureStore:
    """Create a store (backend from the URL: ``.h5``/``.hdf5`` -> HDF5, else Zarr) open for writing."""
    url = str(url)
    files = Files(url, storage_options)
    if files.read(META_KEY) is not None:
        if not exist_ok:
            raise StoreError(f"a feature store already exists at {url}")
        store = FeatureStore(url, "r+", storage_options)
        store.check_compatible(
            encoder=schema.encoder, num_frames=schema.num_frames, streams=schema.streams
        )
        if schema.labels:
            store.set_labels(schema.labels)
        return store
    if files.exists() and not files.remote and os.path.isdir(files.root) and os.listdir(files.root):
        raise NotAStoreError(f"{url} exists, is not empty and is not a feature store")
    if files.exists() and not files.remote and not os.path.isdir(files.root):
        raise NotAStoreError(f"{url} exists and is a file, not a feature store")
    if compression not in ("none", "zstd"):
        raise ValueError("compression must be 'none' or 'zstd'")
    name = backend or backend_name_for(url)
    meta = {
        "format": FORMAT_NAME,
        "schema_version": SCHEMA_VERSION,
        "backend": name,
        "block_size": int(block_size),
        "compression": compression,
        "chunk_rows": chunk_rows,
        "created_by": f"featurestore {__version__}",
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **schema.to_json(),
    }
    BACKENDS[name](url, schema, block_size, storage_options, compression, chunk_rows).initialize()
    files.write(META_KEY, _dump(meta))
    return FeatureStore(url, "r+", storage_options)


def open_store(url: str, mode: str = "r", storage_options: dict | None = None) -> FeatureStore:
    """Open an existing store; ``mode='r+'`` allows writers and maintenance."""
    return FeatureStore(str(url), mode, storage_options)


__all__ = [
    "Batch",
    "Block",
    "FeatureStore",
    "Video",
    "create_store",
    "open_store",
    "new_segment_id",
]
