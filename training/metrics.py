"""Classification metrics that add up across batches and DDP ranks (a confusion matrix and
a few sums), so top-1/top-5/per-class accuracy are exact, not averages of averages."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from training.distributed import all_reduce_sum


class Tally:
    """Running sums for one pass over a split."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
        self.top5 = torch.zeros((), dtype=torch.int64)
        self.loss_sum = torch.zeros((), dtype=torch.float64)

    def update(
        self, logits: torch.Tensor, labels: torch.Tensor, loss_sum: float | torch.Tensor = 0.0
    ) -> None:
        logits, labels = logits.detach().float().cpu(), labels.detach().cpu()
        pred = logits.argmax(dim=-1)
        idx = labels * self.num_classes + pred
        self.confusion += torch.bincount(idx, minlength=self.num_classes**2).view(
            self.num_classes, -1
        )
        k = min(5, self.num_classes)
        self.top5 += (logits.topk(k, dim=-1).indices == labels[:, None]).any(dim=-1).sum()
        self.loss_sum += float(loss_sum)

    @property
    def count(self) -> int:
        return int(self.confusion.sum())

    def all_reduce(self) -> Tally:
        """Sum over DDP ranks (a no-op without a process group)."""
        self.confusion = all_reduce_sum(self.confusion)
        self.top5 = all_reduce_sum(self.top5)
        self.loss_sum = all_reduce_sum(self.loss_sum)
        return self

    def summary(self, labels: dict[int, str] | None = None) -> dict:
        n = max(self.count, 1)
        per_class_total = self.confusion.sum(dim=1)
        per_class = {}
        for c in torch.nonzero(per_class_total).flatten().tolist():
            name = (labels or {}).get(c, str(c))
            per_class[name] = {
                "label": c,
                "count": int(per_class_total[c]),
                "accuracy": float(self.confusion[c, c] / per_class_total[c]),
            }
        return {
            "count": self.count,
            "loss": float(self.loss_sum / n),
            "top1": float(self.confusion.diagonal().sum() / n),
            "top5": float(self.top5 / n),
            "per_class": per_class,
        }


def append_jsonl(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def read_jsonl(path: Path) -> list[dict]:
    if not Path(path).exists():
        return []
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
