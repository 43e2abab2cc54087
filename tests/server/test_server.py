"""Every route and every error of the service, through FastAPI's TestClient."""

from __future__ import annotations

import gc
import io

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from featurestore import FeatureStore
from model import count_parameters, load_checkpoint
from server import Settings, StartupError, create_app
from server.app import app_from_env
from server.logs import redact
from tests.server.builders import ENCODER, LABELS, build_checkpoint, tiny_schema

N = 12
NPY = "application/x-npy"


def settings_for(served, **overrides) -> Settings:
    store, ckpt = served
    return Settings(store=store, checkpoint=ckpt, upload_enabled=False, **overrides)


@pytest.fixture
def client(served):
    with TestClient(create_app(settings_for(served)), raise_server_exceptions=False) as c:
        yield c


def assert_json_error(r, status: int, contains: str = "") -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert "detail" in body
    assert contains in str(body["detail"])
    assert "Traceback" not in r.text


# -- health ---------------------------------------------------------------------------------
def test_healthz_and_readyz_once_loaded(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {"status": "ready", "upload": "disabled"}


def test_not_ready_until_lifespan_has_loaded(served):
    app = create_app(settings_for(served))
    c = TestClient(app, raise_server_exceptions=False)  # no `with`: lifespan never runs
    assert c.get("/healthz").status_code == 200
    assert_json_error(c.get("/readyz"), 503, "not ready")
    assert_json_error(c.get("/v1/info"), 503, "not ready")
    assert_json_error(c.post("/v1/predict", json={"video_ids": ["v001"]}), 503, "not ready")


def test_start_up_objects_are_kept_out_of_the_cyclic_gc_while_serving(served):
    """A full collection over torch, the model and the index stalled every request under
    load for 60-130 ms; start-up's objects are frozen while serving, thawed at shutdown."""
    gc.unfreeze()
    with TestClient(create_app(settings_for(served))) as c:
        assert c.get("/readyz").status_code == 200
        assert gc.get_freeze_count() > 10_000
    assert gc.get_freeze_count() == 0


# -- info and videos ------------------------------------------------------------------------
def test_info_describes_store_and_model(client, served):
    info = client.get("/v1/info").json()
    assert info["store"]["videos"] == N
    assert info["store"]["num_frames"] == 4
    assert info["store"]["streams"]["gemma"] == {"shape": [4, 8], "dtype": "float16"}
    assert info["store"]["encoder"] == ENCODER
    assert info["store"]["labels"] == {str(k): v for k, v in LABELS.items()}
    ckpt = load_checkpoint(served[1])
    assert info["model"]["fusion"] == "concat"
    assert info["model"]["parameters"] == count_parameters(ckpt.model)
    assert info["model"]["metrics"] == {"val_top1": 0.25}
    assert info["serving"]["micro_batching"] is True


def test_list_videos_pages_and_filters(client):
    r = client.get("/v1/videos").json()
    assert r["total"] == N and [v["video_id"] for v in r["items"]] == [
        f"v{i:03d}" for i in range(N)
    ]
    page = client.get("/v1/videos", params={"offset": 5, "limit": 3}).json()
    assert [v["video_id"] for v in page["items"]] == ["v005", "v006", "v007"]
    assert page["total"] == N
    test = client.get("/v1/videos", params={"split": "test"}).json()
    assert test["total"] == 4 and all(v["split"] == "test" for v in test["items"])
    assert client.get("/v1/videos", params={"split": "nope"}).json() == {"items": [], "total": 0}
    assert client.get("/v1/videos", params={"offset": 100}).json() == {"items": [], "total": N}


@pytest.mark.parametrize(
    "params", [{"limit": 0}, {"limit": 1001}, {"offset": -1}, {"limit": "many"}]
)
def test_list_videos_rejects_bad_paging(client, params):
    assert_json_error(client.get("/v1/videos", params=params), 422)


def test_video_metadata(client):
    v = client.get("/v1/videos/v001").json()
    assert v == {
        "video_id": "v001",
        "label": 1,
        "gloss": "thankyou",
        "split": "val",
        "source": {"path": "videos/v001.mp4", "frame_start": 1, "frame_end": -1},
        "streams": ["gemma", "landmark_mask", "landmarks"],
    }
    unlabeled = client.get(f"/v1/videos/v{N - 1:03d}").json()
    assert unlabeled["label"] == -1


@pytest.mark.parametrize("stream", ["gemma", "landmarks", "landmark_mask"])
def test_features_as_json_and_npy_equal_the_store(client, served, stream):
    expected = FeatureStore(served[0]).get("v003", [stream]).arrays[stream]
    r = client.get(f"/v1/videos/v003/features/{stream}")
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["shape"] == list(expected.shape) and body["dtype"] == str(expected.dtype)
    np.testing.assert_array_equal(np.array(body["data"], dtype=body["dtype"]), expected)

    r = client.get(f"/v1/videos/v003/features/{stream}", headers={"Accept": NPY})
    assert r.headers["content-type"] == NPY
    got = np.load(io.BytesIO(r.content), allow_pickle=False)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


def test_unknown_video_or_stream_is_404(client):
    assert_json_error(client.get("/v1/videos/nope"), 404, "unknown video")
    assert_json_error(client.get("/v1/videos/nope/features/gemma"), 404, "unknown video")
    assert_json_error(client.get("/v1/videos/v001/features/pixels"), 404, "unknown stream")
    assert_json_error(client.get("/v1/no/such/route"), 404)


PATH_LIKE = [
    "..",
    "...",
    ".env",
    "..%2F..%2Fetc%2Fpasswd",
    "%2Fetc%2Fpasswd",
    "a%5C..%5Cb",
    "v001%00",
]


@pytest.mark.parametrize("bad", PATH_LIKE)
def test_path_like_ids_never_reach_the_store(client, monkeypatch, bad):
    touched = []
    for name in ("get", "get_many", "entry"):
        original = getattr(FeatureStore, name)

        def spy(self, ids, *a, _original=original, **kw):
            touched.append(ids)
            return _original(self, ids, *a, **kw)

        monkeypatch.setattr(FeatureStore, name, spy)
    for url in (f"/v1/videos/{bad}", f"/v1/videos/{bad}/features/gemma"):
        assert client.get(url).status_code == 404
    r = client.post("/v1/predict", json={"video_ids": [bad.replace("%2F", "/")]})
    assert_json_error(r, 404, "unknown video")
    assert touched == []
    client.get("/v1/videos/v001")  # the spy does see ids that are looked up
    assert touched == ["v001"]


# -- predictions ----------------------------------------------------------------------------
def expected_probs(served, ids: list[str]) -> torch.Tensor:
    """The model applied directly to the store's arrays: what the service must return."""
    batch = FeatureStore(served[0]).get_many(ids)
    model = load_checkpoint(served[1]).model
    with torch.no_grad():
        logits = model(
            torch.from_numpy(batch.arrays["gemma"]).float(),
            torch.from_numpy(batch.arrays["landmarks"]),
            torch.from_numpy(batch.arrays["landmark_mask"]),
        )
    return logits.softmax(-1)


def test_predict_by_id_equals_the_model(client, served):
    ids = ["v000", "v004", "v004", "v010"]
    r = client.post("/v1/predict", json={"video_ids": ids, "top_k": 3})
    assert r.status_code == 200, r.text
    preds = r.json()["predictions"]
    assert [p["video_id"] for p in preds] == ids
    probs = expected_probs(served, ids)
    for p, row in zip(preds, probs, strict=True):
        want_p, want_i = row.topk(3)
        assert [c["label"] for c in p["top_k"]] == want_i.tolist()
        assert [c["gloss"] for c in p["top_k"]] == [LABELS[i] for i in want_i.tolist()]
        np.testing.assert_allclose([c["prob"] for c in p["top_k"]], want_p.numpy(), atol=1e-6)


def test_predict_top_k_is_capped_at_the_class_count(client):
    r = client.post("/v1/predict", json={"video_ids": ["v001"], "top_k": 50})
    top = r.json()["predictions"][0]["top_k"]
    assert sorted(c["label"] for c in top) == sorted(LABELS)
    assert sum(c["prob"] for c in top) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize(
    "body, status, contains",
    [
        ({"video_ids": ["v001", "missing"]}, 404, "missing"),
        ({"video_ids": []}, 422, ""),
        ({"video_ids": ["v001"], "top_k": 0}, 422, ""),
        ({"video_ids": ["v001"], "top_k": 101}, 422, "top_k"),
        ({"video_ids": ["v001"], "top_k": "five"}, 422, ""),
        ({"video_ids": ["v001"], "top_k": True}, 422, "JSON integer"),  # not taken as 1
        ({"video_ids": ["v001"], "top_k": "3"}, 422, "JSON integer"),
        ({"video_ids": ["v001"], "top_k": 2.5}, 422, "fractional"),
        ({"video_ids": "v001"}, 422, ""),
        ({"video_ids": [1, 2]}, 422, ""),
        ({"ids": ["v001"]}, 422, ""),
        ({"video_ids": ["v001"], "extra": 1}, 422, ""),
        ({"video_ids": ["v000"] * 257}, 422, "at most 256"),
    ],
)
def test_predict_rejects_bad_requests(client, body, status, contains):
    assert_json_error(client.post("/v1/predict", json=body), status, contains)


def test_predict_rejects_malformed_json(client):
    r = client.post(
        "/v1/predict", content=b'{"video_ids": [', headers={"content-type": "application/json"}
    )
    assert_json_error(r, 422)


def test_json_bodies_over_the_limit_are_413(client):
    big = b'{"video_ids": ["' + b"x" * (2 * 1024 * 1024) + b'"]}'
    r = client.post("/v1/predict", content=big, headers={"content-type": "application/json"})
    assert_json_error(r, 413, "larger than")

    def chunks():  # no Content-Length: the limit must hold while streaming
        yield b'{"video_ids": ["'
        for _ in range(40):
            yield b"x" * 64 * 1024
        yield b'"]}'

    r = client.post("/v1/predict", content=chunks(), headers={"content-type": "application/json"})
    assert_json_error(r, 413, "larger than")


# -- API key --------------------------------------------------------------------------------
def test_api_key_guards_v1_routes(served):
    app = create_app(settings_for(served, api_key="s3cret"))
    with TestClient(app) as c:
        assert_json_error(c.get("/v1/info"), 401, "missing X-API-Key")
        assert_json_error(c.get("/v1/info", headers={"X-API-Key": "wrong"}), 401, "wrong API key")
        r = c.post("/v1/predict", json={"video_ids": ["v001"]}, headers={"X-API-Key": "nope"})
        assert_json_error(r, 401)
        assert c.get("/v1/info", headers={"X-API-Key": "s3cret"}).status_code == 200
        assert c.get("/v1/videos/v001", headers={"X-API-Key": "s3cret"}).status_code == 200
        assert c.get("/healthz").status_code == 200  # probes stay open
        assert c.get("/readyz").status_code == 200
        schemes = c.get("/openapi.json").json()["components"]["securitySchemes"]
        assert schemes["APIKeyHeader"]["name"] == "X-API-Key"


# -- uploads that fail before extraction ------------------------------------------------------
def test_upload_limits_and_types_without_an_encoder(served):
    app = create_app(settings_for(served, max_upload_bytes=1000))
    with TestClient(app, raise_server_exceptions=False) as c:
        big = {"file": ("clip.mp4", b"\0" * 100_000, "video/mp4")}
        assert_json_error(c.post("/v1/predict/video", files=big), 413, "larger than")
        text = {"file": ("notes.txt", b"hello", "text/plain")}
        assert_json_error(c.post("/v1/predict/video", files=text), 415, "text/plain")
        assert_json_error(c.post("/v1/predict/video", data={"top_k": "3"}), 422)
        small = {"file": ("clip.mp4", b"\0" * 100, "video/mp4")}
        assert_json_error(c.post("/v1/predict/video", files=small), 503, "disabled")
        r = c.post("/v1/predict/video", files=small, data={"top_k": "0"})
        assert_json_error(r, 422)


# -- metrics, errors, docs ------------------------------------------------------------------
def test_metrics_count_requests_by_route_and_batches(client):
    client.get("/v1/videos/v001")
    client.get("/v1/videos/v002")
    client.get("/v1/videos/nope")
    client.post("/v1/predict", json={"video_ids": ["v001", "v002"]})
    text = client.get("/metrics").text
    assert (
        'asl_http_requests_total{method="GET",route="/v1/videos/{video_id}",status="200"} 2.0'
        in text
    )
    assert (
        'asl_http_requests_total{method="GET",route="/v1/videos/{video_id}",status="404"} 1.0'
        in text
    )
    assert 'asl_http_request_duration_seconds_count{method="POST",route="/v1/predict"} 1.0' in text
    assert "asl_predict_batch_size_sum 2.0" in text
    assert "asl_model_seconds_count 1.0" in text


def test_unexpected_errors_are_json_500_without_internals(client, monkeypatch):
    def boom(self, *a, **kw):
        raise RuntimeError("secret internals /etc/shadow")

    monkeypatch.setattr(FeatureStore, "info", boom)
    r = client.get("/v1/info")
    assert_json_error(r, 500, "internal server error")
    assert "secret" not in r.text


def test_openapi_has_every_route_and_examples(client):
    spec = client.get("/openapi.json").json()
    assert set(spec["paths"]) >= {
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/info",
        "/v1/videos",
        "/v1/videos/{video_id}",
        "/v1/videos/{video_id}/features/{stream}",
        "/v1/predict",
        "/v1/predict/video",
    }
    predict = spec["paths"]["/v1/predict"]["post"]
    assert predict["requestBody"]["content"]["application/json"]["examples"]
    assert "404" in predict["responses"]
    features = spec["paths"]["/v1/videos/{video_id}/features/{stream}"]["get"]
    assert NPY in features["responses"]["200"]["content"]
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


# -- start-up checks ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "mismatch, message",
    [
        ({"encoder": {**ENCODER, "model_id": "google/gemma-3-4b-it"}}, "encoder fingerprint"),
        ({"num_frames": 8}, "num_frames"),
        ({"streams": {"gemma": {"shape": [4, 16], "dtype": "float16"}}}, "stream 'gemma'"),
    ],
)
def test_refuses_a_checkpoint_that_does_not_match_the_store(served, tmp_path, mismatch, message):
    bad = build_checkpoint(tmp_path / "other.pt", tiny_schema(), **mismatch)
    app = create_app(Settings(store=served[0], checkpoint=str(bad), upload_enabled=False))
    with pytest.raises(StartupError, match=f"refusing to serve.*{message}"):
        with TestClient(app):
            pass


def test_startup_errors_name_the_missing_file(served, tmp_path):
    for settings, message in [
        (Settings(store=str(tmp_path / "none.zarr"), checkpoint=served[1]), "cannot open store"),
        (Settings(store=served[0], checkpoint=str(tmp_path / "none.pt")), "does not exist"),
        (Settings(), "both a store and a checkpoint"),
    ]:
        with pytest.raises(StartupError, match=message):
            with TestClient(create_app(settings)):
                pass


def test_settings_come_from_environment(served, monkeypatch):
    monkeypatch.setenv("ASL_STORE", served[0])
    monkeypatch.setenv("ASL_CHECKPOINT", served[1])
    monkeypatch.setenv("ASL_UPLOAD_ENABLED", "false")
    monkeypatch.setenv("ASL_BATCH_MAX_SIZE", "7")
    monkeypatch.setenv("ASL_API_KEY", "k")
    with TestClient(app_from_env()) as c:
        info = c.get("/v1/info", headers={"X-API-Key": "k"}).json()
        assert info["serving"]["batch_max_size"] == 7
        assert info["store"]["videos"] == N


def test_objects_can_be_passed_instead_of_paths(served):
    store = FeatureStore(served[0])
    ckpt = load_checkpoint(served[1])
    with TestClient(create_app(Settings(upload_enabled=False), store=store, checkpoint=ckpt)) as c:
        assert c.get("/readyz").status_code == 200
        assert c.post("/v1/predict", json={"video_ids": ["v002"]}).status_code == 200


@pytest.mark.parametrize(
    "line, logged",
    [
        (
            "GET /v1/stream?api_key=s3cret&top_k=5 HTTP/1.1",
            "GET /v1/stream?api_key=***&top_k=5 HTTP/1.1",
        ),
        (
            '"WebSocket /v1/stream?every=2&API_KEY=s3cret" [accepted]',
            '"WebSocket /v1/stream?every=2&API_KEY=***" [accepted]',
        ),
        ("GET /healthz?api%5Fkey=s3cret%26x HTTP/1.1", "GET /healthz?api%5Fkey=*** HTTP/1.1"),
        ("GET /v1/videos?q=api HTTP/1.1", "GET /v1/videos?q=api HTTP/1.1"),
    ],
)
def test_keys_are_cut_from_log_lines_however_spelt(line, logged):
    assert redact(line) == logged
