"""Body-relative landmark features.

Raw MediaPipe coordinates are fractions of the image, so the same sign by a signer who
stands further left or closer to the camera looks different. The model therefore sees
landmarks centred on the shoulders and scaled by shoulder width (one centre and scale per
clip, averaged over frames where the pose was found, so a bad frame cannot jolt it), plus
each hand relative to its own wrist (hand shape independent of where the hand is).
Missing parts are zeros with their mask bit off; the mask itself is part of the input.
"""

from __future__ import annotations

import torch

POSE_LEFT_SHOULDER, POSE_RIGHT_SHOULDER = 11, 12
HAND_WRIST = 0
HAND_PARTS = ("left_hand", "right_hand")
#: Used when a clip has no pose at all: a typical shoulder width as a fraction of the image.
FALLBACK_SCALE = 0.3
#: Normalised coordinates are clipped here so one wild detection cannot dominate.
CLIP_VALUE = 10.0


def part_offsets(part_names, part_sizes) -> dict[str, tuple[int, int]]:
    """Start and stop index along K for each named part."""
    offsets, start = {}, 0
    for name, size in zip(part_names, part_sizes, strict=True):
        offsets[name] = (start, start + size)
        start += size
    return offsets


def feature_dim(part_names, part_sizes) -> int:
    """Width of `landmark_features`' last axis for this layout."""
    hands = sum(
        size for name, size in zip(part_names, part_sizes, strict=True) if name in HAND_PARTS
    )
    return 3 * sum(part_sizes) + 3 * hands + len(part_names)


def _point_mask(mask: torch.Tensor, part_sizes) -> torch.Tensor:
    """(B, T, P) part mask -> (B, T, K, 1) float per-landmark validity."""
    sizes = torch.as_tensor(part_sizes, device=mask.device)
    return mask.repeat_interleave(sizes, dim=-1).unsqueeze(-1).to(torch.float32)


def body_frame(
    landmarks: torch.Tensor, mask: torch.Tensor, part_names, part_sizes
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-clip centre (B, 1, 1, 3) and scale (B, 1, 1, 1) from the shoulders.

    Clips without a detected pose fall back to the mean of whatever was detected and
    `FALLBACK_SCALE`; clips with nothing detected at all to (0, 0, 0) and the same scale.
    """
    valid = _point_mask(mask, part_sizes)
    count = valid.sum(dim=(1, 2)).clamp_min(1.0)
    fallback_centre = (landmarks * valid).sum(dim=(1, 2)) / count  # (B, 3)
    centre, scale = fallback_centre, torch.full_like(fallback_centre[:, :1], FALLBACK_SCALE)

    offsets = part_offsets(part_names, part_sizes)
    if "pose" in offsets and offsets["pose"][1] - offsets["pose"][0] > POSE_RIGHT_SHOULDER:
        start = offsets["pose"][0]
        pose_ok = mask[..., list(part_names).index("pose")].to(torch.float32)  # (B, T)
        left = landmarks[:, :, start + POSE_LEFT_SHOULDER]
        right = landmarks[:, :, start + POSE_RIGHT_SHOULDER]
        width = (left[..., :2] - right[..., :2]).norm(dim=-1)  # (B, T)
        pose_ok = pose_ok * (width > 1e-4)
        frames = pose_ok.sum(dim=1, keepdim=True)  # (B, 1)
        has_pose = frames > 0
        mid = ((left + right) / 2 * pose_ok.unsqueeze(-1)).sum(dim=1) / frames.clamp_min(1.0)
        mean_width = (width * pose_ok).sum(dim=1, keepdim=True) / frames.clamp_min(1.0)
        centre = torch.where(has_pose, mid, centre)
        scale = torch.where(has_pose, mean_width, scale)
    return centre[:, None, None, :], scale[:, None, None, :]


def landmark_features(
    landmarks: torch.Tensor, mask: torch.Tensor, part_names, part_sizes, normalize: bool = True
) -> torch.Tensor:
    """(B, T, K, 3) landmarks and (B, T, P) part mask -> (B, T, F) frame features:
    body-normalised coordinates, each hand relative to its wrist, and the mask."""
    landmarks = landmarks.to(torch.float32)
    mask = mask.to(torch.bool)
    valid = _point_mask(mask, part_sizes)
    if normalize:
        centre, scale = body_frame(landmarks, mask, part_names, part_sizes)
    else:
        centre = torch.zeros_like(landmarks[:, :1, :1, :])
        scale = torch.ones_like(landmarks[:, :1, :1, :1])
    body = ((landmarks - centre) / scale).clamp(-CLIP_VALUE, CLIP_VALUE) * valid
    parts = [body.flatten(2)]
    offsets = part_offsets(part_names, part_sizes)
    for name in HAND_PARTS:
        if name not in offsets:
            continue
        start, stop = offsets[name]
        hand = landmarks[:, :, start:stop]
        rel = (hand - hand[:, :, HAND_WRIST : HAND_WRIST + 1]) / scale
        parts.append((rel.clamp(-CLIP_VALUE, CLIP_VALUE) * valid[:, :, start:stop]).flatten(2))
    parts.append(mask.to(torch.float32))
    return torch.cat(parts, dim=-1)
