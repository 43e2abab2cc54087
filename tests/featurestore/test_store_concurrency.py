"""Several writer processes at once, and writers killed with SIGKILL mid-write."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from featurestore import create_store, open_store
from tests.featurestore.store_writer_proc import video
from tests.helpers import small_schema

SCRIPT = str(Path(__file__).with_name("store_writer_proc.py"))


def run_writer(url, prefix, seed, count, dim, block_size=None, **popen):
    args = [sys.executable, SCRIPT, url, prefix, str(seed), str(count), str(dim)]
    if block_size:
        args.append(str(block_size))
    return subprocess.Popen(args, stdout=subprocess.PIPE, text=True, **popen)


def assert_videos_equal(store, prefix, seed, ids, dim):
    for vid in ids:
        expected = video(prefix, seed, int(vid[len(prefix) :]), dim)
        got = store.get(vid).arrays
        for k, a in expected.items():
            np.testing.assert_array_equal(got[k], a, err_msg=f"{vid} {k}")


def write_at_once(url: str, processes: int, per_process: int, block_size: int) -> None:
    """``processes`` writer processes at once into a new store; each one's videos must all
    be there, exactly as written, and the store must verify clean."""
    create_store(url, small_schema(dim=16), block_size=block_size)
    procs = [run_writer(url, f"p{k}-", k, per_process, 16) for k in range(processes)]
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0, out
    store = open_store(url)
    assert len(store) == processes * per_process
    for k in range(processes):
        mine = [v for v in store.ids() if v.startswith(f"p{k}-")]
        assert len(mine) == per_process
        assert_videos_equal(store, f"p{k}-", k, mine, 16)
    assert store.verify() == []


@pytest.mark.parametrize("suffix", [".zarr", ".h5"])
def test_four_writer_processes_at_once(tmp_path, suffix):
    write_at_once(str(tmp_path / f"c{suffix}"), processes=4, per_process=200, block_size=32)


@pytest.mark.parametrize("suffix", [".zarr", ".h5"])
def test_sigkill_mid_write_then_resume(tmp_path, suffix):
    url = str(tmp_path / f"k{suffix}")
    dim, count = 4096, 120
    create_store(url, small_schema(dim=dim), block_size=8)
    rnd = random.Random(1)
    for attempt in range(3):
        proc = run_writer(url, "v", 7, count, dim, start_new_session=True)
        line = proc.stdout.readline()  # wait for at least one commit
        assert line.startswith("committed") or line.startswith("finished"), line
        time.sleep(rnd.uniform(0.0, 0.3))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        store = open_store(url)
        assert store.verify() == [], f"attempt {attempt}"
        ids = store.ids()
        assert len(ids) % 8 == 0  # only whole committed blocks are visible
        assert_videos_equal(store, "v", 7, ids, dim)
    snapshot = open_store(url)
    before = {v: (snapshot.entry(v).segment, snapshot.entry(v).block) for v in snapshot.ids()}
    proc = run_writer(url, "v", 7, count, dim)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0 and "finished" in out
    store = open_store(url)
    assert len(store) == count and store.verify() == []
    assert_videos_equal(store, "v", 7, store.ids(), dim)
    # nothing committed before the resume was written again
    assert {v: (store.entry(v).segment, store.entry(v).block) for v in before} == before
