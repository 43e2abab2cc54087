"""Body-relative landmark features.

Raw MediaPipe coordinates are fractions of the image, so the same sign by a signer who
stands further left or closer to the camera looks different. The model therefore sees
landmarks centred on the shoulders and scaled by shoulder width (one centre and scale per
clip, averaged over frames where the pose was found, so a bad frame cannot jolt it), plus
each hand relative to its own wrist (hand shape independent of where the hand is).
Missing parts are zeros with their mask bit off; the mask itself is part of the input.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

POSE_LEFT_SHOULDER, POSE_RIGHT_SHOULDER = 11, 12
HAND_WRIST = 0
HAND_PARTS = ("left_hand", "right_hand")
#: Used when a clip has no pose at all: a typical shoulder width as a fraction of the image.
FALLBACK_SCALE = 0.3
#: Normalised coordinates are clipped here so one wild detection cannot dominate.
CLIP_VALUE = 10.0


def part_offsets(
    part_names: Sequence[str], part_sizes: Sequence[int]
) -> dict[str, tuple[int, int]]:
    """Start and stop index along K for each named part."""
    offsets, start = {}, 0
    for name, size in zip(part_names, part_sizes, strict=True):
        offsets[name] = (start, start + size)
        start += size
    return offsets


def feature_dim(part_names: Sequence[str], part_sizes: Sequence[int]) -> int:
    """Width of `landmark_features`' last axis for this layout."""
    hands = sum(
        size for name, size in zip(part_names, part_sizes, strict=True) if name in HAND_PARTS
    )
    return 3 * sum(part_sizes) + 3 * hands + len(part_names)


def _point_mask(mask: torch.Tensor, part_sizes: Sequence[int]) -> torch.Tensor:
    """(B, T, P) part mask -> (B, T, K, 1) float per-landmark validity."""
    sizes = torch.as_tensor(part_sizes, device=mask.device)
    return mask.repeat_interleave(sizes, dim=-1).unsqueeze(-1).to(torch.float32)


def body_frame(
    landmarks: torch.Tensor,
    mask: torch.Tensor,
    part_names: Sequence[str],
    part_sizes: Sequence[int],
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
    landmarks: torch.Tensor,
    mask: torch.Tensor,
    part_names: Sequence[str],
    part_sizes: Sequence[int],
    normalize: bool = True,
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


# -- signer features ---------------------------------------------------------------------
#: Pose landmarks the signer features keep: face, shoulders, elbows, wrists and the pose's
#: own hand points (0-22). Hips and legs (23-32) are mostly out of a webcam's frame; MediaPipe
#: then guesses them (visibility ~0), and the guesses move with nothing the signer does.
UPPER_BODY = 23
HAND_SIZE_POINT = 9
"""Middle-finger knuckle: wrist-to-knuckle length is a hand's own scale."""
SIGNER_CLIP = 5.0


def signer_feature_dim(part_names: Sequence[str], part_sizes: Sequence[int]) -> int:
    """Width of `signer_features`' last axis for this layout."""
    points = sum(_kept_points(n, s) for n, s in zip(part_names, part_sizes, strict=True))
    hands = sum(s for n, s in zip(part_names, part_sizes, strict=True) if n in HAND_PARTS)
    return 2 * points * 2 + 3 * hands + len(part_names)


def _kept_points(name: str, size: int) -> int:
    return min(size, UPPER_BODY) if name == "pose" else size


def signer_features(
    landmarks: torch.Tensor,
    mask: torch.Tensor,
    part_names: Sequence[str],
    part_sizes: Sequence[int],
) -> torch.Tensor:
    """(B, T, K, 3) landmarks and (B, T, P) part mask -> (B, T, F) frame features that do
    not depend on where the signer sits or how far from the camera:

    - where things are: x, y of the upper body and of every hand point in the clip's
      shoulder frame (`body_frame`; z is dropped: MediaPipe's pose depth is a guess);
    - how each hand is shaped: x, y, z relative to its wrist, in units of the hand's own
      size in that frame, so a hand near the camera and one far from it look alike;
    - how things move: the frame-to-frame change of the first block (zero where either
      frame lacks the part);
    - the part mask.
    Missing parts stay zero everywhere.
    """
    landmarks = landmarks.to(torch.float32)
    mask = mask.to(torch.bool)
    valid = _point_mask(mask, part_sizes)
    centre, scale = body_frame(landmarks, mask, part_names, part_sizes)
    body = ((landmarks[..., :2] - centre[..., :2]) / scale).clamp(-SIGNER_CLIP, SIGNER_CLIP)
    offsets = part_offsets(part_names, part_sizes)
    where, seen, shapes = [], [], []
    for name, (start, stop) in offsets.items():
        keep = slice(start, start + _kept_points(name, stop - start))
        where.append((body[:, :, keep] * valid[:, :, keep]).flatten(2))
        seen.append(valid[:, :, keep].expand(-1, -1, -1, 2).flatten(2))
        if name in HAND_PARTS:
            hand = landmarks[:, :, start:stop]
            rel = hand - hand[:, :, HAND_WRIST : HAND_WRIST + 1]
            size = rel[:, :, HAND_SIZE_POINT, :2].norm(dim=-1)[..., None, None].clamp_min(1e-3)
            shape = (rel / size).clamp(-SIGNER_CLIP, SIGNER_CLIP) * valid[:, :, start:stop]
            shapes.append(shape.flatten(2))
    position, visible = torch.cat(where, dim=-1), torch.cat(seen, dim=-1)
    motion = (position[:, 1:] - position[:, :-1]) * visible[:, 1:] * visible[:, :-1]
    motion = torch.cat([torch.zeros_like(position[:, :1]), motion], dim=1)
    return torch.cat([position, *shapes, motion, mask.to(torch.float32)], dim=-1)
