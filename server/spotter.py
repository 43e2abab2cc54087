"""Spotting behind the server's doors (`POST /v1/spot`, the live WebSocket): the model
served at the moment of the request, its windows classified on the model thread, and an
upload read into a recording within the upload limits.

The checkpoint is read from the state once per request (or per live connection), never
kept from start-up: a checkpoint swapped in meanwhile serves the next request, and one
request never mixes two models. Forwards run on the single model thread, between the
micro-batcher's, so torch never sees two at once; the windows of a long recording go in
passes (`spotting.core.WINDOWS_PER_PASS`), so predictions wait for one pass at most.
"""

from __future__ import annotations

from concurrent.futures import Executor
from pathlib import Path

import numpy as np
from fastapi import HTTPException

from model import GEMMA_STREAM, Checkpoint
from spotting import Recording, SpotConfig, SpotError, WindowClassifier, add_gemma, read_input
from spotting.core import parse_seconds, window_lengths

from .clips import without_path
from .settings import Settings
from .state import ServingState

#: What an upload's name says it holds (anything else is taken for a video).
LANDMARK_SUFFIXES = (".npy", ".pose")
#: Live windows laid every this many frames at 15 frames a second and below (more above).
LIVE_STRIDE_FPS = 15.0


class ServedClassifier(WindowClassifier):
    """A checkpoint's windows classified on the server's model thread."""

    def __init__(self, checkpoint: Checkpoint, executor: Executor):
        super().__init__(checkpoint, path="the served checkpoint")
        self.executor = executor

    def __call__(self, windows: dict[str, np.ndarray]) -> np.ndarray:
        run = super().__call__
        return self.executor.submit(run, windows).result()


def served_classifier(state: ServingState) -> ServedClassifier:
    """The model served now; 503 while there is none, or when this server cannot give it
    the features it reads."""
    checkpoint = state.models.get().checkpoint  # 503 "no model yet" before any
    if checkpoint.config.uses_visual and checkpoint.features != state.uploads.visual:
        raise HTTPException(
            503,
            f"the served model reads feature set {checkpoint.features!r}; this server "
            f"extracts {state.uploads.visual!r}",
        )
    return ServedClassifier(checkpoint, state.model_executor)


def spot_config(
    settings: Settings,
    fps: float,
    num_frames: int,
    window_s: tuple[float, ...] | None = None,
    stride: int | None = None,
    min_score: float | None = None,
    min_hands: float | None = None,
    top_k: int = 5,
) -> SpotConfig:
    """asl-spot's configuration at this rate; what is not given, from the settings."""
    seconds = window_s or parse_seconds(settings.spot_window_s)
    return SpotConfig(
        window_frames=window_lengths(seconds, fps, num_frames),
        stride=stride or SpotConfig.stride,
        min_score=settings.spot_min_score if min_score is None else min_score,
        min_hands=settings.spot_min_hands if min_hands is None else min_hands,
        top_k=top_k,
    )


def live_stride(fps: float) -> int:
    """Windows every frame at a webcam's few frames a second; every 2 at 30."""
    return max(1, round(fps / LIVE_STRIDE_FPS))


def upload_suffix(filename: str | None) -> str:
    """The temp file's suffix: a landmark file's own, else `.video`."""
    suffix = Path(filename or "").suffix.lower()
    return suffix if suffix in LANDMARK_SUFFIXES else ".video"


def model_rows(rows: dict[str, np.ndarray], visual: str) -> dict[str, np.ndarray]:
    """Extracted streams keyed as the spotter's classifier reads them (the feature set
    the server extracts is the model's visual input)."""
    return {GEMMA_STREAM if name == visual else name: a for name, a in rows.items()}


def check_length(rec: Recording, limit: float) -> None:
    seconds = rec.frames / rec.fps
    if seconds > limit:
        raise HTTPException(
            413,
            f"{rec.frames} frames at {rec.fps:g} fps are {seconds:.1f} s; the limit for "
            f"spotting is {limit:g} s",
        )


def read_landmarks(
    path: str, classify: WindowClassifier, fps: float | None, settings: Settings
) -> Recording:
    """A .npy or .pose upload as a recording (any thread: no MediaPipe here)."""
    rec = read_input(path, classify, fps)
    check_length(rec, settings.max_spot_seconds)
    return rec


def read_video(
    state: ServingState,
    path: str,
    classify: WindowClassifier,
    fps: float | None,
    configure,
) -> tuple[Recording, SpotConfig]:
    """A video upload's landmarks on every frame at `fps`, tracked, and the Gemma features
    of the frames windows read when the model reads them; on the extraction thread, one
    frame in memory at a time (T at a time for the encoder), each frame at most
    `max_upload_pixels`. `configure(fps)` lays the windows at the rate read."""
    settings = state.settings
    state.uploads.check_header(path, settings.max_spot_seconds)
    encoder = state.uploads.encoder
    if classify.uses_gemma and encoder is None:
        raise HTTPException(503, f"video uploads are not available: {state.uploads.status}")
    rec = read_input(path, classify, fps, settings.max_upload_pixels)
    check_length(rec, settings.max_spot_seconds)
    config = configure(rec.fps)
    add_gemma(
        rec,
        classify,
        config,
        settings.device,
        encoder=encoder,
        max_pixels=settings.max_upload_pixels,
        batch=classify.num_frames,
    )
    return rec, config


def refusal(exc: SpotError | ValueError, path: str, filename: str) -> HTTPException:
    """422 naming the upload by the client's name (never our temp file's)."""
    detail = str(exc).replace(path, filename)
    return HTTPException(422, without_path(detail, path))
