"""POST /v1/spot: asl-spot's JSON over HTTP, from the model served at the time, and one
clear 4xx for each kind of bad input (never a traceback)."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from featurestore import StoreSchema, StreamSpec, create_store
from featurestore.extract import landmark_layout, write_video
from server import Settings, create_app
from spotting.cli import main as asl_spot
from spotting.writers import SpotDocument
from tests.spotting.checkpoints import LABELS, T, tiny_checkpoint

KEY = "spot-key"
H = {"X-API-Key": KEY}


def landmark_store(path):
    """An empty store of the landmarks a landmarks-only checkpoint reads."""
    schema = StoreSchema(
        num_frames=T,
        streams={
            "landmarks": StreamSpec((T, 75, 3), "float32"),
            "landmark_mask": StreamSpec((T, 3), "bool"),
        },
        encoder={},
        landmark_layout=landmark_layout(),
        labels=LABELS,
    )
    create_store(str(path), schema)
    return str(path)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("spot")
    ckpt = tiny_checkpoint(root / "lm.pt")
    settings = Settings(store=landmark_store(root / "s.zarr"), checkpoint=str(ckpt), api_key=KEY)
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        yield {"client": client, "app": app, "root": root, "ckpt": ckpt}


def vectors(frames: int, width: int = 258, seed: int = 0) -> np.ndarray:
    """Per-frame vectors with every part found (values in (0, 1), as MediaPipe's)."""
    return np.random.default_rng(seed).uniform(0.2, 0.8, (frames, width)).astype(np.float32)


def npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def post(env, name: str, data: bytes, mime="application/octet-stream", **form):
    files = {"file": (name, data, mime)}
    return env["client"].post("/v1/spot", files=files, data=form, headers=H)


def test_the_answer_is_asl_spots_json_and_validates(env, tmp_path):
    talk = vectors(120)
    np.save(tmp_path / "talk.npy", talk)
    form = {"fps": "15", "min_score": "0", "window_s": "0.8,1.2"}
    r = post(env, "talk.npy", npy(talk), **form)
    assert r.status_code == 200, r.text
    doc = SpotDocument.model_validate(r.json())
    assert (doc.fps, doc.frames) == (15.0, 120) and doc.segments  # min_score 0: signs won
    args = ["--fps", "15", "--min-score", "0", "--window-s", "0.8,1.2"]
    out = tmp_path / "cli.json"
    assert asl_spot(["--checkpoint", str(env["ckpt"]), str(tmp_path / "talk.npy"), *args,
                     "--json", str(out)]) == 0  # fmt: skip
    assert r.json() == json.loads(out.read_text())
    schema = env["client"].get("/openapi.json", headers=H).json()
    ok = schema["paths"]["/v1/spot"]["post"]["responses"]["200"]["content"]["application/json"]
    assert ok["schema"]["$ref"].endswith("/SpotDocument")


def test_an_ordinary_run_finds_nothing_in_noise_and_says_so_plainly(env):
    r = post(env, "talk.npy", npy(vectors(60)))  # untrained model, min_score 0.5
    assert r.status_code == 200
    body = r.json()
    assert body["fps"] == 30.0 and body["frames"] == 60
    assert all(s["score"] >= 0.5 for s in body["segments"])


@pytest.mark.parametrize(
    ("name", "data", "status", "words"),
    [
        ("wide.npy", npy(vectors(40, 100)), 422, ["wide.npy", "expected per-frame landmark"]),
        ("short.npy", npy(vectors(5)), 422, ["short.npy", "5 frames, fewer than the 8"]),
        ("empty.npy", npy(np.zeros((40, 258), np.float32)), 422, ["empty.npy", "no signer"]),
        ("junk.npy", b"not an array", 422, ["junk.npy", "unreadable .npy"]),
        ("junk.pose", b"\x00\x01 not a pose file", 422, ["junk.pose"]),
        ("notes.mp4", b"this is not a video", 422, ["not a decodable video"]),
        ("clip.mp4", b"hello", 415, ["expected a video file"]),
    ],
)
def test_each_bad_upload_gets_one_clear_detail(env, name, data, status, words):
    mime = "text/plain" if status == 415 else "application/octet-stream"
    r = post(env, name, data, mime)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and "Traceback" not in detail and "asl-upload-" not in detail
    for w in words:
        assert w in detail


@pytest.mark.parametrize(
    ("form", "field"),
    [({"window_s": "abc"}, "window_s"), ({"min_score": "2"}, "min_score"), ({"fps": "0"}, "fps")],
)
def test_bad_parameters_are_422_naming_them(env, form, field):
    r = post(env, "talk.npy", npy(vectors(30)), **form)
    assert r.status_code == 422 and field in json.dumps(r.json()["detail"])


def test_a_video_with_nobody_in_it_says_so(env, tmp_path):
    path = write_video(tmp_path / "wall.mp4", np.full((20, 64, 64, 3), 90, np.uint8), fps=10)
    r = post(env, "wall.mp4", path.read_bytes(), "video/mp4")
    assert (
        r.status_code == 422
        and r.json()["detail"] == "wall.mp4: no signer in view (no pose and no hands in any frame)"
    )


def test_recordings_over_the_spotting_limit_are_413(env, tmp_path, monkeypatch):
    monkeypatch.setattr(env["app"].state.settings, "max_spot_seconds", 1.5)
    r = post(env, "talk.npy", npy(vectors(60)))  # 2 s at 30 fps
    assert r.status_code == 413 and "the limit for spotting is 1.5 s" in r.json()["detail"]
    path = write_video(tmp_path / "long.mp4", np.full((30, 64, 64, 3), 90, np.uint8), fps=10)
    r = post(env, "long.mp4", path.read_bytes(), "video/mp4")
    assert r.status_code == 413 and "clip is 3.0 s long; the limit is 1.5 s" in r.json()["detail"]


def test_the_upload_byte_limit_holds_for_spotting_too():
    small = create_app(Settings(store="unused", checkpoint="unused", max_upload_bytes=1000))
    # Not started (no lifespan): the body is refused before anything is loaded or read.
    r = TestClient(small).post("/v1/spot", files={"file": ("a.npy", b"x" * 50_000)})
    assert r.status_code == 413 and "larger than" in r.json()["detail"]


def test_without_a_model_the_answer_is_503(env, monkeypatch):
    monkeypatch.setattr(env["app"].state.serving.models, "current", None)
    r = post(env, "talk.npy", npy(vectors(30)))
    assert r.status_code == 503 and r.json()["detail"].startswith("no model yet: add takes")


def test_the_model_served_at_the_request_is_the_one_used(env, tmp_path, monkeypatch):
    """A checkpoint swapped on the state serves the next request (nothing kept from start-up)."""
    from model import load_checkpoint

    other = load_checkpoint(tiny_checkpoint(tmp_path / "other.pt"))
    other.labels = {i: f"other-{g}" for i, g in other.labels.items()}
    state = env["app"].state.serving
    monkeypatch.setattr(state.models, "current", state.served(other, None, None))
    r = post(env, "talk.npy", npy(vectors(60)), min_score="0")
    assert r.status_code == 200
    glosses = {s["gloss"] for s in r.json()["segments"]}
    assert glosses and all(g.startswith("other-") for g in glosses)
