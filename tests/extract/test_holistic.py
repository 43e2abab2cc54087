"""MediaPipe Holistic landmarks: layout, masks, padding reuse, the process pool, real clips."""

import numpy as np
import pytest

from featurestore.extract import (
    FACE_SUBSET,
    LandmarkExtractor,
    LandmarkPool,
    decode_clip,
    landmark_layout,
    synthesize,
)
from tests.extract.clips import wlasl_mini


@pytest.fixture(scope="module")
def extractor():
    with LandmarkExtractor() as ex:
        yield ex


@pytest.fixture(scope="module")
def synth_frames(tmp_path_factory):
    manifest = synthesize(tmp_path_factory.mktemp("lm"), classes=1, per_class=1, frames=12)
    return decode_clip(manifest.parent / "clips" / "sign00_000.mp4", num_frames=6).frames


def test_layout():
    assert landmark_layout() == {
        "source": "mediapipe-holistic-0.10.21",
        "parts": ["pose", "left_hand", "right_hand"],
        "sizes": [33, 21, 21],
        "coords": ["x", "y", "z"],
    }
    face = landmark_layout(face=True)
    assert face["parts"][-1] == "face" and face["sizes"][-1] == len(FACE_SUBSET) == 65
    assert len(set(FACE_SUBSET)) == 65 and max(FACE_SUBSET) < 468


def test_shapes_and_mask_on_synthetic_frames(extractor, synth_frames):
    points, mask = extractor.extract(synth_frames)
    assert points.shape == (6, 75, 3) and points.dtype == np.float32
    assert mask.shape == (6, 3) and mask.dtype == bool
    offsets = np.cumsum([0, 33, 21, 21])
    for p in range(3):
        part = points[:, offsets[p] : offsets[p + 1]]
        assert np.all(part[~mask[:, p]] == 0)  # parts not found are zeros
        found = part[mask[:, p]]
        if found.size:
            assert np.abs(found[..., :2]).max() < 3  # normalised coordinates


def test_blank_frames_find_nothing(extractor):
    points, mask = extractor.extract(np.zeros((3, 64, 64, 3), np.uint8))
    assert not mask.any() and not points.any()


def test_padding_frames_reuse_the_last_result(synth_frames):
    with LandmarkExtractor() as ex:
        padded = np.concatenate([synth_frames[:3], np.repeat(synth_frames[2:3], 3, axis=0)])
        points, mask = ex.extract(padded)
        assert ex.frames_processed == 3
    assert np.array_equal(points[3:], np.repeat(points[2:3], 3, axis=0))
    assert np.array_equal(mask[3:], np.repeat(mask[2:3], 3, axis=0))


def test_result_does_not_depend_on_the_clip_before(synth_frames):
    """Tracking state is reset per clip, so workers can take clips in any order."""
    with LandmarkExtractor() as ex:
        first = ex.extract(synth_frames)
        ex.extract(np.ascontiguousarray(synth_frames[::-1]))
        again = ex.extract(synth_frames)
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])


def test_bad_frames_raise():
    with LandmarkExtractor() as ex, pytest.raises(ValueError, match="uint8"):
        ex.extract(np.zeros((2, 8, 8, 3), np.float32))


def test_pool_matches_in_process_results(extractor, synth_frames):
    expected = extractor.extract(synth_frames)
    with LandmarkPool(1) as pool:
        points, mask, seconds, cpu = pool.submit(synth_frames).result(timeout=120)
    assert np.array_equal(points, expected[0]) and np.array_equal(mask, expected[1])
    assert seconds > 0 and cpu > 0


def test_face_subset_adds_a_part(synth_frames):
    with LandmarkExtractor(face=True) as ex:
        points, mask = ex.extract(synth_frames[:2])
    assert points.shape == (2, 75 + 65, 3) and mask.shape == (2, 4)


def test_real_clips_find_pose_and_hands_with_consistent_handedness(extractor):
    root = wlasl_mini()
    masks, nearer_own_wrist = [], []
    for path in sorted((root / "videos").glob("*.mp4")):
        points, mask = extractor.extract(decode_clip(path, num_frames=16).frames)
        masks.append(mask)
        # the "left" slot's wrist is nearer the pose's left wrist (15) than its right (16)
        for slot, own, other in ((1, 15, 16), (2, 16, 15)):
            start = 33 + 21 * (slot - 1)
            seen = mask[:, slot] & mask[:, 0]
            hand = points[seen, start, :2]
            d_own = np.linalg.norm(hand - points[seen, own, :2], axis=1)
            d_other = np.linalg.norm(hand - points[seen, other, :2], axis=1)
            nearer_own_wrist.extend((d_own < d_other).tolist())
    masks = np.concatenate(masks)
    assert masks[:, 0].mean() > 0.9  # a pose in nearly every frame
    assert (masks[:, 1] | masks[:, 2]).mean() > 0.6  # a hand in most frames
    assert (
        len(nearer_own_wrist) > 50 and np.mean(nearer_own_wrist) > 0.9
    )  # hands touch in some signs
