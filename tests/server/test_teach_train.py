"""Training through the service: refused until the store can train, one job at a time in a
child process, cancelled or killed without touching the served model, and when done its
model swapped in, kept across restarts, and rolled back (issue 25)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from server import Settings, create_app
from server.train_job import HOLD_TRAINING_ENV
from tests.server.builders import landmark_take, npy
from tests.server.test_teach import add, teach_app


def add_takes(client, rng, glosses=("hello", "bye"), per_gloss=5, **form) -> list[str]:
    ids = []
    for sign, gloss in enumerate(glosses):
        for _ in range(per_gloss):
            r = add(client, npy(landmark_take(rng, sign)), gloss=gloss, **form)
            assert r.status_code == 201, r.text
            ids.append(r.json()["video_id"])
    return ids


def wait_for_job(client, job_id: str, timeout: float = 300) -> dict:
    """Poll the job until it has finished (done, failed or cancelled)."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/v1/train/{job_id}").json()
        if job["state"] in ("done", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['state']}"
        time.sleep(0.2)


def wait_for_file(path: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.fixture
def store_path(tmp_path) -> Path:
    return tmp_path / "mysigns.zarr"


def test_training_is_refused_until_the_store_can_train(store_path, rng):
    with teach_app(str(store_path), num_frames=8) as c:
        r = c.post("/v1/train", json={})
        assert r.status_code == 422 and "at least 2 glosses; this store has 0" in r.text
        add_takes(c, rng, glosses=("hello",), per_gloss=3)
        r = c.post("/v1/train", json={})
        assert r.status_code == 422 and "has 1: hello (3 takes). Add takes of another" in r.text
        add_takes(c, rng, glosses=("hello", "bye"), per_gloss=2, split="val")
        r = c.post("/v1/train", json={})
        assert r.status_code == 422, r.text
        assert "have takes but none in train: bye ({'val': 2})" in r.json()["detail"]
        add_takes(c, rng, glosses=("bye",), per_gloss=1)
        r = c.post("/v1/train", json={"modalities": "visual"})
        assert r.status_code == 422 and "no feature set 'gemma'" in r.json()["detail"]
        for bad in [{"epochs": 0}, {"epochs": "5"}, {"epochs": 2.5}, {"nope": 1}, {"lr": -1}]:
            assert c.post("/v1/train", json=bad).status_code == 422, bad
        assert c.get("/v1/train").json() == {"jobs": [], "running": None}
    assert not (store_path / "runs").exists()


def test_a_memory_store_cannot_train_in_a_child_process(rng):
    with teach_app("memory://teach-train/s.zarr") as c:
        add_takes(c, rng, per_gloss=1)
        r = c.post("/v1/train", json={})
        assert r.status_code == 422 and "memory://" in r.json()["detail"]


def test_a_second_job_gets_409_and_a_cancelled_job_leaves_no_model(
    store_path, rng, tmp_path, monkeypatch
):
    marker = tmp_path / "holding"
    monkeypatch.setenv(HOLD_TRAINING_ENV, str(marker))
    with teach_app(str(store_path)) as c:
        add_takes(c, rng)
        job_id = c.post("/v1/train", json={"epochs": 1}).json()["job_id"]
        wait_for_file(marker)  # the job's process is running, held before training
        assert c.get(f"/v1/train/{job_id}").json()["state"] == "running"
        r = c.post("/v1/train", json={})
        assert r.status_code == 409 and r.json()["job_id"] == job_id
        assert c.get("/v1/info").json()["teach"]["running_job"] == job_id
        r = c.delete(f"/v1/train/{job_id}")
        assert r.status_code == 200 and r.json()["state"] == "cancelled"
        r = c.delete(f"/v1/train/{job_id}")
        assert r.status_code == 409 and "cancelled: nothing to cancel" in r.json()["detail"]
        assert c.get("/v1/train/nope").status_code == 404
        assert c.get("/v1/model").json()["model"] is None
        assert c.post("/v1/predict/video", files={"file": ("a.npy", b"")}).status_code == 503
        jobs = c.get("/v1/train").json()
        assert jobs["running"] is None and [j["state"] for j in jobs["jobs"]] == ["cancelled"]


def test_a_job_whose_process_dies_fails_and_the_model_stays(store_path, rng, monkeypatch):
    marker = store_path.parent / "holding"
    monkeypatch.setenv(HOLD_TRAINING_ENV, str(marker))
    with teach_app(str(store_path)) as c:
        add_takes(c, rng)
        job_id = c.post("/v1/train", json={}).json()["job_id"]
        wait_for_file(marker)
        record = json.loads((store_path / "runs" / job_id / "job.json").read_text())
        os.kill(record["pid"], signal.SIGKILL)  # the job's own process, started by this test
        job = wait_for_job(c, job_id)
        assert job["state"] == "failed" and "ended with code -9" in job["error"]
        assert c.get("/v1/model").json()["model"] is None


def test_a_done_job_is_served_kept_across_restarts_and_rolled_back(store_path, rng):
    url, cwd = str(store_path), sorted(os.listdir(os.getcwd()))
    with teach_app(url) as c:
        ids = add_takes(c, rng)
        first = c.post("/v1/train", json={"epochs": 3})
        assert first.status_code == 202 and first.json()["options"]["modalities"] == "landmarks"
        assert first.json()["options"]["patience"] == 0  # no early stopping on same-day val
        job = wait_for_job(c, first.json()["job_id"])
        assert job["state"] == "done", job["error"]
        assert job["epoch"] == job["epochs"] == 3 and len(job["metrics"]) == 3
        assert {"train_loss", "val_top1"} <= set(job["metrics"][-1]) and job["served"]
        assert len(job["report"]["confusion"]) == 2 and job["report"]["count"] == 2
        folder = store_path / "runs" / job["job_id"]
        assert {p.name for p in folder.iterdir()} >= {"model.pt", "report.json", "train.log"}
        model = c.get("/v1/model").json()
        assert model["model"]["job_id"] == job["job_id"] and model["previous"] is None
        assert c.get("/v1/glosses").json()["glosses"][0]["in_model"] is True
        r = c.post("/v1/predict", json={"video_ids": ids[:2], "top_k": 2})
        assert r.status_code == 200 and len(r.json()["predictions"]) == 2
        r = c.post("/v1/predict/video", files={"file": ("t.npy", npy(landmark_take(rng, 1)))})
        assert r.status_code == 200 and r.json()["predictions"][0]["top_k"][0]["gloss"] in (
            "hello",
            "bye",
        )
        assert c.get("/v1/model/report").json()["confusion"] == job["report"]["confusion"]
        assert c.post("/v1/model/rollback").status_code == 409  # nothing before it

        c.delete(f"/v1/videos/{ids[0]}")  # a deleted take is not trained on
        second = wait_for_job(c, c.post("/v1/train", json={"epochs": 2}).json()["job_id"])
        assert second["state"] == "done", second["error"]
        samples = [
            json.loads(line)["train_samples"]
            for line in (store_path / "runs" / second["job_id"] / "metrics.jsonl").open()
        ]
        assert samples == [7, 7]  # 10 takes, 2 in val, 1 deleted
        model = c.get("/v1/model").json()
        assert (model["model"]["job_id"], model["previous"]["job_id"]) == (
            second["job_id"],
            job["job_id"],
        )
        r = c.post("/v1/model/rollback")
        assert r.status_code == 200 and r.json()["model"]["job_id"] == job["job_id"]
    assert sorted(os.listdir(os.getcwd())) == cwd  # nothing written where the server ran

    with teach_app(url) as c:  # a restart serves the model rolled back to
        assert c.get("/v1/model").json()["model"]["job_id"] == job["job_id"]
        listed = c.get("/v1/train").json()["jobs"]
        assert [j["job_id"] for j in listed] == [second["job_id"], job["job_id"]]
    other = str(store_path / "runs" / second["job_id"] / "model.pt")
    app = create_app(Settings(store=url, checkpoint=other, upload_enabled=False))
    with TestClient(app) as c:  # unless --checkpoint names another
        assert c.get("/v1/model").json()["model"]["path"] == other
