"""What one bulk run did (populate, add-features, import): counts, failures by id, time.

Every run counts the same things, in one class, ``RunSummary``: videos committed by this
run (``done``), videos already in the store (``skipped``), why each other one did not land
(``failures``), how long it took and whether it was interrupted. ``PopulateSummary`` and
``ImportSummary`` add what only their run knows, and print and save it as they always have
(the same JSON keys and lines).

The names each summary had before are kept as read-only aliases for one release:
``PopulateSummary.failed`` (the failures), ``ImportSummary.imported`` (``done``) and
``ImportSummary.failed`` (how many failed). ``failed`` means a mapping in one and a count in
the other, which is why the aliases live on the two subclasses and not on ``RunSummary``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

__all__ = ["ImportSummary", "PopulateSummary", "RunSummary"]


@dataclass
class RunSummary:
    """What every bulk run counts."""

    done: int = 0
    """Videos committed by this run."""
    skipped: int = 0
    """Videos already in the store (from the same source), not redone."""
    failures: dict[str, str] = field(default_factory=dict)
    """Video id (or file) -> "reason: detail" for every one that did not land."""
    elapsed_s: float = 0.0
    interrupted: bool = False

    @property
    def failed_by_reason(self) -> dict[str, int]:
        return dict(Counter(reason.split(":", 1)[0] for reason in self.failures.values()))

    def _failure_lines(self, more: str) -> list[str]:
        """The first ten failures, then how many more there are and where to see them."""
        lines = [f"    {key}: {reason}" for key, reason in list(self.failures.items())[:10]]
        if len(self.failures) > 10:
            lines.append(f"    ... {len(self.failures) - 10} more ({more})")
        return lines


@dataclass
class PopulateSummary(RunSummary):
    """What one populate (or add-features) run did, whichever runner ran it."""

    startup_s: float = 0.0
    """Of ``elapsed_s``, the time before the first video entered the pipeline (model and
    worker start-up, store checks)."""
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
    def failed(self) -> dict[str, str]:
        """``failures``, by its earlier name (kept for one release)."""
        return self.failures

    @property
    def videos_per_s(self) -> float:
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_json(self) -> dict:
        return {
            "done": self.done,
            "skipped": self.skipped,
            "failed": len(self.failures),
            "failed_by_reason": self.failed_by_reason,
            "failures": self.failures,
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
            f"{len(self.failures)} failed"
        ]
        for reason, count in sorted(self.failed_by_reason.items()):
            lines.append(f"  failed {reason}: {count}")
        lines += self._failure_lines("see the store's failures")
        if self.stage_seconds:
            busy = ", ".join(f"{k} {v:.1f}s" for k, v in sorted(self.stage_seconds.items()))
            lines.append(f"  stage busy time: {busy}")
        return "\n".join(lines)


@dataclass
class ImportSummary(RunSummary):
    """What one ``featurestore import`` run did."""

    num_frames: int = 0
    layout: dict[str, int] = field(default_factory=dict)
    """Source layout detected -> sequences imported with it."""
    splits: dict[str, int] = field(default_factory=dict)

    @property
    def imported(self) -> int:
        """``done``, by its earlier name (kept for one release)."""
        return self.done

    @property
    def failed(self) -> int:
        """How many did not land, by its earlier name (kept for one release)."""
        return len(self.failures)

    def to_json(self) -> dict:
        return {
            "imported": self.done,
            "skipped": self.skipped,
            "failed": len(self.failures),
            "failures": self.failures,
            "num_frames": self.num_frames,
            "layout": self.layout,
            "splits": self.splits,
            "elapsed_s": round(self.elapsed_s, 3),
            "interrupted": self.interrupted,
        }

    def format(self) -> str:
        state = "interrupted" if self.interrupted else "finished"
        layouts = ", ".join(f"{k}: {v}" for k, v in sorted(self.layout.items())) or "-"
        lines = [
            f"import {state} in {self.elapsed_s:.1f}s: {self.done} imported, "
            f"{self.skipped} skipped (already in the store), {len(self.failures)} failed; "
            f"T={self.num_frames}; layouts {layouts}"
        ]
        lines += self._failure_lines("see featurestore info / failures")
        return "\n".join(lines)
