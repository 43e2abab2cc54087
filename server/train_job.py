"""`python -m server.train_job JOB_FOLDER`: one training job of asl-serve, in a process of
its own (`server.jobs` starts it).

It trains with asl-train's Trainer on the config in the folder's `job.json`, writes
`model.pt` (the last epoch's weights: on a small set, val takes from the same sitting say
little about the day after), scores it on the val takes (`report.json`), and records that
it trained, or why it failed; the server marks the job done once it serves the model.
It ends by itself as soon as its server is gone, so a `kill -9` of the server never leaves
it training, and a server that starts again marks the job failed.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from pathlib import Path

from featurestore._test_hold import HOLD_S

from .jobs import STORAGE_OPTIONS_ENV
from .runs import (
    FAILED,
    JOB_FILE,
    MODEL_FILE,
    REPORT_FILE,
    RUNNING,
    now,
    read_json,
    update_job,
    write_json,
)

ORPHAN_CHECK_S = 0.5
HOLD_TRAINING_ENV = "ASL_TEST_HOLD_TRAINING"
#: Final metrics a job's record keeps.
RESULT_FIELDS = ("epoch", "train_loss", "train_top1", "val_loss", "val_top1", "val_top5")


def main(argv: list[str] | None = None) -> int:
    folder = Path((argv if argv is not None else sys.argv[1:])[0])
    parent = os.getppid()
    threading.Thread(target=exit_when_orphaned, args=(parent,), daemon=True).start()
    job = read_json(folder / JOB_FILE) or {}
    update_job(folder, state=RUNNING, started_at=now(), pid=os.getpid())
    hold_for_tests()
    try:
        result = train(folder, job["config"], job.get("threads", 1))
    except Exception as exc:
        traceback.print_exc()
        finish(parent, folder, state=FAILED, error=describe(exc))
        return 1
    finish(parent, folder, trained=True, result=result)  # done once the server serves it
    return 0


def train(folder: Path, config: dict, threads: int) -> dict:
    """Train, keep the last epoch's model, score it on val; the final metrics. One torch
    thread by default, as the server's: a small model gains little from a second, and on
    cores shared with the server (or anything else) OpenMP threads that wait for each other
    took 6x as long (benchmarks/teach.py)."""
    import torch

    from training import TrainConfig, Trainer
    from training.evaluate import evaluate_checkpoint

    torch.set_num_threads(threads)
    storage = json.loads(os.environ.get(STORAGE_OPTIONS_ENV) or "{}")
    cfg = TrainConfig(**config, storage_options=storage or None)
    trainer = Trainer(cfg)
    result = trainer.run()
    trainer.save(MODEL_FILE, result, with_state=False)
    if cfg.val_split and trainer.store.splits().get(cfg.val_split):
        report = evaluate_checkpoint(
            cfg.store, str(folder / MODEL_FILE), cfg.val_split, storage_options=cfg.storage_options
        )
        write_json(folder / REPORT_FILE, report)
    for name in ("best.pt", "last.pt"):  # model.pt is what is served
        (folder / name).unlink(missing_ok=True)
    return {k: result[k] for k in RESULT_FIELDS if k in result}


def describe(exc: Exception) -> str:
    from training import DataError

    if isinstance(exc, DataError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def finish(parent: int, folder: Path, **changes) -> None:
    """Record how the job ended, unless its server is gone (it then marks the job itself)."""
    if os.getppid() != parent:
        os._exit(1)
    update_job(folder, finished_at=now(), **changes)


def hold_for_tests() -> None:
    """Test-only: with ASL_TEST_HOLD_TRAINING=PATH, create PATH and wait (at most HOLD_S)
    before training, so that a test can cancel or kill a running job without racing it."""
    marker = os.environ.get(HOLD_TRAINING_ENV)
    if marker:
        Path(marker).touch()
        time.sleep(HOLD_S)


def exit_when_orphaned(parent: int) -> None:
    while True:
        time.sleep(ORPHAN_CHECK_S)
        if os.getppid() != parent:
            os._exit(1)


if __name__ == "__main__":
    sys.exit(main())
