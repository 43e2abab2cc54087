"""The store streams the model reads, and how a batch keyed by them becomes the model's
arguments: written once here, for the trainer, asl-eval and the server alike.

The names must equal featurestore's GEMMA_STREAM, LANDMARKS_STREAM and
LANDMARK_MASK_STREAM (a test checks it); they are repeated because model/ imports torch
only.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

GEMMA_STREAM = "gemma"
LANDMARKS_STREAM = "landmarks"
LANDMARK_MASK_STREAM = "landmark_mask"
INPUT_STREAMS = (GEMMA_STREAM, LANDMARKS_STREAM, LANDMARK_MASK_STREAM)


def model_inputs(batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor | None]:
    """`HybridASLModel.forward`'s keyword arguments from a batch keyed by stream name.

    Other keys ("label", "ids") are left out and a missing stream is None. Calling
    `model(**model_inputs(batch))` also works through a DistributedDataParallel wrapper,
    which a method of the model would bypass.
    """
    return {
        "gemma": batch.get(GEMMA_STREAM),
        "landmarks": batch.get(LANDMARKS_STREAM),
        "landmark_mask": batch.get(LANDMARK_MASK_STREAM),
    }
