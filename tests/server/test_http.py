"""The real thing: `asl-serve` started as a process on 127.0.0.1 and queried over HTTP."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from tests.processes import free_port
from tests.server.builders import ENCODER, build_checkpoint, tiny_schema

ROOT = Path(__file__).resolve().parents[2]


def serve(args: list[str], env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "server.cli", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for_port(proc: subprocess.Popen, timeout: float = 60) -> int:
    """Uvicorn logs the port it bound (we ask for port 0: any free one)."""
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        seen.append(line)
        m = re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", line)
        if m:
            return int(m.group(1))
    proc.kill()
    raise AssertionError("server did not start:\n" + "".join(seen))


def wait_until_ready(port: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    """With several workers uvicorn reports its socket before the workers have loaded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("workers never became ready:\n" + proc.communicate()[0])


def healthcheck(port: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "ASL_PORT": str(port)}
    cmd = [sys.executable, "-m", "server.healthcheck"]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, timeout=30)


def test_real_uvicorn_serves_over_http(served):
    store, ckpt = served
    proc = serve(
        ["--store", store, "--checkpoint", ckpt, "--port", "0", "--no-upload", "--no-access-log"],
        env={"ASL_API_KEY": "k3y"},
    )
    try:
        port = wait_for_port(proc)
        key = {"X-API-Key": "k3y"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            assert c.get("/healthz").json() == {"status": "ok"}
            assert c.get("/readyz").status_code == 200
            assert c.get("/v1/info").status_code == 401
            assert c.get("/v1/info", headers=key).json()["store"]["videos"] == 12
            r = c.get(
                "/v1/videos/v002/features/gemma", headers={**key, "Accept": "application/x-npy"}
            )
            assert np.load(io.BytesIO(r.content)).shape == (4, 8)
            r = c.post("/v1/predict", json={"video_ids": ["v001", "v002"], "top_k": 2}, headers=key)
            assert r.status_code == 200
            assert [len(p["top_k"]) for p in r.json()["predictions"]] == [2, 2]
            r = c.get("/v1/videos/missing", headers=key)
            assert r.status_code == 404 and "detail" in r.json()
            assert "asl_http_requests_total" in c.get("/metrics").text
        # The container's HEALTHCHECK command, against this server and against nothing.
        assert healthcheck(port).returncode == 0
        assert healthcheck(free_port()).returncode == 1
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            out, _ = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    assert proc.returncode == 0, out
    assert "Traceback" not in out


def test_cli_refuses_a_mismatched_checkpoint_with_a_clear_message(served, tmp_path):
    other = {**ENCODER, "model_id": "google/gemma-3-4b-it", "feature_dim": 8}
    bad = build_checkpoint(tmp_path / "other.pt", tiny_schema(encoder=other))
    proc = serve(["--store", served[0], "--checkpoint", str(bad), "--port", "0"])
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "refusing to serve" in out and "encoder fingerprint" in out
    assert "gemma-3-4b-it" in out
    assert "Traceback" not in out


def test_cli_rejects_bad_settings(served):
    proc = serve(["--store", served[0], "--checkpoint", served[1], "--port", "70000"])
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "port" in out and "Traceback" not in out


@pytest.mark.slow
def test_several_workers_share_settings_and_merge_metrics(served, tmp_path):
    store, ckpt = served
    metrics_dir = tmp_path / "tmp"  # where the CLI makes its merged-metrics folder
    metrics_dir.mkdir()
    proc = serve(
        [
            "--store",
            store,
            "--checkpoint",
            ckpt,
            "--port",
            str(free_port()),
            "--workers",
            "2",
            "--no-access-log",
        ],
        env={"ASL_UPLOAD_ENABLED": "false", "ASL_BATCH_MAX_SIZE": "5", "TMPDIR": str(metrics_dir)},
    )
    try:
        port = wait_for_port(proc, timeout=120)
        wait_until_ready(port, proc)
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as c:
            for _ in range(8):  # new connections: the kernel spreads them over the workers
                r = httpx.post(f"http://127.0.0.1:{port}/v1/predict", json={"video_ids": ["v001"]})
                assert r.status_code == 200
            assert c.get("/v1/info").json()["serving"]["batch_max_size"] == 5
            metrics = c.get("/metrics").text
        assert [p.name[:12] for p in metrics_dir.iterdir()] == ["asl-metrics-"]
        assert (
            'asl_http_requests_total{method="POST",route="/v1/predict",status="200"} 8.0' in metrics
        )
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    assert not list(metrics_dir.iterdir()), "the merged-metrics folder was left behind"
