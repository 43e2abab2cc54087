"""Register and drop the visual feature sets added to a store after its videos.

A set is registered in the metadata before any of its rows is written, under a key made of
its name and its encoder's digest, so two processes adding the same set agree on where its
rows go. Dropping deletes the set's commit records first and its arrays second, and only
then forgets it: a dropped set never shows rows whose bytes are gone, and an interrupted
drop leaves a smaller set that a rerun finishes removing.
"""

from __future__ import annotations

from typing import Any

from ._storage import Storage
from .errors import SchemaMismatchError, StreamNotFoundError
from .index import FEATURES
from .schema import (
    GEMMA_STREAM,
    FeatureSet,
    StreamSpec,
    _short,
    fingerprint_digest,
    validate_video_id,
)


def add_feature_set(storage: Storage, name: str, encoder: dict[str, Any], spec: StreamSpec) -> None:
    """Register ``name``; a no-op when it is already there with this encoder and spec."""
    storage.require_writable()
    storage.refresh()
    validate_video_id(name)  # names become keys, like ids
    schema = storage.schema
    if name in schema.streams:
        if name == GEMMA_STREAM and schema.encoder == encoder and schema.streams[name] == spec:
            return  # populate already wrote exactly this set with the videos
        raise SchemaMismatchError(
            f"store {storage.url} already has a stream {name!r} written with its videos "
            f"(encoder {_short(schema.encoder) if name == GEMMA_STREAM else 'none'}); "
            f"drop it first (featurestore drop-features) or choose another name"
        )
    have = schema.feature_sets.get(name)
    if have is not None:
        if have.encoder == encoder and have.spec == spec:
            return
        raise SchemaMismatchError(
            f"store {storage.url} already has feature set {name!r} from encoder "
            f"{_short(have.encoder)} {have.spec.shape} {have.spec.dtype}, not "
            f"{_short(encoder)} {spec.shape} {spec.dtype}; drop it first or choose another name"
        )
    if spec.shape[:1] != (schema.num_frames,):
        raise SchemaMismatchError(
            f"feature set {name!r}: shape {spec.shape} must start with the store's T = "
            f"{schema.num_frames}"
        )
    key = f"{name}-{fingerprint_digest(encoder)}"
    meta = dict(storage.meta)
    sets = dict(meta.get("feature_sets") or {})
    sets[name] = FeatureSet(spec, dict(encoder), key).to_json()
    storage.write_meta({**meta, "feature_sets": sets})


def drop_feature_set(storage: Storage, name: str) -> dict[str, Any]:
    """Remove a feature set: an added one entirely, base ``gemma`` from the schema.

    Base ``gemma`` shares its segments with the landmarks, so its bytes stay on disk, unread,
    until ``compact`` rewrites the videos without it.
    """
    storage.require_writable()
    storage.refresh()
    schema = storage.schema
    if name in schema.feature_sets:
        feature = storage.index.features[name]
        segments = {key.split("/")[3] for key in feature.records}
        for key in feature.records:
            storage.files.delete(key)
        for segment in segments:
            storage.backend.delete_segment(segment)
        storage.files.delete(f"{FEATURES}/{schema.feature_sets[name].key}")
        meta = dict(storage.meta)
        meta["feature_sets"] = {k: v for k, v in meta["feature_sets"].items() if k != name}
        if not meta["feature_sets"]:
            del meta["feature_sets"]
        storage.write_meta(meta)
        return {"feature_set": name, "rows": len(feature.rows), "segments_removed": len(segments)}
    if name == GEMMA_STREAM and name in schema.streams:
        meta = dict(storage.meta)
        meta["streams"] = {k: v for k, v in meta["streams"].items() if k != name}
        if not meta["streams"]:
            raise SchemaMismatchError(
                f"store {storage.url}: gemma is its only stream; delete the store"
            )
        meta["encoder"] = {}
        storage.write_meta(meta)
        return {"feature_set": name, "rows": len(storage.index.entries), "segments_removed": 0}
    raise StreamNotFoundError(
        f"store {storage.url} has no feature set {name!r}; it has {schema.feature_names()}"
    )
