"""``populate``: every entry's features into a store on this machine, resumable, never
aborted by one clip; ``add_features``: another encoder's features for the videos a store
already holds, landmarks untouched.

The run is prepared as for Ray (``prepare``: schema checked against the store before anything
is extracted, labels claimed add-only, committed videos skipped; ``prepare_features`` for an
added set), then run through the overlapped local ``Pipeline``. ``run_local`` and
``add_local`` take the run's ``PopulateOptions``; ``populate`` and ``add_features`` are their
keyword wrappers. A run stopped by Ctrl-C or a kill is finished by running it again. Each
failed video is recorded with its reason.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from contextlib import closing

import torch
from tqdm import tqdm

from ..manifest import ManifestEntry
from ..schema import GEMMA_STREAM
from ..summary import PopulateSummary
from . import stages
from .gemma import GemmaEncoder
from .holistic import LandmarkPool
from .options import PopulateOptions
from .pipeline import Pipeline
from .prepare import open_for_features, prepare, prepare_features

__all__ = ["add_features", "add_local", "populate", "run_local"]

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
    fast_path: str = "auto",
    sdpa_backend: str = "auto",
    commit_every: int | None = None,
    decode_threads: int | None = None,
    storage_options: dict | None = None,
) -> PopulateSummary:
    """Extract ``entries`` into the store at ``store_url`` (created if absent).

    ``encoder``: a preset (``tiny-random``), a Hugging Face id (``google/gemma-3-4b-it``
    for real use), a local folder, a loaded GemmaEncoder, or None for landmarks only.
    ``labels`` fixes label -> gloss (WLASL); otherwise glosses get labels merged add-only
    with the store's. ``limit`` keeps the first N entries. ``commit_every`` commits every N
    videos (default: every store block and at least once a minute).
    Raises SchemaMismatchError, before any extraction, if the store was filled by another
    encoder, T or layout.
    """
    options = PopulateOptions(
        encoder=encoder,
        num_frames=num_frames,
        device=device,
        batch_size=batch_size,
        pooling=pooling,
        flash_attention=flash_attention,
        revision=revision,
        fast_path=fast_path,
        sdpa_backend=sdpa_backend,
        landmarks=landmarks,
        face=face,
        labels=labels,
        overwrite=overwrite,
        limit=limit,
        progress=progress,
        storage_options=storage_options,
        commit_every=commit_every,
        workers=workers,
        decode_threads=decode_threads,
    )
    return run_local(store_url, entries, options)


def run_local(
    store_url: str, entries: Iterable[ManifestEntry], options: PopulateOptions
) -> PopulateSummary:
    """Prepare the run, then decode threads, landmark processes and the encoder thread overlap."""
    started = time.perf_counter()
    cpus = os.cpu_count() or 1
    workers = cpus if options.workers is None else max(1, int(options.workers))
    pool = LandmarkPool(workers, face=options.face) if options.landmarks else None
    if pool is not None:
        pool.start()  # the workers load MediaPipe while the encoder loads
    threads = torch.get_num_threads()
    summary = PopulateSummary()
    bar = None
    try:
        extractor = options.extractor()
        run = prepare(store_url, entries, options, extractor.schema(), summary)
        store, todo = run.store, run.todo
        if pool is not None and extractor.encoder is not None and options.device in (None, "cpu"):
            # Holistic keeps the cores busy; torch's spinning OpenMP threads would fight it
            torch.set_num_threads(max(1, cpus - workers))
        block = min(options.commit_every or store.block_size, store.block_size)
        with store.writer(overwrite=options.overwrite, block_size=block) as writer:
            for vid, reason in summary.failures.items():
                writer.fail(vid, reason)
            if pool is not None and todo:
                pool.warm_up()
            bar = tqdm(total=len(todo), unit="video", disable=not options.progress, smoothing=0.1)
            summary.startup_s = time.perf_counter() - started
            cpu_start = time.process_time()
            pipeline = Pipeline(
                extractor.num_frames, extractor.encoder, pool, _decode_threads(options)
            )
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
    fast_path: str = "auto",
    sdpa_backend: str = "auto",
    num_frames: int | None = None,
    overwrite: bool = False,
    limit: int | None = None,
    shard_index: int = 0,
    num_shards: int = 1,
    progress: bool = True,
    decode_threads: int | None = None,
    storage_options: dict | None = None,
) -> PopulateSummary:
    """Add feature set ``name``, made by ``encoder``, to the videos store ``store_url`` holds.

    Each video is decoded again from the source populate recorded (its path and frame
    range, sampled to the store's T exactly as populate did) and encoded; MediaPipe never
    runs and no other stream is written. Videos that already have the set are skipped, so a
    rerun finishes a killed run; a missing file or an imported video is a recorded failure.
    ``shard_index`` of ``num_shards`` takes every n-th stored block, for processes that add
    the same set at once. Raises SchemaMismatchError if the set exists with another encoder.
    """
    options = PopulateOptions(
        encoder=encoder,
        num_frames=num_frames,
        device=device,
        batch_size=batch_size,
        pooling=pooling,
        flash_attention=flash_attention,
        revision=revision,
        fast_path=fast_path,
        sdpa_backend=sdpa_backend,
        overwrite=overwrite,
        limit=limit,
        progress=progress,
        storage_options=storage_options,
        decode_threads=decode_threads,
        shard_index=shard_index,
        num_shards=num_shards,
    )
    return add_local(store_url, name, options)


def add_local(store_url: str, name: str, options: PopulateOptions) -> PopulateSummary:
    """Prepare the add (the store's T, the set registered), then decode threads feed the
    encoder and each base block's features are committed as one block."""
    started = time.perf_counter()
    store, options = open_for_features(store_url, options)
    summary = PopulateSummary(feature_set=name)
    bar = None
    try:
        extractor = options.extractor()
        assert extractor.encoder is not None, "add_features always has an encoder"
        spec = extractor.streams[GEMMA_STREAM]
        run = prepare_features(store, name, extractor.fingerprint, spec, options, summary)
        if not run.todo and not summary.failures:
            summary.elapsed_s = summary.startup_s = time.perf_counter() - started
            return summary  # everything has the set: no writer, nothing written
        with store.feature_writer(name, overwrite=options.overwrite) as writer:
            for vid, reason in summary.failures.items():
                writer.fail(vid, reason)
            writer.flush()
            todo = run.todo
            bar = tqdm(total=len(todo), unit="video", disable=not options.progress, smoothing=0.1)
            summary.startup_s = time.perf_counter() - started
            cpu_start = time.process_time()
            pipeline = Pipeline(
                extractor.num_frames, extractor.encoder, None, _decode_threads(options)
            )
            with closing(pipeline.run(todo)) as jobs:
                stages.write_features(jobs, writer, summary, bar, run.blocks, run.recorded)
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


def _decode_threads(options: PopulateOptions) -> int:
    return options.decode_threads or max(2, min(8, (os.cpu_count() or 1) // 4))
