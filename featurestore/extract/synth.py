"""Synthetic sign-like clips: a body-like figure whose two gloved hands move by class.

Each class has its own handshapes (the size and aspect of each hand) and hand
trajectories (centres, amplitudes, frequencies, phases), as real signs differ in
handshape, location and movement. Each clip jitters speed, position, scale, colours and
noise, so a model must learn the sign, not the pixels. Colours vary around one palette
(light background, dark shirt, skin, red gloves) rather than at random: with any colour
at all, what a clip looks like would swamp how its hands move for a small random encoder.
Tests, the benchmark and the offline demo use these clips.
"""

from __future__ import annotations

import csv
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

__all__ = ["synthesize", "write_video", "SPLITS"]

SPLITS = ("train", "val", "test")
_FIELDS = ("video_id", "path", "gloss", "split")
# x264 speed preset; one thread so the same seed gives byte-identical clips under any load
_FAST = {"preset": "veryfast", "threads": "1"}


def write_video(
    path: str | Path,
    frames: np.ndarray,
    fps: int = 25,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    options: dict[str, str] | None = None,
    rotation: int = 0,
) -> Path:
    """Encode uint8 RGB frames (T, H, W, 3) with PyAV; the container follows the suffix.

    ``rotation`` (degrees counter-clockwise) is written as display-matrix metadata, as
    phones do, without touching the pixels.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = frames.shape[1:3]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if options:
            stream.options = dict(options)
        if rotation:
            stream.set_display_rotation(rotation)
        for rgb in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


_BACKGROUND, _SHIRT, _SKIN, _GLOVE = (200, 200, 190), (40, 60, 110), (200, 150, 110), (230, 80, 60)
_COLOUR_JITTER = 25.0
"""Each colour channel of a clip is its palette value +- this."""
_HAND_RADII = (0.11, 0.09)
"""A hand's (vertical, horizontal) radius, as a fraction of the frame, before its shape."""


def _class_motion(rng: np.random.Generator) -> np.ndarray:
    """Per hand: centre (x, y), amplitude (x, y), frequency (x, y), phase (x, y), radius (y, x)."""
    centre = np.stack([rng.uniform(0.25, 0.45, 2), rng.uniform(0.45, 0.75, 2)], axis=1)
    centre[1, 0] = 1.0 - centre[1, 0]  # right hand mirrored across the body
    amp = rng.uniform(0.03, 0.18, (2, 2))
    freq = rng.choice([0.5, 1.0, 1.5, 2.0], (2, 2))
    phase = rng.uniform(0, 2 * np.pi, (2, 2))
    radius = np.asarray(_HAND_RADII) * rng.uniform(0.6, 1.5, (2, 2))  # the handshape
    return np.concatenate([centre, amp, freq, phase, radius], axis=1)


def _colour(rng: np.random.Generator, palette: tuple[int, int, int]) -> np.ndarray:
    return np.asarray(palette, np.float32) + rng.uniform(-_COLOUR_JITTER, _COLOUR_JITTER, 3)


def _disc(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float) -> np.ndarray:
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def _render(motion: np.ndarray, rng: np.random.Generator, frames: int, size: tuple[int, int]):
    width, height = size
    speed = rng.uniform(0.8, 1.25)
    shift = rng.uniform(-0.05, 0.05, 2)
    scale = rng.uniform(0.85, 1.15)
    background, shirt, skin, glove = (_colour(rng, c) for c in (_BACKGROUND, _SHIRT, _SKIN, _GLOVE))
    noise = rng.uniform(2.0, 8.0)
    yy, xx = (np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]).astype(
        np.float32
    )
    body = np.empty((height, width, 3), np.float32)
    body[:] = background
    cx, cy = 0.5 + shift[0], 0.5 + shift[1]
    body[_disc(yy, xx, cy - 0.28 * scale, cx, 0.11 * scale, 0.09 * scale)] = skin
    body[_disc(yy, xx, cy + 0.3 * scale, cx, 0.42 * scale, 0.22 * scale)] = shirt
    t = np.arange(frames) / 25.0 * speed
    out = np.empty((frames, height, width, 3), np.uint8)
    for k in range(frames):
        img = body.copy()
        for centre_x, centre_y, ax, ay, fx, fy, px, py, ry, rx in motion:
            hx = cx + (centre_x - 0.5 + ax * np.sin(2 * np.pi * fx * t[k] + px)) * scale
            hy = cy + (centre_y - 0.5 + ay * np.sin(2 * np.pi * fy * t[k] + py)) * scale
            img[_disc(yy, xx, hy, hx, ry * scale, rx * scale)] = glove
        img += rng.standard_normal(img.shape, dtype=np.float32) * noise
        out[k] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def _splits(n: int, rng: np.random.Generator) -> list[str]:
    held = max(1, round(0.15 * n)) if n >= 3 else 0
    labels = ["val"] * held + ["test"] * held + ["train"] * (n - 2 * held)
    return [labels[i] for i in rng.permutation(n)]


def synthesize(
    out_dir: str | Path,
    classes: int = 10,
    per_class: int = 8,
    seed: int = 0,
    frames: int = 24,
    size: tuple[int, int] = (96, 96),
) -> Path:
    """Write ``classes * per_class`` H.264 clips and ``manifest.csv``; return the manifest path.

    ``size`` is (width, height), even numbers (H.264 in 4:2:0). About 15% of each class
    goes to val and 15% to test. The manifest's paths are relative to its folder.
    """
    if classes < 1 or per_class < 1 or frames < 1:
        raise ValueError("classes, per_class and frames must be >= 1")
    if size[0] % 2 or size[1] % 2 or min(size) < 16:
        raise ValueError(f"size must be even and at least 16x16, got {size[0]}x{size[1]}")
    out = Path(out_dir)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    rows = []
    for c in range(classes):
        class_rng = np.random.default_rng([seed, c])
        motion = _class_motion(class_rng)
        gloss = f"sign{c:02d}"
        for i, split in enumerate(_splits(per_class, class_rng)):
            video_id = f"{gloss}_{i:03d}"
            clip_rng = np.random.default_rng([seed, c, i, 1])
            rel = f"clips/{video_id}.mp4"
            write_video(out / rel, _render(motion, clip_rng, frames, size), options=_FAST)
            rows.append({"video_id": video_id, "path": rel, "gloss": gloss, "split": split})
    manifest = out / "manifest.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return manifest
