"""The training loop, plain and top to bottom: open the store, build the model from it,
stream batches, step, validate, checkpoint, stop early. Runs the same in one process or
under torchrun (DDP); in DDP every rank takes the same number of steps, and a rank whose
rows ran out steps with a zero-weight batch so the gradients stay exact. The step's pieces
live in training/steps.py, the run's settings in training/config.py."""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from featurestore import open_store
from model import (
    Checkpoint,
    CheckpointError,
    HybridASLModel,
    load_checkpoint,
    parameter_breakdown,
    save_checkpoint,
)
from training.augment import AugmentConfig, Augmenter
from training.config import TrainConfig
from training.distributed import (
    DistInfo,
    all_reduce_sum,
    barrier,
    init_distributed,
    shutdown_distributed,
)
from training.in_memory import hold_in_memory
from training.loader import StoreLoader
from training.metrics import Tally, append_jsonl, read_jsonl
from training.plots import plot_history
from training.statistics import feature_statistics
from training.steps import (
    dummy_batch,
    evaluate,
    forward,
    leave_cores_for_workers,
    pick_device,
    to_device,
    warmup_cosine,
)
from training.store_checks import (
    DataError,
    check_splits,
    check_streams,
    checkpoint_stream_specs,
    model_config_for,
    visual_features,
)

PLOT_EVERY_S = 60.0
"""Curves are redrawn at most this often during a run (drawing costs ~0.5 s), and at its end."""


class Trainer:
    """One training run. `run()` returns the final metrics."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.device = pick_device(cfg.device)
        if self.device == "cpu":
            leave_cores_for_workers(cfg.workers)
        self.dist: DistInfo = init_distributed(self.device)
        if self.device.startswith("cuda") and self.dist.enabled:
            self.device = f"cuda:{self.dist.local_rank}"
            torch.cuda.set_device(self.device)
        if cfg.batch_size % self.dist.world_size:
            raise DataError(
                f"--batch-size {cfg.batch_size} must divide evenly over {self.dist.world_size} ranks"
            )
        self.out = Path(cfg.out)
        self.store = open_store(cfg.store, storage_options=cfg.storage_options)
        self.resume_ckpt = self._load_resume()
        # A resumed run keeps its checkpoint's modalities and feature set.
        ckpt = self.resume_ckpt
        modalities = ckpt.config.modalities if ckpt else cfg.modalities
        features = (ckpt.features or cfg.features) if ckpt else cfg.features
        self.streams = check_streams(self.store, modalities, features)
        self.features = visual_features(modalities, features)
        if cfg.features not in (features, TrainConfig.features):  # a --features that is unused
            self.log(f"note: --features {cfg.features} ignored: resuming keeps {features!r}")
        elif self.features is None and cfg.features != TrainConfig.features:
            self.log(
                f"note: --features {cfg.features} ignored: --modalities {modalities} reads none"
            )
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            self.split_report = check_splits(
                self.store, cfg.train_split, cfg.val_split, self.streams
            )
        for w in caught:
            self.log(f"warning: {w.message}")
        self.labels = self.store.labels
        self._build_model()
        self._build_loaders()
        self._build_optimizer()
        self.global_step, self.epoch, self.epoch_step = 0, 0, 0
        self.best_top1, self.bad_epochs = -1.0, 0
        self.history: list[dict] = []
        self._last_plot = time.monotonic()
        if self.resume_ckpt:
            self._restore(self.resume_ckpt)

    # -- set-up ------------------------------------------------------------------------
    def log(self, msg: str) -> None:
        if self.dist.is_main:
            tqdm.write(msg)

    def _load_resume(self):
        if not self.cfg.resume:
            return None
        try:
            ckpt = load_checkpoint(self.cfg.resume)
        except CheckpointError as exc:
            raise DataError(f"cannot resume: {exc}") from exc
        if not ckpt.state:
            raise DataError(
                f"cannot resume from {self.cfg.resume}: it holds no training state (resume from last.pt)"
            )
        ckpt.check_store(self.store)
        if self.store.labels and max(self.store.labels) >= ckpt.config.num_classes:
            raise DataError(
                f"cannot resume from {self.cfg.resume}: the store now has label {max(self.store.labels)}, "
                f"the model only {ckpt.config.num_classes} classes (start a new run)"
            )
        return ckpt

    def _build_model(self) -> None:
        cfg = self.cfg
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank and every run
        if self.resume_ckpt:
            self.model_config = self.resume_ckpt.config
        else:
            self.model_config = model_config_for(
                self.store,
                cfg.modalities,
                cfg.gemma_dim,
                features=cfg.features,
                hidden_dim=cfg.hidden_dim,
                fusion_type=cfg.fusion_type,
                dropout=cfg.dropout,
            )
        self.model = HybridASLModel(self.model_config)
        if self.features is not None and not self.resume_ckpt:
            stats = feature_statistics(self.store, cfg.train_split, self.features)
            self.model.set_feature_statistics(*stats)
        self.model.to(self.device)
        counts = parameter_breakdown(self.model)
        self.log(
            f"model: {counts['total']:,} trainable parameters ("
            + ", ".join(f"{k} {v:,}" for k, v in counts.items() if k != "total")
            + f"); {self.model_config.modalities}"
            + (f" on feature set {self.features!r}" if self.features else "")
            + f", fusion {self.model_config.fusion_type}, "
            f"hidden {self.model_config.hidden_dim}, {self.model_config.num_classes} classes"
        )
        self.ddp = (
            DistributedDataParallel(
                self.model,
                device_ids=[self.dist.local_rank] if self.device.startswith("cuda") else None,
            )
            if self.dist.enabled
            else self.model
        )

    def _build_loaders(self) -> None:
        cfg, d = self.cfg, self.dist
        layout = self.model_config
        visual = self.model.visual_projection
        augmenter = (
            Augmenter(
                AugmentConfig(),
                layout.part_names,
                layout.part_sizes,
                feature_std=None if visual is None else visual.feature_std.cpu().numpy(),
                visual=self.features,
            )
            if cfg.augment
            else None
        )
        val_split = cfg.val_split if self.split_report.val_rows else None
        splits = [cfg.train_split, *([val_split] if val_split is not None else [])]
        try:
            in_memory, why = hold_in_memory(
                cfg.data_in_memory, self.store, splits, self.streams, cfg.workers
            )
        except MemoryError as exc:
            raise DataError(str(exc)) from exc
        self.log(f"data: {' and '.join(splits)} {why}")
        common: dict[str, Any] = dict(
            in_memory=in_memory,
            streams=self.streams,
            window_rows=cfg.window_rows,
            seed=cfg.seed,
            num_workers=cfg.workers,
            rank=d.rank,
            world_size=d.world_size,
            mp_context=cfg.mp_context,
            pin_memory=self.device.startswith("cuda"),
        )
        per_rank = cfg.batch_size // d.world_size
        self.train_loader = StoreLoader(
            self.store, cfg.train_split, per_rank, augmenter=augmenter, **common
        )
        self.val_loader = (
            StoreLoader(self.store, val_split, per_rank, shuffle=False, **common)
            if val_split is not None
            else None
        )

    def _build_optimizer(self) -> None:
        cfg = self.cfg
        self.optimizer = torch.optim.AdamW(
            self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay
        )
        steps = self.train_loader.steps_per_epoch()
        self.total_steps = max(1, steps * cfg.epochs)
        warmup = int(round(cfg.warmup_epochs * steps))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_cosine(warmup, self.total_steps)
        )
        cuda = self.device.startswith("cuda")
        self.amp_dtype = None
        if cfg.amp and cuda:
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)

    # -- checkpoints -------------------------------------------------------------------
    def _state(self) -> dict:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "global_step": self.global_step,
            "epoch": self.epoch,
            "epoch_step": self.epoch_step,
            "loader": self.train_loader.state_dict(),
            "best_top1": self.best_top1,
            "bad_epochs": self.bad_epochs,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state() if self.device.startswith("cuda") else None,
        }

    def _restore(self, ckpt: Checkpoint) -> None:
        self.model.load_state_dict(ckpt.model.state_dict())
        s = ckpt.state
        self.optimizer.load_state_dict(s["optimizer"])
        self.scheduler.load_state_dict(s["scheduler"])
        self.scaler.load_state_dict(s["scaler"])
        self.global_step, self.epoch, self.epoch_step = (
            s["global_step"],
            s["epoch"],
            s["epoch_step"],
        )
        self.best_top1, self.bad_epochs = s["best_top1"], s["bad_epochs"]
        self.train_loader.load_state_dict(s["loader"])
        torch.set_rng_state(s["torch_rng"])
        if s.get("cuda_rng") is not None and self.device.startswith("cuda"):
            torch.cuda.set_rng_state(s["cuda_rng"])
        self.history = [
            h for h in read_jsonl(self.out / "metrics.jsonl") if h["epoch"] < self.epoch
        ]
        self.log(f"resumed from {self.cfg.resume}: epoch {self.epoch}, step {self.global_step}")

    def save(self, name: str, metrics: dict, with_state: bool) -> None:
        if not self.dist.is_main:
            return
        save_checkpoint(
            self.out / name,
            self.model,
            labels=self.labels,
            features=self.features,
            encoder=self.store.schema.fingerprint(self.features) if self.features else {},
            landmark_layout=self.store.schema.landmark_layout or None,
            num_frames=self.store.schema.num_frames,
            streams=checkpoint_stream_specs(self.store, self.streams),
            train_args=_jsonable(dataclasses.asdict(self.cfg)),
            metrics=metrics,
            state=self._state() if with_state else None,
        )

    # -- the loop ----------------------------------------------------------------------
    def run(self) -> dict:
        cfg = self.cfg
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
        while self.epoch < cfg.epochs:
            train = self.train_epoch()
            if train is None:  # max_steps reached mid-epoch: state saved, resume continues
                stopped = "max_steps"
                break
            val = self.validate()
            last = self._end_epoch(train, val, tb)
            if cfg.patience and self.bad_epochs >= cfg.patience:
                self.log(f"early stop: val top-1 has not improved for {self.bad_epochs} epochs")
                stopped = "early_stop"
                break
            if cfg.max_steps is not None and self.global_step >= cfg.max_steps:
                stopped = "max_steps"
                break
        if tb is not None:
            tb.close()
        self._plot()
        barrier()
        return {
            **last,
            "stopped": stopped,
            "global_step": self.global_step,
            "best_val_top1": self.best_top1,
        }

    def train_epoch(self) -> dict | None:
        """One epoch (or its remainder after a resume). None if max_steps cut it short."""
        cfg = self.cfg
        self.train_loader.set_epoch(self.epoch)
        steps = self.train_loader.steps_per_epoch()
        batches = iter(self.train_loader)
        tally = Tally(self.model_config.num_classes)
        bar = tqdm(
            total=steps,
            initial=self.epoch_step,
            desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
            disable=not (cfg.progress and self.dist.is_main),
            unit="step",
        )
        self.ddp.train()
        seen, start = 0, time.perf_counter()
        while self.epoch_step < steps:
            batch = next(batches, None)
            n = self._step(batch, tally)
            seen += n
            self.epoch_step += 1
            self.global_step += 1
            rate = seen * self.dist.world_size / max(time.perf_counter() - start, 1e-9)
            bar.set_postfix(
                loss=f"{tally.loss_sum.item() / max(tally.count, 1):.3f}", samples_s=f"{rate:.0f}"
            )
            bar.update(1)
            if cfg.save_every and self.global_step % cfg.save_every == 0:
                self.save("last.pt", {}, with_state=True)
            if (
                cfg.max_steps is not None
                and self.global_step >= cfg.max_steps
                and self.epoch_step < steps
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
            self.device.split(":")[0], dtype=self.amp_dtype, enabled=self.amp_dtype is not None
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
                f"non-finite loss at step {self.global_step} (videos {batch.get('ids', [])[:5]}...)"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if cfg.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
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
            self.amp_dtype,
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
        record = {
            "epoch": self.epoch,
            "step": self.global_step,
            "lr": self.scheduler.get_last_lr()[0],
            **train,
            **(val or {}),
        }
        top1 = val["val_top1"] if val else None
        improved = top1 is None or top1 > self.best_top1
        if top1 is not None:
            self.best_top1 = max(self.best_top1, top1)
            self.bad_epochs = 0 if improved else self.bad_epochs + 1
        self.epoch += 1
        self.epoch_step = 0
        self.history.append(record)
        if self.dist.is_main:
            append_jsonl(self.out / "metrics.jsonl", record)
            if time.monotonic() - self._last_plot >= PLOT_EVERY_S:
                self._plot()
            if tb is not None:
                for k, v in record.items():
                    if isinstance(v, (int, float)) and k not in ("epoch", "step"):
                        tb.add_scalar(k, v, record["epoch"])
            msg = f"epoch {record['epoch'] + 1}: train loss {train['train_loss']:.4f} top-1 {train['train_top1']:.3f}"
            if val:
                msg += f" | val loss {val['val_loss']:.4f} top-1 {val['val_top1']:.3f} top-5 {val['val_top5']:.3f}"
            msg += f" | {train['train_samples_per_s']:.0f} samples/s"
            self.log(msg)
        metrics = {
            **record,
            "split_report": self.split_report.to_dict(),
            "best_val_top1": self.best_top1,
        }
        if improved:
            self.save("best.pt", metrics, with_state=False)
        self.save("last.pt", metrics, with_state=True)
        return record

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


def _jsonable(d: dict) -> dict:
    return json.loads(json.dumps(d, default=str))


def train(cfg: TrainConfig) -> dict:
    """Run training; tears the process group down however it ends."""
    try:
        return Trainer(cfg).run()
    finally:
        shutdown_distributed()
