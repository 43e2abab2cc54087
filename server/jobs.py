"""Training jobs: one at a time, each `asl-train`'s Trainer in a child process of its own
(`server.train_job`), so the server keeps answering while it trains.

A job's record (`job.json` in its folder of the runs folder) says queued, running, done,
failed or cancelled; the child writes running, and that it trained or why it failed; this
side writes queued, and done, failed or cancelled once the child has ended. A job that
trained is handed to `adopt`, which checks its model against the store and swaps it in;
only then is it done (so a client that sees done gets the new model). If that fails, or
the child ends without having trained (killed, crashed), the job is failed and the served
model stays as it was. A job that a server
stopped or crashed during (`kill -9`) is marked failed when the server starts again: its
child ends by itself once its parent is gone.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import HTTPException

from .runs import (
    CANCELLED,
    DONE,
    FAILED,
    JOB_FILE,
    LOG_FILE,
    MODEL_FILE,
    QUEUED,
    REPORT_FILE,
    RUNNING,
    job_dirs,
    new_job_id,
    now,
    read_json,
    read_metrics,
    update_job,
    write_json,
)

log = logging.getLogger("server")

#: Per-epoch fields a job's status shows.
EPOCH_FIELDS = ("train_loss", "train_top1", "val_loss", "val_top1", "val_top5", "lr")
#: Report fields a finished job's status shows.
REPORT_FIELDS = ("split", "count", "top1", "top5", "per_class", "confusion", "labels")
LOG_TAIL_CHARS = 2000
STORAGE_OPTIONS_ENV = "ASL_JOB_STORAGE_OPTIONS"

Adopt = Callable[[str, Path], Awaitable[None]]


@dataclass
class RunningJob:
    job_id: str
    folder: Path
    process: subprocess.Popen
    watcher: asyncio.Task | None = None
    cancelling: bool = False


class TrainJobs:
    """Starts, watches, cancels and describes the jobs of one runs folder."""

    def __init__(self, runs: Path, adopt: Adopt) -> None:
        self.runs = runs
        self.adopt = adopt
        self.current: RunningJob | None = None

    def recover(self) -> None:
        """Jobs a stopped or killed server left queued or running: failed, with why."""
        for folder in job_dirs(self.runs):
            job = read_json(folder / JOB_FILE) or {}
            if job.get("state") in (QUEUED, RUNNING):
                update_job(
                    folder,
                    state=FAILED,
                    error="interrupted: the server stopped while this job ran",
                    finished_at=now(),
                )

    async def start(
        self, options: dict, config: dict, threads: int = 1, storage_options: dict | None = None
    ) -> str:
        """Queue a job and start its process (`threads`: its torch threads; the store's
        `storage_options` go by its environment, never into the job's files); 409 while
        another runs."""
        if self.current is not None:
            raise HTTPException(409, f"job {self.current.job_id} is training")
        job_id = new_job_id()
        folder = self.runs / job_id
        folder.mkdir(parents=True)
        config = {**config, "out": str(folder)}
        record: dict[str, Any] = {"job_id": job_id, "state": QUEUED, "options": options}
        record.update(config=config, threads=threads)
        write_json(folder / JOB_FILE, {**record, "created_at": now()})
        with open(folder / LOG_FILE, "wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "server.train_job", str(folder)],
                cwd=folder,  # nothing it writes lands in the server's working directory
                env={**os.environ, STORAGE_OPTIONS_ENV: json.dumps(storage_options or {})},
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C for the server reaches it through us
            )
        job = self.current = RunningJob(job_id, folder, process)
        job.watcher = asyncio.create_task(self._watch(job), name=f"train-{job_id}")
        log.info("training job %s started (pid %d)", job_id, process.pid)
        return job_id

    @property
    def running_id(self) -> str | None:
        return None if self.current is None else self.current.job_id

    async def _watch(self, job: RunningJob) -> None:
        """Wait for the child, then record how it ended and swap its model in."""
        try:
            code = await asyncio.to_thread(job.process.wait)
            record = read_json(job.folder / JOB_FILE) or {}
            if job.cancelling:
                update_job(job.folder, state=CANCELLED, finished_at=now())
            elif record.get("trained") and code == 0:
                await self._adopt(job)
            else:
                error = record.get("error")
                update_job(
                    job.folder,
                    state=FAILED,
                    error=error or f"training process ended with code {code}: {self.tail(job)}",
                    finished_at=now(),
                )
            log.info("training job %s: %s", job.job_id, self.describe(job.job_id)["state"])
        finally:
            self.current = None

    async def _adopt(self, job: RunningJob) -> None:
        try:
            await self.adopt(job.job_id, job.folder / MODEL_FILE)
        except Exception as exc:
            detail = getattr(exc, "detail", None) or f"{type(exc).__name__}: {exc}"
            error = f"the trained model is not served: {detail}"
            update_job(job.folder, state=FAILED, error=error, finished_at=now())
            log.warning("training job %s: model not served: %s", job.job_id, detail)
        else:
            update_job(job.folder, state=DONE, finished_at=now())

    def tail(self, job: RunningJob) -> str:
        try:
            text = (job.folder / LOG_FILE).read_text(errors="replace")
        except OSError:
            return ""
        return text[-LOG_TAIL_CHARS:].strip()

    async def cancel(self, job_id: str) -> dict:
        """Stop a queued or running job; the served model stays as it was."""
        job = self.current
        if job is None or job.job_id != job_id:
            state = self.describe(job_id)["state"]
            raise HTTPException(409, f"job {job_id} is {state}: nothing to cancel")
        job.cancelling = True
        job.process.terminate()
        if job.watcher is not None:
            await asyncio.shield(job.watcher)
        return self.describe(job_id)

    async def stop(self) -> None:
        """At shutdown: a running job is cancelled, not left behind."""
        if self.current is not None:
            await self.cancel(self.current.job_id)

    def folder(self, job_id: str) -> Path:
        folder = self.runs / job_id
        if "/" in job_id or job_id.startswith(".") or not (folder / JOB_FILE).is_file():
            raise HTTPException(404, f"unknown training job {job_id!r}")
        return folder

    def describe(self, job_id: str, served: str | None = None) -> dict:
        """A job's state, its epochs so far, its error, and its report once done."""
        folder = self.folder(job_id)
        job = read_json(folder / JOB_FILE) or {}
        epochs = read_metrics(folder)
        report = read_json(folder / REPORT_FILE) if job.get("state") == DONE else None
        return {
            "job_id": job_id,
            "state": job.get("state", QUEUED),
            "epoch": len(epochs),
            "epochs": job.get("config", {}).get("epochs"),
            "metrics": [
                {"epoch": r.get("epoch", i) + 1, **{k: r[k] for k in EPOCH_FIELDS if k in r}}
                for i, r in enumerate(epochs)
            ],
            "error": job.get("error"),
            "options": job.get("options", {}),
            "created_at": job.get("created_at"),
            "started_at": job.get("started_at"),
            "finished_at": job.get("finished_at"),
            "served": served is not None and served == job_id,
            "report": {k: report.get(k) for k in REPORT_FIELDS} if report else None,
        }

    def list(self, served: str | None = None) -> list[dict]:
        out = []
        for folder in job_dirs(self.runs):
            d = self.describe(folder.name, served)
            out.append({k: v for k, v in d.items() if k not in ("metrics", "report")})
        return out
