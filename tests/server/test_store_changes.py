"""A served store that others write to and compact: asl-serve sees new videos without a
restart, and a compact under steady lookups and predictions fails no request (issue 22)."""

from __future__ import annotations

import signal
import subprocess
import threading

import httpx
import numpy as np
import pytest

from featurestore import open_store
from tests.helpers import random_video
from tests.server.builders import LABELS, build_checkpoint, build_store
from tests.server.test_http import serve, wait_for_port

pytestmark = pytest.mark.slow


@pytest.fixture
def server(tmp_path):
    """asl-serve over a 24-video store of its own, refreshing every 0.2 s, no cache."""
    store = build_store(tmp_path / "store.zarr", n=24)
    ckpt = build_checkpoint(tmp_path / "model.pt", store.schema)
    proc = serve(
        ["--store", store.url, "--checkpoint", str(ckpt), "--port", "0", "--no-upload"],
        env={"ASL_REFRESH_S": "0.2", "ASL_CACHE_MB": "0"},
    )
    try:
        port = wait_for_port(proc)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            yield store.url, client
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        assert "Traceback" not in out, out


def wait_for(predicate, what: str, timeout: float = 15.0) -> None:
    """Poll until ``predicate()``; a refresh interval is 0.2 s, so 15 s is generous."""
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        time.sleep(0.05)


def test_videos_written_and_deleted_while_serving_show_up_without_a_restart(server, rng):
    url, client = server
    assert client.get("/v1/videos").json()["total"] == 24
    writer_store = open_store(url, "r+")
    with writer_store.writer() as w:
        for i in range(3):
            w.put(f"new{i}", random_video(rng), label=1, gloss=LABELS[1], split="train")
    wait_for(lambda: client.get("/v1/videos").json()["total"] == 27, "3 new videos listed")
    assert client.get("/v1/videos/new2").json()["gloss"] == LABELS[1]
    r = client.post("/v1/predict", json={"video_ids": ["new0"], "top_k": 1})
    assert r.status_code == 200, r.text
    writer_store.delete(["new1"])
    wait_for(lambda: client.get("/v1/videos/new1").status_code == 404, "a deleted video gone")
    assert client.get("/v1/videos").json()["total"] == 26


def test_no_request_fails_while_the_store_is_compacted_twice(server):
    url, client = server
    ids = [f"v{i:03d}" for i in range(24)]
    statuses: list[int] = []
    stop = threading.Event()

    def load(k: int) -> None:
        with httpx.Client(base_url=client.base_url, timeout=30) as c:
            n = k
            while not stop.is_set():
                vid = ids[n % len(ids)]
                n += 1
                r = c.get(f"/v1/videos/{vid}/features/landmarks",
                          headers={"Accept": "application/x-npy"})  # fmt: skip
                statuses.append(r.status_code)
                r = c.post("/v1/predict", json={"video_ids": [vid, ids[(n * 7) % 24]]})
                statuses.append(r.status_code)

    threads = [threading.Thread(target=load, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    try:
        for _ in range(2):  # grace 0: the old segments go at once, under the readers
            before = len(statuses)
            open_store(url, "r+").compact(grace_s=0)
            wait_for(lambda b=before: len(statuses) > b + 20, "requests after the compact")
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert len(statuses) > 40 and set(statuses) == {200}, sorted(set(statuses))
    assert np.all([client.get(f"/v1/videos/{v}").status_code == 200 for v in ids])
