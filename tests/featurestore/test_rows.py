"""take_rows: the one "first n rows off the pending groups" behind iter_batches and the
training loader's batches (and so its resume position)."""

from __future__ import annotations

from featurestore import take_rows


def _cut(group: list[int], k: int) -> tuple[list[int], list[int]]:
    return group[:k], group[k:]


def test_a_group_straddling_n_is_cut_and_the_rest_stays_in_order():
    pending = [[0, 1], [2, 3, 4], [5]]
    taken, rest = take_rows(pending, 3, len, _cut)
    assert taken == [[0, 1], [2]] and rest == [[3, 4], [5]]
    taken, rest = take_rows(rest, 3, len, _cut)
    assert taken == [[3, 4], [5]] and rest == []


def test_taken_groups_are_a_prefix_and_empty_ones_up_to_the_next_row_go_with_them():
    taken, rest = take_rows([[0], [], [1, 2], []], 2, len, _cut)
    assert taken == [[0], [], [1]] and rest == [[2], []]
    taken, rest = take_rows([[0, 1], [], [2]], 2, len, _cut)
    assert taken == [[0, 1], []] and rest == [[2]]
