"""The public face of a store: create, open, get, stream, and the writer, verify and compact.

``FeatureStore`` is a facade over the on-disk layer (``_storage.Storage``): reads go through
it here, and ``Writer``, ``verify`` and ``compact`` are handed it, so none of them imports
this module.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import replace
from typing import Any

import numpy as np

from . import compact as _compact
from . import feature_sets as _feature_sets
from . import labels as _labels
from . import repair as _repair
from . import verify as _verify
from ._files import Files
from ._storage import DEFAULT_BLOCK_SIZE, META_KEY, Storage, initialize
from .batch import Batch, Video, take_batch
from .errors import CorruptDataError, StoreError, StreamNotFoundError, VideoNotFoundError
from .index import Block, FeatureRow, Index, IndexEntry
from .schema import StoreSchema, StreamSpec, check_compatible, fingerprint_digest
from .writer import WAIT_FOR_MAINTENANCE_S, FeatureWriter, Writer


class FeatureStore:
    """A store of per-video feature arrays. Picklable: handles re-open lazily in each process."""

    def __init__(self, url: str, mode: str = "r", storage_options: dict | None = None):
        self._storage = Storage(url, mode, storage_options)
        self.url = url
        self.mode = mode
        self.storage_options = self._storage.storage_options
        self.block_size = self._storage.block_size
        self.backend_name = self._storage.backend_name

    def __getstate__(self) -> dict:
        return {"url": self.url, "mode": self.mode, "storage_options": self.storage_options}

    def __setstate__(self, state: dict) -> None:
        FeatureStore.__init__(self, state["url"], state["mode"], state["storage_options"])

    @property
    def schema(self) -> StoreSchema:
        return self._storage.schema

    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._storage.close()

    def refresh(self) -> None:
        """Re-read metadata and the commit log to see what other writers committed since."""
        self._storage.refresh()

    def refresh_if_changed(self) -> set[str] | None:
        """Load what other writers committed, deleted or compacted since, if anything: a
        listing per commit log when nothing changed. The new index replaces the old whole,
        so readers in other threads never see half of one.

        Returns None when nothing changed, else the ids whose presence, metadata or bytes
        changed (a video a compact only moved is not among them), for caches to drop.
        """
        storage = self._storage
        if not storage.changed():
            return None
        before = _contents(storage.index)
        storage.reload()
        after = _contents(storage.index)
        return {v for v in before.keys() | after.keys() if before.get(v) != after.get(v)}

    # -- metadata ------------------------------------------------------------------------
    @property
    def labels(self) -> dict[int, str]:
        return self.schema.labels

    def claim_labels(
        self, glosses: Iterable[str] = (), fixed: dict[int, str] | None = None
    ) -> dict[int, str]:
        """Give each new gloss a label and add the ``fixed`` label -> gloss pairs, atomically
        against every other writer; returns the whole label map. Labels never change once
        claimed (models depend on them): a fixed pair that contradicts the map is refused."""
        where, wanted = f"store {self.url}", sorted({str(g) for g in glosses if g})
        self._storage.refresh_meta()  # the whole map as it is now, even if nothing is new
        self._storage.update_meta(lambda meta: _labels.claim(meta, wanted, fixed, where))
        return self.labels

    def set_labels(self, labels: dict[int, str]) -> None:
        """Add label -> gloss pairs; existing pairs may not change (models depend on them)."""
        self.claim_labels(fixed=labels)

    def check_compatible(
        self,
        encoder: dict | None = None,
        num_frames: int | None = None,
        streams: dict | None = None,
    ) -> None:
        """Raise SchemaMismatchError if features from this store cannot serve that consumer."""
        check_compatible(
            self.schema,
            f"store {self.url}",
            encoder=encoder,
            num_frames=num_frames,
            streams=streams,
        )

    def info(self) -> dict[str, Any]:
        index, meta = self._storage.index, self._storage.meta
        return {
            "url": self.url,
            "backend": self.backend_name,
            "schema_version": meta["schema_version"],
            "created_by": meta.get("created_by"),
            "created_at": meta.get("created_at"),
            "num_frames": self.schema.num_frames,
            "block_size": self.block_size,
            "compression": meta.get("compression", "none"),
            "streams": {k: v.to_json() for k, v in self.schema.streams.items()},
            "encoder": self.schema.encoder,
            "landmark_layout": self.schema.landmark_layout,
            "num_classes": len(self.labels),
            "labels": {str(k): v for k, v in sorted(self.labels.items())},
            "videos": len(index.entries),
            "splits": self.splits(),
            "failures": len(index.failures),
            "segments": len({e.segment for e in index.entries.values()}),
            "bytes_per_video": sum(s.nbytes for s in self.schema.streams.values()),
            "feature_sets": {
                name: self._feature_info(name) for name in self.schema.feature_names()
            },
        }

    def _feature_info(self, name: str) -> dict[str, Any]:
        spec, fingerprint = self.schema.spec(name), self.schema.fingerprint(name)
        added = self._storage.index.features.get(name)
        return {
            "encoder": fingerprint.get("model_id", "unknown"),
            "fingerprint": fingerprint_digest(fingerprint),
            "shape": list(spec.shape),
            "dtype": spec.dtype,
            "width": spec.shape[-1],
            "stored": "with the videos" if added is None else "added",
            "videos": len(self._storage.index.entries) if added is None else len(added.rows),
            "failures": len(self._storage.index.failures) if added is None else len(added.failures),
        }

    # -- listing -------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._storage.index.entries)

    def __contains__(self, video_id: object) -> bool:
        return video_id in self._storage.index.entries

    def ids(self, split: str | None = None, streams: Iterable[str] | None = None) -> list[str]:
        """Video ids (of one split), sorted; with ``streams``, only videos holding them all."""
        sets = [self.feature_ids(s) for s in self._added(streams)]
        entries = self._storage.index.entries.values()
        return sorted(
            e.video_id
            for e in entries
            if (split is None or e.split == split) and all(e.video_id in s for s in sets)
        )

    def feature_ids(self, name: str) -> set[str]:
        """The videos that hold feature set ``name`` now (base ``gemma``: every video)."""
        self._streams([name])
        added = self._storage.index.features.get(name)
        return set(self._storage.index.entries if added is None else added.rows)

    def feature_failures(self, name: str) -> dict[str, str]:
        """Videos an add of feature set ``name`` could not process, with the reason."""
        self._streams([name])
        added = self._storage.index.features.get(name)
        return dict(self._storage.index.failures if added is None else added.failures)

    def splits(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for e in self._storage.index.entries.values():
            counts[e.split] = counts.get(e.split, 0) + 1
        return dict(sorted(counts.items()))

    def entry(self, video_id: str) -> IndexEntry:
        try:
            return self._storage.index.entries[video_id]
        except (KeyError, TypeError):
            raise VideoNotFoundError(f"video {video_id!r} is not in store {self.url}") from None

    def failures(self) -> dict[str, str]:
        return dict(self._storage.index.failures)

    # -- reading -------------------------------------------------------------------------
    def _streams(self, streams: Iterable[str] | None) -> list[str]:
        """The streams asked for (default: the base streams), each checked to exist."""
        if streams is None:
            return list(self.schema.streams)
        streams = [streams] if isinstance(streams, str) else list(streams)
        known = self.schema.all_streams
        for s in streams:
            if s not in known:
                raise StreamNotFoundError(
                    f"unknown stream {s!r}; store {self.url} has {sorted(known)}"
                )
        return streams

    def _added(self, streams: Iterable[str] | None) -> tuple[str, ...]:
        """The added feature sets among ``streams``."""
        if streams is None:
            return ()
        return tuple(s for s in self._streams(streams) if s in self.schema.feature_sets)

    def _labels_of(self, ids: Iterable[str]) -> np.ndarray:
        entries = self._storage.index.entries
        return np.array([entries[v].label for v in ids], dtype=np.int64)

    def get(self, video_id: str, streams: Iterable[str] | None = None) -> Video:
        streams = self._streams(streams)
        e = self.entry(video_id)
        try:
            arrays = self._storage.read_video(e, streams)
        except CorruptDataError as error:
            e = self._moved([video_id], [_where(e)], error)[0]
            arrays = self._storage.read_video(e, streams)
        return Video(e.video_id, e.label, e.gloss, e.split, e.source, arrays)

    def _moved(self, ids: list[str], were: list[tuple], error: Exception) -> list[IndexEntry]:
        """After a read failed: the videos' entries in a fresh index, when a compact has
        moved them since (their old segments may be gone); else the failure stands."""
        self.refresh()
        now = [self.entry(v) for v in ids]
        if [_where(e) for e in now] == were:
            raise error
        return now

    def blocks(self, split: str | None = None, streams: Iterable[str] | None = None) -> list[Block]:
        """Committed rows grouped by the block that holds them, in storage order; with
        ``streams``, only videos holding them all (a feature set not added to all yet)."""
        return self._storage.index.blocks(split, self._added(streams))

    def read_block(self, block: Block, streams: Iterable[str] | None = None) -> Batch:
        """All rows of a block with one contiguous read per stream (a block of an index
        that a compact has since replaced is read from where its videos are now)."""
        streams = self._streams(streams)
        try:
            arrays = self._storage.read_block(block, streams)
        except CorruptDataError as error:
            were = [(block.segment, block.block, offset) for offset in block.offsets]
            entries = self._moved(list(block.video_ids), were, error)
            arrays = self._storage.read_entries(entries, streams)
        return Batch(list(block.video_ids), self._labels_of(block.video_ids), arrays)

    def get_many(self, ids: Iterable[str], streams: Iterable[str] | None = None) -> Batch:
        """Many videos in one call, reading each block they touch once."""
        ids = list(ids)
        streams = self._streams(streams)
        entries = [self.entry(v) for v in ids]
        try:
            arrays = self._storage.read_entries(entries, streams)
        except CorruptDataError as error:
            entries = self._moved(ids, [_where(e) for e in entries], error)
            arrays = self._storage.read_entries(entries, streams)
        return Batch(ids, self._labels_of(ids), arrays)

    def iter_batches(
        self, split: str | None = None, batch_size: int = 64, streams: Iterable[str] | None = None
    ) -> Iterator[Batch]:
        """Stream a split block by block; memory stays at about one block plus one batch."""
        streams = self._streams(streams)
        pending: list[Batch] = []
        count = 0
        for block in self.blocks(split, streams):
            pending.append(self.read_block(block, streams))
            count += len(block)
            while count >= batch_size:
                batch, pending = take_batch(pending, batch_size, streams)
                count -= batch_size
                yield batch
        if count:
            yield take_batch(pending, count, streams)[0]

    # -- writing and maintenance -----------------------------------------------------------
    def writer(
        self, overwrite: bool = False, block_size: int | None = None, wait_s: float | None = None
    ) -> Writer:
        """A writer of new videos (``wait_s``: how long its first commit may wait for a
        running compact; default an hour)."""
        self._storage.require_writable()
        self.refresh()  # know every id committed so far, by any writer
        wait = WAIT_FOR_MAINTENANCE_S if wait_s is None else wait_s
        return Writer(self._storage, overwrite=overwrite, block_size=block_size, wait_s=wait)

    def delete(self, video_ids: Iterable[str], wait_s: float | None = None) -> int:
        """Remove committed videos, in one commit: no list, read or training run sees them
        afterwards; their bytes are reclaimed by the next ``compact``. Returns how many."""
        ids = list(video_ids)
        self.refresh()
        for vid in ids:
            self.entry(vid)  # all or nothing: an unknown id refuses the whole delete
        with self.writer(wait_s=wait_s) as w:
            for vid in ids:
                w.delete(vid)
        return len(ids)

    def add_feature_set(
        self, name: str, encoder: dict[str, Any], shape: tuple[int, ...], dtype: str = "float16"
    ) -> None:
        """Register a visual feature set made by ``encoder`` (its fingerprint); no-op if it is
        there already with that encoder and spec, SchemaMismatchError if with another."""
        _feature_sets.add_feature_set(self._storage, name, encoder, StreamSpec(shape, dtype))

    def feature_writer(
        self, name: str, overwrite: bool = False, block_size: int | None = None
    ) -> FeatureWriter:
        """A writer of feature set ``name``'s rows for videos already in the store."""
        self._storage.require_writable()
        self.refresh()
        return FeatureWriter(self._storage, name, overwrite, block_size)

    def drop_feature_set(self, name: str) -> dict[str, Any]:
        """Remove a feature set (an added one, or the base ``gemma``)."""
        return _feature_sets.drop_feature_set(self._storage, name)

    def verify(self, progress: bool = False) -> list[str]:
        """Read back every committed video; return every problem found (empty = healthy)."""
        return _verify.verify_store(self._storage, progress=progress)

    def compact(
        self,
        progress: bool = False,
        grace_s: float = _compact.DEFAULT_GRACE_S,
        force: bool = False,
    ) -> dict[str, int]:
        """Rewrite all live videos into one segment ordered by split and id. The old
        segments go after ``grace_s`` seconds (for readers still on the old index), at a
        later compact. Refused while a writer runs (``force``: its lease is known stale)."""
        return _compact.compact_store(self._storage, progress, grace_s, force)

    def repair_labels(self, dry_run: bool = False) -> list[str]:
        """Rewrite the commit records whose label names another gloss than their own, with
        the label map's label for that gloss; returns what was (or would be) fixed."""
        return _repair.repair_labels(self._storage, dry_run)


def _where(e: IndexEntry) -> tuple[str, int, int]:
    return (e.segment, e.block, e.offset)


def _contents(index: Index) -> dict[str, tuple]:
    """Per video, what a reader sees of it: metadata and each row's checksums (its place,
    where a store predates checksums), in the base streams and every added set."""

    def rows(r: IndexEntry | FeatureRow) -> tuple:
        return tuple(sorted(r.crc32c.items())) if r.crc32c else (r.segment, r.block, r.offset)

    out: dict[str, tuple] = {
        v: (e.label, e.gloss, e.split, rows(e)) for v, e in index.entries.items()
    }
    for name, feature in sorted(index.features.items()):
        for v, r in feature.rows.items():
            if v in out:
                out[v] += (name, rows(r))
    return out


def create_store(
    url: str,
    schema: StoreSchema,
    exist_ok: bool = False,
    storage_options: dict | None = None,
    block_size: int = DEFAULT_BLOCK_SIZE,
    compression: str = "none",
    backend: str | None = None,
    chunk_rows: int | None = None,
    *,
    glosses: Iterable[str] = (),
) -> FeatureStore:
    """Create a store (backend from the URL: ``.h5``/``.hdf5`` -> HDF5, else Zarr) open for writing.

    With ``exist_ok``, a store already there is opened if it holds the same features
    (encoder, T, streams). Either way its labels end up holding the schema's and one for
    each of ``glosses`` not labelled yet, claimed as ``claim_labels`` does: ``store.labels``
    is then the whole map, and a new store is written with it in one go.
    """
    url, wanted = str(url), sorted({str(g) for g in glosses if g})
    files = Files(url, storage_options)
    made = False
    if files.read(META_KEY) is None:
        claimed = _labels.claim({}, wanted, schema.labels, f"store {url}") or {}
        first = replace(schema, labels=_labels.label_map(claimed))
        made = initialize(
            files, first, storage_options, block_size, compression, backend, chunk_rows
        )
    if made:
        return FeatureStore(url, "r+", storage_options)
    if not exist_ok:
        raise StoreError(f"a feature store already exists at {url}")
    store = FeatureStore(url, "r+", storage_options)
    store.check_compatible(
        encoder=schema.encoder, num_frames=schema.num_frames, streams=schema.streams
    )
    if schema.labels or wanted:
        store.claim_labels(wanted, schema.labels)
    return store


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
]
