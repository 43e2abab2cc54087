"""The on-disk layer of one store: its metadata, commit log (the index) and arrays (the backend).

``Writer``, ``verify`` and ``compact`` work on a ``Storage`` and never import the public
``FeatureStore``, which is a facade over one. Handles and the loaded index belong to one
process: after a fork they are opened again, never shared with the parent.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime, timezone

import numpy as np

from . import _meta
from ._files import Files
from ._version import __version__
from .backends import BACKENDS, Backend, RowRange, backend_name_for
from .errors import CorruptDataError, NotAStoreError, StreamNotFoundError
from .index import Block, FeatureRow, Index, IndexEntry
from .schema import FORMAT_NAME, SCHEMA_VERSION, StoreSchema

META_KEY = _meta.META_KEY
DEFAULT_BLOCK_SIZE = 64
_STORE_NAMES = {
    META_KEY,
    "zarr.json",
    "segments",
    "commits",
    "features",
    "meta",
    "writers",
    "trash",
    "runs",
}
"""What a store's root holds: a folder of only these is a store being made by another process.
``runs`` is not the store's: asl-serve keeps its training runs there (``RUNS``); nothing of
the store reads, copies or deletes it."""
RUNS = "runs"


class Storage:
    """Files, backend, index and metadata of the store at ``url``, opened in ``mode``."""

    def __init__(self, url: str, mode: str = "r", storage_options: dict | None = None):
        if mode not in ("r", "r+"):
            raise ValueError("mode must be 'r' or 'r+'")
        self.url = url
        self.mode = mode
        self.storage_options = storage_options or {}
        self.files = Files(url, self.storage_options)
        self.generation, self.meta = _meta.read_meta(self.files, url)
        self.schema = StoreSchema.from_json(self.meta)
        self.block_size = int(self.meta.get("block_size", DEFAULT_BLOCK_SIZE))
        self.backend_name = self.meta["backend"]
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._backend: Backend | None = None
        self._index: Index | None = None

    @property
    def backend(self):
        if self._pid != os.getpid():  # forked: never reuse a parent's handles or event loop
            self._reset()
        if self._backend is None:
            self._backend = BACKENDS[self.backend_name](
                self.url,
                self.schema,
                self.block_size,
                self.storage_options,
                compression=self.meta.get("compression", "none"),
                chunk_rows=self.meta.get("chunk_rows"),
            )
        return self._backend

    @property
    def index(self) -> Index:
        if self._pid != os.getpid():
            self._reset()
        if self._index is None:
            keys = {name: f.key for name, f in self.schema.feature_sets.items()}
            self._index = Index.load(self.files, keys)
        return self._index

    def refresh(self) -> None:
        """Re-read metadata and the commit log to see what other writers committed since."""
        self._set_meta(*_meta.read_meta(self.files, self.url))
        self.forget_index()

    def changed(self) -> bool:
        """Whether other writers have committed, deleted or changed metadata since this
        process last loaded the index (a listing per log: cheap enough to poll)."""
        index = self._index
        if index is None or self._pid != os.getpid():
            return False  # nothing loaded yet: the next use loads the store as it is now
        return _meta.newest_generation(self.files) != self.generation or index.changed(self.files)

    def reload(self) -> None:
        """``refresh``, with the new index loaded before it replaces the old one, so that
        readers in other threads always find a whole index (the server's refresher)."""
        generation, meta = _meta.read_meta(self.files, self.url)
        schema = StoreSchema.from_json(meta)
        index = Index.load(self.files, {name: f.key for name, f in schema.feature_sets.items()})
        self._set_meta(generation, meta)
        self._index = index

    def refresh_meta(self) -> None:
        """Re-read only the metadata (labels claimed since), keeping the loaded index."""
        self._set_meta(*_meta.read_meta(self.files, self.url))

    def _set_meta(self, generation: int, meta: dict) -> None:
        schema = StoreSchema.from_json(meta)
        if schema.all_streams != self.schema.all_streams:
            self.close()  # the backend was opened with the old specs
        self.generation, self.meta, self.schema = generation, meta, schema

    def forget_index(self) -> None:
        """Drop the loaded index; it is reloaded on next use (writers call this on commit)."""
        self._index = None

    def require_writable(self) -> None:
        if self.mode != "r+":
            raise PermissionError(f"store {self.url} is open read-only; open it with mode='r+'")

    def update_meta(self, change: _meta.Change) -> None:
        """Change the metadata atomically against every other writer (``_meta``); the
        index is dropped too, since a changed schema may change what it holds."""
        self.require_writable()
        current = (self.generation, self.meta)
        self._set_meta(*_meta.update_meta(self.files, self.url, change, current))
        self.forget_index()

    # -- reading rows ----------------------------------------------------------------------
    def read(
        self,
        rows: RowRange,
        streams: list[str],
        what: str,
        crc32c: dict[str, list[int]] | None = None,
    ) -> dict[str, np.ndarray]:
        """``rows`` of the streams stored in their segment; CorruptDataError names ``what``
        and the bad field. ``crc32c``: each row's checksum per stream, when known."""
        backend = self.backend
        try:
            return backend.read_streams(rows, streams, crc32c)
        except Exception:
            pass
        return _named(what, rows, streams, lambda s: backend.read_streams(rows, [s], crc32c)[s])

    def read_video(self, e: IndexEntry, streams: list[str]) -> dict[str, np.ndarray]:
        """One video's rows: each row's bytes alone where its commit record has checksums."""
        base, added = self._split(streams)
        out = self._read_row(e.video_id, e, base) if base else {}
        for name in added:
            out.update(self._read_row(e.video_id, self.feature_row(name, e.video_id), [name]))
        return {s: out[s] for s in streams}

    def _read_row(
        self, video_id: str, at: IndexEntry | FeatureRow, streams: list[str]
    ) -> dict[str, np.ndarray]:
        what = f"video {video_id!r}"
        rows = RowRange(at.segment, at.block, at.offset, at.offset + 1)
        if not at.crc32c or any(s not in at.crc32c for s in streams):
            return {s: a[0] for s, a in self.read(rows, streams, what).items()}
        crcs = {s: at.crc32c[s] for s in streams}
        backend = self.backend
        try:
            return backend.read_row_streams(at.segment, at.block, at.offset, crcs)
        except Exception:
            pass
        return _named(
            what,
            rows,
            streams,
            lambda s: backend.read_row(at.segment, at.block, at.offset, s, crcs[s]),
        )

    def feature_row(self, name: str, video_id: str) -> FeatureRow:
        """Where a video's row of an added feature set lives; StreamNotFoundError if it has none."""
        row = self.index.features[name].rows.get(video_id)
        if row is None:
            raise StreamNotFoundError(
                f"video {video_id!r} has no feature set {name!r} yet "
                f"(add it with: featurestore populate --store {self.url} --add-features {name} ...)"
            )
        return row

    def _split(self, streams: list[str]) -> tuple[list[str], list[str]]:
        """The base streams among ``streams``, and the added feature sets."""
        base = self.schema.streams
        return [s for s in streams if s in base], [s for s in streams if s not in base]

    def read_block(self, block: Block, streams: list[str]) -> dict[str, np.ndarray]:
        """All rows of a block of videos, in ``block.offsets`` order, feature sets joined by id."""
        base, added = self._split(streams)
        out = self.read_stored(block, base) if base else {}
        for name in added:
            rows = [self.feature_row(name, v) for v in block.video_ids]
            out.update(self.read_at(rows, [name]))
        return {s: out[s] for s in streams}

    def read_stored(self, block: Block, streams: list[str]) -> dict[str, np.ndarray]:
        """Rows of a block of the segment that stores them, one contiguous read per stream."""
        lo, hi = min(block.offsets), max(block.offsets) + 1
        take = np.asarray(block.offsets) - lo
        dense = len(take) == hi - lo
        what = f"videos {block.video_ids[0]!r}..{block.video_ids[-1]!r}"
        crcs = None
        rows = RowRange(block.segment, block.block, lo, hi)
        if dense and len(block.crc32c) == len(block) > 0 and self.backend.wants_row_checks(rows):
            try:
                crcs = {s: [c[s] for c in block.crc32c] for s in streams}  # type: ignore[index]
            except (KeyError, TypeError):  # a row kept none (None), or none for a stream
                crcs = None
        out = self.read(rows, streams, what, crcs)
        return {s: a if dense else a[take] for s, a in out.items()}

    def read_entries(self, entries: list[IndexEntry], streams: list[str]) -> dict[str, np.ndarray]:
        """Rows of many videos stacked in the order given, reading each block they touch once."""
        base, added = self._split(streams)
        out = self.read_at(entries, base) if base else {}
        for name in added:
            out.update(self.read_at([self.feature_row(name, e.video_id) for e in entries], [name]))
        return {s: out[s] for s in streams}

    def read_at(
        self, rows: Sequence[IndexEntry | FeatureRow], streams: list[str]
    ) -> dict[str, np.ndarray]:
        """The rows at these places, stacked in the order given; each block touched read once."""
        groups: dict[tuple[str, int], list[tuple[int, IndexEntry | FeatureRow]]] = {}
        for i, r in enumerate(rows):
            groups.setdefault((r.segment, r.block), []).append((i, r))
        specs = self.schema.all_streams
        out = {s: np.empty((len(rows), *specs[s].shape), specs[s].dtype) for s in streams}
        for (seg, blk), members in groups.items():
            unique = sorted({r.offset: r for _, r in members}.values(), key=lambda r: r.offset)
            block = Block(
                seg,
                blk,
                tuple(r.offset for r in unique),
                tuple(r.video_id for r in unique),
                tuple(r.crc32c for r in unique),
            )
            part = self.read_stored(block, streams)
            if len(groups) == 1 and [r.offset for _, r in members] == list(block.offsets):
                return part  # one block, in order: no copy
            at = {offset: j for j, offset in enumerate(block.offsets)}
            dst = np.fromiter((i for i, _ in members), np.int64, len(members))
            src = np.fromiter((at[r.offset] for _, r in members), np.int64, len(members))
            for s in streams:
                out[s][dst] = part[s][src]
        return out

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None


def _named(what: str, rows: RowRange, streams: list[str], read_one) -> dict[str, np.ndarray]:
    """Read stream by stream to find which field is unreadable, so the error can name it."""
    out = {}
    for stream in streams:
        try:
            out[stream] = read_one(stream)
        except Exception as e:
            raise CorruptDataError(
                f"{what}, field {stream!r}: cannot read stored data in segment {rows.segment} "
                f"block {rows.block} ({type(e).__name__}: {e})"
            ) from e
    return out


def initialize(
    files: Files,
    schema: StoreSchema,
    storage_options: dict | None,
    block_size: int,
    compression: str,
    backend: str | None,
    chunk_rows: int | None,
) -> bool:
    """Lay out a new, empty store at ``files``' root: the backend's root, then the metadata.

    Returns False when another process made the store first (its metadata won): the caller
    then opens that store. Processes creating one store at once all get here safely.
    """
    url = files.url
    if files.exists() and not files.remote and not os.path.isdir(files.root):
        raise NotAStoreError(f"{url} exists and is a file, not a feature store")
    here = set(os.listdir(files.root)) if files.exists() and not files.remote else set()
    if {name for name in here if not name.endswith(".partial")} - _STORE_NAMES:
        raise NotAStoreError(f"{url} exists, is not empty and is not a feature store")
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
    return _meta.create_meta(files, meta)
