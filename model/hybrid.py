"""The hybrid sign classifier: frozen-encoder features and body landmarks, each encoded
over time, fused, classified."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from model.config import ModelConfig
from model.encoders import LandmarkEncoder, SignerEncoder, VisualProjection, safe_pad
from model.fusion import FUSIONS, SingleStream
from model.inputs import GEMMA_STREAM, model_inputs

COMPONENTS = ("visual_projection", "landmark_encoder", "fusion", "classifier")


class HybridASLModel(nn.Module):
    """Visual projection + landmark encoder -> fusion -> classifier.

    With `modalities="visual"` or `"landmarks"` the other branch is not built at all, so
    an ablation's parameter count is honest.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = c = config
        self.visual_projection = (
            VisualProjection(c.gemma_dim, c.hidden_dim, c.num_frames, c.num_heads, c.dropout)
            if c.uses_visual
            else None
        )
        self.landmark_encoder = _landmark_encoder(c) if c.uses_landmarks else None
        fusion_cls = FUSIONS[c.fusion_type] if c.modalities == "both" else SingleStream
        self.fusion = fusion_cls(c.hidden_dim, c.num_heads, c.dropout)
        self.classifier = nn.Sequential(
            nn.Linear(c.hidden_dim, c.hidden_dim),
            nn.ReLU(),
            nn.Dropout(c.dropout),
            nn.Linear(c.hidden_dim, c.num_classes),
        )

    def forward(
        self,
        gemma: torch.Tensor | None,
        landmarks: torch.Tensor | None,
        landmark_mask: torch.Tensor | None,
        frame_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits (B, num_classes).

        gemma (B, T, D); landmarks (B, T, K, 3); landmark_mask (B, T, P) bool, which parts
        were detected (derived from non-zero coordinates when None); frame_mask (B, T)
        bool, True for real frames (optional: all real when None). Inputs of a modality
        the model does not use may be None.
        """
        c = self.config
        batch = self._check_inputs(gemma, landmarks, landmark_mask, frame_mask)
        device = next(self.parameters()).device
        frame_pad = (
            torch.zeros(batch, c.num_frames, dtype=torch.bool, device=device)
            if frame_mask is None
            else ~frame_mask.to(device=device, dtype=torch.bool)
        )
        visual = landmark = None
        if self.visual_projection is not None:
            assert gemma is not None  # _check_inputs refused a missing input
            visual = self.visual_projection(gemma.to(device), safe_pad(frame_pad))
        if self.landmark_encoder is not None:
            assert landmarks is not None
            landmarks = landmarks.to(device)
            if landmark_mask is None:
                landmark_mask = self._mask_from_coordinates(landmarks)
            # A padded frame counts as nothing detected, so it cannot move the body frame.
            landmark_mask = (
                landmark_mask.to(device=device, dtype=torch.bool) & ~frame_pad[..., None]
            )
            pad = safe_pad(frame_pad | ~landmark_mask.any(dim=-1))
            landmark = self.landmark_encoder(landmarks, landmark_mask, pad)
        return self.classifier(self.fusion(visual, landmark))

    def forward_batch(
        self, batch: Mapping[str, torch.Tensor], visual: str | None = GEMMA_STREAM
    ) -> torch.Tensor:
        """Logits for a batch keyed by stream name, as the loader and the store give it
        (extra keys such as "label" are ignored), with feature set `visual` as the visual
        input; see `model.inputs.model_inputs`."""
        return self(**model_inputs(batch, visual))

    def set_feature_statistics(self, mean, std) -> None:
        """Standardise frozen-encoder features with these per-dimension statistics (each
        (D,), from the training split); they are saved with the weights."""
        if self.visual_projection is None:
            raise ValueError("this model has no visual stream to standardise")
        self.visual_projection.set_feature_statistics(mean, std)

    @torch.no_grad()
    def predict(
        self,
        gemma: torch.Tensor | None,
        landmarks: torch.Tensor | None,
        landmark_mask: torch.Tensor | None,
        top_k: int = 5,
        frame_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k class probabilities and indices, each (B, k), best first, in eval mode."""
        was_training = self.training
        self.eval()
        try:
            probs = (
                self.forward(gemma, landmarks, landmark_mask, frame_mask).float().softmax(dim=-1)
            )
        finally:
            self.train(was_training)
        return probs.topk(min(top_k, self.config.num_classes), dim=-1)

    def _mask_from_coordinates(self, landmarks: torch.Tensor) -> torch.Tensor:
        """A part counts as detected where any of its coordinates is non-zero."""
        sizes = list(self.config.part_sizes)
        return torch.stack(
            [p.ne(0).flatten(2).any(-1) for p in landmarks.split(sizes, dim=2)], dim=-1
        )

    def _check_inputs(
        self,
        gemma: torch.Tensor | None,
        landmarks: torch.Tensor | None,
        landmark_mask: torch.Tensor | None,
        frame_mask: torch.Tensor | None,
    ) -> int:
        """Fail with a message naming the input, rather than deep inside a layer."""
        c = self.config
        expected: dict[str, tuple[torch.Tensor | None, tuple[int, ...]]] = {}
        if c.uses_visual:
            expected["gemma"] = (gemma, (c.num_frames, c.gemma_dim))
        if c.uses_landmarks:
            expected["landmarks"] = (landmarks, (c.num_frames, c.num_landmarks, 3))
            if landmark_mask is not None:
                expected["landmark_mask"] = (landmark_mask, (c.num_frames, c.num_parts))
        if frame_mask is not None:
            expected["frame_mask"] = (frame_mask, (c.num_frames,))
        batch = None
        for name, (tensor, shape) in expected.items():
            if tensor is None:
                raise ValueError(f"{name} is required for modalities={c.modalities!r}")
            if tuple(tensor.shape[1:]) != shape:
                raise ValueError(
                    f"{name} has shape {tuple(tensor.shape)}, expected (B, {', '.join(map(str, shape))})"
                )
            if batch is not None and tensor.shape[0] != batch:
                raise ValueError(f"{name} has batch size {tensor.shape[0]}, others have {batch}")
            batch = tensor.shape[0]
        assert batch is not None, "a model reads one stream at least"
        return batch


def _landmark_encoder(c: ModelConfig) -> nn.Module:
    if c.landmark_encoder == "signer":
        return SignerEncoder(
            c.part_names, c.part_sizes, c.hidden_dim, c.num_frames, c.num_landmark_layers, c.dropout
        )
    return LandmarkEncoder(
        c.part_names,
        c.part_sizes,
        c.hidden_dim,
        c.num_frames,
        c.num_heads,
        c.num_landmark_layers,
        c.dropout,
        c.normalize_landmarks,
    )


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def parameter_breakdown(model: HybridASLModel) -> dict[str, int]:
    """Trainable parameters per component, plus "total"."""
    counts = {
        name: count_parameters(getattr(model, name)) if getattr(model, name) is not None else 0
        for name in COMPONENTS
    }
    counts["total"] = count_parameters(model)
    return counts
