"""The spotter behind the live WebSocket and POST /v1/spot on a both-stream model.

- The issue's repro, on the real path (JPEG, MediaPipe, encoder, an untrained model told
  that any window may hold a sign): a burst of frames then silence ends in segments and
  a `pause`, within the test's time limit, with no sleep on either side.
- At a camera's pace (each frame sent when the one before was answered), segments come
  while frames still arrive, at the places the offline spotter finds. Here the frames
  are landmark-level fakes: a JPEG's grey level is the class signed in it, and the model
  is `FrameVote` (tests/spotting/fakes.py), whose answer is the share of each class in a
  window, so the places are exact.
"""

from __future__ import annotations

import io
from dataclasses import asdict

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from server import Settings, create_app
from server.routes import stream as stream_routes
from server.spotter import live_stride, spot_config
from spotting import spot
from tests.extract.clips import shared_data
from tests.server.builders import build_checkpoint, build_store, upload_schema, wait_for_uploads
from tests.spotting.fakes import FrameVote, stream

KEY = "live-spot-key"
QUIET = 2.0


def jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (48, 64, 3), np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("live-spot")
    store = build_store(root / "store.zarr", n=6, schema=upload_schema())
    ckpt = build_checkpoint(root / "model.pt", store.schema)
    settings = Settings(
        store=str(root / "store.zarr"),
        checkpoint=str(ckpt),
        api_key=KEY,
        spot_min_score=0.0,  # an untrained model: any window may hold a sign
        spot_min_hands=0.0,  # noise frames have no hands
        stream_finish_seconds=QUIET,
    )
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert wait_for_uploads(app) == "ready"
        yield {"client": client, "app": app, "root": root}


def connect(client, **query):
    q = "&".join(f"{k}={v}" for k, v in {"api_key": KEY, **query}.items())
    return client.websocket_connect(f"/v1/stream?{q}")


def until(ws, kind: str) -> list[dict]:
    """Messages up to and including the first of `kind`; errors fail the test."""
    out = []
    while True:
        m = ws.receive_json()
        assert m["type"] != "error", m
        out.append(m)
        if m["type"] == kind:
            return out


@pytest.mark.timeout(300)
def test_a_burst_of_frames_then_silence_ends_in_segments(env):
    with connect(env["client"]) as ws:  # the client: defaults, 72 frames at once
        ready = ws.receive_json()
        assert ready["type"] == "ready" and ready["fps"] == 10.0
        for i in range(72):
            ws.send_bytes(jpeg(i))
        got = until(ws, "pause")
    segments = [m for m in got if m["type"] == "segment"]
    predictions = [m for m in got if m["type"] == "prediction"]
    pause = got[-1]
    assert segments and predictions and predictions[-1]["top_k"]
    assert pause["processed"] + pause["dropped"] == 72 and pause["spotted_frames"] >= 64
    assert pause["segments"] >= 1  # decided on the frames held when they stopped
    for s in segments:
        assert set(s) == {"type", "start_frame", "end_frame", "start_s", "end_s", "gloss",
                          "label", "score", "top_k"}  # fmt: skip
        assert 0 <= s["start_frame"] < s["end_frame"] <= pause["spotted_frames"]
        assert s["start_s"] == pytest.approx(s["start_frame"] / 10.0, abs=1e-3)
        assert s["top_k"][0]["gloss"] == s["gloss"]
    starts = [s["start_frame"] for s in segments]
    assert starts == sorted(starts)


def labelled_jpeg(label: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (60 * label,) * 3).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture
def fakes(env, monkeypatch):
    """Frames whose grey level is their class; the FrameVote model; asl-spot's thresholds."""

    async def features(rgb):
        landmarks = np.zeros((75, 3), np.float32)
        landmarks[0, 0] = round(float(rgb.mean()) / 60)
        return {"landmarks": landmarks, "landmark_mask": np.ones(3, bool)}

    monkeypatch.setattr(env["app"].state.serving.uploads, "frame_features", features)
    monkeypatch.setattr(stream_routes, "served_classifier", lambda state: FrameVote())
    settings = env["app"].state.settings
    monkeypatch.setattr(settings, "spot_min_score", 0.5)
    monkeypatch.setattr(settings, "spot_min_hands", 0.5)
    monkeypatch.setattr(settings, "spot_window_s", "0.9,1.2,1.5")  # the fake signs' lengths
    return settings


@pytest.mark.timeout(300)
def test_at_a_cameras_pace_segments_come_as_signs_end_at_their_places(env, fakes):
    fps = 15.0
    arrays, truth = stream(seed=7, signs=5)
    labels = arrays["landmarks"][:, 0, 0].astype(int)
    config = spot_config(fakes, fps, FrameVote.num_frames, None, live_stride(fps))
    offline = [asdict(s) for s in spot(FrameVote(), arrays, fps, config).segments]
    live, decided_at = [], []
    with connect(env["client"], every=1, fps=15) as ws:
        assert ws.receive_json()["window_frames"] == list(config.window_frames)
        for frame, label in enumerate(labels, 1):
            ws.send_bytes(labelled_jpeg(int(label)))
            for m in until(ws, "prediction"):  # each frame answered before the next goes
                if m["type"] == "segment":
                    live.append(m)
                    decided_at.append(frame)
        assert len(live) >= len(truth) - 1  # all but the last sign, while frames came
        rest = until(ws, "pause")
    live += [m for m in rest if m["type"] == "segment"]
    assert [{k: v for k, v in m.items() if k != "type"} for m in live] == offline
    assert [m["gloss"] for m in live] == [g for *_, g in truth]
    for m, (start, end, _) in zip(live, truth, strict=True):
        assert abs(m["start_frame"] - start) <= 4 and abs(m["end_frame"] - end) <= 4
    longest = max(config.window_frames)
    for m, at in zip(live, decided_at, strict=False):  # soon after the sign ended
        assert m["end_frame"] <= at <= m["end_frame"] + longest + 2 * config.stride + 1


def test_frames_after_a_pause_count_on_and_are_spotted_afresh(env, fakes):
    arrays, truth = stream(seed=8, signs=1)
    labels = [int(v) for v in arrays["landmarks"][:, 0, 0]]
    found = []
    with connect(env["client"], every=1000, fps=15) as ws:
        ws.receive_json()
        for _ in range(2):
            for label in labels:
                ws.send_bytes(labelled_jpeg(label))
            found += [m for m in until(ws, "pause") if m["type"] == "segment"]
    assert [m["gloss"] for m in found] == [truth[0][2]] * 2
    assert found[1]["start_frame"] - found[0]["start_frame"] == len(labels)


def test_no_model_refuses_the_stream_with_1013(env, monkeypatch):
    from starlette.websockets import WebSocketDisconnect

    monkeypatch.setattr(env["app"].state.serving.models, "current", None)
    with connect(env["client"]) as ws:
        assert ws.receive_json()["detail"].startswith("no model yet: add takes")
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 1013


def test_spot_refuses_landmarks_for_a_model_that_reads_video_features(env):
    vectors = np.random.default_rng(0).uniform(0.2, 0.8, (40, 258)).astype(np.float32)
    buf = io.BytesIO()
    np.save(buf, vectors)
    r = env["client"].post(
        "/v1/spot", files={"file": ("talk.npy", buf.getvalue())}, headers={"X-API-Key": KEY}
    )
    assert r.status_code == 422
    assert r.json()["detail"].startswith("talk.npy: holds landmarks only, but the checkpoint")


def test_spot_runs_landmarks_and_the_encoder_on_a_real_video(env):
    data = shared_data()
    clip = data / "webcam" / "signing_webcam.mp4" if data else None
    if clip is None or not clip.is_file():
        pytest.skip("the real webcam clip (shared/data/webcam) is not on this machine")
    r = env["client"].post(
        "/v1/spot",
        files={"file": ("webcam.mp4", clip.read_bytes(), "video/mp4")},
        data={"fps": "10"},
        headers={"X-API-Key": KEY},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["fps"] == 10.0 and 15 <= body["frames"] <= 25
    assert body["segments"]  # min_score 0 in this app: a window with hands wins
