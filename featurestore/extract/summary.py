"""What one populate run did, whichever runner ran it: counts, failures by reason, timings."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

__all__ = ["PopulateSummary"]


@dataclass
class PopulateSummary:
    """What one populate run did."""

    done: int = 0
    """Videos extracted and committed in this run."""
    skipped: int = 0
    """Videos already in the store, not redone."""
    failed: dict[str, str] = field(default_factory=dict)
    """video id -> "reason: detail" for every video that could not be extracted."""
    elapsed_s: float = 0.0
    startup_s: float = 0.0
    """Of ``elapsed_s``, the time before the first video entered the pipeline (model and
    worker start-up, store checks)."""
    interrupted: bool = False
    stage_seconds: dict[str, float] = field(default_factory=dict)
    """Busy time per stage (decode, landmarks summed over workers, encoder, write)."""
    frames_encoded: int = 0
    cpu_s: float = 0.0
    """CPU time of the run after start-up: this process (all its threads) plus the
    landmark workers' time on clips. Unlike wall time it does not grow when other
    programs share the cores."""
    feature_set: str | None = None
    """The feature set a ``--add-features`` run added (``done`` counts its videos)."""

    @property
    def failed_by_reason(self) -> dict[str, int]:
        return dict(Counter(reason.split(":", 1)[0] for reason in self.failed.values()))

    @property
    def videos_per_s(self) -> float:
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_json(self) -> dict:
        return {
            "done": self.done,
            "skipped": self.skipped,
            "failed": len(self.failed),
            "failed_by_reason": self.failed_by_reason,
            "failures": self.failed,
            "elapsed_s": round(self.elapsed_s, 3),
            "startup_s": round(self.startup_s, 3),
            "videos_per_s": round(self.videos_per_s, 3),
            "interrupted": self.interrupted,
            "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()},
            "frames_encoded": self.frames_encoded,
            "cpu_s": round(self.cpu_s, 3),
            "feature_set": self.feature_set,
        }

    def format(self) -> str:
        state = "interrupted" if self.interrupted else "finished"
        run, done, where = "populate", "done", "the store"
        if self.feature_set is not None:
            run, done, where = f"add-features {self.feature_set!r}", "added", "the set"
        lines = [
            f"{run} {state} in {self.elapsed_s:.1f}s ({self.startup_s:.1f}s start-up): {self.done} {done} "
            f"({self.videos_per_s:.2f} videos/s), {self.skipped} skipped (already in {where}), "
            f"{len(self.failed)} failed"
        ]
        for reason, count in sorted(self.failed_by_reason.items()):
            lines.append(f"  failed {reason}: {count}")
        for vid, reason in list(self.failed.items())[:10]:
            lines.append(f"    {vid}: {reason}")
        if len(self.failed) > 10:
            lines.append(f"    ... {len(self.failed) - 10} more (see the store's failures)")
        if self.stage_seconds:
            busy = ", ".join(f"{k} {v:.1f}s" for k, v in sorted(self.stage_seconds.items()))
            lines.append(f"  stage busy time: {busy}")
        return "\n".join(lines)
