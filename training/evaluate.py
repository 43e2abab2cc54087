"""Evaluate a checkpoint on a split of a store: top-1, top-5, per-class accuracy, a
confusion matrix (PNG) and a JSON report."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

from featurestore import FeatureStore, SchemaMismatchError, open_store
from model import Checkpoint, CheckpointError, load_checkpoint
from training.loader import StoreLoader
from training.metrics import Tally
from training.plots import plot_confusion
from training.steps import pick_device, to_device
from training.store_checks import DataError, split_labels


def _check_labels(ckpt: Checkpoint, store: FeatureStore, split: str) -> set[int]:
    """Labels of the split the checkpoint can be scored on; refuses a label map that
    names the same label differently."""
    used = {lab for lab in split_labels(store, split, ckpt.input_streams).values() if lab >= 0}
    clash = {
        lab: (ckpt.labels[lab], store.labels[lab])
        for lab in used
        if lab in ckpt.labels and lab in store.labels and ckpt.labels[lab] != store.labels[lab]
    }
    if clash:
        raise DataError(
            f"label map of store {store.url} disagrees with the checkpoint's: {dict(list(clash.items())[:5])}"
        )
    unknown = sorted(lab for lab in used if lab >= ckpt.config.num_classes)
    if unknown:
        warnings.warn(
            f"{len(unknown)} classes of {split!r} are unknown to the checkpoint and are not scored",
            stacklevel=2,
        )
    return used - set(unknown)


def evaluate_checkpoint(
    store_url: str,
    checkpoint: str,
    split: str = "test",
    out: str | None = None,
    batch_size: int = 64,
    workers: int = 0,
    device: str | None = None,
    storage_options: dict | None = None,
) -> dict:
    """Score `checkpoint` on `split`; writes report.json and confusion.png to `out`."""
    try:
        ckpt = load_checkpoint(checkpoint)
    except CheckpointError as exc:
        raise DataError(str(exc)) from exc
    store = open_store(store_url, storage_options=storage_options)
    try:
        ckpt.check_store(store)
    except (CheckpointError, SchemaMismatchError) as exc:
        raise DataError(f"checkpoint {checkpoint} does not fit this store: {exc}") from exc
    if not store.splits().get(split):
        raise DataError(
            f"split {split!r} of store {store_url} is empty or missing; its splits: {store.splits()}"
        )
    streams = ckpt.input_streams
    if not store.ids(split, streams=streams):
        raise DataError(
            f"no video of split {split!r} of store {store_url} holds feature set {ckpt.features!r}, "
            f"which checkpoint {checkpoint} reads"
        )
    scored = _check_labels(ckpt, store, split)
    device = pick_device(device)
    model = ckpt.model.to(device).eval()
    loader = StoreLoader(
        store, split, batch_size, streams=streams, shuffle=False, num_workers=workers
    )
    num_classes = ckpt.config.num_classes
    tally, unscored = Tally(num_classes), 0
    with torch.no_grad():
        for batch in loader:
            keep = torch.tensor([int(lab) in scored for lab in batch["label"]], dtype=torch.bool)
            unscored += int((~keep).sum())
            if not keep.any():
                continue
            b = to_device({k: v[keep] for k, v in batch.items() if k != "ids"}, device, streams)
            logits = model.forward_batch(b, ckpt.features).float()
            tally.update(logits, b["label"], F.cross_entropy(logits, b["label"], reduction="sum"))
    summary = tally.summary(ckpt.labels)
    report = {
        "store": store_url,
        "checkpoint": str(checkpoint),
        "split": split,
        **{k: summary[k] for k in ("count", "top1", "top5", "loss")},
        "unscored_rows": unscored,
        "skipped_rows": dict(loader.skipped),
        "per_class": summary["per_class"],
        "confusion": tally.confusion.tolist(),
        "labels": {str(k): v for k, v in sorted(ckpt.labels.items())},
        "features": ckpt.features,
        "encoder": ckpt.encoder,
    }
    if out:
        out_dir = Path(out)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "report.json").write_text(json.dumps(report, indent=1))
        names = [ckpt.labels.get(i, str(i)) for i in range(num_classes)]
        plot_confusion(tally.confusion, names, out_dir / "confusion.png")
    return report
