"""The overlapped extraction pipeline: decode threads -> landmark processes + encoder thread.

Decoding (PyAV releases the GIL) runs in a thread pool, Holistic in ``workers``
processes, the encoder in one thread that batches the frames of several videos per
forward pass. A bounded number of videos is in flight, so memory is set by the buffer
sizes, never by the size of the run. Finished videos (or their failures) come out of
``run`` in completion order, in the caller's thread, which owns the store writer.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Generator, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from ..manifest import ManifestEntry
from . import stages
from .gemma import GemmaEncoder
from .holistic import LandmarkPool
from .stages import Job

__all__ = ["Pipeline"]

log = logging.getLogger(__name__)
_LINGER_S = 0.05  # how long the encoder waits to fill a batch before running a partial one


class Pipeline:
    """Runs entries through decode, landmarks and encoder stages that overlap."""

    def __init__(
        self,
        num_frames: int,
        encoder: GemmaEncoder | None,
        pool: LandmarkPool | None,
        decode_threads: int = 2,
        max_inflight: int | None = None,
    ):
        self.num_frames = num_frames
        self.encoder = encoder
        self.pool = pool
        batch_videos = 1 if encoder is None else -(-encoder.batch_size // num_frames)
        workers = 0 if pool is None else pool.workers
        self.max_inflight = max_inflight or (2 * workers + 2 * batch_videos + decode_threads)
        self.stage_seconds: dict[str, float] = defaultdict(float)
        self.frames_encoded = 0
        self.worker_cpu_seconds = 0.0
        """CPU time the landmark workers spent on this run's clips."""
        self._decode_threads = decode_threads
        self._slots = threading.Semaphore(self.max_inflight)
        self._done: queue.Queue[Job] = queue.Queue()
        self._to_encode: queue.Queue[Job | None] = queue.Queue()
        self._stop = threading.Event()
        self._lock = threading.Lock()

    # -- stages ---------------------------------------------------------------------------
    def _finish_part(self, job: Job, error: str | None = None) -> None:
        with self._lock:
            if error and job.error is None:
                job.error = error
            job._remaining -= 1
            finished = job._remaining <= 0
        if finished:
            job.clip = None  # frames are no longer needed; free them before the write
            self._done.put(job)

    def _decode(self, job: Job) -> None:
        start = time.perf_counter()
        job.clip, error = stages.decode(job.entry, self.num_frames)
        self._add_time("decode", time.perf_counter() - start)
        if job.clip is None:  # and error says why
            job._remaining = 1
            return self._finish_part(job, error)
        job.source = stages.decoded_info(job.entry, job.clip)
        job._remaining = (self.pool is not None) + (self.encoder is not None)
        if self.pool is not None:
            self._submit_landmarks(job, self.pool)
        if self.encoder is not None:
            self._to_encode.put(job)

    def _submit_landmarks(self, job: Job, pool: LandmarkPool) -> None:
        try:
            future = pool.submit(job.frames)
        except Exception as exc:  # pool shut down by an interrupt, or could not restart
            return self._finish_part(job, f"landmarks: {job.entry.path}: {exc}")
        future.add_done_callback(lambda f: self._landmarks_done(job, f))

    def _landmarks_done(self, job: Job, future: Future) -> None:
        if future.cancelled():
            return self._finish_part(job, "cancelled: run interrupted")
        try:
            job.landmarks, job.mask, seconds, cpu = future.result()
            self._add_time("landmarks", seconds)
            with self._lock:
                self.worker_cpu_seconds += cpu
        except BrokenProcessPool:
            return self._finish_part(job, f"landmarks: {job.entry.path}: worker process died")
        except Exception as exc:
            return self._finish_part(job, f"landmarks: {job.entry.path}: {exc}")
        self._finish_part(job)

    def _next_batch(self, batch_size: int) -> tuple[list[Job], bool]:
        """Block for one video, then gather more until a batch of frames is full."""
        first = self._to_encode.get()
        if first is None:
            return [], True
        batch, frames = [first], len(first.frames)
        deadline = time.monotonic() + _LINGER_S
        while frames < batch_size:
            try:
                job = self._to_encode.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if job is None:
                return batch, True
            batch.append(job)
            frames += len(job.frames)
        return batch, False

    def _encode_loop(self, encoder: GemmaEncoder) -> None:
        last = False
        while not last:
            batch, last = self._next_batch(encoder.batch_size)
            if batch and self._stop.is_set():
                for job in batch:
                    self._finish_part(job, "cancelled: run interrupted")
            elif batch:
                self._encode(batch, encoder)

    def _encode(self, batch: list[Job], encoder: GemmaEncoder) -> None:
        videos = [job.frames for job in batch]
        done = stages.encode(encoder, videos, [job.entry.path for job in batch])
        if done.frames:
            self._add_time("encoder", done.seconds)
        self.frames_encoded += done.frames
        for job, feats, error in zip(batch, done.features, done.errors, strict=True):
            job.gemma = feats
            self._finish_part(job, error)

    def _add_time(self, stage: str, seconds: float) -> None:
        with self._lock:
            self.stage_seconds[stage] += seconds

    # -- driving --------------------------------------------------------------------------
    def _feed(self, entries: list[ManifestEntry], decoder: ThreadPoolExecutor) -> None:
        for entry in entries:
            while not self._slots.acquire(timeout=0.1):
                if self._stop.is_set():
                    return
            if self._stop.is_set():
                return
            decoder.submit(self._decode, Job(entry))

    def run(self, entries: Iterable[ManifestEntry]) -> Generator[Job, None, None]:
        """Yield every entry's finished Job (features or error), in completion order.

        Closing the generator early (an exception or Ctrl-C in the consumer) stops the
        stages and drops the videos still in flight; they were never committed.
        """
        entries = list(entries)
        decoder = ThreadPoolExecutor(self._decode_threads, thread_name_prefix="decode")
        encoder_thread = None
        if self.encoder is not None:
            encoder_thread = threading.Thread(
                target=self._encode_loop, args=(self.encoder,), name="encoder", daemon=True
            )
            encoder_thread.start()
        feeder = threading.Thread(target=self._feed, args=(entries, decoder), daemon=True)
        feeder.start()
        try:
            for _ in range(len(entries)):
                job = self._done.get()
                self._slots.release()
                yield job
        finally:
            self._stop.set()
            feeder.join()
            decoder.shutdown(wait=True, cancel_futures=True)
            self._to_encode.put(None)
            if encoder_thread is not None:
                encoder_thread.join()
