"""The hybrid sign classifier on frozen-encoder features and landmarks (torch only)."""

from model.checkpoint import (
    Checkpoint,
    CheckpointError,
    fingerprint_diff,
    load_checkpoint,
    save_checkpoint,
)
from model.config import FUSION_TYPES, MODALITIES, ModelConfig
from model.hybrid import HybridASLModel, count_parameters, parameter_breakdown
from model.inputs import (
    GEMMA_STREAM,
    INPUT_STREAMS,
    LANDMARK_MASK_STREAM,
    LANDMARKS_STREAM,
    input_streams,
    model_inputs,
)
from model.landmarks import landmark_features, signer_features

__all__ = [
    "FUSION_TYPES",
    "GEMMA_STREAM",
    "INPUT_STREAMS",
    "LANDMARKS_STREAM",
    "LANDMARK_MASK_STREAM",
    "MODALITIES",
    "Checkpoint",
    "CheckpointError",
    "HybridASLModel",
    "ModelConfig",
    "count_parameters",
    "fingerprint_diff",
    "input_streams",
    "landmark_features",
    "load_checkpoint",
    "model_inputs",
    "parameter_breakdown",
    "save_checkpoint",
    "signer_features",
]
