"""A run's checkpoints: `best.pt` (the weights and what rebuilds and checks the model) and
`last.pt` (the same plus the training state), and resuming a run from `last.pt`.

The file format is `model.checkpoint`'s; this module decides what a training run puts in
it and takes back out.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from featurestore import FeatureStore
from model import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from training.config import TrainConfig
from training.store_checks import DataError, checkpoint_stream_specs

if TYPE_CHECKING:
    from torch import nn

    from training.loader import StoreLoader
    from training.setup import Optimization


@dataclass
class Progress:
    """Where a run stands; `last.pt` keeps it so a resumed run continues from it."""

    global_step: int = 0
    epoch: int = 0
    epoch_step: int = 0
    """Optimizer steps taken in the current epoch."""
    best_top1: float = -1.0
    bad_epochs: int = 0
    """Epochs since val top-1 last improved (early stopping counts these)."""


def load_resume(path: str | None, store: FeatureStore) -> Checkpoint | None:
    """The checkpoint to resume from (None without `--resume`), refused with a DataError
    if it holds no training state or does not fit the store."""
    if not path:
        return None
    try:
        ckpt = load_checkpoint(path)
    except CheckpointError as exc:
        raise DataError(f"cannot resume: {exc}") from exc
    if not ckpt.state:
        raise DataError(
            f"cannot resume from {path}: it holds no training state (resume from last.pt)"
        )
    ckpt.check_store(store)
    if store.labels and max(store.labels) >= ckpt.config.num_classes:
        raise DataError(
            f"cannot resume from {path}: the store now has label {max(store.labels)}, "
            f"the model only {ckpt.config.num_classes} classes (start a new run)"
        )
    return ckpt


def training_state(progress: Progress, opt: Optimization, loader: StoreLoader, cuda: bool) -> dict:
    """Everything beyond the weights that a resumed run needs to continue exactly."""
    return {
        "optimizer": opt.optimizer.state_dict(),
        "scheduler": opt.scheduler.state_dict(),
        "scaler": opt.scaler.state_dict(),
        **dataclasses.asdict(progress),
        "loader": loader.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state() if cuda else None,
    }


def restore(
    ckpt: Checkpoint, model: nn.Module, opt: Optimization, loader: StoreLoader, cuda: bool
) -> Progress:
    """Load a checkpoint's weights and training state into a freshly set-up run."""
    model.load_state_dict(ckpt.model.state_dict())
    s = ckpt.state
    opt.optimizer.load_state_dict(s["optimizer"])
    opt.scheduler.load_state_dict(s["scheduler"])
    opt.scaler.load_state_dict(s["scaler"])
    progress = Progress(**{f.name: s[f.name] for f in dataclasses.fields(Progress)})
    loader.load_state_dict(s["loader"])
    torch.set_rng_state(s["torch_rng"])
    if s.get("cuda_rng") is not None and cuda:
        torch.cuda.set_rng_state(s["cuda_rng"])
    return progress


class RunCheckpoints:
    """Writes a run's checkpoints into its output folder, each with what rebuilds the
    model and checks it against a store: labels, feature set and encoder, landmark
    layout, frames, stream specs, and the run's arguments."""

    def __init__(
        self,
        out: Path,
        cfg: TrainConfig,
        store: FeatureStore,
        streams: list[str],
        features: str | None,
    ):
        self.out, self.cfg, self.store = out, cfg, store
        self.streams, self.features = streams, features
        self.labels = store.labels

    def save(self, name: str, model: nn.Module, metrics: dict, state: dict | None) -> None:
        schema = self.store.schema
        save_checkpoint(
            self.out / name,
            model,
            labels=self.labels,
            features=self.features,
            encoder=schema.fingerprint(self.features) if self.features else {},
            landmark_layout=schema.landmark_layout or None,
            num_frames=schema.num_frames,
            streams=checkpoint_stream_specs(self.store, self.streams),
            train_args=_jsonable(dataclasses.asdict(self.cfg)),
            metrics=metrics,
            state=state,
        )


def _jsonable(d: dict) -> dict:
    return json.loads(json.dumps(d, default=str))
