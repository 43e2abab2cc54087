"""Store features -> model -> top-k classes, for a batch of requests at once.

Everything here is synchronous and runs in the single model thread (the micro-batcher
hands it merged jobs), so torch never sees two forwards at once.
"""

from __future__ import annotations

import threading
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import cast

import numpy as np
import torch

from featurestore import FeatureStore
from model import Checkpoint

from .cache import FeatureCache
from .metrics import Metrics


@dataclass(frozen=True)
class PredictJob:
    """One request's rows: stored video ids, or arrays extracted from an upload, and the
    predictor (the model) the request took at its start."""

    predictor: Predictor
    top_k: int
    video_ids: tuple[str, ...] = ()
    arrays: dict[str, np.ndarray] | None = None

    def __len__(self) -> int:
        if self.arrays is not None:
            return len(next(iter(self.arrays.values())))
        return len(self.video_ids)


@dataclass(frozen=True)
class Ranked:
    """Top-k classes of one video, best first."""

    labels: list[int]
    glosses: list[str]
    probs: list[float]


def run_jobs(jobs: list[PredictJob]) -> list[list[Ranked] | BaseException]:
    """The micro-batcher's batch: jobs merged per model (a swap may leave jobs of the old
    model and of the new one in one batch), results in the jobs' order."""
    groups: dict[int, list[int]] = {}
    for i, job in enumerate(jobs):
        groups.setdefault(id(job.predictor), []).append(i)
    out: list[list[Ranked] | BaseException] = [[] for _ in jobs]
    for members in groups.values():
        results = jobs[members[0]].predictor.run_batch([jobs[i] for i in members])
        for i, result in zip(members, results, strict=True):
            out[i] = result
    return out


class Predictor:
    """Reads the streams the checkpoint was trained on (its feature set and the
    landmarks) and runs its model."""

    def __init__(
        self,
        checkpoint: Checkpoint,
        store: FeatureStore,
        cache: FeatureCache | None = None,
        metrics: Metrics | None = None,
        read_lock: AbstractContextManager | None = None,
    ) -> None:
        self.model = checkpoint.model.eval()
        self.labels = checkpoint.labels
        self.num_classes = checkpoint.config.num_classes
        self.visual = checkpoint.features
        self.streams = checkpoint.input_streams
        self.store = store
        self.cache = cache if cache is not None else FeatureCache(0)
        self.metrics = metrics
        self.device = next(self.model.parameters()).device
        # h5py handles are not safe to share between threads; zarr reads are. The server
        # gives every model and its own lookups one lock.
        if read_lock is None:
            read_lock = threading.Lock() if store.backend_name == "hdf5" else nullcontext()
        self._read_lock = read_lock

    # -- reading -------------------------------------------------------------------------
    def read(self, video_ids: list[str]) -> dict[str, np.ndarray]:
        """The model's input streams for many stored videos, stacked; one store read for
        all cache misses."""
        cached = {
            (v, s): self.cache.get(v, s) for v in dict.fromkeys(video_ids) for s in self.streams
        }
        missing = list(dict.fromkeys(v for (v, _), a in cached.items() if a is None))
        if missing:
            with self._read_lock:
                batch = self.store.get_many(missing, streams=self.streams)
            for i, vid in enumerate(batch.ids):
                for s in self.streams:
                    cached[(vid, s)] = self.cache.put(vid, s, batch.arrays[s][i])
        # every miss was filled above
        return {
            s: np.stack(cast(list[np.ndarray], [cached[(v, s)] for v in video_ids]))
            for s in self.streams
        }

    # -- the model ------------------------------------------------------------------------
    def probabilities(self, arrays: dict[str, np.ndarray]) -> torch.Tensor:
        """Softmax over classes, (n, num_classes) float32."""
        inputs = {
            s: torch.from_numpy(np.ascontiguousarray(arrays[s])).to(self.device)
            for s in self.streams
        }
        if self.visual is not None:
            inputs[self.visual] = inputs[self.visual].float()  # stored as float16
        with torch.inference_mode():
            logits = self.model.forward_batch(inputs, self.visual)
        return logits.float().softmax(dim=-1).cpu()

    def rank(self, probs: torch.Tensor, top_k: int) -> list[Ranked]:
        values, indices = probs.topk(min(top_k, self.num_classes), dim=-1)
        out = []
        for vals, idx in zip(values.tolist(), indices.tolist(), strict=True):
            out.append(Ranked(idx, [self.labels.get(i, str(i)) for i in idx], vals))
        return out

    # -- batches -------------------------------------------------------------------------
    def predict(self, job: PredictJob) -> list[Ranked]:
        """One job alone (what micro-batched results must equal)."""
        result = self.run_batch([job])[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def run_batch(self, jobs: list[PredictJob]) -> list[list[Ranked] | BaseException]:
        """All jobs in one forward; if that fails, each job alone so one bad job fails only
        itself."""
        try:
            return self._run_merged(jobs)
        except Exception as exc:
            if len(jobs) == 1:
                return [exc]
        results: list[list[Ranked] | BaseException] = []
        for job in jobs:
            try:
                results.append(self._run_merged([job])[0])
            except Exception as exc:
                results.append(exc)
        return results

    def _run_merged(self, jobs: list[PredictJob]) -> list[list[Ranked] | BaseException]:
        t0 = time.perf_counter()
        ids = [v for job in jobs if job.arrays is None for v in job.video_ids]
        stored = self.read(ids) if ids else {}
        parts, cursor = [], 0
        for job in jobs:
            if job.arrays is not None:
                parts.append({s: job.arrays[s] for s in self.streams})
            else:
                n = len(job.video_ids)
                parts.append({s: stored[s][cursor : cursor + n] for s in self.streams})
                cursor += n
        merged = {s: np.concatenate([p[s] for p in parts]) for s in self.streams}
        t1 = time.perf_counter()
        probs = self.probabilities(merged)
        t2 = time.perf_counter()
        if self.metrics is not None:
            self.metrics.read_seconds.observe(t1 - t0)
            self.metrics.model_seconds.observe(t2 - t1)
            self.metrics.batch_size.observe(len(probs))
            self.metrics.batch_requests.observe(len(jobs))
        out: list[list[Ranked] | BaseException] = []
        start = 0
        for job in jobs:
            out.append(self.rank(probs[start : start + len(job)], job.top_k))
            start += len(job)
        return out
