"""The training loop, plain and top to bottom: open the store, build the model from it,
stream batches, step, validate, checkpoint, stop early. Runs the same in one process or
under torchrun (DDP); in DDP every rank takes the same number of steps, and a rank whose
rows ran out steps with a zero-weight batch so the gradients stay exact. The set-up lives
in training/setup.py, the step's pieces in training/steps.py, what a checkpoint holds and
how a run resumes in training/checkpoints.py, the run's settings in training/config.py."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from featurestore import open_store
from training.checkpoints import Progress, RunCheckpoints, load_resume, restore, training_state
from training.config import TrainConfig
from training.distributed import all_reduce_sum, barrier, shutdown_distributed
from training.metrics import Tally, append_jsonl, read_jsonl
from training.plots import plot_history
from training.setup import (
    build_loaders,
    build_model,
    build_optimization,
    choose_data,
    start_device,
    wrap_ddp,
)
from training.steps import dummy_batch, evaluate, forward, to_device

PLOT_EVERY_S = 60.0
"""Curves are redrawn at most this often during a run (drawing costs ~0.5 s), and at its end."""


class Trainer:
    """One training run. `run()` returns the final metrics."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.device, self.dist = start_device(cfg)
        self.out = Path(cfg.out)
        self.store = open_store(cfg.store, storage_options=cfg.storage_options)
        self.resume_ckpt = load_resume(cfg.resume, self.store)
        data = choose_data(cfg, self.store, self.resume_ckpt, self.log)
        self.streams, self.features, self.split_report = data.streams, data.features, data.splits
        self.labels = self.store.labels
        self.model = build_model(cfg, self.store, data, self.resume_ckpt, self.device, self.log)
        self.model_config = self.model.config
        self.ddp = wrap_ddp(self.model, self.device, self.dist)
        self.train_loader, self.val_loader = build_loaders(
            cfg, self.store, data, self.model, self.dist, self.cuda, self.log
        )
        self.opt = build_optimization(
            cfg, self.model, self.train_loader.steps_per_epoch(), self.device
        )
        self.checkpoints = RunCheckpoints(self.out, cfg, self.store, self.streams, self.features)
        self.progress = Progress()
        self.history: list[dict] = []
        self._last_plot = time.monotonic()
        if self.resume_ckpt:
            self.progress = restore(
                self.resume_ckpt, self.model, self.opt, self.train_loader, self.cuda
            )
            self.history = [
                h
                for h in read_jsonl(self.out / "metrics.jsonl")
                if h["epoch"] < self.progress.epoch
            ]
            self.log(
                f"resumed from {cfg.resume}: epoch {self.progress.epoch}, "
                f"step {self.progress.global_step}"
            )

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")

    def log(self, msg: str) -> None:
        if self.dist.is_main:
            tqdm.write(msg)

    # -- the loop ----------------------------------------------------------------------
    def run(self) -> dict:
        cfg, p = self.cfg, self.progress
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "label_mapping.json").write_text(
                json.dumps({str(k): v for k, v in sorted(self.labels.items())}, indent=1)
            )
            if not self.resume_ckpt:
                (self.out / "metrics.jsonl").unlink(missing_ok=True)
        tb = self._tensorboard()
        last = {}
        stopped = None
        while p.epoch < cfg.epochs:
            train = self.train_epoch()
            if train is None:  # max_steps reached mid-epoch: state saved, resume continues
                stopped = "max_steps"
                break
            val = self.validate()
            last = self._end_epoch(train, val, tb)
            if cfg.patience and p.bad_epochs >= cfg.patience:
                self.log(f"early stop: val top-1 has not improved for {p.bad_epochs} epochs")
                stopped = "early_stop"
                break
            if cfg.max_steps is not None and p.global_step >= cfg.max_steps:
                stopped = "max_steps"
                break
        if tb is not None:
            tb.close()
        self._plot()
        barrier()
        return {
            **last,
            "stopped": stopped,
            "global_step": p.global_step,
            "best_val_top1": p.best_top1,
        }

    def train_epoch(self) -> dict | None:
        """One epoch (or its remainder after a resume). None if max_steps cut it short."""
        cfg, p = self.cfg, self.progress
        self.train_loader.set_epoch(p.epoch)
        steps = self.train_loader.steps_per_epoch()
        batches = iter(self.train_loader)
        tally = Tally(self.model_config.num_classes)
        bar = tqdm(
            total=steps,
            initial=p.epoch_step,
            desc=f"epoch {p.epoch + 1}/{cfg.epochs}",
            disable=not (cfg.progress and self.dist.is_main),
            unit="step",
        )
        self.ddp.train()
        seen, start = 0, time.perf_counter()
        while p.epoch_step < steps:
            batch = next(batches, None)
            n = self._step(batch, tally)
            seen += n
            p.epoch_step += 1
            p.global_step += 1
            rate = seen * self.dist.world_size / max(time.perf_counter() - start, 1e-9)
            bar.set_postfix(
                loss=f"{tally.loss_sum.item() / max(tally.count, 1):.3f}", samples_s=f"{rate:.0f}"
            )
            bar.update(1)
            if cfg.save_every and p.global_step % cfg.save_every == 0:
                self.save("last.pt", {}, with_state=True)
            if (
                cfg.max_steps is not None
                and p.global_step >= cfg.max_steps
                and p.epoch_step < steps
            ):
                bar.close()
                self.save("last.pt", {}, with_state=True)
                return None
        bar.close()
        elapsed = time.perf_counter() - start
        skipped = int(all_reduce_sum(torch.tensor(len(self.train_loader.skipped))))
        if skipped:
            some = list(self.train_loader.skipped.items())[:3]
            self.log(f"warning: skipped {skipped} unusable training rows this epoch, e.g. {some}")
        summary = tally.all_reduce().summary()
        return {
            "train_loss": summary["loss"],
            "train_top1": summary["top1"],
            "train_samples": summary["count"],
            "train_samples_per_s": summary["count"] / max(elapsed, 1e-9),
            "skipped_rows": skipped,
        }

    def _step(self, batch: dict | None, tally: Tally) -> int:
        """Forward, backward, clip, step. Returns the rows this rank trained on."""
        cfg = self.cfg
        real = batch is not None
        batch = to_device(
            batch if batch is not None else dummy_batch(self.store, self.streams),
            self.device,
            self.streams,
        )
        n = batch["label"].shape[0] if real else 0
        total = int(all_reduce_sum(torch.tensor(n)))  # rows in this global step, all ranks
        with torch.autocast(
            self.device.split(":")[0],
            dtype=self.opt.amp_dtype,
            enabled=self.opt.amp_dtype is not None,
        ):
            logits = forward(self.ddp, batch, self.features)
            losses = F.cross_entropy(
                logits.float(),
                batch["label"],
                label_smoothing=cfg.label_smoothing,
                reduction="none",
            )
        # DDP averages gradients over ranks; scaling by world/total makes the result the
        # exact mean over the step's rows however they are spread over ranks.
        weight = (self.dist.world_size / max(total, 1)) if real else 0.0
        loss = losses.sum() * weight
        if real and not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite loss at step {self.progress.global_step} (videos {batch.get('ids', [])[:5]}...)"
            )
        self.opt.optimizer.zero_grad(set_to_none=True)
        self.opt.scaler.scale(loss).backward()
        if cfg.grad_clip:
            self.opt.scaler.unscale_(self.opt.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.opt.scaler.step(self.opt.optimizer)
        self.opt.scaler.update()
        self.opt.scheduler.step()
        if real:
            tally.update(logits, batch["label"], losses.detach().sum())
        return n

    @torch.no_grad()
    def validate(self) -> dict | None:
        if self.val_loader is None:
            return None
        tally = evaluate(
            self.model,
            self.val_loader,
            self.streams,
            self.device,
            self.model_config.num_classes,
            self.opt.amp_dtype,
            self.features,
        )
        s = tally.all_reduce().summary(self.labels)
        return {
            "val_loss": s["loss"],
            "val_top1": s["top1"],
            "val_top5": s["top5"],
            "val_samples": s["count"],
        }

    def _end_epoch(self, train: dict, val: dict | None, tb) -> dict:
        """Record the epoch, count it for early stopping, save best.pt if val improved and
        always last.pt."""
        p = self.progress
        record = {
            "epoch": p.epoch,
            "step": p.global_step,
            "lr": self.opt.scheduler.get_last_lr()[0],
            **train,
            **(val or {}),
        }
        top1 = val["val_top1"] if val else None
        improved = top1 is None or top1 > p.best_top1
        if top1 is not None:
            p.best_top1 = max(p.best_top1, top1)
            p.bad_epochs = 0 if improved else p.bad_epochs + 1
        p.epoch += 1
        p.epoch_step = 0
        self.history.append(record)
        if self.dist.is_main:
            self._report(record, tb)
        metrics = {
            **record,
            "split_report": self.split_report.to_dict(),
            "best_val_top1": p.best_top1,
        }
        if improved:
            self.save("best.pt", metrics, with_state=False)
        self.save("last.pt", metrics, with_state=True)
        return record

    def _report(self, record: dict, tb) -> None:
        """An epoch's line in metrics.jsonl, TensorBoard and the log; the curves now and then."""
        append_jsonl(self.out / "metrics.jsonl", record)
        if time.monotonic() - self._last_plot >= PLOT_EVERY_S:
            self._plot()
        if tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k not in ("epoch", "step"):
                    tb.add_scalar(k, v, record["epoch"])
        r = record
        msg = (
            f"epoch {r['epoch'] + 1}: train loss {r['train_loss']:.4f} top-1 {r['train_top1']:.3f}"
        )
        if "val_loss" in r:
            msg += f" | val loss {r['val_loss']:.4f} top-1 {r['val_top1']:.3f} top-5 {r['val_top5']:.3f}"
        msg += f" | {r['train_samples_per_s']:.0f} samples/s"
        self.log(msg)

    def save(self, name: str, metrics: dict, with_state: bool) -> None:
        """Write checkpoint `name` (on the main rank); `with_state`: resumable (last.pt)."""
        if not self.dist.is_main:
            return
        state = (
            training_state(self.progress, self.opt, self.train_loader, self.cuda)
            if with_state
            else None
        )
        self.checkpoints.save(name, self.model, metrics, state)

    def _plot(self) -> None:
        if self.dist.is_main and self.history:
            plot_history(self.history, self.out)
            self._last_plot = time.monotonic()

    def _tensorboard(self):
        if not self.dist.is_main:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return None
        return SummaryWriter(str(self.out / "tensorboard"))


def train(cfg: TrainConfig) -> dict:
    """Run training; tears the process group down however it ends."""
    try:
        return Trainer(cfg).run()
    finally:
        shutdown_distributed()
