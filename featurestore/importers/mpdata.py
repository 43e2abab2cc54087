"""``mpdata``: MediaPipe landmark trees ``<gloss>/<sequence>/<frame>.npy``, as a folder or a zip.

One vector per frame: 1662 values (pose 33 x (x, y, z, visibility), face 468 x 3, left
hand 21 x 3, right hand 21 x 3), 258 (pose, left hand, right hand) or 126 (left hand,
right hand); a part that was not found is all zeros. Zip members are read in place
(nothing is extracted) and each ``.npy`` header is parsed once per distinct header.
"""

from __future__ import annotations

import ast
import os
import struct
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .scan import BadInput, Item, Loaded, Scan, holistic_frames

__all__ = [
    "scan",
    "WIDTHS",
    "parse_npy",
    "read_sequence",
    "sequence_from_array",
    "vectors_to_frames",
]

#: Values per frame -> where each part starts and how wide a point is.
WIDTHS = {
    1662: {"pose": (0, 4), "face": (132, 3), "left_hand": (1536, 3), "right_hand": (1599, 3)},
    258: {"pose": (0, 4), "left_hand": (132, 3), "right_hand": (195, 3)},
    126: {"left_hand": (0, 3), "right_hand": (63, 3)},
}
_POINTS = {"pose": 33, "face": 468, "left_hand": 21, "right_hand": 21}
_headers: dict[bytes, tuple[np.dtype, tuple, int, int]] = {}


def parse_npy(raw: bytes, where: str = "") -> np.ndarray:
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
        _headers[key] = (dtype, shape, end, int(np.prod(shape)))
    dtype, shape, end, count = _headers[key]
    if len(raw) - end < count * dtype.itemsize:
        raise BadInput(f"{where}: truncated .npy ({len(raw)} bytes)")
    return np.frombuffer(raw, dtype, count, offset=end).reshape(shape)


class Tree:
    """Files of a folder or a zip by relative POSIX path (and split into parts), and folders."""

    def __init__(self, source: str):
        path = Path(source)
        self.source = source
        self.zip: zipfile.ZipFile | None = None
        self.root: tuple[str, ...] = ()
        if path.is_dir():
            names = []
            for top, dirs, files in os.walk(path):
                rel = Path(top).relative_to(path).as_posix()
                prefix = "" if rel == "." else rel + "/"
                names += [prefix + d + "/" for d in dirs] + [prefix + f for f in files]
        elif path.is_file() and zipfile.is_zipfile(path):
            self.zip = zipfile.ZipFile(path)
            self._infos = {i.filename: i for i in self.zip.infolist()}
            self._fd = os.open(path, os.O_RDONLY)
            names = list(self._infos)
        elif path.exists():
            raise ValueError(f"{source} is not a folder or a zip of <gloss>/<sequence>/<frame>.npy")
        else:
            raise ValueError(f"source {source} not found")
        self.files = [(n, tuple(n.split("/"))) for n in names if not n.endswith("/")]
        self.dirs = {tuple(n.rstrip("/").split("/")) for n in names if n.endswith("/")}
        self.dirs.update(parts[:k] for _, parts in self.files for k in range(1, len(parts)))

    def where(self, rel: str) -> str:
        return f"{self.source}!{rel}" if self.zip is not None else os.path.join(self.source, rel)

    def read(self, rel: str) -> bytes:
        try:
            if self.zip is not None:
                return self._read_member(self._infos[rel])
            with open(os.path.join(self.source, rel), "rb") as fh:
                return fh.read()
        except (OSError, zipfile.BadZipFile, KeyError, zlib.error) as exc:
            raise BadInput(f"{self.where(rel)}: unreadable ({exc})") from None

    def close(self) -> None:
        if self.zip is not None and self._fd >= 0:
            self.zip.close()
            os.close(self._fd)
            self._fd = -1

    def _read_member(self, info: zipfile.ZipInfo) -> bytes:
        """One member by two preads and one inflate: a fifth of ``ZipFile.read``'s cost."""
        if (
            info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
            or info.flag_bits & 1
        ):
            assert self.zip is not None, "members are read only from an open zip"
            return self.zip.read(info)  # other codecs, encryption: the slow general path
        head = os.pread(self._fd, 30, info.header_offset)
        if head[:4] != b"PK\x03\x04":
            raise zipfile.BadZipFile("bad local file header")
        name_len, extra_len = struct.unpack("<HH", head[26:30])
        data = os.pread(
            self._fd, info.compress_size, info.header_offset + 30 + name_len + extra_len
        )
        if info.compress_type == zipfile.ZIP_DEFLATED:
            data = zlib.decompress(data, -15)
        if zlib.crc32(data) != info.CRC:
            raise zipfile.BadZipFile("CRC mismatch")
        return data


def _hidden(parts: Iterable[str]) -> bool:
    return any(p.startswith(".") or p == "__MACOSX" for p in parts)


def _frame_order(name: str):
    stem = name.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return (0, int(stem), "") if stem.isdigit() else (1, 0, stem)


def _root(tree: Tree) -> tuple[str, ...]:
    """The folder whose grandchildren are the sequences (``MP_Data`` in most zips)."""
    roots = Counter(
        parts[:-3] for f, parts in tree.files if f.lower().endswith(".npy") and len(parts) >= 3
    )
    if not roots:
        raise ValueError(f"{tree.source}: no <gloss>/<sequence>/<frame>.npy files found")
    return roots.most_common(1)[0][0]


def _items(tree: Tree) -> tuple[list[Item], dict[str, str]]:
    root = tree.root = _root(tree)
    depth = len(root)
    sequences: dict[tuple[str, str], list[str]] = {}
    failures: dict[str, str] = {}
    for f, parts in tree.files:
        if parts[:depth] != root or _hidden(parts[depth:]):
            continue  # a README beside MP_Data, .DS_Store, __MACOSX
        rel = parts[depth:]
        if len(rel) == 3 and f.lower().endswith(".npy"):
            sequences.setdefault(rel[:2], []).append(f)
        elif not f.lower().endswith(".npy"):
            failures[tree.where(f)] = "not a .npy file"
        else:
            failures[tree.where(f)] = "not in a <gloss>/<sequence>/ folder"
    folders = [p[depth:] for p in tree.dirs if p[:depth] == root and not _hidden(p[depth:])]
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


def _vectors(tree: Tree, files: list[str]) -> np.ndarray:
    """The frames' vectors in order, (F, width) float32; every frame one width of WIDTHS."""
    rows, width = [], None
    for f in files:
        raw = tree.read(f)
        try:
            vec = parse_npy(raw)
        except BadInput as exc:
            raise BadInput(f"{tree.where(f)}{exc}") from None
        if vec.ndim != 1 or vec.shape[0] not in WIDTHS:
            raise BadInput(
                f"{tree.where(f)}: frame has shape {vec.shape}, expected one vector of "
                f"{', '.join(map(str, WIDTHS))} values"
            )
        if width is not None and vec.shape[0] != width:
            raise BadInput(f"{tree.where(f)}: {vec.shape[0]} values, earlier frames {width}")
        width = vec.shape[0]
        rows.append(vec)
    return np.stack(rows).astype(np.float32)


def sequence_from_array(vectors: np.ndarray, face: bool, where: str) -> Loaded:
    """A whole sequence in one array, (frames, 1662 | 258 | 126) per-frame vectors, as the
    store's landmark streams at its own length (the server's takes arrive this way)."""
    if vectors.dtype.kind not in "fiu" or vectors.ndim != 2 or vectors.shape[1] not in WIDTHS:
        raise BadInput(
            f"{where}: an array of shape {vectors.shape} and dtype {vectors.dtype}; expected "
            f"(frames, values) numbers with {', '.join(map(str, WIDTHS))} values a frame "
            "(MediaPipe Holistic: pose, face and hands; pose and hands; or hands)"
        )
    if len(vectors) == 0:
        raise BadInput(f"{where}: the sequence has no frames")
    frames = vectors_to_frames(vectors.astype(np.float32), face, where)
    return Loaded(frames, str(vectors.shape[1]))


def _loader(trees: dict[str, Tree], face: bool):
    def load(item: Item) -> Loaded:
        tree = trees[item.source]
        vectors = _vectors(tree, item.ref)
        where = tree.where("/".join((*tree.root, item.member)))
        return Loaded(vectors_to_frames(vectors, face, where), str(vectors.shape[1]))

    return load


def read_sequence(folder: str | Path, face: bool = False) -> Loaded:
    """One ``<sequence>/`` folder of ``<frame>.npy`` files (frames in numeric order), as the
    import loads each sequence of a tree; BadInput names the folder when it holds none."""
    tree = Tree(str(folder))
    try:
        files = sorted(
            (f for f, parts in tree.files if len(parts) == 1 and f.lower().endswith(".npy")),
            key=_frame_order,
        )
        if not files:
            raise BadInput(f"{folder}: no <frame>.npy files in the folder")
        vectors = _vectors(tree, files)
        return Loaded(vectors_to_frames(vectors, face, str(folder)), str(vectors.shape[1]))
    finally:
        tree.close()


def scan(sources: list[str], *, face: bool = False) -> Scan:
    """List every sequence of every SOURCE (folders or zips); nothing is read yet."""
    trees = {s: Tree(s) for s in sources}
    items, failures = [], {}
    for tree in trees.values():
        found, bad = _items(tree)
        items += found
        failures.update(bad)

    def close() -> None:
        for tree in trees.values():
            tree.close()

    return Scan(items, failures=failures, load=_loader(trees, face), close=close)
