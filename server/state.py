"""What the service holds while it runs: the store, the model being served (swapped when a
training job is done), the machinery around them, and, with writes allowed, the writer of
takes and the training jobs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from fastapi import HTTPException, Request

from featurestore import FeatureStore
from model import Checkpoint, load_checkpoint

from .batcher import MicroBatcher
from .cache import FeatureCache
from .encoding import float16_text_table
from .jobs import TrainJobs
from .loading import Resources, StartupError, check_match, check_upload_budget
from .metrics import Metrics
from .models import ModelSlot, ServedModel
from .predictor import PredictJob, Predictor, Ranked, run_jobs
from .runs import runs_folder
from .settings import Settings
from .teach import Teacher
from .uploads import UploadExtractor

log = logging.getLogger("server")

__all__ = ["ServingState", "StartupError", "build_state", "get_state"]


@dataclass(repr=False)
class ServingState:
    """Loaded store and model, and the machinery around them."""

    settings: Settings
    store: FeatureStore
    models: ModelSlot
    metrics: Metrics
    cache: FeatureCache
    batcher: MicroBatcher[PredictJob, list[Ranked]]
    uploads: UploadExtractor
    model_executor: ThreadPoolExecutor
    io_executor: ThreadPoolExecutor
    read_lock: contextlib.AbstractContextManager
    """h5py handles are not safe to share between threads; zarr reads are."""
    teacher: Teacher | None = None
    jobs: TrainJobs | None = None
    ids_by_split: dict[str | None, list[str]] = field(default_factory=dict)
    holding: dict[tuple[str, ...], set[str]] = field(default_factory=dict)
    """Videos holding every stream a model reads, per set of streams (see `lacking`)."""
    holders: dict[str, set[str]] = field(default_factory=dict)
    """Videos holding each added feature set, computed once per set (see `streams_of`)."""
    refresher: asyncio.Task | None = None

    @property
    def checkpoint(self) -> Checkpoint | None:
        """The served model's checkpoint (None before the first training job)."""
        return None if self.models.current is None else self.models.current.checkpoint

    @property
    def predictor(self) -> Predictor | None:
        return None if self.models.current is None else self.models.current.predictor

    async def start(self) -> None:
        await self.batcher.start()
        self.uploads.start_loading()
        self.io_executor.submit(float16_text_table)  # the first JSON lookup need not wait
        if self.jobs is not None:
            self.jobs.recover()
        if self.settings.refresh_s > 0:
            self.refresher = asyncio.create_task(self.keep_fresh(self.settings.refresh_s))

    async def keep_fresh(self, every_s: float) -> None:
        """Pick up what imports, populates, deletes and compacts did to the store, without a
        restart and without a lock: the store swaps in a whole new index, and what was
        derived from the old one is dropped here."""
        while True:
            await asyncio.sleep(every_s)
            try:
                await self.refresh()
            except Exception:  # a store briefly unreadable: keep serving the index we have
                log.warning("could not refresh the store's index", exc_info=True)

    async def refresh(self) -> None:
        """Load what was committed since, if anything (after this server's own writes too)."""
        loop = asyncio.get_running_loop()
        changed = await loop.run_in_executor(self.io_executor, refresh_store, self.store)
        if changed is not None:
            self.forget_derived(changed)

    def forget_derived(self, changed: set[str]) -> None:
        """Drop what was computed from the old index, and the cached rows of ``changed``."""
        self.ids_by_split = {}
        self.holding = {}
        self.holders = {}
        if changed:
            self.cache.evict(changed)

    async def stop(self) -> None:
        if self.refresher is not None:
            self.refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.refresher
        if self.jobs is not None:
            await self.jobs.stop()
        if self.teacher is not None:  # a take being written is finished first
            await asyncio.to_thread(self.teacher.shutdown)
        await self.batcher.stop()
        self.uploads.shutdown()
        self.model_executor.shutdown(wait=False, cancel_futures=True)
        self.io_executor.shutdown(wait=False, cancel_futures=True)

    # -- models ----------------------------------------------------------------------------
    def served(self, checkpoint: Checkpoint, path: str | None, job_id: str | None) -> ServedModel:
        predictor = Predictor(checkpoint, self.store, self.cache, self.metrics, self.read_lock)
        return ServedModel(checkpoint, predictor, path, job_id)

    async def adopt(self, job_id: str, path: Path) -> None:
        """Serve a training job's model, once it is checked against the store as it is
        now, as at start-up. Requests in flight finish on the model they started with."""
        checkpoint = await asyncio.to_thread(
            load_checkpoint, path, map_location=self.settings.device
        )
        await self.refresh()
        try:
            check_match(self.store, checkpoint, str(path))
        except StartupError as exc:
            raise HTTPException(422, str(exc)) from None
        if checkpoint.features not in (None, self.uploads.visual):
            raise HTTPException(
                422,
                f"it reads feature set {checkpoint.features!r}; this server extracts "
                f"{self.uploads.visual!r} from uploads",
            )
        self.models.swap(self.served(checkpoint, str(path), job_id))

    # -- reading ---------------------------------------------------------------------------
    def load_stream(self, video_id: str, stream: str) -> np.ndarray:
        """One stream of one stored video from the store, kept in the cache."""
        with self.read_lock:
            arr = self.store.get(video_id, streams=[stream]).arrays[stream]
        return self.cache.put(video_id, stream, arr)

    def ids(self, split: str | None) -> list[str]:
        """Sorted ids of a split, computed once per index (the refresher drops them)."""
        if split not in self.ids_by_split:
            self.ids_by_split[split] = self.store.ids(split)
        return self.ids_by_split[split]

    def lacking(self, video_ids: list[str], streams: list[str]) -> list[str]:
        """Stored videos without every stream a model reads (a feature set not yet added)."""
        key = tuple(streams)
        if key not in self.holding:
            self.holding[key] = set(self.store.ids(streams=streams))
        return [v for v in video_ids if v not in self.holding[key]]

    def streams_of(self, video_id: str) -> list[str]:
        """The streams a stored video holds: the base ones and the feature sets added to it."""
        schema = self.store.schema
        for name in schema.feature_sets:
            if name not in self.holders:
                self.holders[name] = self.store.feature_ids(name)
        added = [s for s in schema.feature_sets if video_id in self.holders[s]]
        return [*schema.streams, *added]


def refresh_store(store: FeatureStore) -> set[str] | None:
    """`refresh_if_changed`, with the index loaded first: a store not read yet would not
    know its metadata (labels) has changed since it was opened."""
    len(store)
    return store.refresh_if_changed()


def build_state(settings: Settings, loaded: Resources, metrics: Metrics) -> ServingState:
    store, checkpoint = loaded.store, loaded.checkpoint
    check_upload_budget(settings, store.schema.num_frames)
    # One intra-op thread by default: the model is small, batching gives the parallelism,
    # and a second OpenMP thread fights the event loop for the cores (measured: slower).
    torch.set_num_threads(settings.torch_threads or 1)
    model_executor = ThreadPoolExecutor(1, thread_name_prefix="model")
    batcher: MicroBatcher[PredictJob, list[Ranked]] = MicroBatcher(
        run_jobs,
        model_executor,
        max_batch=settings.batch_max_size if settings.micro_batching else 1,
        max_wait_ms=settings.batch_max_wait_ms if settings.micro_batching else 0.0,
        size=len,
    )
    runs = runs_folder(store.url, settings.runs)
    features = checkpoint.features if checkpoint is not None else None
    state = ServingState(
        settings=settings,
        store=store,
        models=ModelSlot(None, runs if settings.allow_writes else None),
        metrics=metrics,
        cache=FeatureCache(int(settings.cache_mb * 1024 * 1024)),
        batcher=batcher,
        uploads=UploadExtractor(settings, store, metrics, features),
        model_executor=model_executor,
        io_executor=ThreadPoolExecutor(settings.io_threads, thread_name_prefix="store-io"),
        read_lock=threading.Lock() if store.backend_name == "hdf5" else contextlib.nullcontext(),
    )
    if checkpoint is not None:
        state.models.current = state.served(checkpoint, loaded.path, loaded.job_id)
    if settings.allow_writes:
        state.teacher = Teacher(store.url, store.storage_options)
        if runs is not None:
            state.jobs = TrainJobs(runs, state.adopt)
    return state


async def get_state(request: Request) -> ServingState:
    """Dependency: the loaded state, or 503 while the store and model are not loaded."""
    state = getattr(request.app.state, "serving", None)
    if state is None:
        raise HTTPException(503, "not ready: the store and model are not loaded yet")
    return state
