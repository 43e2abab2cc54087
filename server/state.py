"""What the service holds while it runs, how it is loaded, and the check that the
checkpoint fits the store."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch
from fastapi import HTTPException, Request

from featurestore import FeatureStore, SchemaMismatchError, StoreError, open_store
from model import Checkpoint, CheckpointError, load_checkpoint

from .batcher import MicroBatcher
from .cache import FeatureCache
from .clips import MB, upload_peak_bytes
from .encoding import float16_text_table
from .metrics import Metrics
from .predictor import PredictJob, Predictor, Ranked
from .settings import Settings
from .uploads import UploadExtractor

log = logging.getLogger("server")


class StartupError(RuntimeError):
    """The service cannot start with these settings; the message says why and what to do."""


def open_resources(settings: Settings) -> tuple[FeatureStore, Checkpoint]:
    """Open the store, load the checkpoint, and refuse a pair that does not match."""
    if not settings.store or not settings.checkpoint:
        raise StartupError("both a store and a checkpoint are needed (--store, --checkpoint)")
    try:
        store = open_store(settings.store, "r", settings.storage_options)
    except (StoreError, OSError) as exc:
        raise StartupError(f"cannot open store {settings.store}: {exc}") from exc
    try:
        checkpoint = load_checkpoint(settings.checkpoint, map_location=settings.device)
    except CheckpointError as exc:
        raise StartupError(str(exc)) from exc
    check_match(store, checkpoint, settings.checkpoint)
    check_upload_budget(settings, checkpoint.num_frames)
    return store, checkpoint


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


@dataclass(repr=False)
class ServingState:
    """Loaded store and model, and the machinery around them."""

    settings: Settings
    store: FeatureStore
    checkpoint: Checkpoint
    metrics: Metrics
    cache: FeatureCache
    predictor: Predictor
    batcher: MicroBatcher[PredictJob, list[Ranked]]
    uploads: UploadExtractor
    model_executor: ThreadPoolExecutor
    io_executor: ThreadPoolExecutor
    ids_by_split: dict[str | None, list[str]] = field(default_factory=dict)
    holding: set[str] | None = None
    """Videos holding every stream the model reads, computed once (see `lacking`)."""
    holders: dict[str, set[str]] = field(default_factory=dict)
    """Videos holding each added feature set, computed once per set (see `streams_of`)."""
    refresher: asyncio.Task | None = None

    async def start(self) -> None:
        await self.batcher.start()
        self.uploads.start_loading()
        self.io_executor.submit(float16_text_table)  # the first JSON lookup need not wait
        if self.settings.refresh_s > 0:
            self.refresher = asyncio.create_task(self.keep_fresh(self.settings.refresh_s))

    async def keep_fresh(self, every_s: float) -> None:
        """Pick up what imports, populates, deletes and compacts did to the store, without a
        restart and without a lock: the store swaps in a whole new index, and what was
        derived from the old one is dropped here."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(every_s)
            try:
                changed = await loop.run_in_executor(
                    self.io_executor, self.store.refresh_if_changed
                )
            except Exception:  # a store briefly unreadable: keep serving the index we have
                log.warning("could not refresh the store's index", exc_info=True)
                continue
            if changed is not None:
                self.forget_derived(changed)

    def forget_derived(self, changed: set[str]) -> None:
        """Drop what was computed from the old index, and the cached rows of ``changed``."""
        self.ids_by_split = {}
        self.holding = None
        self.holders = {}
        if changed:
            self.cache.evict(changed)

    async def stop(self) -> None:
        if self.refresher is not None:
            self.refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.refresher
        await self.batcher.stop()
        self.uploads.shutdown()
        self.model_executor.shutdown(wait=False, cancel_futures=True)
        self.io_executor.shutdown(wait=False, cancel_futures=True)

    def ids(self, split: str | None) -> list[str]:
        """Sorted ids of a split, computed once per index (the refresher drops them)."""
        if split not in self.ids_by_split:
            self.ids_by_split[split] = self.store.ids(split)
        return self.ids_by_split[split]

    def lacking(self, video_ids: list[str]) -> list[str]:
        """Stored videos without the model's feature set (not yet added to them)."""
        if self.holding is None:
            self.holding = set(self.store.ids(streams=self.predictor.streams))
        return [v for v in video_ids if v not in self.holding]

    def streams_of(self, video_id: str) -> list[str]:
        """The streams a stored video holds: the base ones and the feature sets added to it."""
        schema = self.store.schema
        for name in schema.feature_sets:
            if name not in self.holders:
                self.holders[name] = self.store.feature_ids(name)
        added = [s for s in schema.feature_sets if video_id in self.holders[s]]
        return [*schema.streams, *added]


def build_state(
    settings: Settings, store: FeatureStore, checkpoint: Checkpoint, metrics: Metrics
) -> ServingState:
    check_upload_budget(settings, store.schema.num_frames)
    # One intra-op thread by default: the model is small, batching gives the parallelism,
    # and a second OpenMP thread fights the event loop for the cores (measured: slower).
    torch.set_num_threads(settings.torch_threads or 1)
    cache = FeatureCache(int(settings.cache_mb * 1024 * 1024))
    predictor = Predictor(checkpoint, store, cache, metrics)
    model_executor = ThreadPoolExecutor(1, thread_name_prefix="model")
    batcher: MicroBatcher[PredictJob, list[Ranked]] = MicroBatcher(
        predictor.run_batch,
        model_executor,
        max_batch=settings.batch_max_size if settings.micro_batching else 1,
        max_wait_ms=settings.batch_max_wait_ms if settings.micro_batching else 0.0,
        size=len,
    )
    return ServingState(
        settings=settings,
        store=store,
        checkpoint=checkpoint,
        metrics=metrics,
        cache=cache,
        predictor=predictor,
        batcher=batcher,
        uploads=UploadExtractor(settings, store, metrics, checkpoint.features),
        model_executor=model_executor,
        io_executor=ThreadPoolExecutor(settings.io_threads, thread_name_prefix="store-io"),
    )


async def get_state(request: Request) -> ServingState:
    """Dependency: the loaded state, or 503 while the store and model are not loaded."""
    state = getattr(request.app.state, "serving", None)
    if state is None:
        raise HTTPException(503, "not ready: the store and model are not loaded yet")
    return state
