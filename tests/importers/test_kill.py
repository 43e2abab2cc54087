"""An import killed mid-way (SIGKILL) loses at most the block in flight; a rerun finishes it."""

import io
import json
import os
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np

from featurestore import StoreError, open_store

GLOSSES, PER_GLOSS = 10, 400  # about 4 s of importing: time to kill it after a commit


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
    )
    deadline = time.monotonic() + 120
    while _committed(url) < 64 and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.02)
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
