"""Does the store loader keep the model fed?

Same data in two layouts, measured in one run on this CPU:
- ours: `StoreLoader` over a Zarr store (2 workers, forkserver, windows of 512 rows);
- baseline: the seed's `PreextractedDataset` pattern, one `np.load` per stream per video
  from a folder of `.npy` files, in a `DataLoader` (2 workers, shuffle, batch 32);
- the model's training step (forward, backward, AdamW) at the seed size (hidden 256,
  2560-d features, 100 classes, T=16), batch 32.

Rows: `loader` = store loader vs `.npy` loader, no augmentation on either (same work);
`loader + augment` = the store loader as training runs it (augmentation on) vs the same
`.npy` loader; `model step` = model train-step samples/s (ours) with, as baseline, the
augmented store loader's samples/s, so ratio = how far the loader outruns the model
(target: loader >= 5x the model, i.e. ratio <= 0.2, reported as `feed headroom` too);
`epoch in memory` (`+ augment`) = seconds per epoch of the same loader holding the split in
memory (`in_memory=True`, 2 workers sharing it) vs streaming it, so ratio = streaming /
in memory (the one-off read of the split is printed apart);
`joined read` = the store loader streaming landmarks + a feature set added to the videos
later (`--features NAME`: its own segments, joined by video id) vs the same rows read as
base streams (the gemma copy written with the videos), no augmentation, the two taking turns
over 6 epochs (target ratio >= 0.9: no more than 10% below streaming base streams).
Loader rates: whole epochs (worker start included), best of the epochs after the first
(whose one-off start-up is reported apart), loaders taking turns epoch by epoch, warm
page cache, each loader running alone (training would share the cores).

    python benchmarks/train_loader.py [--quick] [--json FILE]
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, os.path.dirname(__file__))
from common import LAYOUT, D, K, Row, T, parser, real_size_schema, report  # noqa: E402

from featurestore import create_store, open_store  # noqa: E402
from model import HybridASLModel, ModelConfig  # noqa: E402
from training import AugmentConfig, Augmenter, StoreLoader  # noqa: E402

CLASSES, BATCH = 100, 32
ADDED = "added"


def add_feature_copy(url: str, name: str = ADDED) -> float:
    """Feature set `name` holding the same bytes as base `gemma`, written as populate
    --add-features writes (one feature block per base block); seconds taken."""
    start = time.perf_counter()
    store = open_store(url, "r+")
    store.add_feature_set(name, {"model_id": "bench-added", "feature_dim": D}, (T, D))
    with store.feature_writer(name) as w:
        for block in store.blocks():
            batch = store.read_block(block, ["gemma"])
            for vid, row in zip(batch.ids, batch.arrays["gemma"], strict=True):
                w.put(vid, row)
            w.flush()
    return time.perf_counter() - start


def make_data(root: Path, n: int) -> tuple[str, Path, list[str], list[int]]:
    """The same n videos as a Zarr store and as a folder of per-video .npy files."""
    rng = np.random.default_rng(0)
    schema = real_size_schema({c: f"g{c}" for c in range(CLASSES)})
    url = str(root / "bench.zarr")
    store = create_store(url, schema)
    npy = root / "npy"
    npy.mkdir()
    ids, labels = [], []
    with store.writer() as w:
        for i in range(n):
            vid, label = f"v{i:06d}", i % CLASSES
            arrays = {
                "gemma": rng.standard_normal((T, D), dtype=np.float32).astype(np.float16),
                "landmarks": rng.uniform(0.2, 0.8, (T, K, 3)).astype(np.float32),
                "landmark_mask": np.ones((T, 3), bool),
            }
            w.put(vid, arrays, label=label, gloss=f"g{label}", split="train")
            np.save(npy / f"{vid}_gemma.npy", arrays["gemma"])
            np.save(npy / f"{vid}_landmarks.npy", arrays["landmarks"])
            ids.append(vid)
            labels.append(label)
    return url, npy, ids, labels


class PreextractedDataset(Dataset):
    """The seed's loader: two np.load calls per item, float32 tensors."""

    def __init__(self, ids, labels, folder: Path):
        self.ids, self.labels, self.folder = ids, labels, folder

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i):
        vid = self.ids[i]
        gemma = np.load(self.folder / f"{vid}_gemma.npy")
        landmarks = np.load(self.folder / f"{vid}_landmarks.npy")
        return {
            "gemma_features": torch.tensor(gemma, dtype=torch.float32),
            "landmarks": torch.tensor(landmarks, dtype=torch.float32),
            "label": torch.tensor(self.labels[i], dtype=torch.long),
        }


def timed_epoch(batches, size_of) -> tuple[float, float]:
    """(samples/s over the whole epoch, worker start included; seconds to the first batch)."""
    start, first, n = time.perf_counter(), None, 0
    for batch in batches:
        if first is None:
            first = time.perf_counter() - start
        n += size_of(batch)
    return n / (time.perf_counter() - start), first


def loader_rates(
    url: str, ids, labels, folder: Path, epochs: int
) -> dict[str, tuple[float, float]]:
    """Best samples/s of each loader over epochs 1.. and its first epoch's time to first
    batch (one-off start-up: the forkserver's imports). Loaders take turns epoch by epoch
    so that load from elsewhere on the machine hits them alike."""
    store = open_store(url)
    # as the trainer builds it: noise scaled by the features' per-dimension std
    std = np.ones(D, np.float32)
    aug = Augmenter(AugmentConfig(), LAYOUT["parts"], LAYOUT["sizes"], feature_std=std)
    ours = StoreLoader(store, "train", BATCH, num_workers=2, seed=0)
    ours_aug = StoreLoader(store, "train", BATCH, num_workers=2, augmenter=aug, seed=0)
    start = time.perf_counter()
    held = StoreLoader(store, "train", BATCH, num_workers=2, seed=0, in_memory=True)
    read_s = time.perf_counter() - start
    held_aug = StoreLoader(
        store, "train", BATCH, num_workers=2, augmenter=aug, seed=0, in_memory=True
    )
    print(f"in memory: the split read once in {read_s:.2f}s (per loader)")
    npy = PreextractedDataset(ids, labels, folder)

    def store_epoch(loader, epoch):
        loader.set_epoch(epoch)
        return timed_epoch(loader, lambda b: len(b["ids"]))

    runs = {
        "store": lambda e: store_epoch(ours, e),
        "store+augment": lambda e: store_epoch(ours_aug, e),
        "memory": lambda e: store_epoch(held, e),
        "memory+augment": lambda e: store_epoch(held_aug, e),
        # the seed's way: a fresh DataLoader (fork, 2 workers, shuffle) each epoch
        "npy": lambda e: timed_epoch(
            DataLoader(npy, batch_size=BATCH, shuffle=True, num_workers=2),
            lambda b: len(b["label"]),
        ),
    }
    rates = {name: [] for name in runs}
    first = {}
    for epoch in range(epochs):
        for name, run in runs.items():
            rate, first_batch = run(epoch)
            if epoch == 0:
                first[name] = first_batch
            else:
                rates[name].append(rate)
    return {name: (max(r), first[name]) for name, r in rates.items()}


def joined_rates(url: str, epochs: int) -> tuple[float, float, float]:
    """Best samples/s of the store loader streaming landmarks + the added feature set, and
    of it streaming the same rows stored as base streams, and the median of their per-round
    ratios. The two take turns epoch by epoch (the first, start-up, left out) so that load
    from elsewhere on the machine hits both alike."""
    store = open_store(url)
    loaders = {
        "joined": StoreLoader(
            store, "train", BATCH, streams=[ADDED, "landmarks", "landmark_mask"], num_workers=2
        ),
        "base": StoreLoader(
            store, "train", BATCH, streams=["gemma", "landmarks", "landmark_mask"], num_workers=2
        ),
    }
    rates: dict[str, list[float]] = {name: [] for name in loaders}
    for epoch in range(epochs):
        for name, loader in loaders.items():
            loader.set_epoch(epoch)
            rate, _ = timed_epoch(loader, lambda b: len(b["ids"]))
            if epoch:
                rates[name].append(rate)
    ratios = [j / b for j, b in zip(rates["joined"], rates["base"], strict=True)]
    return max(rates["joined"]), max(rates["base"]), float(np.median(ratios))


def model_step_rate(steps: int) -> float:
    """The fastest the model consumes samples: best over 1 thread and all threads (on a
    busy machine, OpenMP spinning can make more threads far slower)."""
    threads = torch.get_num_threads()
    rates = {}
    for n in sorted({1, threads}):
        torch.set_num_threads(n)
        rates[n] = _model_step_rate(steps)
    torch.set_num_threads(threads)
    print(
        "model step samples/s by torch threads: "
        + ", ".join(f"{n}: {r:.0f}" for n, r in rates.items())
    )
    return max(rates.values())


def _model_step_rate(steps: int) -> float:
    torch.manual_seed(0)
    model = HybridASLModel(ModelConfig(num_classes=CLASSES, gemma_dim=D, num_frames=T)).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    gemma = torch.randn(BATCH, T, D).half()
    lm = torch.rand(BATCH, T, K, 3)
    mask = torch.ones(BATCH, T, 3, dtype=torch.bool)
    y = torch.randint(0, CLASSES, (BATCH,))

    def step():
        loss = torch.nn.functional.cross_entropy(model(gemma, lm, mask), y, label_smoothing=0.1)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    for _ in range(3):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    # The median step: other work on a shared machine only ever adds time.
    return BATCH / float(np.median(times))


def main() -> None:
    args = parser(__doc__.splitlines()[0]).parse_args()
    n, epochs, steps = (2048, 4, 15) if args.quick else (8192, 4, 60)
    root = Path(tempfile.mkdtemp(prefix="bench-train-loader-"))
    try:
        t0 = time.perf_counter()
        url, folder, ids, labels = make_data(root, n)
        print(
            f"{n} videos (T={T}, D={D} fp16, {K} landmarks) written in {time.perf_counter() - t0:.1f}s; cpu threads {torch.get_num_threads()}"
        )
        print(f"feature set {ADDED!r} (a copy of gemma) added in {add_feature_copy(url):.1f}s")
        measured = loader_rates(url, ids, labels, folder, epochs)
        (ours, ours_start), (ours_aug, _), (base, base_start) = (
            measured[k] for k in ("store", "store+augment", "npy")
        )
        held, held_aug = measured["memory"][0], measured["memory+augment"][0]
        joined, joined_base, joined_median = joined_rates(url, 7)
        model = model_step_rate(steps)
        print(
            f"joined read (landmarks + added set) / base streams: best {joined / joined_base:.2f}x, "
            f"median of rounds {joined_median:.2f}x (target >= 0.9)"
        )
        print(f"time to first batch: store {ours_start:.2f}s, .npy {base_start:.2f}s")
        print(
            f"feed headroom (augmented store loader / model step): {ours_aug / model:.1f}x (target >= 5x)"
        )
        rows = [
            Row("loader", ours, base, ours / base, "samples/s"),
            Row("loader + augment", ours_aug, base, ours_aug / base, "samples/s"),
            Row("model step", model, ours_aug, model / ours_aug, "samples/s"),
            Row("joined read", joined, joined_base, joined / joined_base, "samples/s"),
            # epoch seconds, in memory vs streaming (ratio = streaming / in memory)
            Row("epoch in memory", n / held, n / ours, held / ours, "s/epoch"),
            Row(
                "epoch in mem + augment", n / held_aug, n / ours_aug, held_aug / ours_aug, "s/epoch"
            ),
        ]
        report(
            rows,
            args.json,
            "train loader: store (2 workers) vs per-file .npy (2 workers), and the model step",
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
