"""Every file asl-spot writes reads back: the JSON validates, the WebVTT parses, the ELAN
file passes the EAF 3.0 schema (vendored in tests/spotting/data, see its README)."""

from __future__ import annotations

import html
import io
from pathlib import Path

import pytest

from spotting.core import Segment, SpotResult
from spotting.writers import SpotDocument, to_eaf, to_json, to_vtt

XSD = Path(__file__).parent / "data" / "EAFv3.0.xsd"


def result() -> SpotResult:
    def seg(start: int, end: int, gloss: str, label: int) -> Segment:
        return Segment(
            start, end, start / 25, end / 25, gloss, label, 0.875,
            [{"gloss": gloss, "label": label, "score": 0.875}, {"gloss": "-", "label": 0, "score": 0.1}],
        )  # fmt: skip

    segments = [
        seg(10, 40, "hello", 1),
        seg(55, 80, "thank-you & <more>", 2),
        seg(90_000, 90_030, "ça", 3),
    ]
    return SpotResult(25.0, 90_100, segments)


def test_the_json_validates_and_keeps_every_field():
    doc = SpotDocument.model_validate_json(to_json(result()))
    assert doc.fps == 25.0 and doc.frames == 90_100 and len(doc.segments) == 3
    first = doc.segments[0]
    assert (first.start_frame, first.end_frame, first.start_s, first.end_s) == (10, 40, 0.4, 1.6)
    assert (first.gloss, first.label, first.score) == ("hello", 1, 0.875)
    assert [k.gloss for k in first.top_k] == ["hello", "-"]


def test_the_vtt_parses_one_cue_per_segment():
    webvtt = pytest.importorskip("webvtt", reason="webvtt-py (the test extras) reads WebVTT")
    cues = webvtt.from_buffer(io.StringIO(to_vtt(result())))
    assert [html.unescape(c.text) for c in cues] == ["hello", "thank-you & <more>", "ça"]
    assert "<" not in cues[1].text  # escaped, as the WebVTT cue text syntax needs
    assert [(c.start, c.end) for c in cues][:2] == [
        ("00:00:00.400", "00:00:01.600"),
        ("00:00:02.200", "00:00:03.200"),
    ]
    assert cues[2].start == "01:00:00.000"


def test_the_eaf_passes_the_eaf_3_schema_with_one_tier_of_glosses(tmp_path):
    xmlschema = pytest.importorskip("xmlschema", reason="xmlschema (the test extras) checks XSDs")
    video = tmp_path / "talk.mp4"
    text = to_eaf(result(), media=video)
    schema = xmlschema.XMLSchema(str(XSD))
    schema.validate(text)
    doc = schema.to_dict(text)
    (tier,) = doc["TIER"]
    values = [a["ALIGNABLE_ANNOTATION"]["ANNOTATION_VALUE"] for a in tier["ANNOTATION"]]
    assert values == ["hello", "thank-you & <more>", "ça"]
    slots = {s["@TIME_SLOT_ID"]: s["@TIME_VALUE"] for s in doc["TIME_ORDER"]["TIME_SLOT"]}
    first = tier["ANNOTATION"][0]["ALIGNABLE_ANNOTATION"]
    assert (slots[first["@TIME_SLOT_REF1"]], slots[first["@TIME_SLOT_REF2"]]) == (400, 1600)
    assert doc["HEADER"]["MEDIA_DESCRIPTOR"][0]["@MEDIA_URL"] == video.resolve().as_uri()
    schema.validate(to_eaf(SpotResult(30.0, 10, [])))  # nothing found is still a valid file
