"""A populate run killed mid-way (SIGKILL, or Ctrl-C) is finished by running it again.

The run is held (featurestore._test_hold) after 3 videos, 2 of them committed (one block)
and 1 in flight, so the signal always lands mid-run, at the same point."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from featurestore import open_store
from featurestore.extract import synthesize
from tests.processes import hold_env, interruptible, wait_for_hold

N = 8


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return synthesize(
        tmp_path_factory.mktemp("kill"), classes=2, per_class=4, frames=16, size=(64, 64)
    )


def _start(url, manifest, summary, env=None):
    cmd = [
        sys.executable,
        "-m",
        "featurestore",
        "populate",
        "--store",
        url,
        "--manifest",
        str(manifest),
        "--encoder",
        "tiny-random",
        "--num-frames",
        "8",
        "--workers",
        "1",
        "--commit-every",
        "2",
        "--quiet",
        "--summary-json",
        str(summary),
    ]
    return subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env=env,
        preexec_fn=interruptible,
    )


def _start_held(tmp_path, url, manifest, summary):
    """A run that holds after 3 videos: 2 committed (a block, --commit-every 2), 1 in flight."""
    marker = tmp_path / "held"
    proc = _start(url, manifest, summary, hold_env(3, marker))
    wait_for_hold(proc, marker)
    return proc


def _group_gone(pgid, timeout=15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.2)
    return False


def _rerun_finishes(url, manifest, summary, committed_before):
    proc = _start(url, manifest, summary)
    assert proc.wait(timeout=180) == 0, proc.stderr.read().decode()
    result = json.loads(summary.read_text())
    store = open_store(url)
    assert len(store) == len(set(store.ids())) == N  # everything, nothing twice
    assert store.verify() == []
    assert result["skipped"] == committed_before  # nothing committed was redone
    assert result["done"] == N - committed_before and result["failed"] == 0


def test_sigkill_then_rerun(tmp_path, manifest):
    url, summary = str(tmp_path / "s.zarr"), tmp_path / "summary.json"
    proc = _start_held(tmp_path, url, manifest, summary)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    # the landmark workers notice their parent is gone and exit by themselves
    assert _group_gone(proc.pid), "orphaned landmark workers kept running"
    store = open_store(url)
    committed = len(store)
    assert 2 <= committed < N, "kill the run while it is still running"
    assert store.verify() == []  # no partial video is visible
    assert not summary.exists()
    _rerun_finishes(url, manifest, summary, committed)


@pytest.mark.slow
def test_ctrl_c_commits_what_is_complete_then_rerun(tmp_path, manifest):
    url, summary = str(tmp_path / "s.zarr"), tmp_path / "summary.json"
    proc = _start_held(tmp_path, url, manifest, summary)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 130
    result = json.loads(summary.read_text())
    assert result["interrupted"] is True
    committed = len(open_store(url))
    assert committed == result["done"] == 3  # the committed block and the video in flight
    assert _group_gone(proc.pid)
    _rerun_finishes(url, manifest, summary, committed)
