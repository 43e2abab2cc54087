"""A writer process for the concurrency and crash tests: puts deterministic videos.

usage: python store_writer_proc.py URL PREFIX SEED COUNT DIM [BLOCK_SIZE]
Videos ``{PREFIX}{i:04d}`` already in the store are skipped, as a resumed populate does.
Prints ``committed N`` after every commit so a test knows when to strike; with
``FEATURESTORE_TEST_HOLD_AFTER`` set (``tests.processes.hold_env``) it then holds there.
"""

import sys

import numpy as np

from featurestore import open_store
from featurestore._test_hold import hold_after


def video(prefix: str, seed: int, i: int, dim: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([seed, i])
    return {
        "gemma": rng.standard_normal((4, dim)).astype(np.float16),
        "landmarks": rng.standard_normal((4, 75, 3)).astype(np.float32),
        "landmark_mask": rng.random((4, 3)) > 0.3,
    }


def main() -> None:
    url, prefix, seed, count, dim = (
        sys.argv[1],
        sys.argv[2],
        int(sys.argv[3]),
        int(sys.argv[4]),
        int(sys.argv[5]),
    )
    block_size = int(sys.argv[6]) if len(sys.argv) > 6 else None
    store = open_store(url, "r+")
    done = set(store.ids())
    with store.writer(block_size=block_size) as w:
        for i in range(count):
            vid = f"{prefix}{i:04d}"
            if vid in done:
                continue
            before = w.committed
            w.put(vid, video(prefix, seed, i, dim), label=i % 3, split="train")
            if w.committed != before:
                print(f"committed {w.committed}", flush=True)
                hold_after(w.committed)
    print("finished", flush=True)


if __name__ == "__main__":
    main()
