"""The on-disk layer of one store: its metadata, commit log (the index) and arrays (the backend).

``Writer``, ``verify`` and ``compact`` work on a ``Storage`` and never import the public
``FeatureStore``, which is a facade over one. Handles and the loaded index belong to one
process: after a fork they are opened again, never shared with the parent.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone

import numpy as np

from ._files import Files
from ._version import __version__
from .backends import BACKENDS, Backend, backend_name_for
from .errors import CorruptDataError, NotAStoreError, SchemaMismatchError, StoreError
from .index import Block, Index, IndexEntry
from .schema import FORMAT_NAME, SCHEMA_VERSION, StoreSchema

META_KEY = "featurestore.json"
DEFAULT_BLOCK_SIZE = 64


class Storage:
    """Files, backend, index and metadata of the store at ``url``, opened in ``mode``."""

    def __init__(self, url: str, mode: str = "r", storage_options: dict | None = None):
        if mode not in ("r", "r+"):
            raise ValueError("mode must be 'r' or 'r+'")
        self.url = url
        self.mode = mode
        self.storage_options = storage_options or {}
        self.files = Files(url, self.storage_options)
        self.meta = read_meta(self.files, url)
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
            self._index = Index.load(self.files)
        return self._index

    def refresh(self) -> None:
        """Re-read metadata and the commit log to see what other writers committed since."""
        self.meta = read_meta(self.files, self.url)
        self.schema = StoreSchema.from_json(self.meta)
        self.forget_index()

    def forget_index(self) -> None:
        """Drop the loaded index; it is reloaded on next use (writers call this on commit)."""
        self._index = None

    def require_writable(self) -> None:
        if self.mode != "r+":
            raise PermissionError(f"store {self.url} is open read-only; open it with mode='r+'")

    def write_meta(self, meta: dict) -> None:
        self.require_writable()
        self.files.write(META_KEY, _dump(meta))
        self.refresh()

    # -- reading rows ----------------------------------------------------------------------
    def read(
        self,
        segment: str,
        block: int,
        start: int,
        stop: int,
        streams: list[str],
        what: str,
        crc32c: dict[str, list[int]] | None = None,
    ) -> dict[str, np.ndarray]:
        """Rows [start, stop) of a block; CorruptDataError names ``what`` and the bad field.

        ``crc32c``: each row's checksum per stream from the commit records, when known.
        """
        backend = self.backend
        try:
            return backend.read_streams(segment, block, start, stop, streams, crc32c)
        except Exception:
            pass  # find which field is unreadable, so the error can name it
        out = {}
        for stream in streams:
            try:
                one = backend.read_streams(segment, block, start, stop, [stream], crc32c)
                out[stream] = one[stream]
            except Exception as e:
                raise CorruptDataError(
                    f"{what}, field {stream!r}: cannot read stored data in segment {segment} "
                    f"block {block} ({type(e).__name__}: {e})"
                ) from e
        return out

    def read_video(self, e: IndexEntry, streams: list[str]) -> dict[str, np.ndarray]:
        """One video's rows: each row's bytes alone where its commit record has checksums."""
        what = f"video {e.video_id!r}"
        if not e.crc32c or any(s not in e.crc32c for s in streams):
            rows = self.read(e.segment, e.block, e.offset, e.offset + 1, streams, what)
            return {s: a[0] for s, a in rows.items()}
        crcs = {s: e.crc32c[s] for s in streams}
        try:
            return self.backend.read_row_streams(e.segment, e.block, e.offset, crcs)
        except Exception:
            pass  # find which field is unreadable, so the error can name it
        out = {}
        for stream in streams:
            try:
                out[stream] = self.backend.read_row(
                    e.segment, e.block, e.offset, stream, e.crc32c[stream]
                )
            except Exception as exc:
                raise CorruptDataError(
                    f"{what}, field {stream!r}: cannot read stored data in segment {e.segment} "
                    f"block {e.block} ({type(exc).__name__}: {exc})"
                ) from exc
        return out

    def read_block(self, block: Block, streams: list[str]) -> dict[str, np.ndarray]:
        """All rows of a block, in ``block.offsets`` order, with one contiguous read per stream."""
        lo, hi = min(block.offsets), max(block.offsets) + 1
        take = np.asarray(block.offsets) - lo
        dense = len(take) == hi - lo
        what = f"videos {block.video_ids[0]!r}..{block.video_ids[-1]!r}"
        crcs = None
        if dense and self.backend.checks_rows:
            known = [c for c in block.crc32c if c and all(s in c for s in streams)]
            if len(known) == len(block) > 0:
                crcs = {s: [c[s] for c in known] for s in streams}
        rows = self.read(block.segment, block.block, lo, hi, streams, what, crcs)
        return {s: a if dense else a[take] for s, a in rows.items()}

    def read_entries(self, entries: list[IndexEntry], streams: list[str]) -> dict[str, np.ndarray]:
        """Rows of many videos stacked in the order given, reading each block they touch once."""
        groups: dict[tuple[str, int], list[IndexEntry]] = {}
        for e in entries:
            groups.setdefault((e.segment, e.block), []).append(e)
        rows: dict[str, dict[str, np.ndarray]] = {}
        for (seg, blk), es in groups.items():
            es = sorted(set(es), key=lambda e: e.offset)
            block = Block(
                seg,
                blk,
                tuple(e.offset for e in es),
                tuple(e.video_id for e in es),
                tuple(e.crc32c for e in es),
            )
            part = self.read_block(block, streams)
            for i, vid in enumerate(block.video_ids):
                rows[vid] = {s: part[s][i] for s in streams}
        specs = self.schema.streams
        return {
            s: np.stack([rows[e.video_id][s] for e in entries])
            if entries
            else np.empty((0, *specs[s].shape), specs[s].dtype)
            for s in streams
        }

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None


def _dump(meta: dict) -> bytes:
    return json.dumps(meta, indent=1, sort_keys=True).encode()


def read_meta(files: Files, url: str) -> dict:
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


def initialize(
    files: Files,
    schema: StoreSchema,
    storage_options: dict | None,
    block_size: int,
    compression: str,
    backend: str | None,
    chunk_rows: int | None,
) -> None:
    """Lay out a new, empty store at ``files``' root: the backend's root, then the metadata."""
    url = files.url
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
