"""``mpdata``: MediaPipe landmark trees ``<gloss>/<sequence>/<frame>.npy``, as a folder or a zip.

One vector per frame: 1662 values (pose 33 x (x, y, z, visibility), face 468 x 3, left
hand 21 x 3, right hand 21 x 3), 258 (pose, left hand, right hand) or 126 (left hand,
right hand); a part that was not found is all zeros. Zip members are read in place
(nothing is extracted) and each ``.npy`` header is parsed once per distinct header.
"""

from __future__ import annotations

import ast
import os
import zipfile
from collections import Counter
from pathlib import Path, PurePosixPath

import numpy as np

from .core import BadInput, Item, Loaded, Plan, holistic_frames

__all__ = ["scan", "WIDTHS", "parse_npy"]

#: Values per frame -> where each part starts and how wide a point is.
WIDTHS = {
    1662: {"pose": (0, 4), "face": (132, 3), "left_hand": (1536, 3), "right_hand": (1599, 3)},
    258: {"pose": (0, 4), "left_hand": (132, 3), "right_hand": (195, 3)},
    126: {"left_hand": (0, 3), "right_hand": (63, 3)},
}
_POINTS = {"pose": 33, "face": 468, "left_hand": 21, "right_hand": 21}
_headers: dict[bytes, tuple[np.dtype, tuple, int]] = {}


def parse_npy(raw: bytes, where: str) -> np.ndarray:
    """The array in ``.npy`` bytes; a header seen before is not parsed again."""
    if raw[:6] != b"\x93NUMPY":
        raise BadInput(f"{where}: not a .npy file")
    size = 2 if raw[6] == 1 else 4
    end = 8 + size + int.from_bytes(raw[8 : 8 + size], "little")
    key = raw[:end]
    if key not in _headers:
        try:
            header = ast.literal_eval(raw[8 + size : end].decode("latin1"))
            dtype = np.dtype(header["descr"])
            shape = tuple(header["shape"])
        except (ValueError, SyntaxError, TypeError, KeyError) as exc:
            raise BadInput(f"{where}: unreadable .npy header ({exc})") from None
        if dtype.kind not in "fiu" or header.get("fortran_order") and len(shape) > 1:
            raise BadInput(f"{where}: .npy holds {dtype}, not numbers")
        _headers[key] = (dtype, shape, end)
    dtype, shape, end = _headers[key]
    count = int(np.prod(shape))
    if len(raw) - end < count * dtype.itemsize:
        raise BadInput(f"{where}: truncated .npy ({len(raw)} bytes)")
    return np.frombuffer(raw, dtype, count, offset=end).reshape(shape)


class Tree:
    """Files of a folder or a zip by relative POSIX path, and the folders among them."""

    def __init__(self, source: str):
        path = Path(source)
        self.source = source
        self.zip: zipfile.ZipFile | None = None
        self.root: tuple[str, ...] = ()
        if path.is_dir():
            self.files, self.dirs = [], set()
            for top, dirs, files in os.walk(path):
                rel = PurePosixPath(Path(top).relative_to(path).as_posix())
                self.dirs.update(str(rel / d) for d in dirs)
                self.files.extend(str(rel / f) for f in files)
        elif path.is_file() and zipfile.is_zipfile(path):
            self.zip = zipfile.ZipFile(path)
            names = self.zip.namelist()
            self.files = [n for n in names if not n.endswith("/")]
            self.dirs = {n.rstrip("/") for n in names if n.endswith("/")}
            self.dirs.update(str(p) for f in self.files for p in PurePosixPath(f).parents)
            self.dirs.discard(".")
        elif path.exists():
            raise ValueError(f"{source} is not a folder or a zip of <gloss>/<sequence>/<frame>.npy")
        else:
            raise ValueError(f"source {source} not found")

    def where(self, rel: str) -> str:
        return f"{self.source}!{rel}" if self.zip is not None else str(Path(self.source) / rel)

    def read(self, rel: str) -> bytes:
        try:
            if self.zip is not None:
                return self.zip.read(rel)
            return (Path(self.source) / rel).read_bytes()
        except (OSError, zipfile.BadZipFile, KeyError) as exc:
            raise BadInput(f"{self.where(rel)}: unreadable ({exc})") from None


def _hidden(parts) -> bool:
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def _frame_order(name: str):
    stem = PurePosixPath(name).stem
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)


def _root(tree: Tree) -> tuple[str, ...]:
    """The folder whose grandchildren are the sequences (``MP_Data`` in most zips)."""
    roots = Counter(
        PurePosixPath(f).parts[:-3]
        for f in tree.files
        if f.lower().endswith(".npy") and len(PurePosixPath(f).parts) >= 3
    )
    if not roots:
        raise ValueError(f"{tree.source}: no <gloss>/<sequence>/<frame>.npy files found")
    return roots.most_common(1)[0][0]


def _items(tree: Tree) -> tuple[list[Item], dict[str, str]]:
    root = tree.root = _root(tree)
    depth = len(root)
    sequences: dict[tuple[str, str], list[str]] = {}
    failures: dict[str, str] = {}
    for f in tree.files:
        parts = PurePosixPath(f).parts
        if parts[:depth] != root or _hidden(parts[depth:]):
            continue  # a README beside MP_Data, .DS_Store, __MACOSX
        rel = parts[depth:]
        if len(rel) == 3 and f.lower().endswith(".npy"):
            sequences.setdefault(rel[:2], []).append(f)
        elif not f.lower().endswith(".npy"):
            failures[tree.where(f)] = "not a .npy file"
        else:
            failures[tree.where(f)] = "not in a <gloss>/<sequence>/ folder"
    folders = [PurePosixPath(d).parts for d in tree.dirs]
    folders = [p[depth:] for p in folders if p[:depth] == root and not _hidden(p[depth:])]
    for rel in folders:
        if len(rel) == 2:
            sequences.setdefault(rel, [])
    glosses = {g for g, _ in sequences}
    for rel in folders:
        if len(rel) == 1 and rel[0] not in glosses:
            failures[tree.where("/".join((*root, rel[0])))] = "empty folder (no sequences)"
    items = []
    for (gloss, name), frames in sorted(sequences.items()):
        frames.sort(key=_frame_order)
        item = Item(tree.source, f"{gloss}/{name}", gloss, name, ref=frames, frames=len(frames))
        item.error = _gap(tree, gloss, name, frames)
        items.append(item)
    return items, failures


def _gap(tree: Tree, gloss: str, name: str, frames: list[str]) -> str | None:
    """Why a sequence's frame list is unusable: none at all, or a numbered frame missing."""
    where = tree.where("/".join((*tree.root, gloss, name)))
    if not frames:
        return f"{where}: empty folder (no frames)"
    keys = [_frame_order(f) for f in frames]
    numbers = [n for kind, n, _ in keys if kind == 0]
    if len(numbers) == len(frames) and numbers[-1] != numbers[0] + len(numbers) - 1:
        missing = min(set(range(numbers[0], numbers[-1])) - set(numbers))
        return f"{where}: frame {missing}.npy is missing"
    return None


def vectors_to_frames(vectors: np.ndarray, face: bool, where: str) -> dict[str, np.ndarray]:
    """(F, 1662 | 258 | 126) -> the store's landmark streams (a zero part is a missing part)."""
    spec = WIDTHS[vectors.shape[1]]
    parts, present = {}, {}
    for name, (start, width) in spec.items():
        n = _POINTS[name]
        block = vectors[:, start : start + n * width].reshape(-1, n, width)[..., :3]
        parts[name], present[name] = block, (block != 0).any(axis=(1, 2))
    return holistic_frames(parts, present, face, where)


def _loader(trees: dict[str, Tree], face: bool):
    def load(item: Item) -> Loaded:
        tree = trees[item.source]
        rows, width = [], None
        for f in item.ref:
            vec = parse_npy(tree.read(f), tree.where(f))
            if vec.ndim != 1 or vec.shape[0] not in WIDTHS:
                raise BadInput(
                    f"{tree.where(f)}: frame has shape {vec.shape}, expected one vector of "
                    f"{', '.join(map(str, WIDTHS))} values"
                )
            if width is not None and vec.shape[0] != width:
                raise BadInput(f"{tree.where(f)}: {vec.shape[0]} values, earlier frames {width}")
            width = vec.shape[0]
            rows.append(vec)
        vectors = np.stack(rows).astype(np.float32)
        where = tree.where("/".join((*tree.root, item.member)))
        return Loaded(vectors_to_frames(vectors, face, where), str(width))

    return load


def scan(sources: list[str], *, face: bool = False) -> Plan:
    """List every sequence of every SOURCE (folders or zips); nothing is read yet."""
    trees = {s: Tree(s) for s in sources}
    items, failures = [], {}
    for tree in trees.values():
        found, bad = _items(tree)
        items += found
        failures.update(bad)
    return Plan(items, failures=failures, load=_loader(trees, face))
