"""Which split each imported sequence goes to: one named split, the source's own, seeded
per-gloss fractions (stratified), or whole signers, so that no signer is in two splits.

Signers come from the source (Kaggle's ``participant_id``) or a CSV (``read_signers``).
Every assignment is seeded, so a rerun of the same import puts each sequence where it was.
"""

from __future__ import annotations

import csv
import zlib
from collections import Counter
from pathlib import Path

import numpy as np

from .scan import Item

__all__ = ["SIGNER_COLUMNS", "SPLIT_BY", "assign_splits", "read_signers"]

SPLIT_BY = ("sequence", "signer")
SIGNER_COLUMNS = ("recorded_by", "signer", "participant_id")
_SIGNER_TRIES = 256  # seeded orders tried when assigning whole signers to splits


def read_signers(path: str | Path) -> dict[tuple[str, str], str]:
    """(gloss, sequence) -> signer from a CSV ``gloss,sequence,recorded_by|signer|participant_id``."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"signers file {path} not found")
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        column = next((c for c in SIGNER_COLUMNS if c in columns), None)
        if "gloss" not in columns or "sequence" not in columns or column is None:
            raise ValueError(
                f"{path}: need columns gloss,sequence and one of {', '.join(SIGNER_COLUMNS)}; "
                f"found {', '.join(columns) or 'none'}"
            )
        return {(row["gloss"], row["sequence"]): row[column] for row in reader if row[column]}


def _rng(seed: int, key: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(key.encode())])


def _stratified(items: list[Item], val_fraction: float, test_fraction: float, seed: int) -> None:
    """Per gloss, a seeded shuffle cut into test, val and the rest train (at least one train)."""
    by_gloss: dict[str, list[Item]] = {}
    for item in items:
        by_gloss.setdefault(item.gloss, []).append(item)
    for gloss, group in by_gloss.items():
        group.sort(key=lambda i: i.video_id)
        order = _rng(seed, gloss).permutation(len(group))
        n = len(group)
        n_test = int(round(n * test_fraction))
        n_val = int(round(n * val_fraction))
        while n_test + n_val >= n and n_test + n_val > 0:
            if n_val >= n_test and n_val:
                n_val -= 1
            else:
                n_test -= 1
        for rank, i in enumerate(order):
            group[i].split = (
                "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
            )


def _by_signer(items: list[Item], val_fraction: float, test_fraction: float, seed: int) -> None:
    """Whole signers to train/val/test, as close to the fractions as seeded tries get.

    Each try takes the signers in a seeded order and gives each to the split furthest below
    its target (to an empty split while there are only as many signers left as empty splits);
    the try closest to the targets wins.
    """
    counts = Counter(item.signer for item in items if item.signer is not None)  # all have one
    signers = sorted(counts)
    total = sum(counts.values())
    targets = {
        "train": (1 - val_fraction - test_fraction) * total,
        "val": val_fraction * total,
        "test": test_fraction * total,
    }
    wanted = [name for name, target in targets.items() if target > 0]
    rng = _rng(seed, "signers")
    best, best_error = {}, float("inf")
    for _ in range(_SIGNER_TRIES):
        order = [signers[i] for i in rng.permutation(len(signers))]
        filled = dict.fromkeys(targets, 0)
        assigned = {}
        for n, signer in enumerate(order):
            empty = [k for k in wanted if filled[k] == 0]
            choices = empty if len(order) - n <= len(empty) else wanted
            split = max(choices, key=lambda k: targets[k] - filled[k])
            assigned[signer] = split
            filled[split] += counts[signer]
        error = sum(abs(filled[k] - targets[k]) for k in targets)
        if error < best_error:
            best, best_error = assigned, error
    for item in items:
        item.split = best[item.signer]


def assign_splits(
    items: list[Item],
    split: str | None,
    split_by: str,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    test_signers: list[str] | None,
) -> None:
    """Fill ``item.split``: one named split, the source's own, per gloss, or per signer."""
    if split_by not in SPLIT_BY:
        raise ValueError(f"split_by must be one of {', '.join(SPLIT_BY)}, not {split_by!r}")
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ValueError("val and test fractions must be in [0, 1) and sum to less than 1")
    live = [i for i in items if i.error is None]
    if split:
        for item in live:
            item.split = split
        return
    free = [i for i in live if i.split is None]
    by_signer = split_by == "signer" or bool(test_signers)
    if by_signer:
        for item in free:
            if item.signer is None:
                item.error = f"split: no signer known for {item.member} (see --signers)"
        free = [i for i in free if i.error is None]
    if test_signers:
        chosen = set(test_signers)
        unknown = chosen - {i.signer for i in free}
        if unknown:
            raise ValueError(f"test signer(s) {', '.join(sorted(unknown))} have no sequences")
        for item in free:
            if item.signer in chosen:
                item.split = "test"
        _stratified([i for i in free if i.split is None], val_fraction, 0.0, seed)
    elif by_signer:
        _by_signer(free, val_fraction, test_fraction, seed)
    else:
        _stratified(free, val_fraction, test_fraction, seed)
