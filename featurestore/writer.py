"""The write side: one ``Writer`` per process appends videos into a segment of its own.

A ``FeatureWriter`` does the same for one added feature set: rows of videos already in the
store, in segments that hold that one stream, committed to the set's own log.

Videos are buffered until a block is full (or ``flush``), then the block's arrays are
written once and its commit record after them. No locks are needed between writers because
no two writers ever touch the same object. A writer works on the on-disk layer
(``_storage.Storage``), so it never imports the public store.
"""

from __future__ import annotations

import os
import time
import uuid
from datetime import datetime, timezone
from typing import Any

import numpy as np

from ._storage import Storage
from .backends._crc import crc32c
from .errors import InvalidVideoError
from .index import commit_key, encode_record
from .schema import StreamSpec, validate_video_id


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
    """

    def __init__(
        self,
        storage: Storage,
        overwrite: bool = False,
        block_size: int | None = None,
        segment: str | None = None,
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
        self._block = 0
        self._segment_created = False
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
        label = int(label)
        labels = self.storage.schema.labels
        if label != -1 and label not in labels:
            raise InvalidVideoError(
                f"video {video_id!r}: label {label} is not in the store's label map; add it with set_labels()"
            )
        if label != -1 and gloss and labels[label] != gloss:
            raise InvalidVideoError(
                f"video {video_id!r}: gloss {gloss!r} disagrees with label {label} = {labels[label]!r}"
            )
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

    def fail(self, video_id: str, reason: str) -> None:
        """Record that a video could not be processed (shown by ``store.failures()``)."""
        self._failures.append({"video_id": str(video_id), "reason": str(reason)})

    def flush(self) -> None:
        """Write the buffered block, then its commit record."""
        if not self._buffer and not self._failures:
            return
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
            self.segment, self._block, time.time_ns(), videos, self._failures, feature=name
        )
        self.storage.files.write(commit_key(self.segment, self._block, key), record)
        self.storage.forget_index()
        self._existing.update(self._buffer)
        self.committed += len(self._buffer)
        self._block += 1
        self._buffer.clear()
        self._failures = []

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def close(self) -> None:
        self.flush()

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
    ):
        super().__init__(storage, overwrite, block_size, segment or new_segment_id(f"feat-{name}"))
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
