"""The two per-stream encoders: frozen-encoder features and landmarks, each (B, T, ·) to
a frame sequence and a pooled vector of width hidden_dim."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from model.landmarks import feature_dim, landmark_features, signer_feature_dim, signer_features


class Encoded(NamedTuple):
    """One stream after its encoder."""

    seq: torch.Tensor
    """(B, T, H) per-frame states."""
    pooled: torch.Tensor
    """(B, H) clip summary."""
    pad: torch.Tensor
    """(B, T) bool, True where a frame is padding (ignored by attention and pooling)."""


def projection_block(d_in: int, d_out: int, dropout: float | None) -> nn.Sequential:
    layers = [nn.Linear(d_in, d_out), nn.LayerNorm(d_out), nn.ReLU()]
    if dropout is not None:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def masked_mean(seq: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
    """Mean over frames that are not padding."""
    keep = (~pad).unsqueeze(-1).to(seq.dtype)
    return (seq * keep).sum(dim=1) / keep.sum(dim=1).clamp_min(1.0)


def safe_pad(pad: torch.Tensor) -> torch.Tensor:
    """A clip whose frames are all padding keeps them all: attention over no keys is NaN."""
    return pad & ~pad.all(dim=1, keepdim=True)


class VisualProjection(nn.Module):
    """Frozen-encoder features (B, T, D) to per-frame states and a clip summary.

    Features are first standardised per dimension with the training split's statistics
    (buffers saved in checkpoints; see `set_feature_statistics`), so that no dimension
    drowns the others by its scale. Each frame is projected once and read two ways: its
    *appearance*, and its *movement*, how it departs from the clip's mean frame, which
    cancels what stays still (signer, clothes, background) and leaves what the hands do.
    Then a learned temporal position encoding, one residual temporal self-attention and
    masked mean pooling.
    """

    feature_mean: torch.Tensor
    feature_std: torch.Tensor

    def __init__(
        self, gemma_dim: int, hidden_dim: int, num_frames: int, num_heads: int, dropout: float
    ):
        super().__init__()
        self.register_buffer("feature_mean", torch.zeros(gemma_dim))
        self.register_buffer("feature_std", torch.ones(gemma_dim))
        self.frame_projection = nn.Linear(gemma_dim, hidden_dim)
        self.appearance = _norm_act(hidden_dim, dropout)
        self.movement = _norm_act(hidden_dim, dropout)
        self.position = nn.Parameter(torch.randn(1, num_frames, hidden_dim) * 0.02)
        self.attention = nn.MultiheadAttention(
            hidden_dim, num_heads, dropout=dropout, batch_first=True
        )
        self.attention_norm = nn.LayerNorm(hidden_dim)
        self.output_projection = projection_block(hidden_dim, hidden_dim, None)

    @torch.no_grad()
    def set_feature_statistics(self, mean, std) -> None:
        """Per-dimension mean and std of the training features (each (D,))."""
        mean = torch.as_tensor(mean, dtype=torch.float32).reshape(self.feature_mean.shape)
        std = torch.as_tensor(std, dtype=torch.float32).reshape(self.feature_std.shape)
        if not (mean.isfinite().all() and std.isfinite().all() and (std > 0).all()):
            raise ValueError("feature statistics must be finite, with std > 0")
        self.feature_mean.copy_(mean)
        self.feature_std.copy_(std)

    def forward(self, features: torch.Tensor, pad: torch.Tensor) -> Encoded:
        x = features.to(self.position.dtype)
        h = self.frame_projection((x - self.feature_mean) / self.feature_std)
        still = masked_mean(h, pad).unsqueeze(1)
        x = self.appearance(h) + self.movement(h - still) + self.position
        attended, _ = self.attention(x, x, x, key_padding_mask=pad, need_weights=False)
        x = self.attention_norm(x + attended)
        return Encoded(x, self.output_projection(masked_mean(x, pad)), pad)


def _norm_act(width: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(width), nn.ReLU(), nn.Dropout(dropout))


class LandmarkEncoder(nn.Module):
    """Landmarks (B, T, K, 3) and part mask (B, T, P): body-relative frame features, a
    transformer over frames that ignores padded frames, masked mean pooling."""

    def __init__(
        self,
        part_names: Sequence[str],
        part_sizes: Sequence[int],
        hidden_dim: int,
        num_frames: int,
        num_heads: int,
        num_layers: int,
        dropout: float,
        normalize: bool = True,
    ):
        super().__init__()
        self.part_names, self.part_sizes, self.normalize = (
            tuple(part_names),
            tuple(part_sizes),
            normalize,
        )
        self.input_projection = projection_block(
            feature_dim(part_names, part_sizes), hidden_dim, dropout
        )
        self.position = nn.Parameter(torch.randn(1, num_frames, hidden_dim) * 0.02)
        layer = nn.TransformerEncoderLayer(
            hidden_dim, num_heads, dim_feedforward=4 * hidden_dim, dropout=dropout, batch_first=True
        )
        # No nested tensors: they change padded outputs between train and eval mode.
        self.transformer = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.output_projection = projection_block(hidden_dim, hidden_dim, None)

    def forward(self, landmarks: torch.Tensor, mask: torch.Tensor, pad: torch.Tensor) -> Encoded:
        feats = landmark_features(landmarks, mask, self.part_names, self.part_sizes, self.normalize)
        x = self.input_projection(feats) + self.position
        x = self.transformer(x, src_key_padding_mask=pad)
        return Encoded(x, self.output_projection(masked_mean(x, pad)), pad)


class ConvBlock(nn.Module):
    """Pre-norm residual block: a depthwise convolution over time (each feature looks at
    its neighbouring frames: short movements), then a per-frame feed-forward."""

    def __init__(self, width: int, dropout: float, kernel: int = 5):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.conv = nn.Conv1d(width, width, kernel, padding=kernel // 2, groups=width)
        self.ff_norm = nn.LayerNorm(width)
        self.ff = nn.Sequential(
            nn.Linear(width, 2 * width), nn.GELU(), nn.Dropout(dropout), nn.Linear(2 * width, width)
        )

    def forward(self, x: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        h = self.norm(x).masked_fill(pad.unsqueeze(-1), 0.0)  # padding adds nothing
        x = x + self.conv(h.transpose(1, 2)).transpose(1, 2)
        return x + self.ff(self.ff_norm(x))


class SignerEncoder(nn.Module):
    """Landmarks (B, T, K, 3) and part mask (B, T, P): signer-independent frame features
    (`signer_features`), depthwise-convolution blocks over time, masked mean pooling.

    Five times faster than `LandmarkEncoder`'s transformer at T = 20 on a CPU and more
    accurate on real signs (benchmarks/real_signs.py)."""

    def __init__(
        self,
        part_names: Sequence[str],
        part_sizes: Sequence[int],
        hidden_dim: int,
        num_frames: int,
        num_layers: int,
        dropout: float,
    ):
        super().__init__()
        self.part_names, self.part_sizes = tuple(part_names), tuple(part_sizes)
        self.input_projection = projection_block(
            signer_feature_dim(part_names, part_sizes), hidden_dim, dropout
        )
        self.position = nn.Parameter(torch.randn(1, num_frames, hidden_dim) * 0.02)
        self.blocks = nn.ModuleList(ConvBlock(hidden_dim, dropout) for _ in range(num_layers))
        self.output_projection = projection_block(hidden_dim, hidden_dim, None)

    def forward(self, landmarks: torch.Tensor, mask: torch.Tensor, pad: torch.Tensor) -> Encoded:
        feats = signer_features(landmarks, mask, self.part_names, self.part_sizes)
        x = self.input_projection(feats) + self.position
        for block in self.blocks:
            x = block(x, pad)
        return Encoded(x, self.output_projection(masked_mean(x, pad)), pad)
