"""The model being served and the one before it; swapping and rolling back.

A swap replaces one reference. A request takes the current model once, at its start, and
uses it to its end (its predictor travels with its jobs through the micro-batcher), so
requests in flight finish on the old model, new ones get the new one, and none fails
because of a swap. Which model is served is recorded in the runs folder, so a restart
serves it again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from fastapi import HTTPException

from model import Checkpoint

from .predictor import Predictor
from .runs import record_served

log = logging.getLogger("server")

NO_MODEL = "no model yet: add takes and train (POST /v1/videos, then POST /v1/train)"


@dataclass(frozen=True)
class ServedModel:
    """A loaded checkpoint, its predictor, where it came from."""

    checkpoint: Checkpoint
    predictor: Predictor
    path: str | None
    job_id: str | None = None

    def summary(self) -> dict:
        ckpt = self.checkpoint
        return {
            "job_id": self.job_id,
            "path": self.path,
            "modalities": ckpt.config.modalities,
            "num_classes": ckpt.config.num_classes,
            "labels": {str(k): v for k, v in sorted(ckpt.labels.items())},
            "val_top1": ckpt.metrics.get("val_top1"),
        }


class ModelSlot:
    """The served model (None until one exists) and the previous one."""

    def __init__(self, current: ServedModel | None, runs: Path | None = None) -> None:
        self.current = current
        self.previous: ServedModel | None = None
        self.runs = runs

    def get(self) -> ServedModel:
        """The model a request uses from start to end; 503 while there is none."""
        model = self.current
        if model is None:
            raise HTTPException(503, NO_MODEL)
        return model

    def swap(self, new: ServedModel) -> None:
        self.previous, self.current = self.current, new
        self._record()
        log.info("now serving %s", new.path)

    def rollback(self) -> ServedModel:
        """Back to the previous model (the one it replaces becomes the previous)."""
        back = self.previous
        if back is None:
            raise HTTPException(409, "no previous model to return to")
        self.previous, self.current = self.current, back
        self._record()
        log.info("rolled back to %s", back.path)
        return back

    def _record(self) -> None:
        if self.runs is None or self.current is None:
            return
        try:
            record_served(self.runs, self.current.path, self.current.job_id)
        except OSError:  # the model is served all the same; a restart picks the newest
            log.warning("could not record the served model in %s", self.runs, exc_info=True)
