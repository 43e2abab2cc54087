"""One clip in, the store's streams out: decode, landmarks and encoder for single videos.

The server uses it for uploaded videos; ``for_store`` rebuilds exactly the extraction a
store was populated with (same encoder fingerprint, T, landmark layout) or refuses.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..layout import has_face, landmark_layout, landmark_streams
from ..schema import GEMMA_STREAM, LANDMARK_MASK_STREAM, LANDMARKS_STREAM, StoreSchema, StreamSpec
from ..store import FeatureStore
from .decode import Clip, decode_clip
from .gemma import GemmaEncoder, load_encoder
from .holistic import LandmarkExtractor

__all__ = ["ClipExtractor", "extraction_streams", "stream_specs"]


def extraction_streams(
    num_frames: int,
    feature_dim: int | None,
    layout: dict | None,
    gemma_dtype: str = "float16",
) -> dict[str, StreamSpec]:
    """The store streams that an extraction produces (encoder and landmarks each optional)."""
    streams = {}
    if feature_dim is not None:
        streams[GEMMA_STREAM] = StreamSpec((num_frames, feature_dim), gemma_dtype)
    if layout is not None:
        streams.update(landmark_streams(num_frames, layout))
    if not streams:
        raise ValueError("nothing to extract: both the encoder and landmarks are off")
    return streams


stream_specs = extraction_streams
"""The earlier name, kept for callers."""


class ClipExtractor:
    """Decode a clip and run the frozen encoder and/or Holistic on its T frames."""

    def __init__(
        self,
        encoder: str | GemmaEncoder | None = "tiny-random",
        num_frames: int = 16,
        device: str = "cpu",
        landmarks: bool = True,
        *,
        face: bool = False,
        pooling: str = "mean_soft_tokens",
        flash_attention: bool = False,
        batch_size: int = 64,
        dtype: str | None = None,
        revision: str | None = None,
        gemma_dtype: str = "float16",
        fast_path: str = "off",
        sdpa_backend: str = "auto",
    ):
        if isinstance(encoder, str):
            encoder = load_encoder(
                encoder,
                device,
                pooling,
                flash_attention,
                batch_size,
                dtype,
                revision,
                fast_path=fast_path,
                sdpa_backend=sdpa_backend,
            )
        self.encoder = encoder
        self.num_frames = int(num_frames)
        self.layout = landmark_layout(face) if landmarks else None
        self._face = face
        self._landmarks: LandmarkExtractor | None = None
        self.streams = extraction_streams(
            self.num_frames,
            None if encoder is None else encoder.feature_dim,
            self.layout,
            gemma_dtype,
        )

    @property
    def fingerprint(self) -> dict:
        """The encoder fingerprint a store records ({} when the encoder is off)."""
        return {} if self.encoder is None else dict(self.encoder.fingerprint)

    def schema(self, labels: dict[int, str] | None = None) -> StoreSchema:
        return StoreSchema(
            num_frames=self.num_frames,
            streams=self.streams,
            encoder=self.fingerprint,
            landmark_layout=self.layout or {},
            labels=labels or {},
        )

    @classmethod
    def for_store(
        cls, store: FeatureStore, device: str = "cpu", batch_size: int = 64
    ) -> ClipExtractor:
        """The extractor that produced ``store``'s features; SchemaMismatchError if it cannot."""
        schema = store.schema
        enc = schema.encoder or {}
        has_gemma = GEMMA_STREAM in schema.streams
        extractor = cls(
            encoder=enc.get("model_id") if has_gemma else None,
            num_frames=schema.num_frames,
            device=device,
            landmarks=LANDMARKS_STREAM in schema.streams,
            face=has_face(schema.landmark_layout),
            pooling=enc.get("pooling", "mean_soft_tokens"),
            batch_size=batch_size,
            dtype=enc.get("dtype"),
            revision=enc.get("revision"),
            gemma_dtype=schema.streams[GEMMA_STREAM].dtype if has_gemma else "float16",
        )
        store.check_compatible(
            encoder=extractor.fingerprint,
            num_frames=extractor.num_frames,
            streams=extractor.streams,
        )
        return extractor

    def extract(self, path: str | Path, frame_start: int = 1, frame_end: int = -1) -> dict:
        """Stream arrays of one clip, keyed by stream name. Raises DecodeError for bad clips."""
        return self.extract_clip(decode_clip(path, self.num_frames, frame_start, frame_end))

    def extract_clip(self, clip: Clip) -> dict[str, np.ndarray]:
        out = {}
        if self.encoder is not None:
            features = self.encoder.encode(clip.frames)
            out[GEMMA_STREAM] = features.astype(self.streams[GEMMA_STREAM].dtype)
        if self.layout is not None:
            if self._landmarks is None:
                self._landmarks = LandmarkExtractor(face=self._face)
            points, mask = self._landmarks.extract(clip.frames)
            out[LANDMARKS_STREAM], out[LANDMARK_MASK_STREAM] = points, mask
        return out

    def close(self) -> None:
        if self._landmarks is not None:
            self._landmarks.close()
            self._landmarks = None
