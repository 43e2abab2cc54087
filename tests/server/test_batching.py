"""Micro-batching: the batcher's contract, and batched predictions equal to single ones."""

from __future__ import annotations

import asyncio
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi.testclient import TestClient

from server import Settings, create_app
from server.batcher import MicroBatcher
from tests.server.builders import build_checkpoint, build_store, video_ids

# -- the batcher alone ------------------------------------------------------------------------


def run(coro):
    return asyncio.run(coro)


class Recorder:
    """A run_batch that doubles numbers and records each batch it saw."""

    def __init__(self, fail_on=None, delay=0.0):
        self.batches: list[list] = []
        self.fail_on = fail_on
        self.delay = delay
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, jobs):
        self.gate.wait(5)
        self.batches.append(list(jobs))
        if self.fail_on == "all":
            raise RuntimeError("model exploded")
        return [ValueError(f"bad {j}") if j == self.fail_on else j * 2 for j in jobs]


async def submit_all(batcher, jobs):
    await batcher.start()
    try:
        return await asyncio.gather(*(batcher.submit(j) for j in jobs), return_exceptions=True)
    finally:
        await batcher.stop()


def test_concurrent_jobs_share_a_batch_and_keep_their_results():
    rec = Recorder()
    b = MicroBatcher(rec, ThreadPoolExecutor(1), max_batch=64, max_wait_ms=50)
    assert run(submit_all(b, list(range(10)))) == [j * 2 for j in range(10)]
    assert [len(x) for x in rec.batches] == [10]


def test_batches_never_exceed_max_rows():
    rec = Recorder()
    b = MicroBatcher(rec, ThreadPoolExecutor(1), max_batch=4, max_wait_ms=20)
    assert run(submit_all(b, list(range(10)))) == [j * 2 for j in range(10)]
    assert [len(x) for x in rec.batches] == [4, 4, 2]
    assert [j for batch in rec.batches for j in batch] == list(range(10))  # FIFO


def test_a_job_bigger_than_the_batch_runs_alone_in_order():
    rec = Recorder()
    b = MicroBatcher(rec, ThreadPoolExecutor(1), max_batch=4, max_wait_ms=20, size=lambda j: j)
    assert run(submit_all(b, [1, 2, 9, 1])) == [2, 4, 18, 2]
    assert rec.batches == [[1, 2], [9], [1]]


def test_without_waiting_a_lone_job_is_not_delayed():
    rec = Recorder()
    b = MicroBatcher(rec, ThreadPoolExecutor(1), max_batch=1, max_wait_ms=0)
    assert run(submit_all(b, [1, 2, 3])) == [2, 4, 6]
    assert rec.batches == [[1], [2], [3]]


def test_a_lone_job_does_not_wait_but_concurrent_traffic_does():
    rec = Recorder()
    b = MicroBatcher(rec, ThreadPoolExecutor(1), max_batch=2, max_wait_ms=60_000)

    async def scenario():
        await b.start()
        try:
            # No partner to wait for: it runs now, not after 60 s.
            assert await asyncio.wait_for(b.submit(1), 5) == 2
            assert await asyncio.gather(b.submit(2), b.submit(3)) == [4, 6]
            # Traffic is now concurrent: a job waits for a partner that comes later.
            first = asyncio.create_task(b.submit(4))
            await asyncio.sleep(0.05)
            assert await asyncio.wait_for(asyncio.gather(first, b.submit(5)), 5) == [8, 10]
        finally:
            await b.stop()

    run(scenario())
    assert rec.batches == [[1], [2, 3], [4, 5]]


def test_one_failing_job_fails_only_itself():
    rec = Recorder(fail_on=3)
    b = MicroBatcher(rec, ThreadPoolExecutor(1), max_batch=64, max_wait_ms=20)
    out = run(submit_all(b, [1, 2, 3, 4]))
    assert out[:2] == [2, 4] and out[3] == 8
    assert isinstance(out[2], ValueError)


def test_a_failing_batch_fails_every_caller_with_the_cause():
    b = MicroBatcher(Recorder(fail_on="all"), ThreadPoolExecutor(1), max_wait_ms=20)
    out = run(submit_all(b, [1, 2]))
    assert all(isinstance(e, RuntimeError) and "exploded" in str(e) for e in out)


def test_stop_fails_waiting_jobs_instead_of_hanging():
    rec = Recorder()
    rec.gate.clear()  # the model is stuck on the first batch

    async def scenario():
        b = MicroBatcher(rec, ThreadPoolExecutor(1), max_batch=1, max_wait_ms=0)
        await b.start()
        tasks = [asyncio.create_task(b.submit(j)) for j in range(3)]
        await asyncio.sleep(0.05)
        await b.stop()
        rec.gate.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    out = run(scenario())
    assert all(isinstance(e, RuntimeError) and "shutting down" in str(e) for e in out)


def test_submit_before_start_is_an_error():
    b = MicroBatcher(Recorder(), ThreadPoolExecutor(1))
    with pytest.raises(RuntimeError, match="not running"):
        run(b.submit(1))


# -- through the service ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("batching")
    store = build_store(root / "store.zarr", n=40)
    ckpt = build_checkpoint(root / "model.pt", store.schema, fusion_type="attention")
    return str(root / "store.zarr"), str(ckpt)


def predict_concurrently(client, bodies, threads=16):
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda b: client.post("/v1/predict", json=b).json(), bodies))


def batch_sizes(client) -> tuple[float, float]:
    text = client.get("/metrics").text
    count = float(re.search(r"^asl_predict_batch_size_count (\S+)", text, re.M).group(1))
    total = float(re.search(r"^asl_predict_batch_size_sum (\S+)", text, re.M).group(1))
    return count, total


def test_micro_batched_predictions_equal_one_by_one(served):
    ids = video_ids(40)
    rng = np.random.default_rng(1)
    bodies = [
        {
            "video_ids": list(rng.choice(ids, size=rng.integers(1, 4))),
            "top_k": int(rng.integers(1, 5)),
        }
        for _ in range(64)
    ]
    store, ckpt = served
    base = dict(store=store, checkpoint=ckpt, upload_enabled=False)
    single = create_app(Settings(**base, micro_batching=False))
    batched = create_app(Settings(**base, batch_max_size=32, batch_max_wait_ms=20))
    with TestClient(single) as one, TestClient(batched) as many:
        expected = [one.post("/v1/predict", json=b).json() for b in bodies]
        got = predict_concurrently(many, bodies)
        forwards, rows = batch_sizes(many)
        one_forwards, _ = batch_sizes(one)
    assert one_forwards == len(bodies)
    assert rows == sum(len(b["video_ids"]) for b in bodies)
    assert forwards < len(bodies) / 2, "concurrent requests were not merged"
    for want, have in zip(expected, got, strict=True):
        for p, q in zip(want["predictions"], have["predictions"], strict=True):
            assert p["video_id"] == q["video_id"]
            assert [c["label"] for c in p["top_k"]] == [c["label"] for c in q["top_k"]]
            assert [c["gloss"] for c in p["top_k"]] == [c["gloss"] for c in q["top_k"]]
            # A batched matmul may round differently in the last bit of float32.
            np.testing.assert_allclose(
                [c["prob"] for c in p["top_k"]], [c["prob"] for c in q["top_k"]], rtol=0, atol=1e-6
            )
