"""Bulk population: every entry's features into a store, resumable, never aborted by one clip.

Before anything is extracted the run's schema (encoder fingerprint, T, streams, landmark
layout) is checked against the store, and its label map merged add-only. Videos already
committed are skipped, so a run stopped by Ctrl-C or a kill is finished by running it
again. Each failed video is recorded in the store with its reason.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Iterable
from contextlib import closing
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from ..errors import InvalidVideoError, StoreError
from ..store import create_store, open_store
from .clip import ClipExtractor
from .encoder import GemmaEncoder
from .landmarks import LandmarkPool
from .manifest import Entry, assign_labels
from .pipeline import Job, Pipeline

__all__ = ["populate", "PopulateSummary"]

log = logging.getLogger(__name__)
_COMMIT_SECONDS = 60.0  # a slow run still commits at least this often


@dataclass
class PopulateSummary:
    """What one populate run did."""

    done: int = 0
    """Videos extracted and committed in this run."""
    skipped: int = 0
    """Videos already in the store, not redone."""
    failed: dict[str, str] = field(default_factory=dict)
    """video id -> "reason: detail" for every video that could not be extracted."""
    elapsed_s: float = 0.0
    startup_s: float = 0.0
    """Of ``elapsed_s``, the time before the first video entered the pipeline (model and
    worker start-up, store checks)."""
    interrupted: bool = False
    stage_seconds: dict[str, float] = field(default_factory=dict)
    """Busy time per stage (decode, landmarks summed over workers, encoder, write)."""
    frames_encoded: int = 0
    cpu_s: float = 0.0
    """CPU time of the run after start-up: this process (all its threads) plus the
    landmark workers' time on clips. Unlike wall time it does not grow when other
    programs share the cores."""

    @property
    def failed_by_reason(self) -> dict[str, int]:
        return dict(Counter(reason.split(":", 1)[0] for reason in self.failed.values()))

    @property
    def videos_per_s(self) -> float:
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_json(self) -> dict:
        return {
            "done": self.done,
            "skipped": self.skipped,
            "failed": len(self.failed),
            "failed_by_reason": self.failed_by_reason,
            "failures": self.failed,
            "elapsed_s": round(self.elapsed_s, 3),
            "startup_s": round(self.startup_s, 3),
            "videos_per_s": round(self.videos_per_s, 3),
            "interrupted": self.interrupted,
            "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()},
            "frames_encoded": self.frames_encoded,
            "cpu_s": round(self.cpu_s, 3),
        }

    def format(self) -> str:
        state = "interrupted" if self.interrupted else "finished"
        lines = [
            f"populate {state} in {self.elapsed_s:.1f}s ({self.startup_s:.1f}s start-up): {self.done} done "
            f"({self.videos_per_s:.2f} videos/s), {self.skipped} skipped (already in the store), "
            f"{len(self.failed)} failed"
        ]
        for reason, count in sorted(self.failed_by_reason.items()):
            lines.append(f"  failed {reason}: {count}")
        for vid, reason in list(self.failed.items())[:10]:
            lines.append(f"    {vid}: {reason}")
        if len(self.failed) > 10:
            lines.append(f"    ... {len(self.failed) - 10} more (see the store's failures)")
        if self.stage_seconds:
            busy = ", ".join(f"{k} {v:.1f}s" for k, v in sorted(self.stage_seconds.items()))
            lines.append(f"  stage busy time: {busy}")
        return "\n".join(lines)


def _existing_labels(store_url: str, storage_options: dict | None) -> dict[int, str]:
    """The store's label map, or {} when there is no store yet (create_store then reports
    anything worse than absence, such as a folder that is not a store)."""
    try:
        return open_store(store_url, storage_options=storage_options).labels
    except (StoreError, FileNotFoundError):
        return {}


def _source(job: Job) -> dict:
    e, info = job.entry, job.source
    return {
        "path": str(e.path),
        "frame_start": e.frame_start,
        "frame_end": e.frame_end,
        **info,
    }


def populate(
    store_url: str,
    entries: Iterable[Entry],
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
    started = time.perf_counter()
    cpus = os.cpu_count() or 1
    workers = cpus if workers is None else max(1, int(workers))
    pool = LandmarkPool(workers, face=face) if landmarks else None
    if pool is not None:
        pool.start()  # the workers load MediaPipe while the encoder loads
    threads = torch.get_num_threads()
    summary = PopulateSummary()
    bar = None
    try:
        extractor = ClipExtractor(
            encoder=encoder,
            num_frames=num_frames,
            device=device,
            landmarks=landmarks,
            face=face,
            pooling=pooling,
            flash_attention=flash_attention,
            batch_size=batch_size,
            revision=revision,
        )
        store, todo = _prepare(
            store_url, entries, extractor, labels, limit, overwrite, summary, storage_options
        )
        if pool is not None and extractor.encoder is not None and device == "cpu":
            # Holistic keeps the cores busy; torch's spinning OpenMP threads would fight it
            torch.set_num_threads(max(1, cpus - workers))
        block = min(commit_every or store.block_size, store.block_size)
        with store.writer(overwrite=overwrite, block_size=block) as writer:
            for vid, reason in summary.failed.items():
                writer.fail(vid, reason)
            if pool is not None and todo:
                pool.warm_up()
            bar = tqdm(total=len(todo), unit="video", disable=not progress, smoothing=0.1)
            summary.startup_s = time.perf_counter() - started
            cpu_start = time.process_time()
            threads_for_decode = decode_threads or max(2, min(8, cpus // 4))
            pipeline = Pipeline(num_frames, extractor.encoder, pool, threads_for_decode)
            _drain(pipeline, todo, writer, summary, bar, extractor)
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


def _prepare(store_url, entries, extractor, labels, limit, overwrite, summary, storage_options):
    """Open or create the store (refusing a mismatch), merge labels, and pick what to do."""
    entries = list(entries)
    entries, label_map = assign_labels(entries, _existing_labels(store_url, storage_options))
    if labels:
        label_map = {**label_map, **labels}
    entries = entries[:limit] if limit is not None else entries
    store = create_store(
        store_url, extractor.schema(label_map), exist_ok=True, storage_options=storage_options
    )
    committed = set() if overwrite else set(store.ids())
    todo = []
    for e in entries:
        if e.video_id in committed:
            summary.skipped += 1
        elif e.error:
            summary.failed[e.video_id] = e.error
        else:
            todo.append(e)
    return store, todo


def _drain(pipeline: Pipeline, todo, writer, summary: PopulateSummary, bar, extractor) -> None:
    """Write each finished video in this thread (the writer's), committing along the way."""
    with closing(pipeline.run(todo)) as jobs:
        _write_all(jobs, writer, summary, bar, extractor)


def _write_all(jobs, writer, summary: PopulateSummary, bar, extractor) -> None:
    last_commit = time.monotonic()
    write_s = 0.0
    for job in jobs:
        vid = job.entry.video_id
        start = time.perf_counter()
        if job.error is None:
            arrays = {}
            if job.gemma is not None:
                arrays["gemma"] = job.gemma.astype(extractor.streams["gemma"].dtype)
            if job.landmarks is not None:
                arrays["landmarks"], arrays["landmark_mask"] = job.landmarks, job.mask
            try:
                writer.put(
                    vid,
                    arrays,
                    label=job.entry.label if job.entry.label is not None else -1,
                    gloss=job.entry.gloss,
                    split=job.entry.split,
                    source=_source(job),
                )
                summary.done += 1
            except InvalidVideoError as exc:
                job.error = f"write: {exc}"
        if job.error is not None:
            writer.fail(vid, job.error)
            summary.failed[vid] = job.error
            bar.set_postfix(failed=len(summary.failed), refresh=False)
        if writer.pending and time.monotonic() - last_commit > _COMMIT_SECONDS:
            writer.flush()
            last_commit = time.monotonic()
        write_s += time.perf_counter() - start
        bar.update(1)
    summary.stage_seconds["write"] = write_s
