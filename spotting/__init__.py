"""Continuous signing: find and name the signs in a long recording.

The core (`spot`) is plain functions over per-frame arrays; `LiveSpotter` runs the same
core over frames as they arrive; `read_input` and the writers are the CLI's doors.
"""

from spotting.classify import REST_GLOSSES, SpotError, WindowClassifier
from spotting.core import Segment, SpotConfig, SpotResult, spot, used_frames
from spotting.live import LiveSpotter

__all__ = [
    "REST_GLOSSES",
    "LiveSpotter",
    "Segment",
    "SpotConfig",
    "SpotError",
    "SpotResult",
    "WindowClassifier",
    "spot",
    "used_frames",
]
