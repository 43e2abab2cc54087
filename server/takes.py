"""A take file -> the store's streams at its T. Adding a take and predicting one read files
here, the same way.

A take is a video clip (decoded and extracted as uploads are: the store's own encoder and
landmarks) or a landmark sequence read by the importers' own readers: a `.npy` of per-frame
MediaPipe Holistic vectors (1662, 258 or 126 values a frame, as `featurestore import
mpdata` reads them) or a `.pose` file. A sequence is sampled to the store's T as imports
are, so a take of any length fits; a layout the store does not keep is refused by name.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from fastapi import HTTPException, UploadFile
from starlette.concurrency import run_in_threadpool

from featurestore import LANDMARK_MASK_STREAM, LANDMARKS_STREAM, StoreSchema
from featurestore.importers.mpdata import sequence_from_array
from featurestore.importers.pose import read_pose
from featurestore.importers.scan import BadInput
from featurestore.layout import has_face, landmark_layout
from featurestore.sampling import sample_indices

from .uploads import ACCEPTED_TYPES, save_upload

if TYPE_CHECKING:
    from .state import ServingState

#: Declared part types a take may have; a sequence is told from a clip by its bytes.
TAKE_TYPES = (*ACCEPTED_TYPES, "application/x-npy", "application/npy", "application/x-pose")
NPY_MAGIC = b"\x93NUMPY"
MAX_SEQUENCE_FRAMES = 10_000
"""Longest landmark sequence accepted (5 minutes at 30 fps)."""


@dataclass
class Take:
    """One take's streams at the store's T (no batch axis), and what to say about it."""

    arrays: dict[str, np.ndarray]
    kind: str
    """video, npy or pose."""
    frames: int
    """The take's own length, in frames."""
    timings: dict[str, float]
    details: dict | None = None


def check_take_type(content_type: str | None) -> None:
    if content_type and not content_type.lower().startswith(TAKE_TYPES):
        raise HTTPException(
            415,
            "expected a video clip or a landmark sequence (.npy of per-frame vectors, .pose), "
            f"got content type {content_type!r}",
        )


def take_kind(path: str, filename: str | None) -> str:
    """npy by its magic bytes (or its name), pose by its name, else a video."""
    with open(path, "rb") as f:
        head = f.read(len(NPY_MAGIC))
    name = (filename or "").lower()
    if head == NPY_MAGIC or name.endswith(".npy"):
        return "npy"
    if name.endswith(".pose"):
        return "pose"
    return "video"


async def read_take(state: ServingState, upload: UploadFile, details: bool = False) -> Take:
    """The upload as the store's streams; 413, 415, 422 or 503 naming what is wrong."""
    check_take_type(upload.content_type)
    t0 = time.perf_counter()
    path = await run_in_threadpool(save_upload, upload.file)
    t1 = time.perf_counter()
    saved = {"upload_ms": (t1 - t0) * 1000}
    try:
        kind = take_kind(path, upload.filename)
        if kind == "video":
            extracted = await state.uploads.extract(path, details)
            arrays = {k: v[0] for k, v in extracted.arrays.items()}
            timings = {**saved, **extracted.timings}
            return Take(arrays, kind, extracted.frames, timings, extracted.details)
        name = (upload.filename or "upload")[-100:]
        loop = asyncio.get_running_loop()
        arrays, frames = await loop.run_in_executor(
            state.io_executor, read_landmarks, path, kind, name, state.store.schema
        )
        read = {"decode_ms": (time.perf_counter() - t1) * 1000, "encoder_ms": 0.0}
        return Take(arrays, kind, frames, {**saved, **read, "landmarks_ms": 0.0})
    finally:
        os.unlink(path)


def read_landmarks(
    path: str, kind: str, name: str, schema: StoreSchema
) -> tuple[dict[str, np.ndarray], int]:
    """A `.npy` or `.pose` sequence as the store's landmark streams at its T, and the
    sequence's own length."""
    layout = schema.landmark_layout or {}
    if LANDMARKS_STREAM not in schema.streams:
        raise HTTPException(
            422,
            "this store keeps no landmarks, so a landmark sequence cannot feed it: send a video",
        )
    face = has_face(layout)
    holistic = landmark_layout(face)
    if [layout.get(k) for k in ("parts", "sizes")] != [holistic[k] for k in ("parts", "sizes")]:
        raise HTTPException(
            422,
            f"this store's landmark layout is {layout.get('parts')} {layout.get('sizes')}; a "
            f"landmark sequence gives MediaPipe Holistic's {holistic['parts']} "
            f"{holistic['sizes']}: send a video",
        )
    try:
        loaded = (
            sequence_from_array(load_npy(path, name), face, name)
            if kind == "npy"
            else read_pose(Path(path), face)
        )
    except BadInput as exc:
        raise HTTPException(422, str(exc).replace(path, name)) from None
    except ValueError as exc:  # pose-format missing on this server
        raise HTTPException(422, str(exc)) from None
    if loaded.frames > MAX_SEQUENCE_FRAMES:
        raise HTTPException(
            413, f"{name}: {loaded.frames} frames; a take may have {MAX_SEQUENCE_FRAMES} at most"
        )
    idx, _ = sample_indices(loaded.frames, schema.num_frames)
    return {k: v[idx] for k, v in loaded.arrays.items()}, loaded.frames


def load_npy(path: str, name: str) -> np.ndarray:
    """The one array in a `.npy` file (no pickles, no archives)."""
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise BadInput(f"{name}: not a readable .npy file ({exc})") from None
    if not isinstance(arr, np.ndarray):
        arr.close()
        raise BadInput(f"{name}: an .npz archive; send one .npy array of per-frame vectors")
    return arr


def parts_found(take_arrays: dict[str, np.ndarray], layout: dict | None) -> list[list[str]] | None:
    """Per frame, the landmark parts found (None for a store without landmarks)."""
    mask = take_arrays.get(LANDMARK_MASK_STREAM)
    if mask is None or not layout:
        return None
    parts = layout["parts"]
    return [[p for p, found in zip(parts, row, strict=True) if found] for row in mask.tolist()]


def frames_without_hands(found: list[list[str]] | None) -> int | None:
    if found is None:
        return None
    return sum(1 for parts in found if not any(p.endswith("_hand") for p in parts))
