"""The store's schema: T, streams, feature sets, encoder fingerprints, landmark layout, labels.

Serialised as ``featurestore.json`` at the store root, readable without this package.
``streams`` are the base streams every video is written with; ``feature_sets`` are visual
streams added later, each from its own encoder (stores made before them have none).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InvalidVideoError, SchemaMismatchError

SCHEMA_VERSION = 1
FORMAT_NAME = "signstore.featurestore"

# The streams an extraction writes (a store may hold any named streams; these are the known ones).
GEMMA_STREAM = "gemma"
"""Gemma 3 image features, (T, D)."""
LANDMARKS_STREAM = "landmarks"
"""MediaPipe Holistic points, (T, K, 3)."""
LANDMARK_MASK_STREAM = "landmark_mask"
"""Which landmark parts were found in each frame, (T, P)."""
_ID_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,199}$")
_DTYPES = {"float16", "float32", "float64", "bool", "uint8", "int8", "int16", "int32", "int64"}


@dataclass(frozen=True)
class StreamSpec:
    """One per-video array: the same shape and dtype for every video of the store."""

    shape: tuple[int, ...]
    """Per-video shape, e.g. (T, D) for Gemma features."""
    dtype: str
    """numpy dtype name, e.g. "float16"."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))
        object.__setattr__(self, "dtype", np.dtype(self.dtype).name)
        if self.dtype not in _DTYPES:
            raise ValueError(f"unsupported stream dtype {self.dtype!r}")
        if any(s <= 0 for s in self.shape):
            raise ValueError(f"stream shape must be positive, got {self.shape}")

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize

    def to_json(self) -> dict[str, Any]:
        return {"shape": list(self.shape), "dtype": self.dtype}


@dataclass(frozen=True)
class FeatureSet:
    """A visual stream added to a store after its videos: its spec and its encoder."""

    spec: StreamSpec
    encoder: dict[str, Any]
    """The encoder's fingerprint, as populate records it."""
    key: str
    """Where its commit records live (``features/<key>/``): the name and the fingerprint's digest."""

    def to_json(self) -> dict[str, Any]:
        return {**self.spec.to_json(), "encoder": self.encoder, "key": self.key}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FeatureSet:
        spec = StreamSpec(tuple(data["shape"]), data["dtype"])
        return cls(spec, dict(data.get("encoder") or {}), str(data["key"]))


def fingerprint_digest(fingerprint: dict) -> str:
    """12 hex characters naming an encoder fingerprint (sha256 of its canonical JSON)."""
    return hashlib.sha256(_canon(fingerprint).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class StoreSchema:
    """Everything that must agree between a store, its writers and the models trained on it."""

    num_frames: int
    """T: frames sampled per video."""
    streams: dict[str, StreamSpec]
    """Stream name -> per-video spec (``GEMMA_STREAM``, ``LANDMARKS_STREAM``, ...)."""
    encoder: dict[str, Any] = field(default_factory=dict)
    """Encoder fingerprint (model id, revision/hash, pooling, image size, dtype, feature dim)."""
    landmark_layout: dict[str, Any] = field(default_factory=dict)
    """Which landmark parts, in which order, with how many points."""
    labels: dict[int, str] = field(default_factory=dict)
    """Label -> gloss."""
    feature_sets: dict[str, FeatureSet] = field(default_factory=dict)
    """Visual streams added later, by name (``populate --add-features``)."""

    def __post_init__(self) -> None:
        if int(self.num_frames) <= 0:
            raise ValueError("num_frames must be positive")
        if not self.streams:
            raise ValueError("a store needs at least one stream")
        streams = {}
        for name, spec in self.streams.items():
            if not _ID_PATTERN.match(name):
                raise ValueError(f"bad stream name {name!r}")
            if not isinstance(spec, StreamSpec):
                spec = StreamSpec(**spec) if isinstance(spec, dict) else StreamSpec(*spec)
            streams[name] = spec
        object.__setattr__(self, "streams", streams)
        object.__setattr__(self, "labels", {int(k): str(v) for k, v in self.labels.items()})
        clash = sorted(set(self.feature_sets) & set(streams))
        if clash:
            raise ValueError(f"feature sets {clash} have the names of base streams")

    @property
    def all_streams(self) -> dict[str, StreamSpec]:
        """Base streams and feature sets, name -> spec."""
        return {**self.streams, **{k: f.spec for k, f in self.feature_sets.items()}}

    def spec(self, name: str) -> StreamSpec:
        """The spec of a base stream or a feature set (KeyError if the store has neither)."""
        return self.all_streams[name]

    def feature_names(self) -> list[str]:
        """The visual feature sets: base ``gemma`` where the store has it, then the added ones."""
        base = [GEMMA_STREAM] if GEMMA_STREAM in self.streams else []
        return base + sorted(self.feature_sets)

    def fingerprint(self, name: str) -> dict[str, Any]:
        """The encoder fingerprint of a feature set (base ``gemma``: the store's ``encoder``)."""
        if name in self.feature_sets:
            return self.feature_sets[name].encoder
        if name == GEMMA_STREAM and name in self.streams:
            return self.encoder
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        out = {
            "num_frames": self.num_frames,
            "streams": {k: v.to_json() for k, v in self.streams.items()},
            "encoder": self.encoder,
            "landmark_layout": self.landmark_layout,
            "labels": {str(k): v for k, v in sorted(self.labels.items())},
        }
        if self.feature_sets:  # absent, a store reads exactly as one made before feature sets
            out["feature_sets"] = {k: f.to_json() for k, f in sorted(self.feature_sets.items())}
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StoreSchema:
        return cls(
            num_frames=int(data["num_frames"]),
            streams={
                k: StreamSpec(tuple(v["shape"]), v["dtype"]) for k, v in data["streams"].items()
            },
            encoder=data.get("encoder") or {},
            landmark_layout=data.get("landmark_layout") or {},
            labels={int(k): v for k, v in (data.get("labels") or {}).items()},
            feature_sets={
                k: FeatureSet.from_json(v) for k, v in (data.get("feature_sets") or {}).items()
            },
        )

    def mismatches(self, other: StoreSchema) -> list[str]:
        """What differs in the fields that make features incompatible (labels may grow)."""
        return compatibility_problems(self, other.encoder, other.num_frames, other.streams)


def compatibility_problems(
    schema: StoreSchema,
    encoder: dict | None = None,
    num_frames: int | None = None,
    streams: dict | None = None,
) -> list[str]:
    problems = []
    if num_frames is not None and int(num_frames) != schema.num_frames:
        problems.append(f"num_frames (T): store has {schema.num_frames}, expected {num_frames}")
    if encoder is not None and _canon(encoder) != _canon(schema.encoder):
        problems.append(
            f"encoder fingerprint: store has {_short(schema.encoder)}, expected {_short(encoder)}"
        )
    for name, spec in (streams or {}).items():
        spec = (
            spec
            if isinstance(spec, StreamSpec)
            else StreamSpec(tuple(spec["shape"]), spec["dtype"])
        )
        have = schema.streams.get(name)
        if have is None:
            problems.append(f"stream {name!r}: missing from the store")
        elif have != spec:
            problems.append(
                f"stream {name!r}: store has {have.shape} {have.dtype}, expected {spec.shape} {spec.dtype}"
            )
    return problems


def check_compatible(schema: StoreSchema, where: str, **expected: Any) -> None:
    problems = compatibility_problems(schema, **expected)
    if problems:
        raise SchemaMismatchError(f"{where} is incompatible: " + "; ".join(problems))


def validate_video_id(video_id: object) -> str:
    """Ids become keys and never paths; refuse anything that could escape or collide."""
    if not isinstance(video_id, str) or not _ID_PATTERN.match(video_id) or ".." in video_id:
        raise InvalidVideoError(
            f"invalid video id {video_id!r}: use 1-200 characters from A-Z a-z 0-9 _ . - "
            "(no leading dot, no '..', no slashes)"
        )
    return video_id


def _canon(d: dict) -> str:
    return json.dumps(d or {}, sort_keys=True, default=str)


def _short(d: dict) -> str:
    keys = ("model_id", "revision", "weights_sha256", "pooling", "dtype", "feature_dim")
    return "{" + ", ".join(f"{k}={d[k]}" for k in keys if k in d) + "}" if d else "{}"
