"""The label map: label -> gloss, grown only by claims that the metadata's generations order.

A claim is a change of the metadata (``_meta.update_meta``): it is applied to the newest
document, and retried on the next one if another writer got there first. So two writers
that bring new glosses at once get distinct labels, a gloss never gets two, and a label
never changes its gloss. ``fixed`` labels come from the source (WLASL's class indices):
they are claimed as given, and a clash with the map is an error, not a renumbering.
"""

from __future__ import annotations

from collections.abc import Iterable

from .errors import SchemaMismatchError


def label_map(meta: dict) -> dict[int, str]:
    return {int(k): str(v) for k, v in (meta.get("labels") or {}).items()}


def claim(
    meta: dict, glosses: Iterable[str], fixed: dict[int, str] | None, where: str
) -> dict | None:
    """``meta`` with ``fixed`` labels and a label for each new gloss (the next free numbers,
    in sorted gloss order), or None when it holds them all already."""
    labels = label_map(meta)
    by_gloss = {g: n for n, g in labels.items()}
    if len(by_gloss) != len(labels):
        raise SchemaMismatchError(f"{where}: two labels share one gloss in its label map")
    added: dict[int, str] = {}
    for n, g in sorted((fixed or {}).items()):
        n, g = int(n), str(g)
        if n < 0:
            raise SchemaMismatchError(f"label {n} must be >= 0")
        have = labels.get(n, added.get(n))
        if have is not None and have != g:
            raise SchemaMismatchError(
                f"label {n} is {have!r} in {where}, not {g!r}; labels cannot change"
            )
        other = by_gloss.get(g)
        if other is not None and other != n:
            raise SchemaMismatchError(
                f"gloss {g!r} is label {other} in {where}, not {n}; two labels would share one gloss"
            )
        if have is None:
            added[n] = g
            by_gloss[g] = n
    following = max([*labels, *added, -1]) + 1
    for g in sorted({str(g) for g in glosses if g} - set(by_gloss)):
        added[following] = g
        by_gloss[g] = following
        following += 1
    if not added:
        return None
    merged = {**labels, **added}
    return {**meta, "labels": {str(k): v for k, v in sorted(merged.items())}}
