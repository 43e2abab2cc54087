"""Continuous signing: find and name the signs in a long recording.

The core (`spot`) is plain functions over per-frame arrays; `LiveSpotter` runs the same
core over frames as they arrive; `read_input`/`add_gemma` and the writers are the doors'
reading and writing (asl-spot's today; the HTTP route's and the WebSocket's later).
"""

from spotting.classify import REST_GLOSSES, SpotError, WindowClassifier
from spotting.core import Segment, SpotConfig, SpotResult, spot, used_frames
from spotting.inputs import Recording, add_gemma, read_input
from spotting.live import LiveSpotter
from spotting.writers import SpotDocument, document, to_eaf, to_json, to_vtt

__all__ = [
    "REST_GLOSSES",
    "LiveSpotter",
    "Recording",
    "Segment",
    "SpotConfig",
    "SpotDocument",
    "SpotError",
    "SpotResult",
    "WindowClassifier",
    "add_gemma",
    "document",
    "read_input",
    "spot",
    "to_eaf",
    "to_json",
    "to_vtt",
    "used_frames",
]
