"""Serving a model trained on an added feature set: it reads that set for stored videos,
refuses a store that lacks it or holds it from another encoder (naming the set), encodes
uploads with that set's encoder, and the lookup route serves any stream by name."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from featurestore import (
    GEMMA_STREAM,
    LANDMARK_MASK_STREAM,
    LANDMARKS_STREAM,
    StoreSchema,
    open_store,
)
from model import HybridASLModel, ModelConfig, load_checkpoint, save_checkpoint
from server import Settings, StartupError, create_app
from tests.server.builders import (
    build_checkpoint,
    build_store,
    upload_schema,
    video_ids,
    wait_for_uploads,
)

NPY = "application/x-npy"
ALT = {"model_id": "alt-encoder", "revision": "1", "pooling": "mean_vision_patches"}
ALT_DIM = 6
LACKING = "v001"
"""The one video the added set was never written for."""


def add_features(url, name: str, encoder: dict, dim: int, skip=(), seed: int = 1) -> None:
    store = open_store(str(url), "r+")
    rng = np.random.default_rng(seed)
    T = store.schema.num_frames
    store.add_feature_set(name, encoder, (T, dim))
    with store.feature_writer(name) as w:
        for vid in store.ids():
            if vid not in skip:
                w.put(vid, rng.standard_normal((T, dim)).astype(np.float16))


def feature_checkpoint(path, schema: StoreSchema, features: str, seed: int = 0):
    """An untrained model reading feature set `features` of `schema` and the landmarks."""
    torch.manual_seed(seed)
    spec = schema.spec(features)
    cfg = ModelConfig.from_layout(
        schema.landmark_layout,
        num_classes=len(schema.labels),
        gemma_dim=spec.shape[-1],
        num_frames=schema.num_frames,
        hidden_dim=32,
        num_landmark_layers=1,
    )
    streams = {
        s: schema.spec(s).to_json() for s in (features, LANDMARKS_STREAM, LANDMARK_MASK_STREAM)
    }
    return save_checkpoint(
        path,
        HybridASLModel(cfg),
        labels=schema.labels,
        features=features,
        encoder=schema.fingerprint(features),
        landmark_layout=schema.landmark_layout,
        num_frames=schema.num_frames,
        streams=streams,
    )


@pytest.fixture(scope="module")
def alt_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("alt")
    build_store(root / "store.zarr", n=12)
    add_features(root / "store.zarr", "alt", {**ALT, "feature_dim": ALT_DIM}, ALT_DIM, {LACKING})
    schema = open_store(str(root / "store.zarr")).schema
    ckpt = feature_checkpoint(root / "alt.pt", schema, "alt")
    return {"root": root, "store": str(root / "store.zarr"), "ckpt": str(ckpt), "schema": schema}


def app_for(store, ckpt, **kw):
    return create_app(Settings(store=str(store), checkpoint=str(ckpt), upload_enabled=False, **kw))


def test_predicts_stored_videos_from_the_checkpoints_feature_set(alt_env):
    with TestClient(app_for(alt_env["store"], alt_env["ckpt"])) as c:
        assert c.get("/v1/info").json()["model"]["features"] == "alt"
        r = c.post("/v1/predict", json={"video_ids": ["v000", "v002"], "top_k": 2})
        assert r.status_code == 200, r.text
        got = [p["top_k"][0]["prob"] for p in r.json()["predictions"]]
        r = c.post("/v1/predict", json={"video_ids": ["v000", LACKING]})
        assert r.status_code == 404
        assert "do not hold feature set 'alt'" in r.json()["detail"] and LACKING in r.text
    # what the model gives for the stored alt features and landmarks
    video = open_store(alt_env["store"]).get_many(["v000", "v002"], ["alt", *LM_STREAMS])
    model = load_checkpoint(alt_env["ckpt"]).model
    with torch.no_grad():
        alt, lm, mask = (torch.from_numpy(video.arrays[s]) for s in ["alt", *LM_STREAMS])
        probs = model(alt.float(), lm, mask)
    np.testing.assert_allclose(got, probs.float().softmax(-1).max(-1).values, atol=1e-5)


LM_STREAMS = (LANDMARKS_STREAM, LANDMARK_MASK_STREAM)


def test_the_lookup_route_serves_an_added_set_and_404s_where_a_video_lacks_it(alt_env):
    stored = open_store(alt_env["store"]).get("v000", ["alt"]).arrays["alt"]
    with TestClient(app_for(alt_env["store"], alt_env["ckpt"])) as c:
        body = c.get("/v1/videos/v000/features/alt").json()
        assert body["shape"] == [4, ALT_DIM] and body["dtype"] == "float16"
        np.testing.assert_array_equal(np.array(body["data"], np.float16), stored)
        r = c.get("/v1/videos/v000/features/alt", headers={"Accept": NPY})
        assert r.status_code == 200 and r.headers["content-type"] == NPY
        for _ in range(2):  # the second time from the cache: still refused
            r = c.get(f"/v1/videos/{LACKING}/features/alt")
            assert r.status_code == 404
            assert r.json()["detail"] == f"video '{LACKING}' does not hold feature set 'alt'"
        r = c.get("/v1/videos/v000/features/siglip")
        assert r.status_code == 404 and "'alt'" in r.json()["detail"]  # it lists what there is
        assert c.get(f"/v1/videos/{LACKING}/features/gemma").status_code == 200
        base = {"gemma", "landmarks", "landmark_mask"}
        assert set(c.get("/v1/videos/v000").json()["streams"]) == {*base, "alt"}
        assert set(c.get(f"/v1/videos/{LACKING}").json()["streams"]) == base


def test_refuses_a_store_without_the_set_or_with_it_from_another_encoder(alt_env, tmp_path):
    only_gemma = build_store(tmp_path / "gemma.zarr", n=3)
    with pytest.raises(StartupError, match="refusing to serve.*feature set 'alt': missing"):
        with TestClient(app_for(only_gemma.url, alt_env["ckpt"])):
            pass
    other = tmp_path / "other.zarr"
    build_store(other, n=3)
    add_features(other, "alt", {**ALT, "revision": "2", "feature_dim": ALT_DIM}, ALT_DIM)
    with pytest.raises(StartupError, match="feature set 'alt': encoder fingerprint differs") as e:
        with TestClient(app_for(other, alt_env["ckpt"])):
            pass
    assert "revision: store '2', checkpoint '1'" in str(e.value)
    # a checkpoint of base gemma against a store whose gemma was dropped, alt kept
    gemma_ckpt = build_checkpoint(tmp_path / "gemma.pt", alt_env["schema"])
    no_gemma = tmp_path / "no-gemma.zarr"
    build_store(no_gemma, n=3)
    add_features(no_gemma, "alt", {**ALT, "feature_dim": ALT_DIM}, ALT_DIM)
    open_store(str(no_gemma), "r+").drop_feature_set(GEMMA_STREAM)
    with pytest.raises(StartupError, match=r"feature set 'gemma': missing .*\['alt'\]"):
        with TestClient(app_for(no_gemma, gemma_ckpt)):
            pass


# -- uploads: encoded by the feature set's own encoder -----------------------------------------
@pytest.fixture(scope="module")
def upload_env(tmp_path_factory):
    from featurestore.extract import load_encoder, synthesize

    root = tmp_path_factory.mktemp("alt-upload")
    build_store(root / "store.zarr", n=3, schema=upload_schema())
    encoder = load_encoder("tiny-random", pooling="mean_vision_patches")  # another encoder
    add_features(root / "store.zarr", "patches", encoder.fingerprint, encoder.feature_dim)
    manifest = synthesize(root / "clips", classes=1, per_class=1, frames=12, size=(64, 64))
    clip = sorted((manifest.parent / "clips").glob("*.mp4"))[0]
    return {"root": root, "clip": clip, "fingerprint": encoder.fingerprint}


def upload(client, clip):
    files = {"file": (clip.name, clip.read_bytes(), "video/mp4")}
    return client.post("/v1/predict/video", files=files, data={"top_k": "3"})


def test_an_upload_is_encoded_with_the_encoder_of_the_checkpoints_set(upload_env):
    from featurestore.extract import ClipExtractor

    url = upload_env["root"] / "store.zarr"
    ckpt = feature_checkpoint(
        upload_env["root"] / "patches.pt", open_store(str(url)).schema, "patches"
    )
    app = create_app(Settings(store=str(url), checkpoint=str(ckpt)))
    with TestClient(app) as c:
        assert wait_for_uploads(app) == "ready"
        r = upload(c, upload_env["clip"])
        assert r.status_code == 200, r.text
        (pred,) = r.json()["predictions"]
    arrays = ClipExtractor("tiny-random", 4, pooling="mean_vision_patches").extract(
        upload_env["clip"]
    )
    model = load_checkpoint(ckpt).model
    with torch.no_grad():
        inputs = [torch.from_numpy(arrays[s][None]) for s in (GEMMA_STREAM, *LM_STREAMS)]
        probs = model(inputs[0].float(), *inputs[1:]).softmax(-1)[0]
    want_p, want_i = probs.topk(3)
    assert [t["label"] for t in pred["top_k"]] == want_i.tolist()
    np.testing.assert_allclose([t["prob"] for t in pred["top_k"]], want_p.numpy(), atol=1e-5)


def test_uploads_are_refused_naming_the_set_when_its_encoder_cannot_be_rebuilt(upload_env):
    url = upload_env["root"] / "changed.zarr"
    build_store(url, n=3, schema=upload_schema())
    changed = {**upload_env["fingerprint"], "weights_sha256": "0" * 64}  # weights not here
    add_features(url, "patches", changed, changed["feature_dim"])
    ckpt = feature_checkpoint(
        upload_env["root"] / "changed.pt", open_store(str(url)).schema, "patches"
    )
    app = create_app(Settings(store=str(url), checkpoint=str(ckpt)))
    with TestClient(app) as c:
        status = wait_for_uploads(app)
        assert status.startswith("unavailable") and "feature set 'patches'" in status
        r = upload(c, upload_env["clip"])
        assert r.status_code == 503 and "feature set 'patches'" in r.json()["detail"]
        assert c.post("/v1/predict", json={"video_ids": video_ids(3)}).status_code == 200
