"""The spotting core on arrays, and the live spotter that wraps it."""

from __future__ import annotations

import numpy as np
import pytest

from spotting import LiveSpotter, SpotConfig, spot, used_frames
from spotting.core import grid

from .fakes import FrameVote, stream

CONFIG = SpotConfig(window_frames=(14, 18, 22), stride=2)


def test_each_sign_is_found_once_with_its_gloss_and_place():
    arrays, truth = stream(seed=0)
    found = spot(FrameVote(), arrays, 30.0, CONFIG).segments
    assert [s.gloss for s in found] == [g for *_, g in truth]
    for seg, (start, end, _) in zip(found, truth, strict=True):
        assert abs(seg.start_frame - start) <= 4 and abs(seg.end_frame - end) <= 4
        assert seg.start_s == pytest.approx(seg.start_frame / 30.0, abs=1e-3)
        assert seg.top_k[0]["gloss"] == seg.gloss and len(seg.top_k) == 4


def test_rest_is_not_a_sign_and_windows_without_hands_are_not_either():
    arrays, _ = stream(seed=1, signs=1)
    arrays["landmarks"][:, 0, 0] = 0  # all rest
    assert spot(FrameVote(), arrays, 30.0, CONFIG).segments == []
    arrays, truth = stream(seed=1, signs=3, hands_in_rest=False)
    arrays["landmark_mask"][:, 1:] = False  # no hands anywhere: nothing is signed
    assert spot(FrameVote(), arrays, 30.0, CONFIG).segments == []


def test_a_recording_shorter_than_t_is_refused_with_its_length():
    arrays, _ = stream(seed=2, signs=1)
    short = {k: v[:5] for k, v in arrays.items()}
    with pytest.raises(ValueError, match="5 frames, fewer than the model's T=8"):
        spot(FrameVote(), short, 30.0, CONFIG)
    with pytest.raises(ValueError, match="landmark_mask"):
        spot(FrameVote(), {"landmarks": arrays["landmarks"]}, 30.0, CONFIG)


def test_windows_cover_the_tail_and_used_frames_are_what_they_read():
    windows = grid((10, 16), 4, 43, True)
    assert (33, 10) in windows and (27, 16) in windows  # both end on the last frame
    assert max(s + n for s, n in windows) == 43
    short = grid((50,), 4, 30, True)
    assert short == [(0, 30)]
    used = used_frames(43, 8, SpotConfig(window_frames=(10,), stride=4))
    assert used[0] == 0 and used[-1] == 42 and len(used) < 43


@pytest.mark.parametrize("seed", [0, 3, 4])
def test_live_spotting_decides_what_spotting_the_whole_recording_decides(seed):
    arrays, _ = stream(seed=seed, signs=12)
    whole = spot(FrameVote(), arrays, 30.0, CONFIG).segments
    live, found, at = LiveSpotter(FrameVote(), 30.0, CONFIG), [], 0
    rng = np.random.default_rng(seed)
    frames = len(arrays["landmarks"])
    while at < frames:
        n = int(rng.integers(1, 9))
        found += live.push({k: v[at : at + n] for k, v in arrays.items()})
        at += n
        assert live.buffered <= max(CONFIG.window_frames) + 2 * CONFIG.stride + 8
    found += live.finish()
    assert sorted(found, key=lambda s: s.start_frame) == whole


def test_live_segments_come_while_frames_still_arrive_and_a_burst_ends_in_one():
    arrays, truth = stream(seed=5, signs=4)
    live = LiveSpotter(FrameVote(), 30.0, CONFIG)
    early = live.push(arrays)
    assert [s.gloss for s in early] == [g for *_, g in truth[:3]]  # the last needs what follows
    assert [s.gloss for s in live.finish()] == [truth[-1][2]]
    assert live.finish() == []
    again = live.push(arrays)  # frames after a quiet spell count on from where they were
    assert again[0].start_frame >= len(arrays["landmarks"])
