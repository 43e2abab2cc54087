"""Teaching the service: takes in, takes out, glosses counted, writes refused when off,
and every bad take refused with nothing stored (issue 25). Through FastAPI's TestClient on
a store the server made itself; training jobs are in test_teach_train.py."""

from __future__ import annotations

import io
import pickle

import fsspec
import numpy as np
import pytest
from fastapi.testclient import TestClient

from featurestore import open_store
from server import Settings, StartupError, create_app
from tests.server.builders import landmark_take, npy, wait_for_uploads

KEY = {"X-API-Key": "teach-key"}


def teach_app(url: str, **settings) -> TestClient:
    options = dict(store=url, allow_writes=True, upload_enabled=False, refresh_s=0)
    return TestClient(
        create_app(Settings(**{**options, **settings})), raise_server_exceptions=False
    )


@pytest.fixture
def client(tmp_path):
    with teach_app(str(tmp_path / "mysigns.zarr"), num_frames=8) as c:
        yield c


def add(client, data: bytes, gloss="hello", name="take.npy", headers=None, **form):
    return client.post(
        "/v1/videos",
        files={"file": (name, data, "application/octet-stream")},
        data={"gloss": gloss, **{k: str(v) for k, v in form.items()}},
        headers=headers or {},
    )


def problems(url: str) -> list[str]:
    return open_store(url).verify()


# -- writes on or off ---------------------------------------------------------------------
def test_writes_are_off_unless_allowed(served):
    store, ckpt = served
    app = create_app(Settings(store=store, checkpoint=ckpt, upload_enabled=False))
    with TestClient(app) as c:
        for method, path in [
            ("post", "/v1/videos"),
            ("delete", "/v1/videos/v001"),
            ("post", "/v1/train"),
            ("get", "/v1/train/x"),
            ("delete", "/v1/train/x"),
            ("post", "/v1/model/rollback"),
        ]:
            r = getattr(c, method)(path)
            assert r.status_code == 403, (path, r.text)
            assert "--allow-writes" in r.json()["detail"]
        assert c.get("/v1/videos/v001").status_code == 200  # nothing was deleted
        assert c.get("/v1/info").json()["teach"]["allow_writes"] is False


def test_with_a_key_every_write_needs_it(tmp_path, rng):
    with teach_app(str(tmp_path / "s.zarr"), api_key="teach-key") as c:
        assert add(c, npy(landmark_take(rng, 0))).status_code == 401
        assert c.post("/v1/train", json={}).status_code == 401
        assert add(c, npy(landmark_take(rng, 0)), headers=KEY).status_code == 201
        assert c.get("/v1/glosses", headers=KEY).json()["total"] == 1


def test_a_missing_store_is_created_only_with_writes(tmp_path):
    url = str(tmp_path / "new.zarr")
    with pytest.raises(StartupError, match="--allow-writes creates a new one"):
        with TestClient(create_app(Settings(store=url, upload_enabled=False))):
            pass
    with teach_app(url) as c:
        info = c.get("/v1/info").json()
        assert info["model"] is None
        assert info["store"]["num_frames"] == 16  # the default T
        assert sorted(info["store"]["streams"]) == ["landmark_mask", "landmarks"]
    with pytest.raises(StartupError, match="a checkpoint is needed"):  # exists now; no model
        with TestClient(create_app(Settings(store=url, upload_enabled=False))):
            pass


def test_without_a_model_predictions_and_the_live_stream_say_to_train(client, rng):
    for r in [
        client.post("/v1/predict", json={"video_ids": ["x"]}),
        client.post("/v1/predict/video", files={"file": ("a.npy", npy(landmark_take(rng, 0)))}),
    ]:
        assert r.status_code == 503
        assert r.json()["detail"].startswith("no model yet: add takes and train")
    with client.websocket_connect("/v1/stream") as ws:
        assert ws.receive_json()["detail"].startswith("no model yet")
    assert client.get("/v1/model").json() == {"model": None, "previous": None}


# -- adding takes -------------------------------------------------------------------------
@pytest.mark.parametrize("width", [1662, 258, 126])
def test_a_landmark_sequence_becomes_a_take(client, rng, width):
    seq = landmark_take(rng, 2, frames=20, width=width)
    seq[3, -63:] = 0  # no right hand in source frame 3
    r = add(client, npy(seq), gloss="thank you", signer="ann")
    assert r.status_code == 201, r.text
    take = r.json()
    assert take["gloss"] == "thank you" and take["label"] == 0 and take["split"] == "train"
    assert take["kind"] == "npy" and take["frames"] == 8 and take["source_frames"] == 20
    pose = [] if width == 126 else ["pose"]
    assert take["parts_found"][0] == [*pose, "right_hand"]
    assert take["parts_found"][1] == pose  # source frame 3 is the second of the 8 sampled
    assert take["frames_without_hands"] == 1
    vid = take["video_id"]
    assert vid.startswith("thank_you-")
    stored = client.get(f"/v1/videos/{vid}").json()
    assert stored["source"]["signer"] == "ann" and stored["source"]["frames"] == 20
    lm = client.get(f"/v1/videos/{vid}/features/landmarks").json()
    assert lm["shape"] == [8, 75, 3]
    # The right hand of the first stored frame is the sequence's, x and y as given.
    right = np.array(lm["data"][0][54:])
    np.testing.assert_allclose(right, seq[0, -63:].reshape(21, 3), atol=1e-6)


def test_a_pose_file_becomes_a_take(client):
    pytest.importorskip("pose_format")
    from pose_format import Pose
    from pose_format.numpy import NumPyPoseBody
    from pose_format.pose_header import PoseHeader, PoseHeaderComponent, PoseHeaderDimensions

    components = [
        PoseHeaderComponent(name, [str(i) for i in range(n)], [], [], "XYZC")
        for name, n in [("POSE_LANDMARKS", 33), ("LEFT_HAND_LANDMARKS", 21)]
    ]
    header = PoseHeader(0.1, PoseHeaderDimensions(640, 480, 1), components)
    data = np.random.default_rng(0).uniform(1, 400, (12, 1, 54, 3)).astype(np.float32)
    body = NumPyPoseBody(25, data, np.ones((12, 1, 54), np.float32))
    buf = io.BytesIO()
    Pose(header, body).write(buf)
    r = add(client, buf.getvalue(), gloss="wave", name="wave.pose")
    assert r.status_code == 201, r.text
    assert r.json()["kind"] == "pose" and r.json()["source_frames"] == 12
    assert r.json()["parts_found"][0] == ["pose", "left_hand"]


def test_one_take_in_five_goes_to_val(client, rng):
    splits = [add(client, npy(landmark_take(rng, 0))).json()["split"] for _ in range(10)]
    assert splits == ["train"] * 4 + ["val"] + ["train"] * 4 + ["val"]
    assert add(client, npy(landmark_take(rng, 1)), gloss="bye", split="test").json()["split"] == (
        "test"
    )
    glosses = client.get("/v1/glosses").json()
    assert glosses == {
        "glosses": [
            {"gloss": "bye", "label": 1, "takes": {"test": 1}, "total": 1, "in_model": False},
            {
                "gloss": "hello",
                "label": 0,
                "takes": {"train": 8, "val": 2},
                "total": 10,
                "in_model": False,
            },
        ],
        "total": 11,
    }


def test_a_take_can_name_its_id_once(client, rng):
    assert add(client, npy(landmark_take(rng, 0)), video_id="mine-1").status_code == 201
    r = add(client, npy(landmark_take(rng, 0)), video_id="mine-1")
    assert r.status_code == 409 and "already in the store" in r.json()["detail"]


def test_a_take_committed_is_in_the_store_for_any_reader(client, rng, tmp_path):
    vid = add(client, npy(landmark_take(rng, 0))).json()["video_id"]
    other = open_store(str(tmp_path / "mysigns.zarr"))  # another process's view
    assert other.ids() == [vid] and other.entry(vid).gloss == "hello"


# -- bad takes ----------------------------------------------------------------------------
def bad_takes(rng) -> list[tuple[str, dict, int, str]]:
    nan = landmark_take(rng, 0)
    nan[5, 200] = np.nan  # in the right hand, which is present
    obj = io.BytesIO()
    np.save(obj, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    npz = io.BytesIO()
    np.savez(npz, a=landmark_take(rng, 0))
    return [
        ("empty gloss", {"gloss": "  "}, 422, "gloss is empty"),
        ("long gloss", {"gloss": "x" * 101}, 422, "at most 100"),
        ("control chars", {"gloss": "a\nb"}, 422, "control characters"),
        ("bad split", {"split": "../x"}, 422, "split"),
        ("bad id", {"video_id": "../etc"}, 422, "invalid video id"),
        ("wrong width", {"data": npy(np.zeros((20, 100)))}, 422, "1662, 258, 126 values"),
        ("one frame vector", {"data": npy(np.zeros(258))}, 422, "expected (frames, values)"),
        ("no frames", {"data": npy(np.zeros((0, 258)))}, 422, "no frames"),
        ("NaN in a present part", {"data": npy(nan)}, 422, "NaN or inf in right_hand of frame 5"),
        ("text as npy", {"data": b"hello", "name": "x.npy"}, 422, "not a readable .npy"),
        ("pickled objects", {"data": obj.getvalue()}, 422, "not a readable .npy"),
        ("an npz", {"data": npz.getvalue(), "name": "x.npy"}, 422, ".npz archive"),
        ("not a video", {"data": b"not a video" * 99, "name": "x.mp4"}, 503, "not available"),
        ("text", {"data": b"hi", "type": "text/plain"}, 415, "or a landmark sequence"),
        ("too long", {"data": npy(np.zeros((10_001, 126)))}, 413, "10000 at most"),
    ]


def test_each_bad_take_is_refused_by_name_and_nothing_is_stored(client, rng, tmp_path):
    url = str(tmp_path / "mysigns.zarr")
    good = add(client, npy(landmark_take(rng, 0))).json()["video_id"]
    for what, case, status, contains in bad_takes(rng):
        data = case.pop("data", npy(landmark_take(rng, 0)))
        name, ctype = case.pop("name", "take.npy"), case.pop("type", "application/octet-stream")
        form = {"gloss": "hello", **case}
        r = client.post("/v1/videos", files={"file": (name, data, ctype)}, data=form)
        assert r.status_code == status, (what, r.text)
        assert contains in r.json()["detail"], (what, r.json())
        assert "/tmp" not in r.text, what  # no server path in the answer
    assert open_store(url).ids() == [good]
    assert problems(url) == []


def test_an_upload_over_the_size_limit_is_refused(tmp_path, rng):
    with teach_app(str(tmp_path / "s.zarr"), max_upload_bytes=10_000) as c:
        r = add(c, npy(landmark_take(rng, 0, frames=200)))
        assert r.status_code == 413 and "larger than" in r.json()["detail"]
        assert c.get("/v1/glosses").json()["total"] == 0


def test_a_video_clip_becomes_a_take_in_a_store_with_encoder_features(tmp_path, rng):
    """`--encoder ID` makes a store that keeps that encoder's features too: a clip fills
    them (as uploads are extracted); a landmark sequence cannot, and is refused."""
    from featurestore.extract import synthesize

    manifest = synthesize(tmp_path / "clips", classes=1, per_class=1, frames=12, size=(64, 64))
    clip = next((manifest.parent / "clips").glob("*.mp4")).read_bytes()
    url = str(tmp_path / "s.zarr")
    app = create_app(
        Settings(store=url, allow_writes=True, encoder="tiny-random", num_frames=4, refresh_s=0)
    )
    with TestClient(app, raise_server_exceptions=False) as c:
        assert wait_for_uploads(app) == "ready"
        r = c.post(
            "/v1/videos",
            files={"file": ("take.webm", clip, "video/webm")},
            data={"gloss": "wave", "details": "true"},
        )
        assert r.status_code == 201, r.text
        take = r.json()
        assert take["kind"] == "video" and take["frames"] == 4 and take["source_frames"] == 12
        assert len(take["parts_found"]) == 4 and len(take["details"]["frames"]) == 4
        assert take["timings"]["commit_ms"] > 0
        stored = c.get(f"/v1/videos/{take['video_id']}").json()
        assert stored["streams"] == ["gemma", "landmark_mask", "landmarks"]
        r = add(c, npy(landmark_take(rng, 0)))
        assert r.status_code == 422, r.text
        assert "send a video clip" in r.json()["detail"] and "gemma" in r.json()["detail"]
        r = add(c, b"not a video" * 99, name="x.webm")
        assert r.status_code == 422 and "not a decodable video" in r.json()["detail"]
        assert c.get("/v1/info").json()["store"]["encoder"]["model_id"] == "tiny-random"
        assert c.get("/v1/glosses").json()["total"] == 1
    assert problems(url) == []


def test_a_landmark_take_for_a_store_of_another_layout_is_refused(tmp_path, rng):
    from featurestore import StoreSchema, create_store
    from featurestore.layout import landmark_streams

    layout = {"parts": ["left_hand", "right_hand", "pose"], "sizes": [21, 21, 12]}
    url = str(tmp_path / "seed.zarr")
    create_store(url, StoreSchema(8, landmark_streams(8, layout), {}, layout))
    with teach_app(url) as c:
        r = add(c, npy(landmark_take(rng, 0)))
        assert r.status_code == 422, r.text
        assert "['left_hand', 'right_hand', 'pose'] [21, 21, 12]" in r.json()["detail"]
        assert "MediaPipe Holistic" in r.json()["detail"]
    assert open_store(url).ids() == []


# -- deleting takes -----------------------------------------------------------------------
def store_bytes(url: str) -> int:
    fs, root = fsspec.core.url_to_fs(url)
    return sum(fs.du(root, total=False).values())


def test_a_deleted_take_is_gone_everywhere_and_compact_drops_its_bytes(store_url, rng):
    from training.store_checks import split_labels

    with teach_app(store_url) as c:
        ids = [add(c, npy(landmark_take(rng, i % 2)), gloss="ab"[i % 2]).json() for i in range(4)]
        gone = ids[0]["video_id"]
        r = c.delete(f"/v1/videos/{gone}")
        assert r.status_code == 200 and r.json() == {"video_id": gone, "deleted": True}
        assert c.get(f"/v1/videos/{gone}").status_code == 404
        assert gone not in [v["video_id"] for v in c.get("/v1/videos").json()["items"]]
        assert c.get("/v1/glosses").json()["glosses"][0]["total"] == 1
        assert c.delete(f"/v1/videos/{gone}").status_code == 404
        assert c.delete("/v1/videos/..%2Fx").status_code == 404
    store = open_store(store_url, "r+")
    assert gone not in split_labels(store, "train") and len(store) == 3
    assert problems(store_url) == []
    before = store_bytes(store_url)
    store.compact(grace_s=0)
    assert store_bytes(store_url) < before
    assert problems(store_url) == [] and sorted(store.ids()) == sorted(
        t["video_id"] for t in ids[1:]
    )


def test_the_runs_folder_is_not_part_of_the_store(tmp_path, rng):
    """Training runs live in <store>/runs; the store's own code leaves them alone."""
    url = str(tmp_path / "s.zarr")
    with teach_app(url) as c:
        add(c, npy(landmark_take(rng, 0)))
    (tmp_path / "s.zarr" / "runs" / "job").mkdir(parents=True)
    (tmp_path / "s.zarr" / "runs" / "job" / "model.pt").write_bytes(b"x")
    store = open_store(url, "r+")
    assert problems(url) == []
    store.compact(grace_s=0)
    assert (tmp_path / "s.zarr" / "runs" / "job" / "model.pt").read_bytes() == b"x"


def test_pickles_are_never_loaded(client):
    evil = pickle.dumps(object())
    r = add(client, evil, name="x.npy")
    assert r.status_code == 422
