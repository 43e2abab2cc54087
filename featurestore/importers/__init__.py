"""Import landmarks and features that already exist (no videos, no extraction) into a store.

``import_dataset("mpdata", ["MP_Data.zip"], "s.zarr")`` writes the same streams and
landmark layout as ``populate``, so training, evaluation and serving need no other flag.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import Any

from ..summary import ImportSummary
from .core import run_import, store_keeps_face
from .splits import SPLIT_BY, read_signers

__all__ = ["FORMATS", "ImportSummary", "import_dataset"]

#: Format name -> module that lists and loads it.
FORMATS = {
    "mpdata": "mpdata",
    "kaggle-islr": "kaggle_islr",
    "pose": "pose",
    "seed-npy": "seed_npy",
}


def import_dataset(
    format: str,
    sources: list[str | Path],
    store: str,
    *,
    num_frames: int | None = None,
    split: str | None = None,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
    seed: int = 0,
    split_by: str = "sequence",
    signers: str | Path | None = None,
    test_signers: list[str] | None = None,
    face: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    storage_options: dict | None = None,
    **format_options: Any,
) -> ImportSummary:
    """Import every sequence of ``sources`` (format ``format``) into the store at ``store``.

    T is ``num_frames``, else the store's, else the sources' own length when they all
    agree, else 16. ``split`` puts everything in one split; otherwise seeded per-gloss
    fractions, or whole signers (``split_by="signer"``, ``test_signers``) taken from the
    ``signers`` CSV (``gloss,sequence,recorded_by|signer|participant_id``) or the source.
    Committed sequences of the same source are skipped; bad input is recorded per item.
    Raises ValueError / SchemaMismatchError before writing when a source or the store
    cannot be used.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r}; one of {', '.join(FORMATS)}")
    if split_by not in SPLIT_BY:
        raise ValueError(f"split_by must be one of {', '.join(SPLIT_BY)}, not {split_by!r}")
    if num_frames is not None and int(num_frames) < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    resolved = [str(Path(s).resolve()) for s in sources]
    if not resolved and format != "seed-npy":
        raise ValueError("no SOURCE given")
    module = import_module(f".{FORMATS[format]}", __name__)
    face = face or store_keeps_face(str(store), storage_options)
    scan = module.scan(resolved, face=face, **format_options)
    try:
        return run_import(
            format,
            scan,
            resolved,
            str(store),
            num_frames=num_frames,
            split=split,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            seed=seed,
            split_by=split_by,
            signers=read_signers(signers) if signers else None,
            test_signers=list(test_signers) if test_signers else None,
            face=face,
            overwrite=overwrite,
            progress=progress,
            storage_options=storage_options,
        )
    finally:
        if scan.close is not None:
            scan.close()
