"""PNG plots of a run: loss and accuracy per epoch, and a confusion matrix. Agg backend,
so no display is needed."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402


def _curves(history: list[dict], keys: dict[str, str], ylabel: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in keys.items():
        points = [(h["epoch"], h[key]) for h in history if h.get(key) is not None]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_history(history: list[dict], out_dir: Path) -> list[Path]:
    """loss.png and accuracy.png from per-epoch metrics records."""
    out_dir = Path(out_dir)
    return [
        _curves(history, {"train_loss": "train", "val_loss": "val"}, "loss", out_dir / "loss.png"),
        _curves(
            history,
            {"train_top1": "train top-1", "val_top1": "val top-1", "val_top5": "val top-5"},
            "accuracy",
            out_dir / "accuracy.png",
        ),
    ]


def plot_confusion(confusion: torch.Tensor, names: list[str], path: Path) -> Path:
    """Row-normalised confusion matrix (rows: true class)."""
    m = confusion.double()
    m = m / m.sum(dim=1, keepdim=True).clamp_min(1)
    size = min(4 + 0.25 * len(names), 30)
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(m.numpy(), cmap="Blues", vmin=0, vmax=1)
    if len(names) <= 60:
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
