"""`asl-train` and `asl-eval`. Errors the user can fix end in one clear line and exit 2."""

from __future__ import annotations

import argparse
import json
import sys

from featurestore import StoreError
from model import CheckpointError
from training.config import TrainConfig
from training.store_checks import DataError
from training.trainer import train

USER_ERRORS = (DataError, StoreError, CheckpointError, FileNotFoundError, PermissionError)


def train_parser() -> argparse.ArgumentParser:
    d = TrainConfig(store="")
    p = argparse.ArgumentParser(
        prog="asl-train",
        description="Train the hybrid sign classifier by streaming features from a store. "
        "Under torchrun (torchrun --nproc-per-node N -m training ...) it trains with DDP.",
    )
    p.add_argument("--store", required=True, help="feature store URL (x.zarr, x.h5, s3://...)")
    p.add_argument("--train-split", default=d.train_split)
    p.add_argument("--val-split", default=d.val_split, help="'' for no validation")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument(
        "--batch-size", type=int, default=d.batch_size, help="global batch (split over DDP ranks)"
    )
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--warmup-epochs", type=float, default=d.warmup_epochs)
    p.add_argument("--label-smoothing", type=float, default=d.label_smoothing)
    p.add_argument(
        "--grad-clip", type=float, default=d.grad_clip, help="max gradient norm (0: off)"
    )
    p.add_argument(
        "--patience", type=int, default=d.patience, help="early-stopping epochs (0: off)"
    )
    p.add_argument("--hidden-dim", type=int, default=d.hidden_dim)
    p.add_argument("--fusion-type", choices=["concat", "attention", "gated"], default=d.fusion_type)
    p.add_argument("--modalities", choices=["both", "landmarks", "visual"], default=d.modalities)
    p.add_argument(
        "--features",
        default=d.features,
        metavar="NAME",
        help="the store's feature set for the visual input: gemma, or one added with "
        "'featurestore populate --add-features NAME' (default: %(default)s)",
    )
    p.add_argument("--dropout", type=float, default=d.dropout)
    p.add_argument(
        "--gemma-dim",
        type=int,
        default=None,
        help="expected encoder feature width (default: the store's)",
    )
    p.add_argument("--device", default=None, help="cpu | cuda | mps (default: best available)")
    p.add_argument("--out", default=d.out, help="output folder")
    p.add_argument("--resume", default=None, metavar="CKPT", help="continue from a last.pt")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--workers", type=int, default=d.workers, help="DataLoader workers per process")
    p.add_argument("--window-rows", type=int, default=d.window_rows, help="rows shuffled together")
    p.add_argument(
        "--data-in-memory",
        choices=["auto", "on", "off"],
        default=d.data_in_memory,
        help="hold the splits in RAM and run epochs from there, same order as streaming "
        "(auto: when they take <= 25%% of available memory)",
    )
    p.add_argument("--no-augment", dest="augment", action="store_false")
    p.add_argument("--no-amp", dest="amp", action="store_false", help="no mixed precision on CUDA")
    p.add_argument(
        "--max-steps", type=int, default=None, help="stop after N steps (resume continues)"
    )
    p.add_argument("--save-every", type=int, default=0, help="also save last.pt every N steps")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    p.add_argument("--mp-context", default=d.mp_context, choices=["forkserver", "spawn", "fork"])
    p.add_argument("--json", default=None, metavar="FILE", help="write the final metrics here")
    return p


def train_main(argv: list[str] | None = None) -> int:
    args = vars(train_parser().parse_args(argv))
    json_out = args.pop("json")
    args["val_split"] = args["val_split"] or None
    try:
        result = train(TrainConfig(**args))
    except USER_ERRORS as exc:
        print(f"asl-train: error: {exc}", file=sys.stderr)
        return 2
    if json_out:
        with open(json_out, "w") as f:
            json.dump(result, f, indent=1)
    return 0


def eval_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="asl-eval", description="Score a checkpoint on a split of a feature store."
    )
    p.add_argument("--store", required=True)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--out", default=None, help="folder for report.json and confusion.png")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--device", default=None)
    return p


def eval_main(argv: list[str] | None = None) -> int:
    from training.evaluate import evaluate_checkpoint

    args = eval_parser().parse_args(argv)
    try:
        report = evaluate_checkpoint(
            args.store,
            args.checkpoint,
            args.split,
            args.out,
            args.batch_size,
            args.workers,
            args.device,
        )
    except USER_ERRORS as exc:
        print(f"asl-eval: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"{args.split}: {report['count']} videos  top-1 {report['top1']:.4f}  top-5 {report['top5']:.4f}  "
        f"loss {report['loss']:.4f}" + (f"  (report in {args.out})" if args.out else "")
    )
    worst = sorted(report["per_class"].items(), key=lambda kv: kv[1]["accuracy"])[:5]
    if worst:
        print("weakest classes: " + ", ".join(f"{k} {v['accuracy']:.2f}" for k, v in worst))
    return 0
