"""Uploaded clips: limits, then decode and extract with the store's own encoder.

Extraction is CPU/GPU heavy and not thread-safe (MediaPipe), so it runs in one dedicated
thread, never on the event loop; a bounded number of uploads may wait for it, the rest get
503 at once rather than piling up. The encoder loads on that same thread when the server
starts, so an upload that arrives meanwhile waits for the load instead of failing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO

import av
import numpy as np
from fastapi import HTTPException

from featurestore import FeatureStore

from .metrics import Metrics
from .settings import Settings

log = logging.getLogger("server")

#: Declared part types we try to decode; anything else (text, images, JSON) is 415.
ACCEPTED_TYPES = ("video/", "application/octet-stream", "application/mp4", "application/x-matroska")


def check_content_type(content_type: str | None) -> None:
    if content_type and not content_type.lower().startswith(ACCEPTED_TYPES):
        raise HTTPException(415, f"expected a video file, got content type {content_type!r}")


def save_upload(src: BinaryIO) -> str:
    """Copy the (already size-limited) upload to a temp file; the client's filename is
    never used for the path."""
    fd, path = tempfile.mkstemp(prefix="asl-upload-", suffix=".video")
    with os.fdopen(fd, "wb") as dst:
        src.seek(0)
        shutil.copyfileobj(src, dst, 1024 * 1024)
    return path


def clip_seconds(path: str) -> float:
    """Duration from the container, or from the packet count when that is longer (a file
    can under-report its duration; demuxing is cheap, decoding is not)."""
    try:
        with av.open(path, mode="r") as container:
            if not container.streams.video:
                raise HTTPException(422, "not a decodable video: the file has no video stream")
            stream = container.streams.video[0]
            declared = container.duration / av.time_base if container.duration else 0.0
            rate = float(stream.average_rate or stream.guessed_rate or 0) or 25.0
            packets = sum(1 for p in container.demux(stream) if p.size)
    except (av.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise HTTPException(422, f"not a decodable video: {_reason(exc, path)}") from None
    return max(declared, packets / rate)


def _reason(exc: Exception, path: str) -> str:
    """The error without our temp file's path: the client only needs the reason."""
    return str(exc).replace(f"'{path}'", "upload").replace(path, "upload")


class UploadExtractor:
    """Owns the clip extractor (loaded in the background) and its single thread."""

    def __init__(self, settings: Settings, store: FeatureStore, metrics: Metrics) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.status = "loading" if settings.upload_enabled else "disabled"
        self._extractor = None
        self._pending = 0
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="extract")

    def start_loading(self) -> None:
        if self.settings.upload_enabled:
            self._executor.submit(self._load)

    def _load(self) -> None:
        try:
            from featurestore.extract import ClipExtractor

            self._extractor = ClipExtractor.for_store(self.store, device=self.settings.device)
            self.status = "ready"
        except Exception as exc:  # the id routes still work; uploads say why they cannot
            self.status = f"unavailable: {type(exc).__name__}: {exc}"
            log.warning("video uploads disabled: %s", self.status)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def extract(self, path: str) -> dict[str, np.ndarray]:
        """Features of one clip as a batch of one, keyed by stream."""
        # While the encoder loads, uploads queue behind the load on the same thread.
        if self.status not in ("ready", "loading"):
            raise HTTPException(503, f"video uploads are not available: {self.status}")
        if self._pending >= self.settings.max_pending_uploads:
            raise HTTPException(503, "busy: too many uploads waiting for extraction; retry later")
        self._pending += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, self._extract_sync, path)
        finally:
            self._pending -= 1

    def _extract_sync(self, path: str) -> dict[str, np.ndarray]:
        from featurestore.extract import DecodeError

        if self._extractor is None:  # the load ran first on this thread, and failed
            raise HTTPException(503, f"video uploads are not available: {self.status}")
        seconds = clip_seconds(path)
        if seconds > self.settings.max_clip_seconds:
            raise HTTPException(
                413,
                f"clip is {seconds:.1f} s long; the limit is {self.settings.max_clip_seconds} s",
            )
        with self.metrics.extract_seconds.time():
            try:
                arrays = self._extractor.extract(path)
            except DecodeError as exc:
                raise HTTPException(422, f"not a decodable video: {_reason(exc, path)}") from None
        return {name: np.asarray(a)[None] for name, a in arrays.items()}
