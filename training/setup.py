"""A run's set-up, in the order `Trainer.__init__` calls it: the device and process group,
the data the run reads (checked against the store), the model built from the store, the
loaders, the optimizer. Each piece is built once, before the loop starts."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from featurestore import FeatureStore
from model import Checkpoint, HybridASLModel, parameter_breakdown
from training.augment import AugmentConfig, Augmenter
from training.config import TrainConfig
from training.distributed import DistInfo, init_distributed
from training.in_memory import hold_in_memory
from training.loader import StoreLoader
from training.statistics import feature_statistics
from training.steps import leave_cores_for_workers, pick_device, warmup_cosine
from training.store_checks import (
    DataError,
    SplitReport,
    check_splits,
    check_streams,
    model_config_for,
    visual_features,
)

Log = Callable[[str], None]


def start_device(cfg: TrainConfig) -> tuple[str, DistInfo]:
    """The device, and the process group under torchrun (a CUDA rank takes its local GPU)."""
    device = pick_device(cfg.device)
    if device == "cpu":
        leave_cores_for_workers(cfg.workers)
    dist = init_distributed(device)
    if device.startswith("cuda") and dist.enabled:
        device = f"cuda:{dist.local_rank}"
        torch.cuda.set_device(device)
    if cfg.batch_size % dist.world_size:
        raise DataError(
            f"--batch-size {cfg.batch_size} must divide evenly over {dist.world_size} ranks"
        )
    return device, dist


@dataclass(frozen=True)
class RunData:
    """What the run reads: its streams, the visual feature set (None: landmarks only), and
    the splits as checked."""

    streams: list[str]
    features: str | None
    splits: SplitReport


def choose_data(
    cfg: TrainConfig, store: FeatureStore, resume: Checkpoint | None, log: Log
) -> RunData:
    """The streams and feature set the run reads, checked against the store. A resumed run
    keeps its checkpoint's modalities and feature set."""
    modalities = resume.config.modalities if resume else cfg.modalities
    features = (resume.features or cfg.features) if resume else cfg.features
    streams = check_streams(store, modalities, features)
    visual = visual_features(modalities, features)
    if cfg.features not in (features, TrainConfig.features):  # a --features that is unused
        log(f"note: --features {cfg.features} ignored: resuming keeps {features!r}")
    elif visual is None and cfg.features != TrainConfig.features:
        log(f"note: --features {cfg.features} ignored: --modalities {modalities} reads none")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = check_splits(store, cfg.train_split, cfg.val_split, streams)
    for w in caught:
        log(f"warning: {w.message}")
    return RunData(streams, visual, report)


def build_model(
    cfg: TrainConfig,
    store: FeatureStore,
    data: RunData,
    resume: Checkpoint | None,
    device: str,
    log: Log,
) -> HybridASLModel:
    """The model the store's layout calls for (a resumed run: its checkpoint's config), on
    the device, with the visual input normalised by the train split's statistics."""
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank and every run
    if resume:
        config = resume.config
    else:
        config = model_config_for(
            store,
            cfg.modalities,
            cfg.gemma_dim,
            features=cfg.features,
            hidden_dim=cfg.hidden_dim,
            fusion_type=cfg.fusion_type,
            dropout=cfg.dropout,
        )
    model = HybridASLModel(config)
    if data.features is not None and not resume:
        model.set_feature_statistics(*feature_statistics(store, cfg.train_split, data.features))
    model.to(device)
    counts = parameter_breakdown(model)
    log(
        f"model: {counts['total']:,} trainable parameters ("
        + ", ".join(f"{k} {v:,}" for k, v in counts.items() if k != "total")
        + f"); {config.modalities}"
        + (f" on feature set {data.features!r}" if data.features else "")
        + f", fusion {config.fusion_type}, hidden {config.hidden_dim}, {config.num_classes} classes"
    )
    return model


def wrap_ddp(model: torch.nn.Module, device: str, dist: DistInfo) -> torch.nn.Module:
    """The model as the step calls it: under DDP wrapped so gradients are averaged."""
    if not dist.enabled:
        return model
    device_ids = [dist.local_rank] if device.startswith("cuda") else None
    return DistributedDataParallel(model, device_ids=device_ids)


def build_loaders(
    cfg: TrainConfig,
    store: FeatureStore,
    data: RunData,
    model: HybridASLModel,
    dist: DistInfo,
    pin_memory: bool,
    log: Log,
) -> tuple[StoreLoader, StoreLoader | None]:
    """This rank's train loader (augmented if asked) and val loader (None without val
    rows), each holding its split in memory when it fits."""
    visual = model.visual_projection
    augmenter = (
        Augmenter(
            AugmentConfig(),
            model.config.part_names,
            model.config.part_sizes,
            feature_std=None if visual is None else visual.feature_std.cpu().numpy(),
            visual=data.features,
        )
        if cfg.augment
        else None
    )
    val_split = cfg.val_split if data.splits.val_rows else None
    splits = [cfg.train_split, *([val_split] if val_split is not None else [])]
    try:
        in_memory, why = hold_in_memory(
            cfg.data_in_memory, store, splits, data.streams, cfg.workers
        )
    except MemoryError as exc:
        raise DataError(str(exc)) from exc
    log(f"data: {' and '.join(splits)} {why}")
    common: dict[str, Any] = dict(
        in_memory=in_memory,
        streams=data.streams,
        window_rows=cfg.window_rows,
        seed=cfg.seed,
        num_workers=cfg.workers,
        rank=dist.rank,
        world_size=dist.world_size,
        mp_context=cfg.mp_context,
        pin_memory=pin_memory,
    )
    per_rank = cfg.batch_size // dist.world_size
    train = StoreLoader(store, cfg.train_split, per_rank, augmenter=augmenter, **common)
    val = (
        StoreLoader(store, val_split, per_rank, shuffle=False, **common)
        if val_split is not None
        else None
    )
    return train, val


@dataclass
class Optimization:
    """The optimizer, its LR schedule, and mixed precision (dtype None: off)."""

    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    amp_dtype: torch.dtype | None


def build_optimization(
    cfg: TrainConfig, model: torch.nn.Module, steps_per_epoch: int, device: str
) -> Optimization:
    """AdamW with warm-up then cosine decay over the run; on CUDA, bfloat16 autocast where
    supported, else float16 with a loss scaler."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    total = max(1, steps_per_epoch * cfg.epochs)
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine(warmup, total))
    amp_dtype = None
    if cfg.amp and device.startswith("cuda"):
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    return Optimization(optimizer, scheduler, scaler, amp_dtype)
