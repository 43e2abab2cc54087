"""asl-spot on every kind of INPUT, and one clear line for each kind of bad input."""

from __future__ import annotations

import numpy as np
import pytest

from spotting.cli import main
from spotting.writers import SpotDocument

from .checkpoints import T, tiny_checkpoint


@pytest.fixture(scope="module")
def landmarks_ckpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "lm.pt")


@pytest.fixture(scope="module")
def both_ckpt(tmp_path_factory):
    from featurestore.extract import load_encoder

    encoder = load_encoder("tiny-random").fingerprint
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "both.pt", "both", encoder)


def vectors(frames: int, width: int, seed: int = 0) -> np.ndarray:
    """Per-frame vectors with every part found (values in (0, 1), as MediaPipe's)."""
    return np.random.default_rng(seed).uniform(0.2, 0.8, (frames, width)).astype(np.float32)


def spot_cli(*args) -> int:
    return main([str(a) for a in args])


@pytest.mark.parametrize("width", [1662, 258, 126, 162])
def test_npy_of_each_layout_gives_all_three_files(tmp_path, landmarks_ckpt, width):
    np.save(tmp_path / "talk.npy", vectors(90, width))
    out = tmp_path / "out"
    code = spot_cli(
        "--checkpoint", landmarks_ckpt, tmp_path / "talk.npy", "--fps", 15,
        "--json", out / "s.json", "--vtt", out / "s.vtt", "--eaf", out / "s.eaf",
    )  # fmt: skip
    assert code == 0
    doc = SpotDocument.model_validate_json((out / "s.json").read_text())
    assert (doc.fps, doc.frames) == (15.0, 90)
    assert (out / "s.vtt").read_text().startswith("WEBVTT")
    assert "ANNOTATION_DOCUMENT" in (out / "s.eaf").read_text()


def test_sequence_folder_and_pose_file_are_read_by_the_importers(tmp_path, landmarks_ckpt):
    folder = tmp_path / "MP_Data" / "hello" / "0"
    folder.mkdir(parents=True)
    for i, row in enumerate(vectors(24, 258)):  # 0.npy ... 23.npy: numeric order, not text
        np.save(folder / f"{i}.npy", row)
    pytest.importorskip("pose_format")
    from tests.importers.test_formats import write_pose

    write_pose(tmp_path / "talk.pose", np.random.default_rng(1), frames=30)
    out = tmp_path / "out"
    assert (
        spot_cli("--checkpoint", landmarks_ckpt, folder, tmp_path / "talk.pose", "--json", out) == 0
    )
    assert SpotDocument.model_validate_json((out / "0.json").read_text()).frames == 24
    pose = SpotDocument.model_validate_json((out / "talk.json").read_text())
    assert pose.frames == 30 and pose.fps > 0  # the .pose file's own rate


def bad_inputs(tmp_path):
    np.save(tmp_path / "wide.npy", vectors(40, 100))
    np.save(tmp_path / "short.npy", vectors(T - 3, 258))
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "notes.mp4").write_text("not a video")
    return {
        "wide.npy": "expected per-frame landmark vectors (frames, 1662 | 258 | 126 | 162)",
        "short.npy": f"5 frames, fewer than the {T} frames (T)",
        "empty.mp4": "empty file",
        "notes.mp4": "not a readable video",
        "missing.npy": "no such file or folder",
    }


def test_each_bad_input_gets_one_line_naming_it_and_the_others_still_run(
    tmp_path, landmarks_ckpt, capsys
):
    expected = bad_inputs(tmp_path)
    np.save(tmp_path / "good.npy", vectors(40, 258))
    names = [tmp_path / n for n in expected] + [tmp_path / "good.npy"]
    assert spot_cli("--checkpoint", landmarks_ckpt, *names, "--json", tmp_path / "out") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == len(expected) and "Traceback" not in "\n".join(err)
    for line, (name, reason) in zip(err, expected.items(), strict=True):
        assert line.startswith("asl-spot: error: ") and str(tmp_path / name) in line
        assert reason in line, line
    assert (tmp_path / "out" / "good.json").is_file()


def test_a_both_stream_checkpoint_refuses_landmark_files_by_name(tmp_path, both_ckpt, capsys):
    np.save(tmp_path / "talk.npy", vectors(40, 258))
    assert spot_cli("--checkpoint", both_ckpt, tmp_path / "talk.npy") == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert str(tmp_path / "talk.npy") in line and "holds landmarks only" in line
    assert "Gemma features" in line


def test_a_missing_checkpoint_is_one_line(tmp_path, capsys):
    assert spot_cli("--checkpoint", tmp_path / "none.pt", tmp_path / "x.npy") == 2
    assert (
        capsys.readouterr().err.strip()
        == f"asl-spot: error: checkpoint {tmp_path / 'none.pt'} does not exist"
    )


def test_a_video_with_nobody_in_it_says_so(tmp_path, landmarks_ckpt, capsys):
    from featurestore.extract import write_video

    frames = np.full((20, 64, 64, 3), 90, np.uint8)
    write_video(tmp_path / "wall.mp4", frames, fps=10)
    assert spot_cli("--checkpoint", landmarks_ckpt, tmp_path / "wall.mp4") == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert f"{tmp_path / 'wall.mp4'}: no signer in view" in line


def test_a_video_gets_landmarks_on_every_frame_and_gemma_once_on_each_frame_windows_read(
    tmp_path, both_ckpt, monkeypatch
):
    from featurestore.extract import GemmaEncoder, LandmarkExtractor
    from spotting import SpotConfig, used_frames
    from tests.extract.clips import shared_data

    data = shared_data()
    clip = data / "webcam" / "signing_webcam.mp4" if data else None
    if clip is None or not clip.is_file():
        pytest.skip("the real webcam clip (shared/data/webcam) is not on this machine")
    encoded, tracked = [], []
    encode, track = GemmaEncoder.encode, LandmarkExtractor.track
    monkeypatch.setattr(GemmaEncoder, "encode", lambda s, f: encoded.append(len(f)) or encode(s, f))
    monkeypatch.setattr(LandmarkExtractor, "track", lambda s, f: tracked.append(1) or track(s, f))
    out = tmp_path / "s.json"
    args = ("--fps", 10, "--window-s", "1.6", "--stride", 4, "--json", out)
    assert spot_cli("--checkpoint", both_ckpt, clip, *args) == 0
    doc = SpotDocument.model_validate_json(out.read_text())
    assert doc.fps == 10.0 and 15 <= doc.frames <= 25  # a 2 s clip read at 10 fps
    assert len(tracked) == doc.frames  # every frame at 10 fps, tracked
    used = used_frames(doc.frames, T, SpotConfig(window_frames=(16,), stride=4))
    assert sum(encoded) == len(used) < doc.frames  # each frame a window reads, once
