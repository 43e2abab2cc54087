"""What a Ray run did: the local runner's summary, read through, plus what the cluster did."""

from __future__ import annotations

from dataclasses import dataclass, field

from ...summary import PopulateSummary
from .plan import RayPlan

__all__ = ["RayPopulateSummary"]


@dataclass
class RayPopulateSummary:
    """A local populate summary (``run``; its fields read through) plus what the cluster did."""

    run: PopulateSummary
    """done, skipped, failures, elapsed_s, interrupted, stage_seconds, frames_encoded."""
    workers: int = 0
    """Encoder actors at the start."""
    worker_restarts: int = 0
    """Actors replaced after they died; their uncommitted shards went to the new ones."""
    lost: dict[str, str] = field(default_factory=dict)
    """video id -> why it was not committed (its worker died too often); a rerun does it."""
    plan: RayPlan | None = None
    """The resources asked for (printed at start)."""
    worker_nodes: dict[str, str] = field(default_factory=dict)
    """Ray actor name -> id of the node it ran on."""
    task_nodes: dict[str, int] = field(default_factory=dict)
    """Node id -> decode tasks that ran there."""

    def __getattr__(self, name: str):
        if name == "run":  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.run, name)

    def to_json(self) -> dict:
        cluster = dict(workers=self.workers, worker_restarts=self.worker_restarts)
        nodes = {"workers": self.worker_nodes, "tasks": self.task_nodes}
        plan = self.plan.to_json() if self.plan else None
        lost = {"lost": len(self.lost), "lost_videos": self.lost}
        return {**self.run.to_json(), **cluster, **lost, "plan": plan, "nodes": nodes}

    def format(self) -> str:
        on = len(set(self.worker_nodes.values()))
        lines = [
            self.run.format(),
            f"  ray: {self.workers} encoder worker(s) on {on} node(s), "
            f"decode tasks on {len(self.task_nodes)} node(s)",
        ]
        if self.worker_restarts:
            lines.append(f"  ray: {self.worker_restarts} workers died and were replaced")
        if self.lost:
            lines.append(
                f"  ray: {len(self.lost)} videos not committed (workers died); rerun to finish"
            )
        return "\n".join(lines)
