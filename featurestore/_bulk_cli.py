"""What the bulk commands (``populate``, ``import``) share on the command line: ``kill``
stops a run as Ctrl-C does, so what is complete gets committed, and the run's summary is
printed, optionally saved as JSON, and becomes the exit code (130 when interrupted)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Protocol

__all__ = ["add_summary_arguments", "sigterm_interrupts", "report"]


class Summary(Protocol):
    def format(self) -> str: ...

    def to_json(self) -> dict: ...


def add_summary_arguments(p: argparse.ArgumentParser) -> None:
    """``--summary-json`` and ``--quiet``, as every bulk command spells them."""
    p.add_argument("--summary-json", metavar="FILE", help="write the run summary as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """Within the block SIGTERM raises KeyboardInterrupt; the old handler comes back after."""
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def report(summary: Summary, summary_json: str | None) -> int:
    """Print the summary to stderr, write it to ``summary_json`` if given; the exit code."""
    print(summary.format(), file=sys.stderr)
    if summary_json:
        Path(summary_json).write_text(json.dumps(summary.to_json(), indent=1))
    return 130 if getattr(summary, "interrupted", False) else 0
