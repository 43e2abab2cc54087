"""Test-only: hold a bulk run (populate, add-features, import) at a known point, so a test
can kill or interrupt it mid-run without racing it. Nothing sets the variable outside the
tests; unset, ``hold_after`` returns at once.

``FEATURESTORE_TEST_HOLD_AFTER="N:PATH"``: once the run has handed N videos to its writer,
it creates PATH and sleeps (at most ``HOLD_S``) until a signal ends it. SIGINT raises
KeyboardInterrupt out of the sleep, which the run handles as the Ctrl-C it is. The runners
call it where their own counts are up to date, between two videos.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

HOLD_ENV = "FEATURESTORE_TEST_HOLD_AFTER"
HOLD_S = 120.0
"""A test that never sends its signal fails on its own timeout; the run then goes on."""


def hold_after(videos: int) -> None:
    """Hold here once, when ``videos`` (handed to the writer so far) first reaches N."""
    spec = os.environ.get(HOLD_ENV)
    if not spec:
        return
    n, _, marker = spec.partition(":")
    if videos >= int(n) and not os.path.exists(marker):
        Path(marker).touch()
        time.sleep(HOLD_S)
