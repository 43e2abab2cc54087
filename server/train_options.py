"""What a training job runs with: the defaults for a small taught set, the options a client
gave, and the checks that the store can be trained on at all.

A taught store holds 10-30 takes per gloss from one sitting, and people sign to it another
day. Val takes from the same sitting are no guide there: they reach 100% within a few
epochs, and early stopping on them ends the run long before the model is good on another
day's takes. So a job trains for a fixed number of epochs with augmentation, no early
stopping, and serves the last epoch's weights (benchmarks/teach.py measures the figure on
real signs: 20 takes a gloss from one person, tested on another).
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

from fastapi import HTTPException

from featurestore import GEMMA_STREAM, LANDMARKS_STREAM, FeatureStore, VideoNotFoundError

from .schemas import TrainRequest
from .settings import Settings

SMALL_SET_DEFAULTS: dict[str, Any] = {
    "epochs": 100,
    "patience": 0,
    "augment": True,
    "lr": 3e-3,
    "batch_size": 16,
    "hidden_dim": 256,
    "dropout": 0.3,
    "fusion_type": "concat",
    "seed": 0,
    "label_smoothing": 0.1,
    "weight_decay": 0.01,
}
"""asl-train's defaults, but: a fixed epoch count without early stopping, and batches of 16
(a hundred takes make a few steps an epoch)."""


def default_modalities(store: FeatureStore) -> str:
    streams = store.schema.streams
    if GEMMA_STREAM in streams and LANDMARKS_STREAM in streams:
        return "both"
    return "visual" if GEMMA_STREAM in streams else "landmarks"


def job_options(request: TrainRequest, store: FeatureStore) -> dict[str, Any]:
    """Every option the job runs with: the client's, the rest from the defaults."""
    given = request.model_dump(exclude_none=True)
    return {**SMALL_SET_DEFAULTS, "modalities": default_modalities(store), **given}


def job_config(options: dict[str, Any], store: FeatureStore, settings: Settings) -> dict:
    """The job's `TrainConfig` (as keyword arguments) on this store."""
    url = store.url
    if "://" not in url or url.startswith("file://"):  # the job runs in its own folder
        url = os.path.abspath(url.removeprefix("file://"))
    return {
        **options,
        "store": url,  # storage options (credentials) reach the job by its environment
        "train_split": "train",
        "val_split": "val",
        "device": settings.device,
        "workers": 0,  # a few hundred rows held in memory: worker processes only cost
        "progress": False,
    }


def check_trainable(store: FeatureStore, options: dict[str, Any]) -> None:
    """422 saying what to add or change, unless the store can train the model asked for:
    its streams, train takes for every gloss, and takes of 2 glosses or more."""
    from training.store_checks import DataError, check_streams

    try:
        streams = check_streams(store, options["modalities"])
    except DataError as exc:
        raise HTTPException(422, str(exc)) from None
    counts: dict[str, Counter] = {}
    for vid in store.ids(streams=streams):
        try:
            e = store.entry(vid)
        except VideoNotFoundError:  # deleted since the list was made
            continue
        if e.label >= 0 and e.gloss:
            counts.setdefault(e.gloss, Counter())[e.split] += 1
    untrained = sorted(g for g, c in counts.items() if not c["train"])
    if untrained:
        shown = ", ".join(f"{g} ({dict(counts[g])})" for g in untrained[:5])
        raise HTTPException(
            422,
            f"{len(untrained)} gloss(es) have takes but none in train: {shown}. Add takes "
            "of them without a split (or with split=train), or delete them",
        )
    trained = sorted(g for g, c in counts.items() if c["train"])
    if len(trained) < 2:
        have = ", ".join(f"{g} ({sum(c.values())} takes)" for g, c in sorted(counts.items()))
        raise HTTPException(
            422,
            "training needs train takes of at least 2 glosses; this store has "
            f"{len(trained)}{': ' + have if have else ''}. Add takes of another gloss "
            "(POST /v1/videos)",
        )
