"""``pose``: ``.pose`` files (sign.mt, sign-language-datasets), read with ``pose-format``.

MediaPipe Holistic poses hold the components ``POSE_LANDMARKS``, ``FACE_LANDMARKS``,
``LEFT_HAND_LANDMARKS`` and ``RIGHT_HAND_LANDMARKS`` with x and y in pixels; they are
divided by the header's width and height to match what ``populate`` stores. A component
whose points are all masked in a frame is missing there. The gloss is the file's folder
(``DIR/<gloss>/<name>.pose``); a file directly in SOURCE is unlabeled.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .scan import BadInput, Item, Loaded, Scan, holistic_frames

__all__ = ["scan", "COMPONENTS", "read_pose"]

#: pose-format component name -> (store part, points kept).
COMPONENTS = {
    "POSE_LANDMARKS": ("pose", 33),
    "FACE_LANDMARKS": ("face", 468),
    "LEFT_HAND_LANDMARKS": ("left_hand", 21),
    "RIGHT_HAND_LANDMARKS": ("right_hand", 21),
}


def _pose_class():
    try:
        from pose_format import Pose
    except ImportError:
        raise ValueError(
            "reading .pose files needs the pose-format package: pip install pose-format"
        ) from None
    return Pose


def _read(path: Path):
    try:
        return _pose_class().read(path.read_bytes())
    except ValueError as exc:
        if "pose-format" in str(exc):
            raise
        raise BadInput(f"{path}: unreadable .pose ({exc})") from None
    except Exception as exc:  # pose-format raises struct/EOF/Index errors on bad bytes
        raise BadInput(f"{path}: unreadable .pose ({type(exc).__name__}: {exc})") from None


def read_pose(path: Path, face: bool) -> Loaded:
    """One ``.pose`` file's landmark streams at its own length (the server's takes read
    them here too); BadInput naming the file when it is not a MediaPipe Holistic pose."""
    pose = _read(path)
    header = pose.header
    data = np.ma.asarray(pose.body.data)
    if data.ndim != 4 or data.shape[1] < 1 or data.shape[-1] < 2:
        raise BadInput(f"{path}: body of shape {data.shape}, not (frames, people, points, dims)")
    if data.shape[0] < 1:
        raise BadInput(f"{path}: the pose has no frames")
    scale = np.array([header.dimensions.width or 1, header.dimensions.height or 1, 1], np.float32)
    coords = np.zeros((*data.shape[:3], 3), np.float32)
    coords[..., : min(3, data.shape[-1])] = np.ma.filled(data[..., :3], np.nan)
    hidden = np.ma.getmaskarray(data).all(axis=-1)
    parts, present, offset, found = {}, {}, 0, []
    for component in header.components:
        n = len(component.points)
        if component.name in COMPONENTS and n >= COMPONENTS[component.name][1]:
            name, keep = COMPONENTS[component.name]
            xyz = coords[:, 0, offset : offset + keep] / scale
            missing = hidden[:, 0, offset : offset + keep]
            xyz[missing] = 0
            parts[name], present[name] = xyz, ~missing.all(axis=1)
            found.append(component.name)
        offset += n
    if not {"POSE_LANDMARKS", "LEFT_HAND_LANDMARKS", "RIGHT_HAND_LANDMARKS"} & set(found):
        names = ", ".join(c.name for c in header.components)
        raise BadInput(f"{path}: not a MediaPipe Holistic pose (components: {names})")
    info = {"fps": float(pose.body.fps)}
    return Loaded(holistic_frames(parts, present, face, str(path)), "pose", info)


def _load(face: bool):
    def load(item: Item) -> Loaded:
        return read_pose(item.ref, face)

    return load


def _items(source: str) -> list[Item]:
    path = Path(source)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.rglob("*.pose") if not p.name.startswith("."))
    else:
        raise ValueError(f"source {source} not found")
    if not files:
        raise ValueError(f"{source}: no .pose files found")
    items = []
    for f in files:
        if f.suffix.lower() != ".pose":
            raise ValueError(f"{source} is not a .pose file or a folder of them")
        rel = f.relative_to(path) if path.is_dir() else Path(f.name)
        gloss = rel.parts[-2] if len(rel.parts) >= 2 else ""
        items.append(Item(source, rel.as_posix(), gloss, f.stem, ref=f))
    return items


def scan(sources: list[str], *, face: bool = False) -> Scan:
    """Every ``.pose`` file of each SOURCE (a file or a folder)."""
    _pose_class()
    items = [item for source in sources for item in _items(source)]
    return Scan(
        items,
        load=_load(face),
        count_frames=lambda item: int(_read(item.ref).body.data.shape[0]),
    )
