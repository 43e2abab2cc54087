"""Recognition on real signs: the default model against the landmark LSTM of the field.

The traduttore ASL landmarks (MP_Data/<gloss>/<sequence>/<frame>.npy, 33 classes,
20 frames of MediaPipe Holistic) are imported with `featurestore.import_dataset` into two
landmarks-only stores, and in one run, on the same stores and splits:
- ours: `Trainer` with exactly the defaults `asl-train` gives, `--modalities landmarks`,
  scored on the test split with its best.pt;
- baseline: the stacked LSTM that public repositories of this kind train (LSTM 64-128-64,
  dense 64-32, Adam 1e-3, raw coordinates, no normalisation), on the same rows flattened
  to 225 values a frame (the store keeps x, y, z, not the pose's visibility), the epoch
  with the best val top-1 scored on test.
Splits: `random` (per gloss, seeded 70/15/15) and `recorder` (traduttore-recorders.csv:
train and val from the other people, test on `--test-signer`'s clips of the glosses the
others also recorded). Rows: top-1 of each split (fractions), train time per epoch and
training samples/s of ours (baseline: the LSTM's). Per-class test accuracy of the
recorder split is printed below the table.

    python benchmarks/real_signs.py [--quick] [--json FILE] [--data MP_DATA_ZIP_OR_DIR]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(__file__))
from common import Row, parser, report  # noqa: E402

from featurestore import import_dataset, open_store  # noqa: E402
from model import load_checkpoint  # noqa: E402
from training import TrainConfig  # noqa: E402
from training.metrics import read_jsonl  # noqa: E402
from training.trainer import Trainer  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "landmarks"
DEFAULT_DATA = SHARED / "traduttore-asl-mpdata.zip"
STREAMS = ["landmarks", "landmark_mask"]


class StackedLSTM(nn.Module):
    """LSTM 64-128-64, dense 64-32, softmax: the usual Keras action-recognition model."""

    def __init__(self, d_in: int, num_classes: int):
        super().__init__()
        self.lstm1 = nn.LSTM(d_in, 64, batch_first=True)
        self.lstm2 = nn.LSTM(64, 128, batch_first=True)
        self.lstm3 = nn.LSTM(128, 64, batch_first=True)
        self.head = nn.Sequential(
            nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, _ = self.lstm1(x)
        x, _ = self.lstm2(x)
        x, _ = self.lstm3(x)
        return self.head(x[:, -1])


def split_arrays(store, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(landmarks, mask, labels) of a whole split (small: landmarks only)."""
    parts = list(store.iter_batches(split, batch_size=512, streams=STREAMS))
    return (
        np.concatenate([b.arrays["landmarks"] for b in parts]),
        np.concatenate([b.arrays["landmark_mask"] for b in parts]),
        np.concatenate([b.labels for b in parts]).astype(np.int64),
    )


def baseline(store, epochs: int, seed: int = 0) -> dict:
    """Train the LSTM on train, pick the epoch by val, score test (same rows as ours)."""
    torch.manual_seed(seed)
    data = {s: split_arrays(store, s) for s in ("train", "val", "test")}
    x = {s: torch.from_numpy(a[0].reshape(len(a[0]), a[0].shape[1], -1)) for s, a in data.items()}
    y = {s: torch.from_numpy(a[2]) for s, a in data.items()}
    model = StackedLSTM(x["train"].shape[-1], max(store.labels) + 1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(seed)
    best, start, seen = (-1.0, None), time.perf_counter(), 0
    for _ in range(epochs):
        model.train()
        for rows in np.array_split(rng.permutation(len(y["train"])), -(-len(y["train"]) // 32)):
            loss = F.cross_entropy(model(x["train"][rows]), y["train"][rows])
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += len(rows)
        model.eval()
        with torch.no_grad():
            val = (model(x["val"]).argmax(-1) == y["val"]).float().mean().item()
            if val > best[0]:
                best = (val, model(x["test"]).argmax(-1).numpy())
    elapsed = time.perf_counter() - start
    return {
        "pred": best[1],
        "epoch_s": elapsed / epochs,
        "samples_s": seen / elapsed,
    }


def ours(url: str, out: Path, epochs: int | None) -> dict:
    """`asl-train --store URL --modalities landmarks` (its defaults; --quick: fewer epochs)."""
    cfg = TrainConfig(store=url, modalities="landmarks", out=str(out), progress=False)
    if epochs is not None:
        cfg.epochs = epochs
    start = time.perf_counter()
    result = Trainer(cfg).run()
    elapsed = time.perf_counter() - start
    epochs_run = result["epoch"] + 1
    rates = [r["train_samples_per_s"] for r in read_jsonl(out / "metrics.jsonl")]
    ckpt = load_checkpoint(out / "best.pt")
    lm, mask, _ = split_arrays(open_store(url), "test")
    with torch.no_grad():
        _, top = ckpt.model.predict(None, torch.from_numpy(lm), torch.from_numpy(mask), top_k=1)
    return {
        "pred": top[:, 0].numpy(),
        "epoch_s": elapsed / epochs_run,
        "samples_s": float(np.median(rates[1:] or rates)),  # the first epoch starts workers
        "epochs": epochs_run,
    }


def score(store, pred: np.ndarray) -> tuple[float, dict[str, tuple], int]:
    """Test top-1 over the test clips whose gloss occurs in train (a model cannot know the
    others); per class: (accuracy, clips, the gloss it is most often taken for)."""
    _, _, labels = split_arrays(store, "test")
    known = set(split_arrays(store, "train")[2].tolist())
    keep = np.isin(labels, list(known))
    labels, pred = labels[keep], pred[keep]
    per_class = {}
    for c in np.unique(labels):
        mine = pred[labels == c]
        wrong = mine[mine != c]
        taken = store.labels[int(np.bincount(wrong).argmax())] if len(wrong) else "-"
        per_class[store.labels[c]] = (float((mine == c).mean()), len(mine), taken)
    return float((pred == labels).mean()), per_class, int(keep.sum())


def run_split(name: str, store_url: str, work: Path, args) -> tuple[list[Row], dict]:
    store = open_store(store_url)
    ours_run = ours(store_url, work / f"run-{name}", 5 if args.quick else None)
    base_run = baseline(store, 20 if args.quick else args.lstm_epochs)
    ours_top1, ours_per_class, n = score(store, ours_run["pred"])
    base_top1, base_per_class, _ = score(store, base_run["pred"])
    print(
        f"{name}: {n} test clips; ours {ours_top1:.4f} ({ours_run['epochs']} epochs, "
        f"{ours_run['epoch_s']:.1f} s/epoch), LSTM {base_top1:.4f}",
        flush=True,
    )
    rows = [
        Row(
            f"real signs {name}",
            ours_top1,
            base_top1,
            ours_top1 / base_top1 if base_top1 else None,
            "top-1",
        ),
        Row(f"{name} s/epoch", ours_run["epoch_s"], base_run["epoch_s"], None, "s"),
        Row(f"{name} samples/s", ours_run["samples_s"], base_run["samples_s"], None, "samples/s"),
    ]
    return rows, {"ours": ours_per_class, "baseline": base_per_class}


def find_signers(data: Path, given: str | None) -> Path | None:
    if given:
        return Path(given)
    beside = data.parent / "traduttore-recorders.csv"
    return beside if beside.exists() else None


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument(
        "--data", help="an MP_Data tree or zip (default: the traduttore zip in ../shared)"
    )
    p.add_argument("--signers", help="gloss,sequence,recorded_by CSV (default: beside --data)")
    p.add_argument("--test-signer", default="dmohazab")
    p.add_argument("--lstm-epochs", type=int, default=100)
    args = p.parse_args()
    data = Path(args.data) if args.data else DEFAULT_DATA
    if not data.exists():
        print(f"skipped: no MP_Data at {data} (pass --data PATH to an MP_Data tree or zip)")
        return
    signers = find_signers(data, args.signers)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    rows, per_class, started = [], {}, time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        url = str(work / "random.zarr")
        import_dataset("mpdata", [data], url, seed=0, progress=False)
        rows += run_split("random", url, work, args)[0]
        if signers is None:
            print("recorder split skipped: no signers CSV (pass --signers)")
        else:
            url = str(work / "recorder.zarr")
            import_dataset(
                "mpdata",
                [data],
                url,
                seed=0,
                signers=signers,
                test_signers=[args.test_signer],
                progress=False,
            )
            split_rows, per_class = run_split("recorder", url, work, args)
            rows += split_rows
    if per_class:
        ours_pc, base_pc = per_class["ours"], per_class["baseline"]
        print(f"\nrecorder split, per-class test top-1 ({args.test_signer}):")
        print("| class | clips | ours | ours mostly confuses it with | LSTM |")
        print("|---|---:|---:|---|---:|")
        for c in sorted(ours_pc, key=lambda c: ours_pc[c][0]):
            acc, n, taken = ours_pc[c]
            print(f"| {c} | {n} | {acc:.2f} | {taken} | {base_pc[c][0]:.2f} |")
    report(rows, args.json, "Recognition on real signs (top-1 as fractions; ratio = ours / LSTM)")
    print(f"whole benchmark: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
