"""Training-time augmentation of a window of rows, vectorised with numpy, seeded per window
so the result depends on (seed, epoch, window) only, never on which worker ran it.

Landmarks are MediaPipe image fractions: transforms act around the image centre and only
on detected points (missing points stay zero). The model re-centres on the shoulders, so
a pure shift or uniform scale would be undone; scale is per axis (changes proportions)
and the rotation survives normalisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from featurestore import GEMMA_STREAM, LANDMARK_MASK_STREAM, LANDMARKS_STREAM

#: MediaPipe pose landmarks that swap under a left-right mirror (nose and mouth centre stay).
POSE_MIRROR_PAIRS = [(1, 4), (2, 5), (3, 6), (7, 8), (9, 10)] + [
    (i, i + 1) for i in range(11, 33, 2)
]


NOISE_BANK_SIZE, NOISE_BANK_SEED = 1 << 22, 20240611


@dataclass(frozen=True)
class AugmentConfig:
    rotate_deg: float = 10.0
    """Max in-plane rotation."""
    scale: float = 0.1
    """Per-axis scale in [1 - scale, 1 + scale]."""
    shift: float = 0.05
    """Max shift, as a fraction of the image."""
    time_warp: float = 0.2
    """Playback speed in [1 - w, 1 + w], about the clip's middle."""
    frame_drop: float = 0.1
    """Probability that a frame is dropped (the rest are stretched back to T frames)."""
    mirror: float = 0.5
    """Probability of a left-right mirror that also swaps the hands."""
    gemma_noise: float = 0.05
    """Gaussian noise, relative to each feature dimension's std over the training split
    (to the clip's overall std when the statistics are not given)."""
    gemma_frame_dropout: float = 0.1
    """Probability that a frame's encoder features are lost and the previous frame's stand
    in for them (a stalled frame). Blanking them instead would read as a sudden movement."""


def mirror_permutations(
    part_names: Sequence[str], part_sizes: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Index maps over K (landmarks) and P (parts) that swap left and right."""
    names = list(part_names)
    starts = np.cumsum([0, *part_sizes])[:-1]
    k_perm = np.arange(int(sum(part_sizes)))
    p_perm = np.arange(len(names))
    if "left_hand" in names and "right_hand" in names:
        li, ri = names.index("left_hand"), names.index("right_hand")
        p_perm[li], p_perm[ri] = ri, li
        ls, rs, n = starts[li], starts[ri], part_sizes[li]
        k_perm[ls : ls + n], k_perm[rs : rs + n] = np.arange(rs, rs + n), np.arange(ls, ls + n)
    if "pose" in names:
        ps, n = starts[names.index("pose")], part_sizes[names.index("pose")]
        for a, b in POSE_MIRROR_PAIRS:
            if b < n:
                k_perm[ps + a], k_perm[ps + b] = ps + b, ps + a
    return k_perm, p_perm


class Augmenter:
    """Applies `AugmentConfig` to a dict of stacked arrays (N, T, ...) returning new arrays."""

    def __init__(
        self,
        config: AugmentConfig,
        part_names: Sequence[str] = (),
        part_sizes: Sequence[int] = (),
        feature_std: np.ndarray | None = None,
        visual: str | None = GEMMA_STREAM,
    ):
        """``feature_std`` (D,): the encoder features' per-dimension std over the training
        split (the model standardises with it); it scales the noise. ``visual``: the
        feature set's stream name (the model's visual input)."""
        self.config = config
        self.visual = visual
        self.feature_std = None if feature_std is None else torch.as_tensor(feature_std).float()
        self.part_sizes = tuple(part_sizes)
        self.k_perm, self.p_perm = mirror_permutations(part_names, part_sizes)
        self._bank: np.ndarray | None = None

    def __call__(
        self,
        arrays: dict[str, np.ndarray],
        rng: np.random.Generator,
        rows: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """Augmented copies of `arrays[rows]` (default: all rows); taking the rows here
        folds the caller's shuffle into the time resampling's single gather."""
        arrays = dict(arrays)
        n_all, t = next(iter(arrays.values())).shape[:2]
        rows = np.arange(n_all) if rows is None else np.asarray(rows)
        time_index = self._time_index(len(rows), t, rng)
        for name in arrays:
            arrays[name] = arrays[name][rows[:, None], time_index]
        if LANDMARKS_STREAM in arrays and LANDMARK_MASK_STREAM in arrays:
            arrays[LANDMARKS_STREAM], arrays[LANDMARK_MASK_STREAM] = self._landmarks(
                arrays[LANDMARKS_STREAM], arrays[LANDMARK_MASK_STREAM], rng
            )
        if self.visual is not None and self.visual in arrays:
            arrays[self.visual] = self._gemma(arrays[self.visual], rng)
        return arrays

    def _time_index(self, n: int, t: int, rng: np.random.Generator) -> np.ndarray:
        """(N, T) source frame per output frame: frames dropped, then a speed change."""
        c = self.config
        keep = rng.random((n, t)) >= c.frame_drop
        keep[:, [0, -1]] = True
        speed = rng.uniform(1 - c.time_warp, 1 + c.time_warp, size=n)
        last = keep.sum(axis=1, keepdims=True) - 1  # each row's last kept frame, counted
        kept = np.argsort(~keep, axis=1, kind="stable")  # each row's kept frames first
        pos = (np.arange(t) - (t - 1) / 2) * speed[:, None] + (t - 1) / 2
        pos = np.clip(pos * last / max(t - 1, 1), 0, last)
        return np.take_along_axis(kept, np.rint(pos).astype(np.int64), axis=1)

    def _landmarks(self, lm: np.ndarray, mask: np.ndarray, rng: np.random.Generator):
        c = self.config
        n = lm.shape[0]
        lm = lm.astype(np.float32, copy=True)
        mask = mask.copy()
        sizes = np.asarray(self.part_sizes)
        valid = np.repeat(mask, sizes, axis=-1)[..., None]  # (N, T, K, 1)

        flip = rng.random(n) < c.mirror
        if flip.any():
            lm[flip] = lm[flip][:, :, self.k_perm]
            mask[flip] = mask[flip][:, :, self.p_perm]
            valid[flip] = valid[flip][:, :, self.k_perm]
            lm[flip, ..., 0] = np.where(valid[flip, ..., 0], 1.0 - lm[flip, ..., 0], 0.0)

        angle = np.deg2rad(rng.uniform(-c.rotate_deg, c.rotate_deg, n))
        cos, sin = np.cos(angle), np.sin(angle)
        sx, sy = rng.uniform(1 - c.scale, 1 + c.scale, (2, n))
        shift = rng.uniform(-c.shift, c.shift, (n, 2))
        x, y = lm[..., 0] - 0.5, lm[..., 1] - 0.5
        b = (slice(None), None, None)  # broadcast per-row values over (T, K)
        nx = (cos[b] * x - sin[b] * y) * sx[b] + 0.5 + shift[:, 0][b]
        ny = (sin[b] * x + cos[b] * y) * sy[b] + 0.5 + shift[:, 1][b]
        lm[..., 0] = np.where(valid[..., 0], nx, 0.0)
        lm[..., 1] = np.where(valid[..., 0], ny, 0.0)
        return lm, mask

    def _gemma(self, g: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Noise and frame dropout, a row at a time in float32 (cache-sized temporaries)
        with torch's vectorised float16 casts, back to the store's dtype so less crosses
        from worker to trainer. Overwrites ``g`` (``__call__``'s own gathered copy): a
        fresh 40 MB output per window cost its page faults."""
        c = self.config
        n, t, d = g.shape
        bank = torch.from_numpy(self._noise_bank(t * d))
        starts = rng.integers(0, len(bank) - t * d + 1, n).tolist()
        drop = rng.random((n, t)) < c.gemma_frame_dropout
        drop[:, 0] = False
        # each frame's source: itself, or the last frame before it that was not dropped
        source = np.maximum.accumulate(np.where(drop, 0, np.arange(t)), axis=1).tolist()
        src = torch.from_numpy(np.ascontiguousarray(g))
        if self.feature_std is not None:
            scale = (c.gemma_noise * self.feature_std).expand(n, 1, d)
        else:
            # Each clip's noise scale from every 7th of its values: plenty for a scale,
            # and one vectorised pass instead of a full std per row.
            scale = (c.gemma_noise * src.reshape(n, -1)[:, ::7].float().std(dim=1)).view(n, 1, 1)
        for i, start in enumerate(starts):  # in place: each row is read out before written
            row = src[i].float()
            if c.gemma_noise > 0:
                row.addcmul_(bank[start : start + t * d].view(t, d), scale[i])
            src[i] = row[source[i]]
        return src.numpy()

    def _noise_bank(self, min_size: int) -> np.ndarray:
        """Standard normal values drawn once; each row reads a random slice of them.
        Drawing fresh normals for every value cost ~70% of a worker's time."""
        size = max(NOISE_BANK_SIZE, 8 * min_size)
        if self._bank is None or len(self._bank) < size:
            self._bank = np.random.default_rng(NOISE_BANK_SEED).standard_normal(
                size, dtype=np.float32
            )
        return self._bank
