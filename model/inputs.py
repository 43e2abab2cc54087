"""The store streams the model reads, and how a batch keyed by them becomes the model's
arguments: written once here, for the trainer, asl-eval and the server alike.

The visual input is a named feature set: base ``gemma`` or one added later (another
encoder's features, under its own name); the landmark streams always have these names.

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


def model_inputs(
    batch: Mapping[str, torch.Tensor], visual: str | None = GEMMA_STREAM
) -> dict[str, torch.Tensor | None]:
    """`HybridASLModel.forward`'s keyword arguments from a batch keyed by stream name;
    `visual` names the feature set that feeds the visual input (None: none does).

    Other keys ("label", "ids") are left out and a missing stream is None. Calling
    `model(**model_inputs(batch))` also works through a DistributedDataParallel wrapper,
    which a method of the model would bypass.
    """
    return {
        "gemma": batch.get(visual) if visual is not None else None,
        "landmarks": batch.get(LANDMARKS_STREAM),
        "landmark_mask": batch.get(LANDMARK_MASK_STREAM),
    }


def input_streams(visual: str | None, landmarks: bool = True) -> list[str]:
    """The streams a model reads: its feature set (if any), then the landmark streams."""
    streams = [visual] if visual is not None else []
    return streams + ([LANDMARKS_STREAM, LANDMARK_MASK_STREAM] if landmarks else [])
