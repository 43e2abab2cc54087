"""Decoding: containers, codecs, sizes, rotation, frame ranges, padding and bad files."""

import os
import pickle

import av
import numpy as np
import pytest

from featurestore.extract import DecodeError, count_frames, decode_clip, write_video
from tests.extract.clips import frame_indices, indexed_frames

FORMATS = [
    ("clip.mp4", "libx264", "yuv420p", (64, 48)),
    ("clip.webm", "libvpx-vp9", "yuv420p", (64, 48)),
    ("clip.avi", "mjpeg", "yuvj420p", (64, 48)),
    ("odd.webm", "libvpx-vp9", "yuv420p", (33, 47)),
    ("odd.avi", "mjpeg", "yuvj420p", (37, 21)),
    ("tall.mp4", "libx264", "yuv420p", (32, 96)),
]


@pytest.mark.parametrize("name,codec,pix_fmt,size", FORMATS)
def test_samples_the_right_frames_in_every_container(tmp_path, name, codec, pix_fmt, size):
    width, height = size
    path = write_video(
        tmp_path / name, indexed_frames(30, height, width), codec=codec, pix_fmt=pix_fmt
    )
    clip = decode_clip(path, num_frames=8)
    assert clip.frames.shape == (8, height, width, 3) and clip.frames.dtype == np.uint8
    assert frame_indices(clip.frames).tolist() == [0, 4, 8, 12, 17, 21, 25, 29]
    assert (clip.num_real_frames, clip.total_frames) == (8, 30)
    assert (clip.frame_start, clip.frame_end) == (1, 30)
    assert count_frames(path) == 30


def test_frame_range_is_respected(tmp_path):
    path = write_video(tmp_path / "c.mp4", indexed_frames(30))
    clip = decode_clip(path, num_frames=4, frame_start=5, frame_end=12)
    assert frame_indices(clip.frames).tolist() == [4, 6, 9, 11]
    assert (clip.frame_start, clip.frame_end) == (5, 12)


def test_range_past_the_end_is_clamped(tmp_path):
    path = write_video(tmp_path / "c.webm", indexed_frames(20), codec="libvpx-vp9")
    clip = decode_clip(path, num_frames=4, frame_start=10, frame_end=400)
    assert (clip.frame_start, clip.frame_end) == (10, 20)
    assert frame_indices(clip.frames)[-1] == 19


def test_short_clip_is_padded_with_the_last_frame(tmp_path):
    path = write_video(tmp_path / "short.mp4", indexed_frames(5))
    clip = decode_clip(path, num_frames=8)
    assert clip.num_real_frames == 5 and clip.total_frames == 5
    assert frame_indices(clip.frames).tolist() == [0, 1, 2, 3, 4, 4, 4, 4]
    assert np.array_equal(clip.frames[4], clip.frames[7])


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_metadata_is_applied(tmp_path, rotation):
    frames = np.zeros((6, 32, 64, 3), np.uint8)
    frames[:, :, :16] = 255  # a white stripe on the left edge of a landscape frame
    path = write_video(tmp_path / "rot.mp4", frames, rotation=rotation)
    clip = decode_clip(path, num_frames=2)
    expected = np.rot90(frames[0], rotation // 90)  # counter-clockwise, as the matrix says
    assert clip.frames.shape[1:] == expected.shape
    assert np.abs(clip.frames[0].astype(int) - expected).mean() < 8


def test_real_clip_with_audio_track_decodes():
    from tests.extract.clips import wlasl_mini

    path = wlasl_mini() / "videos" / "90001.mp4"
    clip = decode_clip(path, num_frames=16)
    assert clip.frames.shape[0] == 16 and clip.total_frames == count_frames(path) > 16


def _truncated_webm(tmp_path, keep: float):
    path = write_video(tmp_path / "full.webm", indexed_frames(30), codec="libvpx-vp9")
    data = path.read_bytes()
    cut = tmp_path / "cut.webm"
    cut.write_bytes(data[: int(len(data) * keep)])
    return cut


def test_damaged_tail_is_resampled_over_the_frames_that_decode(tmp_path):
    clip = decode_clip(_truncated_webm(tmp_path, 0.6), num_frames=4)
    assert 0 < clip.total_frames < 30
    got = frame_indices(clip.frames)
    assert got[0] == 0 and got[-1] == clip.total_frames - 1


def _audio_only(path):
    with av.open(str(path), "w") as container:
        stream = container.add_stream("aac", rate=16000)
        for i in range(4):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
            )
            frame.sample_rate, frame.pts = 16000, i * 1024
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def _garbled_payload(tmp_path):
    """A valid MP4 container whose frame data is random bytes: packets, but no frames."""
    path = write_video(tmp_path / "ok.mp4", indexed_frames(10))
    data = bytearray(path.read_bytes())
    at = data.find(b"mdat")
    size = int.from_bytes(data[at - 4 : at], "big")
    data[at + 4 : at - 4 + size] = np.random.default_rng(0).bytes(size - 8)
    bad = tmp_path / "garbled.mp4"
    bad.write_bytes(bytes(data))
    return bad


def _file(path, data: bytes):
    path.write_bytes(data)
    return path


BAD = {
    "missing": (lambda d: d / "nope.mp4", {"missing"}),
    "zero_bytes": (lambda d: _file(d / "empty.mp4", b""), {"empty"}),
    "text": (lambda d: _file(d / "text.mp4", b"not a video\n" * 20), {"not_video"}),
    "audio_only": (lambda d: _audio_only(d / "sound.m4a"), {"not_video"}),
    "no_decodable_frames": (_garbled_payload, {"no_frames"}),
    "truncated_header": (lambda d: _truncated_webm(d, 0.2), {"not_video", "no_frames"}),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_files_raise_decode_error_naming_the_file(tmp_path, case):
    make, reason = BAD[case]
    path = make(tmp_path)
    with pytest.raises(DecodeError) as info:
        decode_clip(path, num_frames=4)
    assert info.value.reason in reason
    assert os.path.basename(str(path)) in str(info.value)


def test_start_past_the_end_is_a_bad_range(tmp_path):
    path = write_video(tmp_path / "c.mp4", indexed_frames(10))
    with pytest.raises(DecodeError, match="past the clip's last frame") as info:
        decode_clip(path, num_frames=4, frame_start=50, frame_end=60)
    assert info.value.reason == "bad_range"


def test_decode_error_is_a_value_error_and_pickles():
    err = DecodeError("/x/y.mp4", "empty", "empty file (0 bytes)")
    assert isinstance(err, ValueError)
    back = pickle.loads(pickle.dumps(err))
    assert (back.reason, str(back)) == ("empty", str(err))


def test_frames_over_a_pixel_limit_are_refused_from_the_header(tmp_path):
    path = write_video(tmp_path / "c.mp4", indexed_frames(10, height=48, width=64))
    with pytest.raises(DecodeError, match="frames are 64x48") as info:
        decode_clip(path, num_frames=4, max_pixels=64 * 48 - 1)
    assert info.value.reason == "too_large"
    clip = decode_clip(path, num_frames=4, max_pixels=64 * 48)
    assert frame_indices(clip.frames).tolist() == [0, 3, 6, 9]


def test_a_stream_whose_frames_grow_midway_stops_before_the_large_ones(tmp_path):
    """The header gives the first frames' size; the decoder refuses the larger ones that
    follow (their memory is never taken), and the clip is what decoded before them."""
    small = write_video(tmp_path / "small.h264", indexed_frames(12, height=32, width=32))
    large = write_video(tmp_path / "large.h264", indexed_frames(4, height=128, width=128))
    grows = tmp_path / "grows.h264"
    grows.write_bytes(small.read_bytes() + large.read_bytes())
    unlimited = decode_clip(grows, num_frames=16)
    assert unlimited.total_frames == 16  # without a limit the large frames decode too
    clip = decode_clip(grows, num_frames=4, max_pixels=32 * 32)
    assert clip.frames.shape[1:] == (32, 32, 3)
    assert 0 < clip.total_frames < 16
    assert set(frame_indices(clip.frames)) <= set(range(12))


def test_iter_frames_reads_every_frame_in_order_or_about_fps_a_second(tmp_path):
    from featurestore.extract import frame_rate, iter_frames

    path = tmp_path / "long.mp4"
    write_video(path, indexed_frames(30), fps=30)
    assert frame_rate(path) == 30.0
    every = np.stack(list(iter_frames(path)))
    assert list(frame_indices(every)) == list(range(30))
    tenth = np.stack(list(iter_frames(path, fps=10)))
    assert list(frame_indices(tenth)) == list(range(0, 30, 3))
    assert len(list(iter_frames(path, fps=60))) == 30  # never more than the clip has
