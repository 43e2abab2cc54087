"""An import killed mid-way (SIGKILL) loses at most the block in flight; a rerun finishes it.

The import is held (featurestore._test_hold) after 100 sequences: one block of 64 committed,
36 in flight, so the kill always lands mid-run, at the same point."""

import io
import json
import os
import signal
import subprocess
import sys
import zipfile

import numpy as np
import pytest

from featurestore import StoreError, open_store
from tests.processes import hold_env, interruptible, wait_for_hold

GLOSSES, PER_GLOSS = 10, 40


def _zip(path):
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for g in range(GLOSSES):
            for s in range(PER_GLOSS):
                for t in range(2):
                    buf = io.BytesIO()
                    np.save(buf, rng.uniform(0.1, 0.9, 258))
                    z.writestr(f"MP_Data/g{g}/{s}/{t}.npy", buf.getvalue())
    return path


def _cmd(source, url, summary):
    return [sys.executable, "-m", "featurestore", "import", "mpdata", str(source), "--store",
            url, "--quiet", "--summary-json", str(summary)]  # fmt: skip


def _committed(url) -> int:
    try:
        return len(open_store(url))
    except StoreError:
        return 0


def test_sigkill_then_rerun_imports_everything_once(tmp_path):
    source = _zip(tmp_path / "mp.zip")
    url = str(tmp_path / "s.zarr")
    proc = subprocess.Popen(
        _cmd(source, url, tmp_path / "a.json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env=hold_env(100, tmp_path / "held"),
    )
    wait_for_hold(proc, tmp_path / "held")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    partial = _committed(url)
    total = GLOSSES * PER_GLOSS
    assert 64 <= partial < total
    assert open_store(url).verify() == []

    rerun = subprocess.run(_cmd(source, url, tmp_path / "b.json"), capture_output=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr.decode()
    summary = json.loads((tmp_path / "b.json").read_text())
    assert summary["skipped"] == partial and summary["imported"] == total - partial
    store = open_store(url)
    assert len(store) == total and store.verify() == []
    assert len(store.labels) == GLOSSES


def test_compact_is_refused_while_an_import_writes_and_runs_once_it_is_done(tmp_path):
    """Issue 22: the import holds its writer's lease from its first commit; compact sees it."""
    from featurestore.cli import main as cli_main

    source = _zip(tmp_path / "mp.zip")
    url = str(tmp_path / "s.zarr")
    proc = subprocess.Popen(
        _cmd(source, url, tmp_path / "a.json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=hold_env(100, tmp_path / "held"),
        preexec_fn=interruptible,
    )
    wait_for_hold(proc, tmp_path / "held")
    try:
        with pytest.raises(StoreError, match=r"1 writer\(s\) running: a writer of segment"):
            open_store(url, "r+").compact()
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C: it commits what is complete, then leaves
        proc.wait(timeout=120)
    assert proc.returncode == 130
    committed = _committed(url)
    assert cli_main(["compact", url, "--quiet", "--grace", "0"]) == 0
    store = open_store(url)
    assert len(store) == committed and store.verify() == []
