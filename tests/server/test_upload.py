"""Uploads: decode, extract with the store's encoder (tiny-random), predict; and every way an
upload can be refused."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from featurestore.extract import ClipExtractor, synthesize
from model import load_checkpoint
from server import Settings, create_app
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
