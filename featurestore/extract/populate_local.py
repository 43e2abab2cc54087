"""``populate``: every entry's features into a store on this machine, resumable, never
aborted by one clip; ``add_features``: another encoder's features for the videos a store
already holds, landmarks untouched.

The run is planned as for Ray (``plan``: schema checked against the store before anything
is extracted, label map merged add-only, committed videos skipped; ``plan_features`` for an
added set), then run through the overlapped local ``Pipeline``. A run stopped by Ctrl-C or
a kill is finished by running it again. Each failed video is recorded with its reason.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from contextlib import closing

import torch
from tqdm import tqdm

from ..schema import GEMMA_STREAM
from . import stages
from .clip import ClipExtractor
from .gemma import GemmaEncoder
from .holistic import LandmarkPool
from .manifest import ManifestEntry
from .pipeline import Pipeline
from .plan import PopulateOptions, open_for_features, plan, plan_features
from .summary import PopulateSummary

__all__ = ["add_features", "populate", "PopulateSummary"]

log = logging.getLogger(__name__)


def populate(
    store_url: str,
    entries: Iterable[ManifestEntry],
    encoder: str | GemmaEncoder | None = "tiny-random",
    num_frames: int = 16,
    device: str = "cpu",
    batch_size: int = 64,
    workers: int | None = None,
    overwrite: bool = False,
    limit: int | None = None,
    landmarks: bool = True,
    progress: bool = True,
    *,
    labels: dict[int, str] | None = None,
    face: bool = False,
    pooling: str = "mean_soft_tokens",
    flash_attention: bool = False,
    revision: str | None = None,
    commit_every: int | None = None,
    decode_threads: int | None = None,
    storage_options: dict | None = None,
    fast_path: str = "auto",
    sdpa_backend: str = "auto",
) -> PopulateSummary:
    """Extract ``entries`` into the store at ``store_url`` (created if absent).

    ``encoder``: a preset (``tiny-random``), a Hugging Face id (``google/gemma-3-4b-it``
    for real use), a local folder, a loaded GemmaEncoder, or None for landmarks only.
    ``labels`` fixes label -> gloss (WLASL); otherwise glosses get labels merged add-only
    with the store's. ``limit`` keeps the first N entries. ``commit_every`` commits every N
    videos (default: every store block and at least once a minute). ``fast_path`` compiles
    the encoder's forward (auto: on CUDA); ``sdpa_backend`` picks its attention kernel.
    Raises SchemaMismatchError, before any extraction, if the store was filled by another
    encoder, T or layout.
    """
    options = PopulateOptions.pick(locals())
    return run_local(store_url, entries, options, workers, commit_every, decode_threads)


def run_local(
    store_url: str,
    entries: Iterable[ManifestEntry],
    options: PopulateOptions,
    workers: int | None = None,
    commit_every: int | None = None,
    decode_threads: int | None = None,
) -> PopulateSummary:
    """Plan the run, then decode threads, landmark processes and the encoder thread overlap."""
    started = time.perf_counter()
    cpus = os.cpu_count() or 1
    workers = cpus if workers is None else max(1, int(workers))
    pool = LandmarkPool(workers, face=options.face) if options.landmarks else None
    if pool is not None:
        pool.start()  # the workers load MediaPipe while the encoder loads
    threads = torch.get_num_threads()
    summary = PopulateSummary()
    bar = None
    try:
        extractor = ClipExtractor(**options.extractor_args())
        planned = plan(store_url, entries, options, extractor.schema, summary)
        store, todo = planned.store, planned.todo
        if pool is not None and extractor.encoder is not None and options.device == "cpu":
            # Holistic keeps the cores busy; torch's spinning OpenMP threads would fight it
            torch.set_num_threads(max(1, cpus - workers))
        block = min(commit_every or store.block_size, store.block_size)
        with store.writer(overwrite=options.overwrite, block_size=block) as writer:
            for vid, reason in summary.failed.items():
                writer.fail(vid, reason)
            if pool is not None and todo:
                pool.warm_up()
            bar = tqdm(total=len(todo), unit="video", disable=not options.progress, smoothing=0.1)
            summary.startup_s = time.perf_counter() - started
            cpu_start = time.process_time()
            threads_for_decode = decode_threads or max(2, min(8, cpus // 4))
            pipeline = Pipeline(options.num_frames, extractor.encoder, pool, threads_for_decode)
            with closing(pipeline.run(todo)) as jobs:
                stages.write(jobs, writer, summary, bar, extractor.streams)
            summary.stage_seconds.update(pipeline.stage_seconds)
            summary.frames_encoded = pipeline.frames_encoded
            summary.cpu_s = time.process_time() - cpu_start + pipeline.worker_cpu_seconds
    except KeyboardInterrupt:
        summary.interrupted = True  # the writer's exit above committed what was complete
    finally:
        if bar is not None:
            bar.close()
        if pool is not None:
            pool.close(cancel=True)
        torch.set_num_threads(threads)
    summary.elapsed_s = time.perf_counter() - started
    return summary


def add_features(
    store_url: str,
    name: str,
    encoder: str | GemmaEncoder = "tiny-random",
    device: str = "cpu",
    batch_size: int = 64,
    *,
    pooling: str = "mean_soft_tokens",
    flash_attention: bool = False,
    revision: str | None = None,
    num_frames: int | None = None,
    overwrite: bool = False,
    limit: int | None = None,
    shard_index: int = 0,
    num_shards: int = 1,
    progress: bool = True,
    decode_threads: int | None = None,
    storage_options: dict | None = None,
    fast_path: str = "auto",
    sdpa_backend: str = "auto",
) -> PopulateSummary:
    """Add feature set ``name``, made by ``encoder``, to the videos store ``store_url`` holds.

    Each video is decoded again from the source populate recorded (its path and frame
    range, sampled to the store's T exactly as populate did) and encoded; MediaPipe never
    runs and no other stream is written. Videos that already have the set are skipped, so a
    rerun finishes a killed run; a missing file or an imported video is a recorded failure.
    ``shard_index`` of ``num_shards`` takes every n-th stored block, for processes that add
    the same set at once. Raises SchemaMismatchError if the set exists with another encoder.
    """
    started = time.perf_counter()
    store = open_for_features(store_url, num_frames, storage_options)
    options = PopulateOptions(
        encoder=encoder,
        num_frames=store.schema.num_frames,
        device=device,
        batch_size=batch_size,
        overwrite=overwrite,
        limit=limit,
        landmarks=False,
        progress=progress,
        pooling=pooling,
        flash_attention=flash_attention,
        revision=revision,
        storage_options=storage_options,
        fast_path=fast_path,
        sdpa_backend=sdpa_backend,
    )
    summary = PopulateSummary(feature_set=name)
    bar = None
    try:
        extractor = ClipExtractor(**options.extractor_args())
        assert extractor.encoder is not None, "add_features always has an encoder"
        spec = extractor.streams[GEMMA_STREAM]
        planned = plan_features(
            store, name, extractor.fingerprint, spec, options, summary, shard_index, num_shards
        )
        if not planned.todo and not summary.failed:
            summary.elapsed_s = summary.startup_s = time.perf_counter() - started
            return summary  # everything has the set: no writer, nothing written
        with store.feature_writer(name, overwrite=overwrite) as writer:
            for vid, reason in summary.failed.items():
                writer.fail(vid, reason)
            writer.flush()
            todo = planned.todo
            bar = tqdm(total=len(todo), unit="video", disable=not progress, smoothing=0.1)
            summary.startup_s = time.perf_counter() - started
            cpu_start = time.process_time()
            cpus = os.cpu_count() or 1
            threads = decode_threads or max(2, min(8, cpus // 4))
            pipeline = Pipeline(options.num_frames, extractor.encoder, None, threads)
            with closing(pipeline.run(todo)) as jobs:
                stages.write_features(jobs, writer, summary, bar, planned.blocks, planned.recorded)
            summary.stage_seconds.update(pipeline.stage_seconds)
            summary.frames_encoded = pipeline.frames_encoded
            summary.cpu_s = time.process_time() - cpu_start
    except KeyboardInterrupt:
        summary.interrupted = True  # every complete block is committed already
    finally:
        if bar is not None:
            bar.close()
    summary.elapsed_s = time.perf_counter() - started
    return summary
