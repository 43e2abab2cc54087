"""The model's hyper-parameters: one dataclass a checkpoint stores, so a model can always
be rebuilt from its checkpoint alone."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

FUSION_TYPES = ("concat", "attention", "gated")
MODALITIES = ("both", "landmarks", "visual")
LANDMARK_ENCODERS = ("signer", "body")

#: MediaPipe Holistic without the face: pose 33 + left hand 21 + right hand 21. The store
#: defines the layout (``featurestore.layout.PARTS``); model/ imports torch only, so it
#: repeats the names and sizes here, and a test checks that they stay equal.
HOLISTIC_PARTS = ("pose", "left_hand", "right_hand")
HOLISTIC_SIZES = (33, 21, 21)


@dataclass
class ModelConfig:
    """Everything needed to rebuild a `HybridASLModel`."""

    num_classes: int
    """Width of the classifier's output."""
    gemma_dim: int
    """Feature width of the frozen encoder (2560 for gemma-3-4b's projector); 0 when the
    visual stream is off."""
    num_frames: int = 16
    """T: frames per clip, fixed by the store."""
    num_landmarks: int = 75
    """K: landmarks per frame (sum of `part_sizes`)."""
    num_parts: int = 3
    """P: columns of the landmark mask (one per part)."""
    hidden_dim: int = 256
    fusion_type: str = "concat"
    """How the two streams are combined: concat | attention | gated."""
    modalities: str = "both"
    """Which streams the model reads: both | landmarks | visual (for ablations)."""
    dropout: float = 0.3
    num_heads: int = 4
    num_landmark_layers: int = 2
    part_names: tuple[str, ...] = field(default=HOLISTIC_PARTS)
    """Landmark parts in the order they appear along K (the store's landmark layout)."""
    part_sizes: tuple[int, ...] = field(default=HOLISTIC_SIZES)
    normalize_landmarks: bool = True
    """Centre and scale landmarks by the shoulders (and hands by their wrist) in forward
    (the "body" encoder only; "signer" always does)."""
    landmark_encoder: str = "signer"
    """signer: signer-independent features (upper body, hand shapes, motion) and
    depthwise convolutions over time; body: the first encoder, body-relative coordinates
    of every landmark and a transformer (what checkpoints without this field hold)."""

    def __post_init__(self) -> None:
        self.part_names = tuple(self.part_names)
        self.part_sizes = tuple(int(s) for s in self.part_sizes)
        if self.fusion_type not in FUSION_TYPES:
            raise ValueError(f"fusion_type must be one of {FUSION_TYPES}, got {self.fusion_type!r}")
        if self.modalities not in MODALITIES:
            raise ValueError(f"modalities must be one of {MODALITIES}, got {self.modalities!r}")
        if self.landmark_encoder not in LANDMARK_ENCODERS:
            raise ValueError(
                f"landmark_encoder must be one of {LANDMARK_ENCODERS}, got {self.landmark_encoder!r}"
            )
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {self.num_classes}")
        if self.uses_visual and self.gemma_dim < 1:
            raise ValueError("gemma_dim must be >= 1 when the visual stream is on")
        if self.hidden_dim % self.num_heads:
            raise ValueError(f"hidden_dim {self.hidden_dim} is not divisible by num_heads")
        if self.uses_landmarks:
            if len(self.part_names) != len(self.part_sizes):
                raise ValueError("part_names and part_sizes differ in length")
            if sum(self.part_sizes) != self.num_landmarks:
                raise ValueError(
                    f"part_sizes {self.part_sizes} sum to {sum(self.part_sizes)}, "
                    f"not num_landmarks={self.num_landmarks}"
                )
            if len(self.part_names) != self.num_parts:
                raise ValueError(
                    f"{len(self.part_names)} part names but num_parts={self.num_parts}"
                )

    @property
    def uses_visual(self) -> bool:
        return self.modalities in ("both", "visual")

    @property
    def uses_landmarks(self) -> bool:
        return self.modalities in ("both", "landmarks")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["part_names"] = list(self.part_names)
        d["part_sizes"] = list(self.part_sizes)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown ModelConfig fields: {sorted(unknown)}")
        return cls(**{"landmark_encoder": "body", **d})  # saved before there was a choice

    @classmethod
    def from_layout(cls, layout: dict | None, **kwargs: Any) -> ModelConfig:
        """Build a config whose landmark geometry follows a store's landmark layout
        (`{"parts": [...], "sizes": [...]}`)."""
        if layout:
            names, sizes = tuple(layout["parts"]), tuple(int(s) for s in layout["sizes"])
            kwargs.update(
                part_names=names,
                part_sizes=sizes,
                num_landmarks=sum(sizes),
                num_parts=len(names),
            )
        return cls(**kwargs)
