"""The /v1/stream WebSocket without a browser: order, dropping when behind, the stream
limit, clients that leave mid-window, garbage frames, the API key; and the upload route's
stage timings and details (what the page draws), for the codecs browsers record."""

from __future__ import annotations

import asyncio
import io
import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from starlette.websockets import WebSocketDisconnect

from featurestore.extract import synthesize, write_video
from server import Settings, create_app
from server.routes import stream as stream_routes
from tests.server.builders import build_checkpoint, build_store, upload_schema, wait_for_uploads

KEY = "live-key"


def jpeg(seed: int, size=(64, 48)) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("stream")
    store = build_store(root / "store.zarr", n=6, schema=upload_schema())
    ckpt = build_checkpoint(root / "model.pt", store.schema)
    settings = Settings(
        store=str(root / "store.zarr"),
        checkpoint=str(ckpt),
        api_key=KEY,
        max_streams=2,
        stream_every=2,
        # An untrained model and noise frames: every window is classified and may win.
        spot_min_score=0.0,
        spot_min_hands=0.0,
        stream_finish_seconds=30.0,  # no pause here: test_live_spot.py tests it
    )
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert wait_for_uploads(app) == "ready"
        yield {"client": client, "app": app, "root": root}


def connect(client, **query):
    q = "&".join(f"{k}={v}" for k, v in {"api_key": KEY, **query}.items())
    return client.websocket_connect(f"/v1/stream?{q}")


def predictions(ws, count: int) -> list[dict]:
    out = []
    while len(out) < count:
        m = ws.receive_json()
        assert m["type"] != "error", m
        if m["type"] == "prediction":
            out.append(m)
    return out


def wait_streams_closed(app, timeout=10.0):
    deadline = time.monotonic() + timeout
    while app.state.live_streams and time.monotonic() < deadline:
        time.sleep(0.02)
    return app.state.live_streams


def test_frames_are_processed_in_order_with_the_spotters_running_top_k(env):
    with connect(env["client"], every=2, top_k=3, fps=5) as ws:
        ready = ws.receive_json()
        assert ready == {
            "type": "ready", "num_frames": 4, "every": 2, "top_k": 3, "fps": 5.0,
            "window_frames": [4, 6, 9, 14], "stride": 1, "finish_seconds": 30.0,
        }  # fmt: skip
        got = []
        for i in range(8):  # one at a time: nothing is dropped
            ws.send_bytes(jpeg(i))
            if i % 2 == 1:
                got += predictions(ws, 1)
    assert [m["frame"] for m in got] == [2, 4, 6, 8]
    # No window before its shortest (4 frames); then the newest window the spotter read.
    assert got[0]["top_k"] == [] and got[0]["window"] == 0 and got[0]["window_end"] is None
    assert [m["window_end"] for m in got[1:]] == [4, 6, 8]
    assert [m["window"] for m in got[1:]] == [4, 6, 6]
    assert got[-1]["dropped"] == 0 and got[-1]["processed"] == 8
    for m in got[1:]:
        assert len(m["top_k"]) == 3
        assert all(0 <= c["prob"] <= 1 for c in m["top_k"])
    for m in got:
        assert set(m["hands"]) == {"left_hand", "right_hand"}
        assert m["hands_visible"] in (True, False)
        assert m["latency_ms"] > 0


def test_a_slow_server_drops_the_oldest_waiting_frames_beyond_its_queue(env, monkeypatch):
    features = env["app"].state.serving.uploads
    real = features.frame_features

    async def slow(rgb):
        await asyncio.sleep(0.1)
        return await real(rgb)

    monkeypatch.setattr(features, "frame_features", slow)
    monkeypatch.setattr(env["app"].state.settings, "stream_queue_frames", 4)
    with connect(env["client"], every=1) as ws:
        ws.receive_json()
        for i in range(40):
            ws.send_bytes(jpeg(i))
        seen = []
        while not seen or seen[-1]["frame"] < 40:
            seen += predictions(ws, 1)
    frames = [m["frame"] for m in seen]
    assert frames == sorted(frames) and len(set(frames)) == len(frames)  # in order
    last = seen[-1]
    assert last["received"] == 40
    assert last["dropped"] > 0 and last["processed"] + last["dropped"] == 40
    assert frames[-4:] == [37, 38, 39, 40]  # the newest frames always wait their turn


def test_the_stream_limit_answers_a_clear_close_code(env):
    client = env["client"]
    with connect(client) as a, connect(client) as b:
        a.receive_json(), b.receive_json()
        with connect(client) as c:
            m = c.receive_json()
            assert m["type"] == "error" and "too many live streams (limit 2)" in m["detail"]
            with pytest.raises(WebSocketDisconnect) as closed:
                c.receive_json()
            assert closed.value.code == 1013
    assert wait_streams_closed(env["app"]) == 0
    with connect(client) as again:  # the slots are free again
        assert again.receive_json()["type"] == "ready"


def test_a_client_that_leaves_mid_window_frees_its_slot(env, monkeypatch):
    features = env["app"].state.serving.uploads
    real = features.frame_features
    entered = threading.Event()

    async def slow(rgb):
        entered.set()
        return await real(rgb)

    monkeypatch.setattr(features, "frame_features", slow)
    for _ in range(3):  # more than the limit of 2: each one's slot came back
        with connect(env["client"], every=4) as ws:
            ws.receive_json()
            ws.send_bytes(jpeg(0))
            ws.send_bytes(jpeg(1))
            assert entered.wait(10)
        assert wait_streams_closed(env["app"]) == 0
    assert env["client"].get("/healthz").status_code == 200


def test_garbage_frames_get_an_error_and_the_stream_goes_on(env):
    client = env["client"]
    with connect(client, every=1) as ws:
        ws.receive_json()
        ws.send_bytes(b"\x00not a jpeg at all")
        m = ws.receive_json()
        assert m["type"] == "error" and m["frame"] == 1 and "not a JPEG" in m["detail"]
        ws.send_text("hello")
        m = ws.receive_json()
        assert m["type"] == "error" and "binary" in m["detail"]
        ws.send_bytes(jpeg(3)[:40])  # truncated
        assert ws.receive_json()["type"] == "error"
        ws.send_bytes(jpeg(4))
        (pred,) = predictions(ws, 1)
        assert pred["frame"] == 3 and pred["processed"] == 1  # text is not a frame
    assert client.get("/readyz").status_code == 200
    r = client.get("/v1/videos", headers={"X-API-Key": KEY})
    assert r.status_code == 200


@pytest.mark.parametrize(
    ("query", "detail"),
    [("api_key=nope", "wrong API key"), ("", "missing API key"), ("top_k=0", "top_k")],
)
def test_a_wrong_key_or_parameter_is_refused_with_1008(env, query, detail):
    url = "/v1/stream" + (f"?{query}" if query else "")
    if query.startswith("top_k"):
        url += f"&api_key={KEY}"
    with env["client"].websocket_connect(url) as ws:
        m = ws.receive_json()
        assert m["type"] == "error" and detail in m["detail"]
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 1008


def test_a_frame_task_that_dies_closes_the_stream_with_1011(env, monkeypatch):
    async def dies(ws, state, session):
        raise RuntimeError("boom")

    monkeypatch.setattr(stream_routes, "process_frames", dies)
    with connect(env["client"]) as ws:
        assert ws.receive_json()["type"] == "ready"
        m = ws.receive_json()
        assert m["type"] == "error" and "RuntimeError: boom" in m["detail"]
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 1011 and "boom" in closed.value.reason
    assert wait_streams_closed(env["app"]) == 0


def test_close_reasons_are_cut_to_123_bytes_of_whole_characters():
    reason = stream_routes.close_reason("é" * 100)
    assert len(reason.encode()) <= 123 and reason == "é" * 61
    assert stream_routes.close_reason("short") == "short"


def test_the_key_header_works_too(env):
    with env["client"].websocket_connect("/v1/stream", headers={"X-API-Key": KEY}) as ws:
        assert ws.receive_json()["type"] == "ready"


# -- uploads: what the page shows --------------------------------------------------------
@pytest.fixture(scope="module")
def frames(env):
    manifest = synthesize(env["root"] / "clips", classes=1, per_class=1, frames=10, size=(64, 64))
    clip = next((manifest.parent / "clips").glob("*.mp4"))
    import av

    with av.open(str(clip)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


@pytest.mark.parametrize(
    ("suffix", "codec", "mime"),
    [
        (".webm", "libvpx", "video/webm"),
        (".webm", "libvpx-vp9", "video/webm"),
        (".mp4", "libx264", "video/mp4"),
    ],
)
def test_uploads_decode_what_browsers_record_with_stage_timings(env, frames, suffix, codec, mime):
    import av

    if codec not in av.codecs_available:
        pytest.skip(f"this PyAV has no {codec} encoder")
    path = write_video(env["root"] / f"rec-{codec}{suffix}", frames, codec=codec)
    r = env["client"].post(
        "/v1/predict/video",
        files={"file": (path.name, path.read_bytes(), mime)},
        data={"details": "true", "top_k": "5"},
        headers={"X-API-Key": KEY},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["predictions"][0]["top_k"]) == 4  # capped at the class count
    t = body["timings"]
    for stage in ("decode_ms", "encoder_ms", "landmarks_ms", "model_ms"):
        assert t[stage] > 0, stage
    assert t["extract_ms"] >= t["decode_ms"] + t["encoder_ms"] + t["landmarks_ms"] - 1
    d = body["details"]
    assert len(d["frames"]) == len(d["frame_times"]) == len(d["landmarks"]) == 4
    assert d["frames"][0].startswith("data:image/jpeg;base64,")
    assert d["frame_indices"] == [0, 3, 6, 9] and d["frame_times"][-1] == pytest.approx(0.36)
    assert np.asarray(d["landmarks"]).shape == (4, 75, 3)
    assert np.asarray(d["landmark_mask"]).shape == (4, 3)
    assert d["layout"]["parts"] == ["pose", "left_hand", "right_hand"]


def test_details_only_when_asked(env, frames):
    path = write_video(env["root"] / "plain.mp4", frames)
    r = env["client"].post(
        "/v1/predict/video",
        files={"file": (path.name, path.read_bytes(), "video/mp4")},
        headers={"X-API-Key": KEY},
    )
    assert r.status_code == 200 and r.json().get("details") is None


def test_videos_are_searchable_by_gloss_and_text(env):
    client, h = env["client"], {"X-API-Key": KEY}
    everything = client.get("/v1/videos", headers=h).json()
    hello = client.get("/v1/videos?gloss=hello", headers=h).json()
    assert hello["total"] == sum(v["gloss"] == "hello" for v in everything["items"]) > 0
    assert all(v["gloss"] == "hello" for v in hello["items"])
    found = client.get("/v1/videos?q=V00", headers=h).json()  # ids v000.., any case
    assert found["total"] == everything["total"]
    assert client.get("/v1/videos?q=zzz", headers=h).json() == {"items": [], "total": 0}


def test_the_model_report_beside_the_checkpoint(env):
    client, h = env["client"], {"X-API-Key": KEY}
    assert client.get("/v1/model/report", headers=h).status_code == 404
    report = env["root"] / "eval" / "report.json"
    report.parent.mkdir()
    report.write_text(
        '{"split": "test", "count": 2, "top1": 0.5, "top5": 1.0, "loss": 1.2,'
        ' "per_class": {"hello": {"count": 2, "accuracy": 0.5}},'
        ' "confusion": [[1, 1], [0, 0]], "labels": {"0": "hello", "1": "thankyou"}}'
    )
    body = client.get("/v1/model/report", headers=h).json()
    assert body["confusion"] == [[1, 1], [0, 0]] and body["top1"] == 0.5


def test_a_server_without_a_key_needs_none_and_no_encoder_closes_1011(env):
    root = env["root"]
    store, ckpt = str(root / "store.zarr"), str(root / "model.pt")
    open_app = create_app(Settings(store=store, checkpoint=ckpt))
    with TestClient(open_app) as client:
        assert wait_for_uploads(open_app) == "ready"
        assert client.get("/v1/info").status_code == 200
        with client.websocket_connect("/v1/stream?every=1") as ws:
            assert ws.receive_json()["type"] == "ready"
            ws.send_bytes(jpeg(0))
            assert predictions(ws, 1)[0]["frame"] == 1
    no_encoder = create_app(Settings(store=store, checkpoint=ckpt, upload_enabled=False))
    with TestClient(no_encoder) as client, client.websocket_connect("/v1/stream") as ws:
        assert "not available: disabled" in ws.receive_json()["detail"]
        with pytest.raises(WebSocketDisconnect) as closed:
            ws.receive_json()
        assert closed.value.code == 1011
