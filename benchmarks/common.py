"""Shared benchmark plumbing: argument flags, the result table, --json output, peak RSS."""

from __future__ import annotations

import argparse
import json
import resource
import sys
from dataclasses import asdict, dataclass


@dataclass
class Row:
    name: str
    ours: float
    baseline: float | None
    ratio: float | None
    unit: str


T, D, K = 16, 2560, 75  # gemma-3-4b features, Holistic pose + both hands
LAYOUT = {"parts": ["pose", "left_hand", "right_hand"], "sizes": [33, 21, 21]}


def real_size_schema(labels: dict[int, str], model_id: str = "bench"):
    """The schema of a gemma-3-4b store (T=16, D=2560, 75 landmarks), shared by the benchmarks."""
    from featurestore import StoreSchema, StreamSpec

    return StoreSchema(
        num_frames=T,
        streams={
            "gemma": StreamSpec((T, D), "float16"),
            "landmarks": StreamSpec((T, K, 3), "float32"),
            "landmark_mask": StreamSpec((T, 3), "bool"),
        },
        encoder={"model_id": model_id, "feature_dim": D},
        landmark_layout=LAYOUT,
        labels=labels,
    )


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="small sizes, about a minute")
    p.add_argument("--json", metavar="FILE", help="write the rows as JSON")
    return p


def peak_rss_mib() -> float:
    """Peak resident memory of this process and its finished children, MiB."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024


def report(rows: list[Row], json_path: str | None, title: str) -> None:
    print(f"\n{title}")
    print(f"| {'name':<22} | {'ours':>12} | {'baseline':>12} | {'ratio':>7} | unit |")
    print(f"|{'-' * 24}|{'-' * 14}|{'-' * 14}|{'-' * 9}|------|")
    for r in rows:
        base = "-" if r.baseline is None else f"{r.baseline:12.2f}"
        ratio = "-" if r.ratio is None else f"{r.ratio:6.2f}x"
        print(f"| {r.name:<22} | {r.ours:12.2f} | {base:>12} | {ratio:>7} | {r.unit} |")
    print(f"peak RSS: {peak_rss_mib():.0f} MiB")
    if json_path:
        with open(json_path, "w") as f:
            json.dump(
                {"rows": [asdict(r) for r in rows], "peak_rss_mib": peak_rss_mib()}, f, indent=1
            )
    sys.stdout.flush()
