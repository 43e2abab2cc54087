"""Uploads: decode, extract with the store's encoder (tiny-random), predict; and every way an
upload can be refused."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from featurestore.extract import ClipExtractor, synthesize, write_video
from model import load_checkpoint
from server import Settings, StartupError, create_app
from server.clips import MB, upload_peak_bytes
from tests.server.builders import build_checkpoint, build_store, upload_schema, wait_for_uploads

KEY = {"X-API-Key": "up-key"}
REAL_CLIPS = Path("/work/shared/data/wlasl-mini/videos")


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("upload")
    schema = upload_schema()
    store = build_store(root / "store.zarr", n=6, schema=schema)
    ckpt = build_checkpoint(root / "model.pt", store.schema)
    manifest = synthesize(root / "clips", classes=2, per_class=1, frames=12, size=(64, 64))
    clips = sorted((manifest.parent / "clips").glob("*.mp4"))
    settings = Settings(store=str(root / "store.zarr"), checkpoint=str(ckpt), api_key="up-key")
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert wait_for_uploads(app) == "ready"
        yield {"client": client, "app": app, "clips": clips, "ckpt": ckpt, "root": root}


def upload(client, data: bytes, name="clip.mp4", content_type="video/mp4", headers=KEY, **form):
    return client.post(
        "/v1/predict/video",
        files={"file": (name, data, content_type)},
        data={k: str(v) for k, v in form.items()},
        headers=headers,
    )


def test_upload_is_extracted_like_the_store_and_classified(env):
    clip = env["clips"][0]
    r = upload(env["client"], clip.read_bytes(), name=clip.name, top_k=3)
    assert r.status_code == 200, r.text
    body = r.json()
    (pred,) = body["predictions"]
    assert pred["video_id"] == clip.name
    # Expected: the store's own extraction of this clip through the checkpoint's model.
    arrays = ClipExtractor("tiny-random", num_frames=4).extract(clip)
    model = load_checkpoint(env["ckpt"]).model
    with torch.no_grad():
        probs = model(
            torch.from_numpy(arrays["gemma"][None]).float(),
            torch.from_numpy(arrays["landmarks"][None]),
            torch.from_numpy(arrays["landmark_mask"][None]),
        ).softmax(-1)[0]
    want_p, want_i = probs.topk(3)
    assert [c["label"] for c in pred["top_k"]] == want_i.tolist()
    np.testing.assert_allclose([c["prob"] for c in pred["top_k"]], want_p.numpy(), atol=1e-5)
    t = body["timings"]
    assert t["extract_ms"] > 0 and t["total_ms"] >= t["extract_ms"] + t["predict_ms"]


def test_an_upload_during_the_encoder_load_waits_for_it(env):
    store, ckpt = str(env["root"] / "store.zarr"), str(env["ckpt"])
    app = create_app(Settings(store=store, checkpoint=ckpt))
    with TestClient(app) as c:
        assert c.get("/readyz").json()["upload"] in ("loading", "ready")
        r = upload(c, env["clips"][0].read_bytes(), headers={})
        assert r.status_code == 200, r.text
        assert c.get("/readyz").json()["upload"] == "ready"


def test_an_encoder_that_cannot_be_rebuilt_disables_uploads_only(tmp_path, env):
    schema = upload_schema()
    other = dataclasses.replace(schema, encoder={**schema.encoder, "weights_sha256": "0" * 64})
    store = build_store(tmp_path / "store.zarr", n=3, schema=other)
    ckpt = build_checkpoint(tmp_path / "model.pt", store.schema)
    app = create_app(Settings(store=str(tmp_path / "store.zarr"), checkpoint=str(ckpt)))
    with TestClient(app) as c:
        assert wait_for_uploads(app).startswith("unavailable")
        r = upload(c, env["clips"][0].read_bytes(), headers={})
        assert r.status_code == 503 and "encoder fingerprint" in r.json()["detail"]
        assert c.get("/readyz").status_code == 200  # lookups and id predictions still serve
        assert c.post("/v1/predict", json={"video_ids": ["v000"]}).status_code == 200


def test_upload_needs_the_api_key(env):
    clip = env["clips"][0].read_bytes()
    r = upload(env["client"], clip, headers={})
    assert r.status_code == 401 and "X-API-Key" in r.json()["detail"]


@pytest.mark.parametrize(
    "data, content_type, status, contains",
    [
        (b"", "video/mp4", 422, "not a decodable video"),
        (b"this is not a video at all" * 50, "video/mp4", 422, "not a decodable video"),
        (bytes(range(256)) * 40, "application/octet-stream", 422, "not a decodable video"),
        (b"{}", "application/json", 415, "expected a video"),
        (b"\x89PNG\r\n\x1a\n", "image/png", 415, "expected a video"),
    ],
)
def test_undecodable_uploads_are_refused(env, data, content_type, status, contains):
    r = upload(env["client"], data, content_type=content_type)
    assert r.status_code == status, r.text
    assert contains in r.json()["detail"]
    assert "/tmp" not in r.text  # no server paths leak into errors


def test_truncated_video_is_refused_not_crashed(env):
    data = env["clips"][1].read_bytes()
    r = upload(env["client"], data[: len(data) // 3])
    assert r.status_code in (200, 422), r.text  # a damaged tail may still decode
    assert "detail" in r.json() or "predictions" in r.json()


def test_clip_length_limit(env, monkeypatch):
    monkeypatch.setattr(env["app"].state.settings, "max_clip_seconds", 0.05)
    r = upload(env["client"], env["clips"][0].read_bytes())
    assert r.status_code == 413
    assert "limit is 0.05 s" in r.json()["detail"]


def two_stream_webm(path: Path) -> Path:
    """A WebM whose first video stream lasts 0.4 s and whose second lasts 60 s."""
    with av.open(str(path), "w") as out:
        streams = [out.add_stream("libvpx", rate=25), out.add_stream("libvpx", rate=1)]
        for stream, side in zip(streams, (64, 16), strict=True):
            stream.width = stream.height = side
            stream.pix_fmt = "yuv420p"
        for stream, count in zip(streams, (10, 61), strict=True):
            for i in range(count):
                rgb = np.full((stream.height, stream.width, 3), i * 4, np.uint8)
                out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
            out.mux(stream.encode())
    return path


def test_clip_length_is_that_of_the_stream_decoded(env, tmp_path):
    path = two_stream_webm(tmp_path / "two.webm")
    with av.open(str(path)) as container:
        assert container.duration / av.time_base > 55  # the longest stream's
    r = upload(env["client"], path.read_bytes(), name="two.webm", content_type="video/webm")
    assert r.status_code == 200, r.text  # only the first stream is decoded: 0.4 s


def test_frames_over_the_pixel_limit_are_refused_from_the_header(env, monkeypatch):
    monkeypatch.setattr(env["app"].state.settings, "max_upload_pixels", 64 * 64 - 1)
    r = upload(env["client"], env["clips"][0].read_bytes())
    assert r.status_code == 413, r.text
    assert "frames are 64x64" in r.json()["detail"]


def test_a_wide_pixel_format_counts_at_its_size(env, tmp_path, monkeypatch):
    """4:4:4 frames take twice the decoder memory of 4:2:0 ones: at a size where 4:2:0
    just fits in what one upload may take, 4:4:4 does not."""
    uploads = env["app"].state.serving.uploads
    monkeypatch.setattr(uploads, "upload_peak", upload_peak_bytes(64 * 64, 4))
    frames = np.zeros((8, 64, 64, 3), np.uint8)
    for pix_fmt, status in (("yuv420p", 200), ("yuv444p", 413)):
        path = write_video(tmp_path / f"{pix_fmt}.mp4", frames, pix_fmt=pix_fmt)
        r = upload(env["client"], path.read_bytes())
        assert r.status_code == status, r.text
    assert "yuv444p" in r.json()["detail"]


def test_the_upload_queue_is_bounded_by_the_memory_budget(env, monkeypatch):
    """Each upload is counted at the most it can take; no more are let in than fit."""
    store, ckpt = str(env["root"] / "store.zarr"), str(env["ckpt"])
    peak = upload_peak_bytes(1920 * 1920, 4) / MB  # T=4
    app = create_app(Settings(store=store, checkpoint=ckpt, upload_memory_mb=2.5 * peak))
    with TestClient(app) as c:
        serving = c.get("/v1/info").json()["serving"]
        assert serving["upload_queue"] == 2 and serving["upload_peak_mb"] == round(peak)
        uploads = app.state.serving.uploads
        monkeypatch.setattr(uploads, "_pending", 2)  # two uploads wait already
        r = upload(c, env["clips"][0].read_bytes(), headers={})
        assert r.status_code == 503 and "too many uploads" in r.json()["detail"]
    too_small = create_app(Settings(store=store, checkpoint=ckpt, upload_memory_mb=peak / 2))
    with pytest.raises(StartupError, match="less than one upload can take"):
        with TestClient(too_small):
            pass


def test_upload_size_limit(env, monkeypatch):
    # The body limit is fixed when the app is built: a fresh app with a small one.
    store, ckpt = str(env["root"] / "store.zarr"), str(env["ckpt"])
    app = create_app(
        Settings(store=store, checkpoint=ckpt, upload_enabled=False, max_upload_bytes=10_000)
    )
    with TestClient(app) as c:
        r = upload(c, b"\0" * 50_000, headers={})
        assert r.status_code == 413 and "larger than" in r.json()["detail"]


def test_no_temp_files_are_left_behind(env, tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    upload(env["client"], env["clips"][0].read_bytes())
    upload(env["client"], b"garbage" * 100)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not REAL_CLIPS.is_dir(), reason="real WLASL test clips are not on this machine")
def test_a_real_signing_clip(env):
    clip = sorted(REAL_CLIPS.glob("*.mp4"))[0]
    r = upload(env["client"], clip.read_bytes(), name=clip.name, top_k=2)
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"][0]["top_k"]) == 2
