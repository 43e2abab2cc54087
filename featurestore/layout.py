"""The landmark layout a store records: MediaPipe Holistic parts, their points, the face subset.

Layout: pose 33 + left hand 21 + right hand 21 points as (x, y, z), x and y normalised
to the frame, plus an optional face subset (lips, eyebrows, nose tip, eye corners).
Left and right are the signer's own hands as Holistic reports them (no mirroring), so a
hand keeps its slot in every frame. A part not found in a frame is zeros with mask False.

Defined here, beside the schema, because extraction, the importers and the server all
write or read it. ``model/config.py`` repeats the part names and sizes (``model`` imports
torch only); a test checks that they stay equal.
"""

from __future__ import annotations

from .schema import LANDMARK_MASK_STREAM, LANDMARKS_STREAM, StreamSpec

__all__ = ["FACE_SUBSET", "PARTS", "has_face", "landmark_layout", "landmark_streams"]

# Face-mesh indices kept behind ``face=True``: lips (40), eyebrows (20), nose tip, eye corners.
FACE_SUBSET = (
    (0, 13, 14, 17, 37, 39, 40, 61, 78, 80, 81, 82, 84, 87, 88, 91, 95, 146, 178, 181)
    + (185, 191, 267, 269, 270, 291, 308, 310, 311, 312, 314, 317, 318, 321, 324, 375)
    + (402, 405, 409, 415)
    + (46, 52, 53, 55, 63, 65, 66, 70, 105, 107, 276, 282, 283, 285, 293, 295, 296, 300)
    + (334, 336, 1, 33, 133, 362, 263)
)
PARTS = (("pose", 33), ("left_hand", 21), ("right_hand", 21))
"""The parts every layout has, in their order along the landmark axis, with their points."""


def landmark_layout(face: bool = False) -> dict:
    """The store's description of the landmark stream (parts, points per part, coordinates)."""
    parts = list(PARTS) + ([("face", len(FACE_SUBSET))] if face else [])
    layout = {
        "source": "mediapipe-holistic-0.10.21",
        "parts": [name for name, _ in parts],
        "sizes": [size for _, size in parts],
        "coords": ["x", "y", "z"],
    }
    if face:
        layout["face_indices"] = list(FACE_SUBSET)
    return layout


def has_face(layout: dict | None) -> bool:
    """Whether a recorded layout keeps the face subset."""
    return "face" in (layout or {}).get("parts", ())


def landmark_streams(num_frames: int, layout: dict) -> dict[str, StreamSpec]:
    """The two landmark streams of a layout: (T, K, 3) points and the (T, P) part mask."""
    return {
        LANDMARKS_STREAM: StreamSpec((num_frames, sum(layout["sizes"]), 3), "float32"),
        LANDMARK_MASK_STREAM: StreamSpec((num_frames, len(layout["parts"])), "bool"),
    }
