"""``seed-npy``: the seed project's pre-extracted ``.npy`` files, labelled by their WLASL files.

``{video_id}_gemma.npy`` (T, D) beside ``extraction_metadata.json`` fill the ``gemma``
stream; ``{video_id}_landmarks.npy`` (T, 162: left hand 21 x 3, right hand 21 x 3, pose
points 11-22 x 3) fill the landmarks, pose points 11-22 only (recorded per video). The
encoder fingerprint comes from the metadata, "unknown" where it says nothing, so a
checkpoint or server never takes these features for another encoder's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..manifest import read_wlasl
from ..schema import GEMMA_STREAM
from .scan import BadInput, Item, Loaded, Scan, holistic_frames

__all__ = ["scan", "SEED_POSE_POINTS", "encoder_fingerprint"]

#: MediaPipe pose indices the seed keeps: shoulders, elbows, wrists, hands' pose points, hips.
SEED_POSE_POINTS = tuple(range(11, 23))
SEED_WIDTH = 21 * 3 * 2 + len(SEED_POSE_POINTS) * 3
_UNKNOWN = "unknown"
_METADATA = "extraction_metadata.json"


def _metadata(folder: Path) -> dict:
    path = folder / _METADATA
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(f"{path}: not JSON ({exc})") from None


def encoder_fingerprint(meta: dict, feature_dim: int) -> dict:
    """What the store records of the seed's encoder; what the metadata lacks is "unknown"."""
    return {
        "model_id": meta.get("model_name") or _UNKNOWN,
        "revision": _UNKNOWN,
        "weights_sha256": _UNKNOWN,
        "pooling": _UNKNOWN,
        "image_size": _UNKNOWN,
        "dtype": _UNKNOWN,
        "feature_dim": int(feature_dim),
        "num_frames": meta.get("num_frames") or _UNKNOWN,
        "extracted_by": "seed preprocess_gemma_features.py",
    }


def _array(path: Path, width: int | None, what: str) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise BadInput(f"{path}: unreadable {what} .npy ({exc})") from None
    if arr.ndim != 2 or (width is not None and arr.shape[1] != width) or arr.dtype.kind != "f":
        raise BadInput(
            f"{path}: {what} of shape {arr.shape} {arr.dtype}, expected float (T, {width or 'D'})"
        )
    return arr


def seed_landmarks(values: np.ndarray, face: bool, where: str) -> dict[str, np.ndarray]:
    """(F, 162) -> the store's landmark streams; pose holds points 11-22 only."""
    frames = len(values)
    hands = values[:, :126].reshape(frames, 2, 21, 3)
    pose = np.zeros((frames, 33, 3), np.float32)
    pose[:, list(SEED_POSE_POINTS)] = values[:, 126:].reshape(frames, len(SEED_POSE_POINTS), 3)
    parts = {"pose": pose, "left_hand": hands[:, 0], "right_hand": hands[:, 1]}
    present = {name: (xyz != 0).any(axis=(1, 2)) for name, xyz in parts.items()}
    return holistic_frames(parts, present, face, where)


def _load(dim: int, landmarks_dir: Path | None, face: bool):
    def load(item: Item) -> Loaded:
        gemma_path, landmark_path = item.ref
        arrays = {GEMMA_STREAM: _array(gemma_path, dim, "gemma features")}
        info: dict[str, Any] = {"gemma_frames": len(arrays[GEMMA_STREAM])}
        if landmarks_dir is not None:
            values = _array(landmark_path, SEED_WIDTH, "landmarks").astype(np.float32)
            arrays.update(seed_landmarks(values, face, str(landmark_path)))
            info.update(landmark_frames=len(values), pose_points="11-22")
        return Loaded(arrays, str(SEED_WIDTH) if landmarks_dir else "gemma", info)

    return load


def _feature_dim(meta: dict, folder: Path) -> int:
    if meta.get("feature_dim"):
        return int(meta["feature_dim"])
    first = next(iter(sorted(folder.glob("*_gemma.npy"))), None)
    if first is None:
        raise ValueError(f"{folder}: no *_gemma.npy files and no {_METADATA}")
    return int(np.load(first, mmap_mode="r").shape[-1])


def scan(
    sources: list[str],
    *,
    face: bool = False,
    wlasl: str | Path | None = None,
    subset: str | Path | None = None,
    landmarks_dir: str | Path | None = None,
) -> Scan:
    """The WLASL entries (of ``subset``) with their seed files; a missing file fails that video."""
    if len(sources) != 1:
        raise ValueError("seed-npy takes one SOURCE: the folder of {video_id}_gemma.npy")
    folder = Path(sources[0])
    if not folder.is_dir():
        raise ValueError(f"gemma features folder {folder} not found")
    if wlasl is None:
        raise ValueError("seed-npy needs --wlasl DIR (train_simple.py's --data_dir) for labels")
    lm_dir = Path(landmarks_dir).resolve() if landmarks_dir else None
    if lm_dir is not None and not lm_dir.is_dir():
        raise ValueError(f"landmarks folder {lm_dir} not found")
    meta = _metadata(folder)
    dim = _feature_dim(meta, folder)
    entries, labels = read_wlasl(wlasl, subset)
    items = []
    for e in entries:
        gemma = folder / f"{e.video_id}_gemma.npy"
        marks = lm_dir / f"{e.video_id}_landmarks.npy" if lm_dir else None
        item = Item(str(folder), e.video_id, e.gloss, e.video_id, ref=(gemma, marks))
        item.video_id, item.label, item.split = e.video_id, e.label, e.split
        item.frames = meta.get("num_frames")
        if e.error:
            item.error = e.error
        elif not gemma.is_file():
            item.error = f"missing: no {gemma.name} in {folder}"
        elif marks is not None and not marks.is_file():
            item.error = f"missing: no {marks.name} in {lm_dir}"
        items.append(item)
    return Scan(
        items,
        extra_streams={GEMMA_STREAM: (dim, "float16")},
        encoder=encoder_fingerprint(meta, dim),
        labels=labels,
        landmarks=lm_dir is not None,
        load=_load(dim, lm_dir, face),
        count_frames=lambda item: int(np.load(item.ref[0], mmap_mode="r").shape[0]),
    )
