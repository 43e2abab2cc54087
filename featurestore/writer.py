"""The write side: one ``Writer`` per process appends videos into a segment of its own.

A ``FeatureWriter`` does the same for one added feature set: rows of videos already in the
store, in segments that hold that one stream, committed to the set's own log.

Videos are buffered until a block is full (or ``flush``), then the block's arrays are
written once and its commit record after them. No locks are needed between writers because
no two writers ever touch the same object. From its first commit to ``close`` a writer
holds a lease (``leases``), so that maintenance such as ``compact`` never runs beside it.
A writer works on the on-disk layer (``_storage.Storage``), so it never imports the public
store.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from datetime import datetime, timezone
from typing import Any

import numpy as np

from . import leases
from ._storage import Storage
from .backends._crc import crc32c
from .errors import InvalidVideoError
from .index import commit_key, encode_record
from .labels import claim
from .schema import StreamSpec, validate_video_id

log = logging.getLogger(__name__)
WAIT_FOR_MAINTENANCE_S = 3600.0
"""How long a writer waits for a running compact before it gives up."""


def new_segment_id(prefix: str = "seg") -> str:
    """A segment name no other writer can pick: ``prefix``, UTC time, pid and a random tag."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{prefix}-{stamp}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def validate_arrays(
    video_id: str, arrays: dict, streams: dict[str, StreamSpec]
) -> dict[str, np.ndarray]:
    """Check every stream against the schema; cast float precision (float32 -> float16) only."""
    missing = sorted(set(streams) - set(arrays))
    extra = sorted(set(arrays) - set(streams))
    if missing or extra:
        raise InvalidVideoError(
            f"video {video_id!r}: streams must be exactly {sorted(streams)}"
            + (f"; missing {missing}" if missing else "")
            + (f"; unexpected {extra}" if extra else "")
        )
    out = {}
    for name, spec in streams.items():
        arr = np.asarray(arrays[name])
        if arr.shape != spec.shape:
            raise InvalidVideoError(
                f"video {video_id!r}: field {name!r} has shape {arr.shape}, store expects {spec.shape}"
            )
        want = np.dtype(spec.dtype)
        if arr.dtype != want:
            if not (arr.dtype.kind == "f" and want.kind == "f"):
                raise InvalidVideoError(
                    f"video {video_id!r}: field {name!r} has dtype {arr.dtype}, store expects {want}"
                )
            with np.errstate(over="ignore"):
                arr = arr.astype(want)
        if want.kind == "f" and not _all_finite(arr):
            raise InvalidVideoError(
                f"video {video_id!r}: field {name!r} has non-finite values (NaN/inf"
                + (", or too large for float16)" if want == np.float16 else ")")
            )
        out[name] = np.ascontiguousarray(arr)
    return out


def _all_finite(arr: np.ndarray) -> bool:
    """np.isfinite(arr).all(), 8x faster for float16 (exponent bits all ones = NaN/inf)."""
    if arr.dtype == np.float16:
        return not np.any(np.bitwise_and(arr.view(np.uint16), 0x7C00) == 0x7C00)
    return bool(np.isfinite(arr).all())


class Writer:
    """Appends videos to the store; use as a context manager so the last block is committed.

    ``segment`` names the segment this writer owns (default: a fresh ``new_segment_id()``).
    ``lease=False`` is for maintenance itself, which writes under its own lease;
    ``wait_s`` is how long the first commit waits for a running compact.
    """

    def __init__(
        self,
        storage: Storage,
        overwrite: bool = False,
        block_size: int | None = None,
        segment: str | None = None,
        *,
        lease: bool = True,
        wait_s: float = WAIT_FOR_MAINTENANCE_S,
    ):
        storage.require_writable()
        self.storage = storage
        self.overwrite = overwrite
        self.block_size = min(block_size or storage.block_size, storage.block_size)
        self.segment = segment or new_segment_id()
        self._streams = storage.schema.streams
        self._feature: tuple[str, str] | None = None  # (name, key) when writing a feature set
        self._existing = set(storage.index.entries)
        self._buffer: dict[str, tuple[dict, dict]] = {}
        self._failures: list[dict] = []
        self._deleted: list[str] = []
        self._block = 0
        self._segment_created = False
        self._leased = lease
        self._lease: leases.Lease | None = None
        self._wait_s = wait_s
        self.committed = 0

    def put(
        self,
        video_id: str,
        arrays: dict[str, np.ndarray],
        label: int = -1,
        gloss: str = "",
        split: str = "train",
        source: dict[str, Any] | None = None,
    ) -> None:
        """Buffer one video; it becomes visible when its block is committed."""
        validate_video_id(video_id)
        if not self.overwrite and (video_id in self._existing or video_id in self._buffer):
            raise InvalidVideoError(
                f"video {video_id!r} is already in the store; pass overwrite=True to replace it"
            )
        if video_id in self._deleted:
            self.flush()  # a record's deletions apply after its videos: commit this one first
        label = self._label(video_id, int(label), gloss)
        labels = self.storage.schema.labels
        if not isinstance(split, str) or not split:
            raise InvalidVideoError(f"video {video_id!r}: split must be a non-empty string")
        checked = validate_arrays(video_id, arrays, self.storage.schema.streams)
        meta = {
            "video_id": video_id,
            "label": label,
            "gloss": gloss or labels.get(label, ""),
            "split": split,
            "source": source or {},
        }
        self._buffer[video_id] = (checked, meta)
        if len(self._buffer) >= self.block_size:
            self.flush()

    def _label(self, video_id: str, label: int, gloss: str) -> int:
        """The label a record will carry: checked against the label map (re-read once,
        since another writer may have claimed it since), or claimed for ``gloss`` when
        only the gloss is given. A record never holds a label that names another gloss."""
        if label == -1 and not gloss:
            return -1
        if label == -1:
            where = f"store {self.storage.url}"
            self.storage.update_meta(lambda meta: claim(meta, [gloss], None, where))
            return {g: n for n, g in self.storage.schema.labels.items()}[gloss]
        if label not in self.storage.schema.labels:
            self.storage.refresh_meta()
        labels = self.storage.schema.labels
        if label not in labels:
            raise InvalidVideoError(
                f"video {video_id!r}: label {label} is not in the store's label map; "
                "claim it first (FeatureStore.claim_labels)"
            )
        if gloss and labels[label] != gloss:
            raise InvalidVideoError(
                f"video {video_id!r}: gloss {gloss!r} disagrees with label {label} = {labels[label]!r}"
            )
        return label

    def fail(self, video_id: str, reason: str) -> None:
        """Record that a video could not be processed (shown by ``store.failures()``)."""
        self._failures.append({"video_id": str(video_id), "reason": str(reason)})

    def delete(self, video_id: str) -> None:
        """Remove a committed video; it is gone from every reader once this block commits
        (``flush``), and its bytes are reclaimed by ``compact``."""
        if self._feature is not None:
            raise InvalidVideoError("delete videos with the store's writer, not a feature writer")
        if video_id in self._buffer:
            del self._buffer[video_id]
            if video_id not in self._existing:
                return
        if video_id not in self._existing:
            self.storage.refresh()  # committed by another writer since this one began?
            self._existing.update(self.storage.index.entries)
        if video_id not in self._existing:
            raise InvalidVideoError(f"video {video_id!r} is not in store {self.storage.url}")
        self._deleted.append(video_id)
        self._existing.discard(video_id)

    def flush(self) -> None:
        """Write the buffered block, then its commit record."""
        if not self._buffer and not self._failures and not self._deleted:
            return
        self._hold_lease()
        videos = []
        if self._buffer:
            if not self._segment_created:
                self.storage.backend.create_segment(self.segment, self._streams)
                self._segment_created = True
            items = list(self._buffer.values())
            stacked = {
                name: np.stack([arrays[name] for arrays, _ in items]) for name in self._streams
            }
            self.storage.backend.write_block(self.segment, self._block, stacked)
            videos = [  # per-row checksums let a single get read and check one row alone
                dict(meta, offset=i, crc32c={s: crc32c(a[i]) for s, a in stacked.items()})
                for i, (_, meta) in enumerate(items)
            ]
        name, key = self._feature or (None, None)
        record = encode_record(
            self.segment,
            self._block,
            time.time_ns(),
            videos,
            self._failures,
            feature=name,
            deleted=self._deleted,
        )
        self.storage.files.write(commit_key(self.segment, self._block, key), record)
        self.storage.forget_index()
        self._existing.update(self._buffer)
        self.committed += len(self._buffer)
        self._block += 1
        self._buffer.clear()
        self._failures = []
        self._deleted = []

    def _hold_lease(self) -> None:
        files = self.storage.files
        if not self._leased:
            return
        if self._lease is None:
            what = f"a writer of segment {self.segment}"
            self._lease = leases.acquire_writer(files, what, self._wait_s, log.warning)
        else:
            self._lease = leases.renew(files, self._lease)

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._lease is not None:
                leases.release(self.storage.files, self._lease)
                self._lease = None

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FeatureWriter(Writer):
    """Appends rows of one added feature set for videos the store already holds."""

    def __init__(
        self,
        storage: Storage,
        name: str,
        overwrite: bool = False,
        block_size: int | None = None,
        segment: str | None = None,
        *,
        lease: bool = True,
    ):
        super().__init__(
            storage,
            overwrite,
            block_size,
            segment or new_segment_id(f"feat-{name}"),
            lease=lease,
        )
        feature = storage.schema.feature_sets.get(name)
        if feature is None:
            raise InvalidVideoError(
                f"store {storage.url} has no added feature set {name!r}; register it first"
            )
        self.name = name
        self._streams = {name: feature.spec}
        self._feature = (name, feature.key)
        self._videos = set(storage.index.entries)
        self._existing = set(storage.index.features[name].rows)

    def put(self, video_id: str, array: np.ndarray) -> None:  # type: ignore[override]
        """Buffer one video's row; it becomes visible when its block is committed."""
        if video_id not in self._videos:
            raise InvalidVideoError(
                f"video {video_id!r} is not in store {self.storage.url}: "
                f"feature set {self.name!r} can only be added to stored videos"
            )
        if not self.overwrite and (video_id in self._existing or video_id in self._buffer):
            raise InvalidVideoError(
                f"video {video_id!r} already has feature set {self.name!r}; "
                "pass overwrite=True to replace it"
            )
        checked = validate_arrays(video_id, {self.name: array}, self._streams)
        self._buffer[video_id] = (checked, {"video_id": video_id})
        if len(self._buffer) >= self.block_size:
            self.flush()

    def __enter__(self) -> FeatureWriter:
        return self
