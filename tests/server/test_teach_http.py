"""The whole loop over HTTP, as a user runs it: `asl-serve --allow-writes` on an empty store,
takes in as uploads, a job trained, the model swapped under load, and `kill -9` during a
take and during a job, after which the store verifies and a restart serves the last good
model (issue 25). The real-signs test uses the traduttore landmarks where
../shared/data/landmarks holds them."""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from featurestore import open_store
from featurestore._test_hold import HOLD_ENV
from featurestore.importers import mpdata
from server.train_job import HOLD_TRAINING_ENV
from tests.server.builders import landmark_take, npy

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "landmarks"
ZIP, RECORDERS = SHARED / "traduttore-asl-mpdata.zip", SHARED / "traduttore-recorders.csv"
GLOSSES = ["coffee", "hello", "no", "please", "tea"]


class Server:
    """`asl-serve --allow-writes` in a child process, in an empty working directory of its
    own, its output in a file (a pipe nobody reads would fill up and stall it)."""

    def __init__(self, store: Path, work: Path, env: dict | None = None, args: tuple = ()) -> None:
        self.cwd = work / "cwd"
        self.cwd.mkdir(exist_ok=True)
        self.log = work / f"serve-{time.monotonic_ns()}.log"
        relative = os.path.relpath(store, self.cwd)  # as a user types it, from where it runs
        args = ("--store", relative, "--allow-writes", "--port", "0", "--no-upload", *args)
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "server.cli", *args, "--no-access-log"],
                cwd=self.cwd,
                env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2]), **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        self.port = self._port()
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=120)

    def _port(self, timeout: float = 120) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", self.output())
            if m:
                return int(m.group(1))
            assert self.proc.poll() is None, f"asl-serve ended:\n{self.output()}"
            time.sleep(0.1)
        raise AssertionError(f"asl-serve did not start:\n{self.output()}")

    def output(self) -> str:
        return self.log.read_text()

    def kill9(self) -> None:
        self.http.close()
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        self.http.close()
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        assert "Traceback" not in self.output(), self.output()
        assert list(self.cwd.iterdir()) == []  # nothing written where the server runs


def test_writes_without_a_key_listen_on_this_machine_only(tmp_path):
    server = Server(tmp_path / "s.zarr", tmp_path, args=("--host", "0.0.0.0"))
    try:  # Server found "Uvicorn running on http://127.0.0.1:PORT"
        assert (
            "writes are on and there is no API key: listening on 127.0.0.1 only, not "
            "0.0.0.0" in server.output()
        )
        assert server.http.get("/v1/info").json()["teach"]["allow_writes"] is True
    finally:
        server.stop()


def add(http: httpx.Client, seq: np.ndarray, gloss: str) -> httpx.Response:
    return http.post("/v1/videos", files={"file": ("take.npy", npy(seq))}, data={"gloss": gloss})


def train(http: httpx.Client, body: dict, timeout: float = 600) -> dict:
    r = http.post("/v1/train", json=body)
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + timeout
    while True:
        job = http.get(f"/v1/train/{r.json()['job_id']}").json()
        if job["state"] in ("done", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline, job
        time.sleep(0.2)


def wait_for(predicate, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def traduttore(glosses: list[str], recorder: str) -> dict[str, list[np.ndarray]]:
    """Each gloss's sequences by one recorder, in the order recorded, as (20, 258) arrays."""
    by = {(r["gloss"], r["sequence"]): r["recorded_by"] for r in csv.DictReader(RECORDERS.open())}
    tree, scan = mpdata.Tree(str(ZIP)), mpdata.scan([str(ZIP)])
    out: dict[str, list[tuple[int, np.ndarray]]] = {g: [] for g in glosses}
    for item in scan.items:
        if item.gloss in out and by[(item.gloss, item.name)] == recorder:
            vectors = np.stack([mpdata.parse_npy(tree.read(f)) for f in item.ref])
            out[item.gloss].append((int(item.name), vectors))
    tree.close()
    return {g: [v for _, v in sorted(seqs, key=lambda s: s[0])] for g, seqs in out.items()}


@pytest.mark.slow
@pytest.mark.skipif(
    not (ZIP.is_file() and RECORDERS.is_file()),
    reason=f"the traduttore landmarks are not on this machine ({SHARED})",
)
def test_real_signs_taught_trained_and_recognised_over_http(tmp_path):
    """20 takes of 5 glosses from one person in, as .npy uploads; trained with the job's
    defaults; the next 10 takes of each predicted through POST /v1/predict/video. While the
    job trains and its model is swapped in, predictions go on, and none fails."""
    takes = traduttore(GLOSSES, "TheCamNelson")
    store = tmp_path / "mysigns.zarr"
    server = Server(store, tmp_path)
    try:
        http = server.http
        assert "writes are on (no API key: this machine only)" in server.output()
        assert http.get("/v1/model").json()["model"] is None
        for gloss in GLOSSES:
            for seq in takes[gloss][:20]:
                assert add(http, seq, gloss).status_code == 201
        counts = {g["gloss"]: g["takes"] for g in http.get("/v1/glosses").json()["glosses"]}
        assert counts == {g: {"train": 16, "val": 4} for g in GLOSSES}
        first = train(http, {"epochs": 3})
        assert first["state"] == "done", first["error"]

        held_out = [(g, seq) for g in GLOSSES for seq in takes[g][20:30]]
        statuses: list[int] = []
        stop = threading.Event()

        def predict_meanwhile() -> None:
            with httpx.Client(base_url=http.base_url, timeout=120) as c:
                while not stop.is_set():
                    for _, seq in held_out[:5]:
                        r = c.post("/v1/predict/video", files={"file": ("t.npy", npy(seq))})
                        statuses.append(r.status_code)

        loaders = [threading.Thread(target=predict_meanwhile) for _ in range(2)]
        for t in loaders:
            t.start()
        try:
            job = train(http, {})
            served = http.get("/v1/model").json()["model"]["job_id"]
            n = len(statuses)
            wait_for(lambda: len(statuses) > n + 10, "predictions on the new model")
        finally:
            stop.set()
            for t in loaders:
                t.join()
        assert job["state"] == "done", job["error"]
        assert served == job["job_id"] and job["options"]["patience"] == 0
        assert len(statuses) > 20 and set(statuses) == {200}, statuses

        right = 0
        for gloss, seq in held_out:
            r = http.post("/v1/predict/video", files={"file": ("t.npy", npy(seq))})
            assert r.status_code == 200, r.text
            right += r.json()["predictions"][0]["top_k"][0]["gloss"] == gloss
        print(f"held-out takes recognised: {right}/{len(held_out)}")
        assert right / len(held_out) >= 0.95, right / len(held_out)
    finally:
        server.stop()
    assert open_store(str(store)).verify() == []


@pytest.mark.slow
def test_kill_9_during_a_take_and_during_a_job_loses_only_what_was_in_flight(tmp_path, rng):
    store, url = tmp_path / "mysigns.zarr", str(tmp_path / "mysigns.zarr")
    server = Server(store, tmp_path)
    for i in range(10):
        assert add(server.http, landmark_take(rng, i % 2), "ab"[i % 2]).status_code == 201
    good = train(server.http, {"epochs": 2})
    assert good["state"] == "done", good["error"]
    last = add(server.http, landmark_take(rng, 0), "a").json()["video_id"]
    server.kill9()  # right after a 201: the take is committed
    assert last in open_store(url).ids() and open_store(url).verify() == []

    marker = tmp_path / "take-held"
    server = Server(store, tmp_path, env={HOLD_ENV: f"1:{marker}"})
    held = threading.Thread(target=add_cut_short, args=(server.http, landmark_take(rng, 1)))
    held.start()
    wait_for(marker.exists, "the take reached its hold")
    server.kill9()  # during the take: handed to the writer, not committed
    held.join()
    assert len(open_store(url)) == 11 and open_store(url).verify() == []

    marker = tmp_path / "job-held"
    server = Server(store, tmp_path, env={HOLD_TRAINING_ENV: str(marker)})
    assert server.http.get("/v1/model").json()["model"]["job_id"] == good["job_id"]
    doomed = server.http.post("/v1/train", json={}).json()["job_id"]
    wait_for(marker.exists, "the job's process reached its hold")
    pid = job_pid(store, doomed)
    server.kill9()  # during the job
    wait_for(lambda: not alive(pid), "the job's process ended with its server")
    assert open_store(url).verify() == []

    server = Server(store, tmp_path)
    try:
        http = server.http
        assert http.get("/v1/model").json()["model"]["job_id"] == good["job_id"]
        job = http.get(f"/v1/train/{doomed}").json()
        assert job["state"] == "failed" and "interrupted" in job["error"]
        r = http.post("/v1/predict/video", files={"file": ("t.npy", npy(landmark_take(rng, 0)))})
        assert r.status_code == 200
        assert http.get("/v1/glosses").json()["total"] == 11
    finally:
        server.stop()


def add_cut_short(http: httpx.Client, seq: np.ndarray) -> None:
    """A take whose server is killed before it answers."""
    with pytest.raises(httpx.TransportError):
        add(http, seq, "b")


def job_pid(store: Path, job_id: str) -> int:
    import json

    return json.loads((store / "runs" / job_id / "job.json").read_text())["pid"]


def alive(pid: int) -> bool:
    """Running (a zombie that nobody has reaped yet has ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
