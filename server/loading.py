"""Start-up: open (or, with writes allowed, create) the store, find the model to serve, and
refuse a pair that does not match.

The model is `--checkpoint` if given; else the one the store's runs folder records as
served (the newest successful training job's, or the one rolled back to). A server with
writes allowed may start without any: its predict routes answer 503 until a job is done.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from featurestore import (
    FeatureStore,
    SchemaMismatchError,
    StoreError,
    StoreSchema,
    create_store,
    open_store,
)
from featurestore.layout import landmark_layout, landmark_streams
from model import Checkpoint, CheckpointError, load_checkpoint

from .clips import MB, upload_peak_bytes
from .runs import runs_folder, served_model
from .settings import Settings


class StartupError(RuntimeError):
    """The service cannot start with these settings; the message says why and what to do."""


@dataclass
class Resources:
    """What start-up loaded: the store, and the model to serve (None: not trained yet)."""

    store: FeatureStore
    checkpoint: Checkpoint | None = None
    path: str | None = None
    job_id: str | None = None


def open_resources(settings: Settings) -> Resources:
    """Open the store, load the checkpoint, and refuse a pair that does not match."""
    if not settings.store:
        raise StartupError(
            "both a store and a checkpoint are needed (--store, --checkpoint), or a store "
            "and --allow-writes to train one through the service"
        )
    if settings.allow_writes and settings.workers > 1:
        raise StartupError("writes need one worker: --allow-writes takes --workers 1")
    store = open_or_create_store(settings)
    runs = runs_folder(settings.store, settings.runs)
    found = served_model(runs) if runs is not None and not settings.checkpoint else None
    path, job_id = (settings.checkpoint, None) if settings.checkpoint else (found or (None, None))
    if path is None:
        if not settings.allow_writes:
            raise StartupError(
                "a checkpoint is needed (--checkpoint), or --allow-writes to add takes and "
                "train one through the service"
            )
        check_upload_budget(settings, store.schema.num_frames)
        return Resources(store)
    try:
        checkpoint = load_checkpoint(path, map_location=settings.device)
    except CheckpointError as exc:
        raise StartupError(str(exc)) from exc
    check_match(store, checkpoint, path)
    check_upload_budget(settings, checkpoint.num_frames)
    return Resources(store, checkpoint, path, job_id)


def open_or_create_store(settings: Settings) -> FeatureStore:
    """The store; with writes allowed, created first if nothing is there."""
    url = str(settings.store)
    try:
        return open_store(url, "r", settings.storage_options)
    except (StoreError, OSError) as exc:
        if not settings.allow_writes:
            missing = "://" not in url and not Path(url).exists()
            hint = " (--allow-writes creates a new one)" if missing else ""
            raise StartupError(f"cannot open store {url}: {exc}{hint}") from exc
        unopened = exc
    try:
        create_store(url, new_store_schema(settings), storage_options=settings.storage_options)
        return open_store(url, "r", settings.storage_options)
    except (StoreError, OSError, ValueError) as exc:
        raise StartupError(
            f"cannot open store {url} ({unopened}) nor create one there: {exc}"
        ) from exc


def new_store_schema(settings: Settings) -> StoreSchema:
    """Landmarks only, at T = num_frames; with `--encoder ID`, that encoder's features too
    (its fingerprint is the loaded encoder's own)."""
    if settings.encoder:
        from featurestore.extract import ClipExtractor

        return ClipExtractor(
            settings.encoder, num_frames=settings.num_frames, device=settings.device
        ).schema()
    layout = landmark_layout(face=False)
    return StoreSchema(
        settings.num_frames, landmark_streams(settings.num_frames, layout), {}, layout
    )


def check_match(store: FeatureStore, checkpoint: Checkpoint, name: str = "checkpoint") -> None:
    """A model must only ever see features of the encoder, T and streams it was trained on:
    the store must hold its feature set, made by the same encoder (same fingerprint)."""
    try:
        checkpoint.check_store(store)
    except (CheckpointError, SchemaMismatchError) as exc:
        raise StartupError(
            f"refusing to serve: {name} does not match store {store.url}: {exc}. "
            "Serve the checkpoint with the store it was trained on, or retrain on this store."
        ) from exc


def check_upload_budget(settings: Settings, num_frames: int) -> None:
    """Refuse a memory budget smaller than one upload at the pixel limit can take: no such
    upload could ever be let in."""
    if not settings.upload_enabled:
        return
    peak = upload_peak_bytes(settings.max_upload_pixels, num_frames)
    if peak > settings.upload_memory_mb * MB:
        raise StartupError(
            f"upload_memory_mb={settings.upload_memory_mb:g} is less than one upload can take: "
            f"{peak / MB:.0f} MB for {num_frames} frames of up to max_upload_pixels="
            f"{settings.max_upload_pixels}. Raise ASL_UPLOAD_MEMORY_MB or lower "
            "ASL_MAX_UPLOAD_PIXELS."
        )
