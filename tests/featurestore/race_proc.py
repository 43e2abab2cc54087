"""A child of the race tests: load everything, wait for the go file, then run one command.

Loading first and starting together is what makes the children race: their metadata
reads and writes land within milliseconds of each other, as they would with a user's
many imports or populates started at once. ``python race_proc.py GO featurestore ARGS...``
runs the ``featurestore`` command line; ``... GO add-set URL NAME SEED`` registers a
feature set.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from featurestore import open_store
from featurestore.cli import build_parser, main

_WAIT_S = 120.0


def wait_for(go: Path) -> None:
    deadline = time.monotonic() + _WAIT_S
    while not go.exists():
        if time.monotonic() > deadline:
            sys.exit(f"no {go} after {_WAIT_S:g} s")
        time.sleep(0.001)


if __name__ == "__main__":
    go, command, *args = sys.argv[1:]
    if command == "featurestore":
        build_parser()  # imports the subcommands' modules now, not after the start
        wait_for(Path(go))
        sys.exit(main(args))
    url, name, seed = args
    store = open_store(url, "r+")
    wait_for(Path(go))
    store.add_feature_set(name, {"model_id": f"enc-{name}", "seed": int(seed)}, (4, 6))
