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
    StoreSchema,
    StreamSpec,
    _short,
    fingerprint_digest,
    validate_video_id,
)


def add_feature_set(storage: Storage, name: str, encoder: dict[str, Any], spec: StreamSpec) -> None:
    """Register ``name``; a no-op when it is already there with this encoder and spec.

    Registration is a change of the metadata's generation (``_meta``), so two processes
    registering different sets at once both land, and two registering one set agree.
    """
    validate_video_id(name)  # names become keys, like ids
    storage.require_writable()
    storage.refresh()  # a set dropped since this process looked must be seen as absent
    storage.update_meta(lambda meta: _registered(meta, storage.url, name, encoder, spec))


def _registered(
    meta: dict, url: str, name: str, encoder: dict[str, Any], spec: StreamSpec
) -> dict | None:
    """``meta`` with feature set ``name`` registered, or None when it is already there."""
    schema = StoreSchema.from_json(meta)
    if name in schema.streams:
        if name == GEMMA_STREAM and schema.encoder == encoder and schema.streams[name] == spec:
            return None  # populate already wrote exactly this set with the videos
        raise SchemaMismatchError(
            f"store {url} already has a stream {name!r} written with its videos "
            f"(encoder {_short(schema.encoder) if name == GEMMA_STREAM else 'none'}); "
            f"drop it first (featurestore drop-features) or choose another name"
        )
    have = schema.feature_sets.get(name)
    if have is not None:
        if have.encoder == encoder and have.spec == spec:
            return None
        raise SchemaMismatchError(
            f"store {url} already has feature set {name!r} from encoder "
            f"{_short(have.encoder)} {have.spec.shape} {have.spec.dtype}, not "
            f"{_short(encoder)} {spec.shape} {spec.dtype}; drop it first or choose another name"
        )
    if spec.shape[:1] != (schema.num_frames,):
        raise SchemaMismatchError(
            f"feature set {name!r}: shape {spec.shape} must start with the store's T = "
            f"{schema.num_frames}"
        )
    key = f"{name}-{fingerprint_digest(encoder)}"
    sets = dict(meta.get("feature_sets") or {})
    sets[name] = FeatureSet(spec, dict(encoder), key).to_json()
    return {**meta, "feature_sets": sets}


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
        storage.update_meta(lambda meta: _without_set(meta, name))
        return {"feature_set": name, "rows": len(feature.rows), "segments_removed": len(segments)}
    if name == GEMMA_STREAM and name in schema.streams:
        storage.update_meta(lambda meta: _without_gemma(meta, storage.url))
        return {"feature_set": name, "rows": len(storage.index.entries), "segments_removed": 0}
    raise StreamNotFoundError(
        f"store {storage.url} has no feature set {name!r}; it has {schema.feature_names()}"
    )


def _without_set(meta: dict, name: str) -> dict | None:
    sets = {k: v for k, v in (meta.get("feature_sets") or {}).items() if k != name}
    if sets == (meta.get("feature_sets") or {}):
        return None
    out = {**meta, "feature_sets": sets}
    if not sets:
        del out["feature_sets"]
    return out


def _without_gemma(meta: dict, url: str) -> dict | None:
    if GEMMA_STREAM not in meta["streams"]:
        return None
    streams = {k: v for k, v in meta["streams"].items() if k != GEMMA_STREAM}
    if not streams:
        raise SchemaMismatchError(f"store {url}: gemma is its only stream; delete the store")
    return {**meta, "streams": streams, "encoder": {}}
