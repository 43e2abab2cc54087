"""What a training run is asked to do: every `asl-train` flag in one dataclass, which the
checkpoint keeps as `train_args`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TrainConfig:
    """Everything `asl-train` accepts; stored in checkpoints as `train_args`."""

    store: str
    train_split: str = "train"
    val_split: str | None = "val"
    epochs: int = 50
    batch_size: int = 32
    """Global batch size: each of N DDP ranks takes batch_size / N rows per step."""
    lr: float = 3e-3
    """Peak learning rate (after warm-up, then cosine decay): learns a small set in the
    default epochs and was as good as 1e-3 on real signs (benchmarks/real_signs.py)."""
    weight_decay: float = 0.01
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    grad_clip: float = 1.0
    patience: int = 10
    """Stop after this many epochs without a better val top-1 (0: never)."""
    hidden_dim: int = 256
    fusion_type: str = "concat"
    modalities: str = "both"
    features: str = "gemma"
    """The store's feature set feeding the visual input: base `gemma` or one added with
    `featurestore populate --add-features NAME`; only videos holding it are read.
    Unused with modalities "landmarks"."""
    dropout: float = 0.3
    gemma_dim: int | None = None
    device: str | None = None
    out: str = "runs/asl"
    resume: str | None = None
    seed: int = 0
    workers: int = 2
    window_rows: int = 512
    """Rows shuffled together (the seeded shuffle buffer); also the unit of reads."""
    data_in_memory: str = "auto"
    """auto | on | off: read the train and val splits into memory once and cut every epoch
    from there (same order as streaming); auto when they take <= 25% of available memory."""
    augment: bool = True
    amp: bool = True
    max_steps: int | None = None
    """Stop (saving last.pt) after this many optimizer steps in total; resume continues."""
    save_every: int = 0
    """Also save last.pt every N steps within an epoch (0: only at epoch ends)."""
    progress: bool = True
    mp_context: str = "forkserver"
    storage_options: dict | None = None
