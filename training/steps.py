"""The pieces a training step and an evaluation pass are made of, outside the loop so
asl-eval uses them without the trainer: the device, CPU threads, the LR schedule, moving a
batch, the model's forward on it, an all-zero batch for a rank out of rows, one pass of
evaluation."""

from __future__ import annotations

import math
import os
from typing import Any

import torch
import torch.nn.functional as F

from featurestore import GEMMA_STREAM, FeatureStore
from model import model_inputs
from training.loader import StoreLoader
from training.metrics import Tally
from training.store_checks import DataError


def pick_device(name: str | None) -> str:
    """The asked-for device, refused if it is not there; else CUDA, MPS or the CPU."""
    if name:
        if name.startswith("cuda") and not torch.cuda.is_available():
            raise DataError("--device cuda asked for, but CUDA is not available")
        if name == "mps" and not torch.backends.mps.is_available():
            raise DataError("--device mps asked for, but MPS is not available")
        return name
    if torch.cuda.is_available():
        return "cuda"
    return "mps" if torch.backends.mps.is_available() else "cpu"


def leave_cores_for_workers(workers: int) -> None:
    """On a CPU, torch's intra-op threads spin against loader workers on the same cores:
    on 2 cores with 2 workers training ran 4x slower (80 instead of 350 samples/s). The
    model gets the cores the workers leave, at least one."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    want = max(1, (cores or 1) - workers)
    if workers and torch.get_num_threads() > want:
        torch.set_num_threads(want)


def warmup_cosine(warmup_steps: int, total_steps: int):
    """LR multiplier: linear warm-up to 1, then cosine decay to 0 at total_steps."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(warmup_steps, 1)
        progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
        return 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def to_device(batch: dict, device: str, streams: list[str]) -> dict:
    """The batch's streams and labels on `device`; the video ids come along for messages."""
    out = {s: batch[s].to(device, non_blocking=True) for s in streams}
    out["label"] = batch["label"].to(device, non_blocking=True)
    out["ids"] = list(batch.get("ids", []))
    return out


def forward(model: torch.nn.Module, batch: dict, visual: str | None = GEMMA_STREAM) -> torch.Tensor:
    """Logits of `model` (a HybridASLModel or its DDP wrapper) for a batch keyed by stream
    name, feature set `visual` feeding its visual input; through the wrapper's call, so
    DDP syncs the gradients."""
    return model(**model_inputs(batch, visual))


def dummy_batch(store: FeatureStore, streams: list[str]) -> dict[str, Any]:
    """One all-zero row: what a rank with no rows left feeds DDP (with weight 0)."""
    specs = {s: store.schema.spec(s) for s in streams}
    batch: dict = {
        s: torch.zeros((1, *spec.shape), dtype=getattr(torch, spec.dtype))
        for s, spec in specs.items()
    }
    batch["label"] = torch.zeros(1, dtype=torch.int64)
    batch["ids"] = []
    return batch


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    loader: StoreLoader,
    streams: list[str],
    device: str,
    num_classes: int,
    amp_dtype: torch.dtype | None = None,
    visual: str | None = GEMMA_STREAM,
) -> Tally:
    """One pass over a loader in eval mode (feature set `visual` as the visual input);
    the tally is this rank's share."""
    was_training = model.training
    model.eval()
    tally = Tally(num_classes)
    for batch in loader:
        b = to_device(batch, device, streams)
        with torch.autocast(device.split(":")[0], dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = forward(model, b, visual).float()
        tally.update(logits, b["label"], F.cross_entropy(logits, b["label"], reduction="sum"))
    model.train(was_training)
    return tally
