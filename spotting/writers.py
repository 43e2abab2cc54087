"""The three files spotting writes: JSON for programs, WebVTT subtitles, ELAN annotations.

The JSON document is a pydantic model (`SpotDocument`), so it can be validated on read
and become a response schema. The ELAN file is EAF 3.0 with one tier of glosses and time
slots in milliseconds, valid against the EAF 3.0 schema (a test checks it).
"""

from __future__ import annotations

import datetime
import mimetypes
from dataclasses import asdict
from pathlib import Path
from xml.etree import ElementTree as ET

from pydantic import BaseModel, Field

from spotting.core import SpotResult

GLOSS_TIER = "gloss"
EAF_SCHEMA_URL = "http://www.mpi.nl/tools/elan/EAFv3.0.xsd"


class RankedClass(BaseModel):
    gloss: str
    label: int
    score: float = Field(ge=0, le=1)


class SegmentModel(BaseModel):
    """One sign: frames [start_frame, end_frame), seconds [start_s, end_s)."""

    start_frame: int = Field(ge=0)
    end_frame: int = Field(ge=1)
    start_s: float = Field(ge=0)
    end_s: float = Field(gt=0)
    gloss: str
    label: int
    score: float = Field(ge=0, le=1)
    top_k: list[RankedClass]


class SpotDocument(BaseModel):
    """What asl-spot --json writes (and, later, what the spot route returns)."""

    fps: float = Field(gt=0)
    frames: int = Field(ge=0)
    segments: list[SegmentModel]


def document(result: SpotResult) -> SpotDocument:
    return SpotDocument(
        fps=result.fps,
        frames=result.frames,
        segments=[SegmentModel(**asdict(s)) for s in result.segments],
    )


def to_json(result: SpotResult) -> str:
    return document(result).model_dump_json(indent=1)


def _vtt_time(seconds: float) -> str:
    ms = int(round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    return f"{hours:02d}:{minutes:02d}:{ms // 1000:02d}.{ms % 1000:03d}"


def _vtt_text(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(result: SpotResult) -> str:
    """WebVTT, one cue per segment in time order (the gloss, its score in the cue id)."""
    lines = ["WEBVTT", ""]
    for n, s in enumerate(result.segments, 1):
        lines += [
            f"{n} {s.gloss} {s.score:.2f}".replace("-->", "->"),
            f"{_vtt_time(s.start_s)} --> {_vtt_time(s.end_s)}",
            _vtt_text(s.gloss),
            "",
        ]
    return "\n".join(lines)


def to_eaf(result: SpotResult, media: str | Path | None = None, author: str = "asl-spot") -> str:
    """ELAN 3.0: a tier `gloss` of time-aligned annotations, time slots in ms; `media`
    (the video spotted) is linked so ELAN opens it beside the tier."""
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    root = ET.Element(
        "ANNOTATION_DOCUMENT",
        {
            "AUTHOR": author,
            "DATE": now.isoformat(),
            "FORMAT": "3.0",
            "VERSION": "3.0",
            "xmlns:xsi": "http://www.w3.org/2001/XMLSchema-instance",
            "xsi:noNamespaceSchemaLocation": EAF_SCHEMA_URL,
        },
    )
    header = ET.SubElement(root, "HEADER", {"MEDIA_FILE": "", "TIME_UNITS": "milliseconds"})
    if media is not None:
        path = Path(media).resolve()
        ET.SubElement(
            header,
            "MEDIA_DESCRIPTOR",
            {
                "MEDIA_URL": path.as_uri(),
                "MIME_TYPE": mimetypes.guess_type(path.name)[0] or "video/*",
                "RELATIVE_MEDIA_URL": f"./{path.name}",
            },
        )
    order = ET.SubElement(root, "TIME_ORDER")
    tier = ET.SubElement(root, "TIER", {"TIER_ID": GLOSS_TIER, "LINGUISTIC_TYPE_REF": GLOSS_TIER})
    for n, s in enumerate(result.segments, 1):
        for slot, seconds in ((2 * n - 1, s.start_s), (2 * n, s.end_s)):
            ms = str(int(round(seconds * 1000)))
            ET.SubElement(order, "TIME_SLOT", {"TIME_SLOT_ID": f"ts{slot}", "TIME_VALUE": ms})
        annotation = ET.SubElement(ET.SubElement(tier, "ANNOTATION"), "ALIGNABLE_ANNOTATION")
        annotation.attrib.update(
            {
                "ANNOTATION_ID": f"a{n}",
                "TIME_SLOT_REF1": f"ts{2 * n - 1}",
                "TIME_SLOT_REF2": f"ts{2 * n}",
            }
        )
        ET.SubElement(annotation, "ANNOTATION_VALUE").text = s.gloss
    ET.SubElement(
        root,
        "LINGUISTIC_TYPE",
        {"LINGUISTIC_TYPE_ID": GLOSS_TIER, "TIME_ALIGNABLE": "true", "GRAPHIC_REFERENCES": "false"},
    )
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
