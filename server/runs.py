"""The runs folder: one folder per training job, and the record of the model being served.

```
<store>/runs/                 (or --runs DIR; never the server's working directory)
  served.json                 {"path", "job_id"}: the model a restart serves
  <job_id>/job.json           state, options, times, error, final metrics
  <job_id>/metrics.jsonl      one line per finished epoch (asl-train's own log)
  <job_id>/model.pt           the trained model (the last epoch's weights)
  <job_id>/report.json        asl-eval's report on the val takes (per class, confusion)
  <job_id>/train.log          the training process's output
```

Every JSON file is replaced whole (temp file, fsync, rename), so a `kill -9` at any moment
leaves either the old file or the new one. The store itself never looks in ``runs/``.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

RUNS = "runs"
"""The folder inside a local store; the store's own code leaves it alone."""
JOB_FILE = "job.json"
METRICS_FILE = "metrics.jsonl"
MODEL_FILE = "model.pt"
REPORT_FILE = "report.json"
LOG_FILE = "train.log"
SERVED_FILE = "served.json"

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)


def runs_folder(store: str, runs: str | None) -> Path | None:
    """``runs`` if given, else ``runs/`` inside a local store; None for a remote store
    without ``--runs`` (its jobs would have nowhere local to write)."""
    if runs:
        return Path(runs).resolve()
    if "://" in store and not store.startswith("file://"):
        return None
    return Path(store.removeprefix("file://")).resolve() / RUNS


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_job_id() -> str:
    """Sortable by start time, unique across processes."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-{uuid.uuid4().hex[:6]}"


def write_json(path: Path, data: dict) -> None:
    """Replace ``path`` whole and durably."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_metrics(job_dir: Path) -> list[dict]:
    """The epochs finished so far (a line being written is left for the next read)."""
    try:
        lines = (job_dir / METRICS_FILE).read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            break
    return out


def update_job(job_dir: Path, **changes: Any) -> dict:
    """Merge ``changes`` into the job's record."""
    job = {**(read_json(job_dir / JOB_FILE) or {}), **changes}
    write_json(job_dir / JOB_FILE, job)
    return job


def job_dirs(runs: Path) -> list[Path]:
    """Every job's folder, newest first."""
    if not runs.is_dir():
        return []
    return sorted((p for p in runs.iterdir() if (p / JOB_FILE).is_file()), reverse=True)


def served_model(runs: Path) -> tuple[str, str | None] | None:
    """(checkpoint path, job id) a restart serves: the one recorded as served, else the
    newest job that finished with a model."""
    record = read_json(runs / SERVED_FILE)
    if record and Path(str(record.get("path"))).is_file():
        return str(record["path"]), record.get("job_id")
    for job_dir in job_dirs(runs):
        job = read_json(job_dir / JOB_FILE) or {}
        if job.get("state") == DONE and (job_dir / MODEL_FILE).is_file():
            return str(job_dir / MODEL_FILE), job_dir.name
    return None


def record_served(runs: Path, path: str | None, job_id: str | None) -> None:
    write_json(runs / SERVED_FILE, {"path": path, "job_id": job_id, "since": now()})
