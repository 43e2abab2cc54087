"""Importing a MediaPipe landmark tree (``<gloss>/<sequence>/<frame>.npy``) into a store.

Question: is ``featurestore import mpdata`` bound by I/O rather than by per-file Python?
Baseline: a plain loop of ``np.load`` over the same tree, extracted to disk, stacking each
sequence's frames (what the repositories that ship such trees do), which writes nothing.
Ours: the full import (parse, layout mapping, resampling, store writes) from the
extracted folder and straight from the zip. Warm page cache for all three.

    python benchmarks/import_landmarks.py [--data ZIP] [--quick] [--json FILE]

``--data`` defaults to the traduttore zip in ../shared/data/landmarks when it is there.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
from common import Row, parser, report  # noqa: E402

from featurestore import import_dataset  # noqa: E402

SHARED_ZIP = (
    Path(__file__).resolve().parents[1].parent / "shared/data/landmarks/traduttore-asl-mpdata.zip"
)
QUICK_GLOSSES = 6


def subset_zip(src: Path, out: Path, glosses: int | None) -> tuple[Path, int]:
    """The zip itself, or (quick) a zip of its first few glosses; and its sequence count."""
    with zipfile.ZipFile(src) as z:
        names = [n for n in z.namelist() if n.endswith(".npy")]
        keep = sorted({Path(n).parts[-3] for n in names})[:glosses] if glosses else None
        chosen = [n for n in names if keep is None or Path(n).parts[-3] in keep]
        sequences = len({Path(n).parent for n in chosen})
        if keep is None:
            return src, sequences
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as w:
            for n in chosen:
                w.writestr(n, z.read(n))
    return out, sequences


def plain_np_load(root: Path) -> int:
    """The baseline: every frame with np.load, stacked per sequence."""
    count = 0
    for gloss in sorted(os.listdir(root)):
        for seq in sorted(os.listdir(root / gloss)):
            folder = root / gloss / seq
            frames = sorted(os.listdir(folder), key=lambda f: int(Path(f).stem))
            np.stack([np.load(folder / f) for f in frames])
            count += 1
    return count


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> int:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("--data", help="a zip of <gloss>/<sequence>/<frame>.npy (MP_Data)")
    args = p.parse_args()
    data = Path(args.data) if args.data else SHARED_ZIP
    if not data.is_file():
        print(f"skipped: no landmark zip ({data} is not here); pass --data ZIP")
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="import_bench_"))
    try:
        source, sequences = subset_zip(
            data, tmp / "subset.zip", QUICK_GLOSSES if args.quick else None
        )
        with zipfile.ZipFile(source) as z:
            z.extractall(tmp / "tree")
        root = next(p.parent.parent.parent for p in (tmp / "tree").rglob("*.npy"))
        plain_np_load(root)  # warm the page cache for everyone
        base_s, n = timed(lambda: plain_np_load(root))
        folder_s, a = timed(
            lambda: import_dataset("mpdata", [root], str(tmp / "f.zarr"), progress=False)
        )
        zip_s, b = timed(
            lambda: import_dataset("mpdata", [source], str(tmp / "z.zarr"), progress=False)
        )
        assert n == a.imported == b.imported == sequences, (n, a.imported, b.imported)
        print(f"{sequences} sequences, {sum(1 for _ in root.rglob('*.npy'))} frame files")
        rows = [
            Row("import folder (seq/s)", n / folder_s, n / base_s, base_s / folder_s, "seq/s"),
            Row("import zip (seq/s)", n / zip_s, n / base_s, base_s / zip_s, "seq/s"),
        ]
        report(rows, args.json, "import mpdata vs a plain np.load loop (baseline)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
