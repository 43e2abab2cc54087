"""Ways to combine the visual and landmark streams into one vector."""

from __future__ import annotations

import torch
from torch import nn

from model.encoders import Encoded, projection_block


class ConcatFusion(nn.Module):
    """Concatenate the two clip vectors and project."""

    def __init__(self, hidden_dim: int, num_heads: int, dropout: float):
        super().__init__()
        self.project = projection_block(2 * hidden_dim, hidden_dim, dropout)

    def forward(self, visual: Encoded, landmark: Encoded) -> torch.Tensor:
        return self.project(torch.cat([visual.pooled, landmark.pooled], dim=-1))


class AttentionFusion(nn.Module):
    """Cross-attention: each stream's clip vector queries the other stream's frames.

    (Attending from one vector to one vector, as the seed did, is a fixed linear map:
    softmax over a single key is 1. Attending over frames lets each stream pick the
    other's frames that matter.)"""

    def __init__(self, hidden_dim: int, num_heads: int, dropout: float):
        super().__init__()
        self.cross = nn.MultiheadAttention(hidden_dim, num_heads, dropout=dropout, batch_first=True)
        self.project = projection_block(2 * hidden_dim, hidden_dim, dropout)

    def forward(self, visual: Encoded, landmark: Encoded) -> torch.Tensor:
        v_q, l_q = visual.pooled.unsqueeze(1), landmark.pooled.unsqueeze(1)
        v_att, _ = self.cross(
            v_q, landmark.seq, landmark.seq, key_padding_mask=landmark.pad, need_weights=False
        )
        l_att, _ = self.cross(
            l_q, visual.seq, visual.seq, key_padding_mask=visual.pad, need_weights=False
        )
        return self.project(torch.cat([v_att.squeeze(1), l_att.squeeze(1)], dim=-1))


class GatedFusion(nn.Module):
    """A learned per-feature gate chooses between the two clip vectors."""

    def __init__(self, hidden_dim: int, num_heads: int, dropout: float):
        super().__init__()
        self.gate = nn.Sequential(nn.Linear(2 * hidden_dim, hidden_dim), nn.Sigmoid())
        self.project = projection_block(hidden_dim, hidden_dim, dropout)

    def forward(self, visual: Encoded, landmark: Encoded) -> torch.Tensor:
        g = self.gate(torch.cat([visual.pooled, landmark.pooled], dim=-1))
        return self.project(g * visual.pooled + (1 - g) * landmark.pooled)


class SingleStream(nn.Module):
    """For one-modality ablations: the same projection a fusion ends with, on one stream."""

    def __init__(self, hidden_dim: int, num_heads: int, dropout: float):
        super().__init__()
        self.project = projection_block(hidden_dim, hidden_dim, dropout)

    def forward(self, visual: Encoded | None, landmark: Encoded | None) -> torch.Tensor:
        encoded = visual if visual is not None else landmark
        assert encoded is not None, "a model builds one stream at least"
        return self.project(encoded.pooled)


FUSIONS = {"concat": ConcatFusion, "attention": AttentionFusion, "gated": GatedFusion}
