"""Frame sampling: uniform T indices inside a 1-indexed inclusive WLASL range."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from featurestore.extract import resolve_range, sample_indices


def test_uniform_over_whole_clip_keeps_first_and_last():
    idx, real = sample_indices(100, 16)
    assert len(idx) == 16 and real == 16
    assert idx[0] == 0 and idx[-1] == 99
    assert np.all(np.diff(idx) > 0)
    gaps = np.diff(idx)
    assert gaps.max() - gaps.min() <= 1  # uniform up to rounding


def test_wlasl_range_is_one_indexed_and_inclusive():
    idx, real = sample_indices(100, 4, frame_start=11, frame_end=20)
    assert idx.tolist() == [10, 13, 16, 19]  # frames 11..20 are indices 10..19
    assert real == 4


def test_end_minus_one_means_last_frame():
    idx, _ = sample_indices(50, 5, frame_start=41, frame_end=-1)
    assert idx.tolist() == [40, 42, 44, 47, 49]


def test_short_range_is_padded_with_its_last_frame():
    idx, real = sample_indices(5, 8)
    assert idx.tolist() == [0, 1, 2, 3, 4, 4, 4, 4]
    assert real == 5


def test_end_past_the_clip_is_clamped():
    idx, real = sample_indices(30, 4, frame_start=1, frame_end=80)
    assert idx[-1] == 29 and real == 4
    assert resolve_range(30, 1, 80) == (1, 30)


def test_start_below_one_is_clamped():
    assert resolve_range(30, 0, 10) == (1, 10)


@pytest.mark.parametrize(
    "total,start,end,match",
    [(30, 31, -1, "past the clip's last frame"), (30, 10, 5, "empty"), (0, 1, -1, "no frames")],
)
def test_unusable_ranges_raise(total, start, end, match):
    with pytest.raises(ValueError, match=match):
        sample_indices(total, 4, start, end)


def test_num_frames_must_be_positive():
    with pytest.raises(ValueError, match="num_frames"):
        sample_indices(10, 0)


@given(
    total=st.integers(1, 500),
    num=st.integers(1, 64),
    start=st.integers(1, 500),
    length=st.integers(1, 600),
)
def test_sampling_properties(total, num, start, length):
    if start > total:
        with pytest.raises(ValueError):
            sample_indices(total, num, start, start + length - 1)
        return
    end = start + length - 1
    idx, real = sample_indices(total, num, start, end)
    first, last = start - 1, min(end, total) - 1
    assert len(idx) == num
    assert idx.min() == first
    assert idx.max() == (last if num > 1 else first)
    assert np.all(np.diff(idx) >= 0)
    assert real == min(num, last - first + 1)
    assert len(np.unique(idx)) == real
