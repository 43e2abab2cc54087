"""MediaPipe Holistic landmarks per frame, and a process pool that runs them in parallel.

They fill the layout ``featurestore.layout`` defines (pose, both hands, an optional face
subset); a part not found in a frame is zeros with mask False.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from ..layout import FACE_SUBSET, landmark_layout

__all__ = ["LandmarkExtractor", "LandmarkPool"]

_RESULT_FIELDS = {
    "pose": "pose_landmarks",
    "left_hand": "left_hand_landmarks",
    "right_hand": "right_hand_landmarks",
    "face": "face_landmarks",
}


class LandmarkExtractor:
    """Holistic in tracking mode, reset per clip so a clip's result never depends on the last."""

    def __init__(self, face: bool = False, model_complexity: int = 1):
        import mediapipe as mp

        self.face = face
        self.layout = landmark_layout(face)
        self._holistic = mp.solutions.holistic.Holistic(
            static_image_mode=False, model_complexity=model_complexity
        )
        self.frames_processed = 0

    @property
    def num_points(self) -> int:
        return sum(self.layout["sizes"])

    def extract(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 RGB (T, H, W, 3) -> landmarks float32 (T, K, 3), mask bool (T, P).

        A frame identical to the one before (the padding of short clips) reuses its result.
        """
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(
                f"expected uint8 frames (T, H, W, 3), got {frames.dtype} {frames.shape}"
            )
        sizes = self.layout["sizes"]
        points = np.zeros((len(frames), sum(sizes), 3), np.float32)
        mask = np.zeros((len(frames), len(sizes)), bool)
        self._holistic.reset()
        for t, frame in enumerate(frames):
            if t and np.array_equal(frame, frames[t - 1]):
                points[t], mask[t] = points[t - 1], mask[t - 1]
                continue
            self._fill(self._holistic.process(np.ascontiguousarray(frame)), points[t], mask[t])
            self.frames_processed += 1
        return points, mask

    def track(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One frame of a continuous recording, tracked from the frames before it (no reset:
        call `reset` between recordings): landmarks (K, 3) and mask (P,)."""
        frame = np.asarray(frame)
        if frame.ndim != 3 or frame.shape[-1] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected a uint8 frame (H, W, 3), got {frame.dtype} {frame.shape}")
        sizes = self.layout["sizes"]
        points = np.zeros((sum(sizes), 3), np.float32)
        mask = np.zeros(len(sizes), bool)
        self._fill(self._holistic.process(np.ascontiguousarray(frame)), points, mask)
        self.frames_processed += 1
        return points, mask

    def reset(self) -> None:
        """Forget the tracked person: the next frame starts a new recording."""
        self._holistic.reset()

    def _fill(self, result: object, points: np.ndarray, mask: np.ndarray) -> None:
        offset = 0
        for p, (name, size) in enumerate(
            zip(self.layout["parts"], self.layout["sizes"], strict=True)
        ):
            found = getattr(result, _RESULT_FIELDS[name])
            if found is not None:
                xyz = np.array([(lm.x, lm.y, lm.z) for lm in found.landmark], np.float32)
                points[offset : offset + size] = xyz[list(FACE_SUBSET)] if name == "face" else xyz
                mask[p] = True
            offset += size

    def close(self) -> None:
        self._holistic.close()

    def __enter__(self) -> LandmarkExtractor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------
# process pool: Holistic is single-clip sequential and CPU-bound, so clips run in processes

_worker: LandmarkExtractor | None = None


def _exit_when_orphaned(parent_pid: int) -> None:
    """A pool worker whose parent was killed (SIGKILL skips all clean-up) exits by itself."""
    while True:
        time.sleep(1.0)
        try:
            os.kill(parent_pid, 0)
        except ProcessLookupError:
            os._exit(0)
        except PermissionError:
            pass


#: Line starts of MediaPipe's C++ start-up chatter, which it prints for every clip (each
#: reset restarts its graph) and no switch turns off.
MEDIAPIPE_CHATTER = (
    b"W0000 ",
    b"I0000 ",
    b"INFO: Created TensorFlow",
    b"WARNING: All log messages before",
)


def _filter_native_stderr() -> None:
    """Drop MediaPipe's C++ start-up chatter (no switch turns it off); keep real errors."""
    read_fd, write_fd = os.pipe()
    original = os.dup(2)
    os.dup2(write_fd, 2)
    os.close(write_fd)

    def pump() -> None:
        with os.fdopen(read_fd, "rb") as lines:
            for line in lines:
                if not line.startswith(MEDIAPIPE_CHATTER):
                    os.write(original, line)

    threading.Thread(target=pump, daemon=True).start()


def _init_worker(face: bool, model_complexity: int, parent_pid: int) -> None:
    global _worker
    threading.Thread(target=_exit_when_orphaned, args=(parent_pid,), daemon=True).start()
    _filter_native_stderr()
    _worker = LandmarkExtractor(face=face, model_complexity=model_complexity)


def _extract_in_worker(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    assert _worker is not None, "the pool initializer sets it"
    start, cpu = time.perf_counter(), time.process_time()
    points, mask = _worker.extract(frames)
    return points, mask, time.perf_counter() - start, time.process_time() - cpu


def _context() -> multiprocessing.context.BaseContext:
    """Never fork (the parent holds torch and PyAV threads). On Linux a forkserver that has
    imported MediaPipe once forks ready workers: warm-up takes half as long."""
    if not sys.platform.startswith("linux"):
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["mediapipe", __name__])
    return ctx


class LandmarkPool:
    """``workers`` processes, each with its own Holistic.

    ``submit(frames)`` returns a Future of ``(landmarks, mask, wall seconds, CPU seconds)``
    spent on the clip in the worker (CPU counts MediaPipe's own threads too).
    """

    def __init__(self, workers: int, face: bool = False, model_complexity: int = 1):
        self.workers = max(1, int(workers))
        self.layout = landmark_layout(face)
        self._initargs = (face, model_complexity, os.getpid())
        self._lock = threading.Lock()
        self._pool = self._new_pool()
        self._warming: list[Future] = []
        self.restarts = 0

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=_context(),
            initializer=_init_worker,
            initargs=self._initargs,
        )

    def submit(self, frames: np.ndarray) -> Future:
        """Queue one clip's frames; a pool broken by a dead worker is replaced once."""
        with self._lock:
            try:
                return self._pool.submit(_extract_in_worker, frames)
            except BrokenProcessPool:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._new_pool()
                self.restarts += 1
                return self._pool.submit(_extract_in_worker, frames)

    def start(self) -> None:
        """Start every worker now without waiting (MediaPipe loads in about a second)."""
        blank = np.zeros((1, 32, 32, 3), np.uint8)
        self._warming = [self.submit(blank) for _ in range(self.workers)]

    def warm_up(self) -> None:
        """Start every worker (unless ``start`` did) and wait until all are ready, so that
        start-up is not billed to the first clips."""
        if not self._warming:
            self.start()
        for future in self._warming:
            future.result()
        self._warming = []

    def close(self, cancel: bool = False) -> None:
        with self._lock:
            self._pool.shutdown(wait=True, cancel_futures=cancel)

    def __enter__(self) -> LandmarkPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close(cancel=exc[0] is not None)
