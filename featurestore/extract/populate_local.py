"""``populate``: every entry's features into a store on this machine, resumable, never
aborted by one clip.

The run is planned as for Ray (``plan``: schema checked against the store before anything
is extracted, label map merged add-only, committed videos skipped), then run through the
overlapped local ``Pipeline``. A run stopped by Ctrl-C or a kill is finished by running it
again. Each failed video is recorded in the store with its reason.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from contextlib import closing

import torch
from tqdm import tqdm

from . import stages
from .clip import ClipExtractor
from .gemma import GemmaEncoder
from .holistic import LandmarkPool
from .manifest import ManifestEntry
from .pipeline import Pipeline
from .plan import PopulateOptions, plan
from .summary import PopulateSummary

__all__ = ["populate", "PopulateSummary"]

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
