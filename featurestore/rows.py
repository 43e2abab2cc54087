"""Re-cutting a stream of row groups (the store's blocks, the training loader's windows)
into batches of a fixed size: take the first n rows off the groups still pending."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

G = TypeVar("G")


def take_rows(
    pending: list[G],
    n: int,
    size: Callable[[G], int],
    cut: Callable[[G, int], tuple[G, G]],
) -> tuple[list[G], list[G]]:
    """Split the first ``n`` rows off ``pending`` (oldest group first) into the groups that
    hold them, the last one cut in two by ``cut(group, k)`` (its first k rows, the rest) if it
    straddles, and the groups left, in order: the taken ones are always a prefix. Empty
    groups up to the next row go with the taken ones."""
    taken: list[G] = []
    rest: list[G] = []
    for group in pending:
        rows = size(group)
        if rest:
            rest.append(group)
        elif n >= rows:
            taken.append(group)
            n -= rows
        elif n > 0:
            head, tail = cut(group, n)
            taken.append(head)
            rest.append(tail)
            n = 0
        else:
            rest.append(group)
    return taken, rest


__all__ = ["take_rows"]
