"""Uploaded clips: limits, then decode and extract with the store's own encoder: the one
that made the feature set the model reads (`extractor_for`).

Extraction is CPU/GPU heavy and not thread-safe (MediaPipe), so it runs in one dedicated
thread, never on the event loop; a bounded number of uploads may wait for it, the rest get
503 at once rather than piling up. That bound is one of memory: each upload may take at
most `upload_peak_bytes` (its frames are limited to `max_upload_pixels`, checked from the
header before decoding), and no more uploads are let in than fit in `upload_memory_mb`.
The encoder loads on the extraction thread when the server starts, so an upload that
arrives meanwhile waits for the load instead of failing.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

import av
import numpy as np
from fastapi import HTTPException
from PIL import Image

from featurestore import (
    GEMMA_STREAM,
    LANDMARK_MASK_STREAM,
    LANDMARKS_STREAM,
    FeatureStore,
    SchemaMismatchError,
)
from featurestore.layout import has_face
from featurestore.sampling import sample_indices
from model import fingerprint_diff

from .clips import MB, decode_refusal, extraction_bytes, probe_clip, upload_peak_bytes
from .metrics import Metrics
from .settings import Settings

if TYPE_CHECKING:
    from featurestore.extract import Clip, ClipExtractor, LandmarkExtractor

log = logging.getLogger("server")
T = TypeVar("T")

#: Declared part types we try to decode; anything else (text, images, JSON) is 415.
ACCEPTED_TYPES = ("video/", "application/octet-stream", "application/mp4", "application/x-matroska")


def check_content_type(content_type: str | None) -> None:
    if content_type and not content_type.lower().startswith(ACCEPTED_TYPES):
        raise HTTPException(415, f"expected a video file, got content type {content_type!r}")


def save_upload(src: BinaryIO, suffix: str = ".video") -> str:
    """Copy the (already size-limited) upload to a temp file; the client's filename is
    never used for the path (only `suffix`, one of ours, says what it holds)."""
    fd, path = tempfile.mkstemp(prefix="asl-upload-", suffix=suffix)
    with os.fdopen(fd, "wb") as dst:
        src.seek(0)
        shutil.copyfileobj(src, dst, 1024 * 1024)
    return path


def extractor_for(store: FeatureStore, features: str | None, device: str) -> ClipExtractor:
    """The extraction that made the streams a model reads: the store's landmarks and the
    encoder of its feature set `features` (base gemma, or None: the store's own encoder).
    SchemaMismatchError naming the set when its encoder cannot be rebuilt exactly (weights
    not here, another revision...): uploads would then get features from another encoder."""
    from featurestore.extract import ClipExtractor

    schema = store.schema
    if features is None or features not in schema.feature_sets:
        return ClipExtractor.for_store(store, device=device)
    fp, spec = schema.fingerprint(features), schema.spec(features)
    extractor = ClipExtractor(
        encoder=fp.get("model_id"),
        num_frames=schema.num_frames,
        device=device,
        landmarks=LANDMARKS_STREAM in schema.streams,
        face=has_face(schema.landmark_layout),
        pooling=fp.get("pooling", "mean_soft_tokens"),
        dtype=fp.get("dtype"),
        revision=fp.get("revision"),
        gemma_dtype=spec.dtype,
    )
    diff = fingerprint_diff(fp, extractor.fingerprint, "rebuilt")
    if diff or extractor.streams[GEMMA_STREAM] != spec:
        raise SchemaMismatchError(
            f"feature set {features!r} of store {store.url}: the encoder rebuilt from it has "
            f"another encoder fingerprint ({diff or extractor.streams[GEMMA_STREAM]})"
        )
    landmarks = {k: v for k, v in extractor.streams.items() if k != GEMMA_STREAM}
    store.check_compatible(num_frames=extractor.num_frames, streams=landmarks)
    return extractor


class UploadExtractor:
    """Owns the clip extractor (loaded in the background) and its single thread.
    `features`: the feature set the model reads; uploads get that stream from its encoder."""

    def __init__(
        self,
        settings: Settings,
        store: FeatureStore,
        metrics: Metrics,
        features: str | None = GEMMA_STREAM,
    ) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.visual = features or GEMMA_STREAM
        self.status = "loading" if settings.upload_enabled else "disabled"
        self._extractor: ClipExtractor | None = None
        self._landmarks: LandmarkExtractor | None = (
            None  # one Holistic, on the extraction thread only
        )
        self._pending = 0
        self.upload_peak = upload_peak_bytes(settings.max_upload_pixels, store.schema.num_frames)
        self.queue_limit = min(
            settings.max_pending_uploads, int(settings.upload_memory_mb * MB) // self.upload_peak
        )
        """Uploads let in at once: each may take `upload_peak` bytes, all within the budget."""
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="extract")

    def start_loading(self) -> None:
        if self.settings.upload_enabled:
            self._executor.submit(self._load)

    def _load(self) -> None:
        try:
            self._extractor = extractor_for(self.store, self.visual, self.settings.device)
            self.status = "ready"
        except Exception as exc:  # the id routes still work; uploads say why they cannot
            self.status = f"unavailable: {type(exc).__name__}: {exc}"
            log.warning("video uploads disabled: %s", self.status)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def extract(self, path: str, details: bool = False) -> Extracted:
        """Features of one clip as a batch of one, keyed by stream, with stage timings."""
        return await self.run(self._extract_sync, path, details)

    async def run(self, job: Callable[..., T], *args: Any) -> T:
        """`job(*args)` on the extraction thread, as one of the uploads let in: 503 when as
        many wait as the memory budget allows. While the encoder loads, jobs queue behind
        the load on the same thread."""
        self.check_available()
        if self._pending >= self.queue_limit:
            raise HTTPException(503, "busy: too many uploads waiting for extraction; retry later")
        self._pending += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, job, *args)
        finally:
            self._pending -= 1

    @property
    def encoder(self) -> Any:
        """The encoder of the feature set uploads get (None: not loaded, or none)."""
        return None if self._extractor is None else self._extractor.encoder

    def check_available(self) -> None:
        if self.status not in ("ready", "loading"):
            raise HTTPException(503, f"video uploads are not available: {self.status}")

    def _extract_sync(self, path: str, details: bool) -> Extracted:
        from featurestore.extract import DecodeError, decode_clip

        if self._extractor is None:  # the load ran first on this thread, and failed
            raise HTTPException(503, f"video uploads are not available: {self.status}")
        self.check_header(path)
        with self.metrics.extract_seconds.time():
            t0 = time.perf_counter()
            try:
                clip = decode_clip(
                    path, self._extractor.num_frames, max_pixels=self.settings.max_upload_pixels
                )
            except DecodeError as exc:
                raise decode_refusal(exc, path) from None
            timings = {"decode_ms": (time.perf_counter() - t0) * 1000}
            arrays = self._features(clip.frames, timings)
        out = Extracted({name: np.asarray(a)[None] for name, a in arrays.items()}, timings)
        out.frames = clip.total_frames
        if details:
            out.details = clip_details(path, clip, arrays, self._extractor.layout)
        return out

    def check_header(self, path: str, max_seconds: float | None = None) -> None:
        """413 for a clip whose frames or length are over the limits (`max_seconds`,
        default the clip limit), from its header and packets, before a frame is decoded."""
        s = self.settings
        header = probe_clip(path, s.max_upload_pixels)
        need = extraction_bytes(header.pixels, header.picture_bytes, self.store.schema.num_frames)
        if need > self.upload_peak:  # a wide pixel format at nearly the pixel limit
            raise HTTPException(
                413,
                f"clip frames of {header.width}x{header.height} in {header.pix_fmt} take "
                f"{need / MB:.0f} MB to decode; the most an upload may take is "
                f"{self.upload_peak / MB:.0f} MB: send it smaller or in 8-bit 4:2:0",
            )
        limit = s.max_clip_seconds if max_seconds is None else max_seconds
        if header.seconds > limit:
            raise HTTPException(
                413, f"clip is {header.seconds:.1f} s long; the limit is {limit:g} s"
            )

    def _features(self, frames: np.ndarray, timings: dict[str, float]) -> dict[str, np.ndarray]:
        """The model's streams for uint8 RGB frames (T, H, W, 3), as ClipExtractor writes
        them (the encoder's under the feature set's name), timing the encoder and the landmarks apart. Runs on the extraction thread."""
        from featurestore.extract import LandmarkExtractor

        ex, out = self._extractor, {}
        assert ex is not None, "_extract_sync checked it"
        t0 = time.perf_counter()
        if ex.encoder is not None:
            dtype = ex.streams[GEMMA_STREAM].dtype
            out[self.visual] = ex.encoder.encode(frames).astype(dtype)
        t1 = time.perf_counter()
        if ex.layout is not None:
            if self._landmarks is None:
                self._landmarks = LandmarkExtractor(face=has_face(ex.layout))
            out[LANDMARKS_STREAM], out[LANDMARK_MASK_STREAM] = self._landmarks.extract(frames)
        t2 = time.perf_counter()
        timings["encoder_ms"] = (t1 - t0) * 1000
        timings["landmarks_ms"] = (t2 - t1) * 1000
        return out

    async def frame_features(self, rgb: np.ndarray) -> dict[str, np.ndarray]:
        """One live frame's rows of every stream (no batch axis), on the extraction thread
        (MediaPipe is not thread-safe; uploads and live frames take turns)."""
        self.check_available()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._frame_sync, rgb)

    def _frame_sync(self, rgb: np.ndarray) -> dict[str, np.ndarray]:
        if self._extractor is None:
            raise HTTPException(503, f"video uploads are not available: {self.status}")
        return {k: v[0] for k, v in self._features(rgb[None], {}).items()}

    @property
    def layout(self) -> dict | None:
        return None if self._extractor is None else self._extractor.layout


@dataclass
class Extracted:
    """One clip's streams (batch of one), stage timings, and what the page draws."""

    arrays: dict[str, np.ndarray]
    timings: dict[str, float]
    details: dict | None = None
    frames: int = 0
    """The clip's own length, in frames."""


#: Longest side of the sampled-frame thumbnails returned with `details`.
THUMBNAIL_SIDE = 256


def clip_details(path: str, clip: Clip, arrays: dict[str, np.ndarray], layout: dict | None) -> dict:
    """The T sampled frames (as small JPEG data URLs), their times in the clip, and the
    landmarks found on each, so that a user sees where MediaPipe missed the hands."""
    indices, _ = sample_indices(
        clip.total_frames, len(clip.frames), clip.frame_start, clip.frame_end
    )
    with av.open(path) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate or stream.guessed_rate or 0) or 25.0
    landmarks = arrays.get(LANDMARKS_STREAM)
    mask = arrays.get(LANDMARK_MASK_STREAM)
    return {
        "fps": fps,
        "frame_indices": [int(i) for i in indices],
        "frame_times": [round(float(i) / fps, 3) for i in indices],
        "frames": [jpeg_data_url(f, THUMBNAIL_SIDE) for f in clip.frames],
        "layout": layout,
        LANDMARKS_STREAM: None if landmarks is None else np.round(landmarks, 4).tolist(),
        LANDMARK_MASK_STREAM: None if mask is None else mask.tolist(),
    }


def jpeg_data_url(rgb: np.ndarray, side: int) -> str:
    image = Image.fromarray(rgb)
    image.thumbnail((side, side))
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
