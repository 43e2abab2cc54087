"""Plumbing on a real video: real WLASL clips joined by empty frames come back from
asl-spot as one segment per clip, with its gloss, within 0.5 s of where the clip lies.

The model is trained here, on those clips as the spotter sees them: each clip's own span
of the joined video's landmarks (a few frames either way), and spans off it (half a clip
beside empty frames, a clip's middle half, spans over two clips and the gap) as `-`. Skips where ../shared/data is absent.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featurestore import StoreSchema, StreamSpec, create_store
from featurestore.extract import iter_frames, landmark_layout, read_wlasl, write_video
from spotting.cli import main
from spotting.core import window_indices
from spotting.inputs import read_video
from spotting.writers import SpotDocument
from tests.extract.clips import wlasl_mini

CLIPS = ("90003", "90007", "90004", "90002")  # yes, go, no, thankyou: 2.2 to 4.3 s
SIDE, FPS, T = 320, 30, 16
REST = [np.full((SIDE, SIDE, 3), 128, np.uint8)] * FPS  # a second with nobody in view


def joined_video(path: Path, clips: list[Path]) -> list[tuple[int, int]]:
    """The clips one after another, a second of empty frames around each; their spans."""
    frames, spans = list(REST), []
    for clip in clips:
        start = len(frames)
        frames += [np.asarray(Image.fromarray(f).resize((SIDE, SIDE))) for f in iter_frames(clip)]
        spans.append((start, len(frames)))
        frames += REST
    write_video(path, np.stack(frames), fps=FPS)
    return spans


def training_windows(spans: list[tuple[int, int]], total: int) -> list[tuple[int, int, int]]:
    """(start, length, clip index or -1 for `-`): each clip's span a few frames either way,
    and spans off it (those inside the video's `total` frames)."""
    out = []
    for i, (start, end) in enumerate(spans):
        n = end - start
        out += [(start + a, n + b - a, i) for a in (-3, 0, 3) for b in (-3, 0, 3)]
        out += [(start + s, n, -1) for s in (-n // 2, -3 * n // 4, n // 2, 3 * n // 4)]
        out += [(start + n // 4, n // 2, -1), (start, n // 2, -1), (start + n // 2, n // 2, -1)]
    lengths = [end - start for start, end in spans]
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):  # two clips and the gap
        middle = (end + start) // 2
        out += [(middle - n // 2 + d, n, -1) for n in lengths for d in (-n // 4, 0, n // 4)]
    return [(s, n, c) for s, n, c in out if s >= 0 and s + n <= total]


def train_on(video: Path, spans, glosses: list[str], folder: Path) -> Path:
    from training import TrainConfig, train

    labels = {i: g for i, g in enumerate([*glosses, "-"])}
    layout = landmark_layout()
    schema = StoreSchema(
        num_frames=T,
        streams={
            "landmarks": StreamSpec((T, 75, 3), "float32"),
            "landmark_mask": StreamSpec((T, 3), "bool"),
        },
        encoder={},
        landmark_layout=layout,
        labels=labels,
    )
    arrays = read_video(video, face=False, fps=None).arrays
    store = create_store(str(folder / "clips.zarr"), schema)
    windows = training_windows(spans, len(arrays["landmarks"]))
    idx = window_indices([(s, n) for s, n, _ in windows], T)
    with store.writer() as w:
        for row, (_, _, clip) in enumerate(windows):
            label = clip if clip >= 0 else len(glosses)
            rows = {k: arrays[k][idx[row]] for k in ("landmarks", "landmark_mask")}
            w.put(f"w{row}", rows, label=label, gloss=labels[label], split="train")
    cfg = TrainConfig(
        store=str(folder / "clips.zarr"), modalities="landmarks", val_split=None, epochs=60,
        batch_size=16, workers=0, patience=0, out=str(folder / "run"), progress=False,
        hidden_dim=64,
    )  # fmt: skip
    train(cfg)
    return folder / "run" / "best.pt"


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="not met yet: a window holding all of `go`, the empty gap and a little of the next "
    "clip scores `go` as high as `go`'s own span (frames with nobody in view add nothing to "
    "it), and silences `yes` and `no` next to it; found: go, thankyou",
)
def test_joined_wlasl_clips_give_one_segment_per_clip_at_its_place(tmp_path):
    folder = wlasl_mini()
    entries, _ = read_wlasl(folder, folder / "nslt_8.json")
    chosen = [dataclasses.replace(e) for c in CLIPS for e in entries if e.video_id == c]
    video = tmp_path / "joined.mp4"
    spans = joined_video(video, [e.path for e in chosen])
    ckpt = train_on(video, spans, [e.gloss for e in chosen], tmp_path)

    durations = ",".join(f"{(end - start) / FPS:.2f}" for start, end in spans)
    out = tmp_path / "joined.json"
    assert (
        main(["--checkpoint", str(ckpt), str(video), "--window-s", durations, "--json", str(out)])
        == 0
    )
    found = SpotDocument.model_validate_json(out.read_text()).segments
    assert [s.gloss for s in found] == [e.gloss for e in chosen]
    for seg, (start, end) in zip(found, spans, strict=True):
        assert abs(seg.start_s - start / FPS) <= 0.5 and abs(seg.end_s - end / FPS) <= 0.5, (
            seg,
            start,
            end,
        )
