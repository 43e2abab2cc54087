"""The stages every populate runner shares, so the local pipeline and Ray do the same work.

``decode`` turns a bad clip into a recorded reason instead of an exception; ``encode`` runs
the frozen encoder over the frames of several videos and, when a batch fails, retries it
one video at a time so only the video at fault fails; ``write`` commits finished videos
(or records why they failed); ``write_features`` does the same for an added feature set,
one base block at a time. No torch at import: Ray's CPU tasks import this module.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .._test_hold import hold_after
from ..errors import InvalidVideoError
from ..manifest import ManifestEntry
from ..schema import GEMMA_STREAM, LANDMARK_MASK_STREAM, LANDMARKS_STREAM
from .decode import Clip, DecodeError, decode_clip

if TYPE_CHECKING:
    from tqdm import tqdm

    from ..schema import StreamSpec
    from ..summary import PopulateSummary
    from ..writer import FeatureWriter, Writer
    from .gemma import GemmaEncoder

__all__ = [
    "Encoded",
    "Job",
    "decode",
    "decoded_info",
    "encode",
    "write",
    "write_features",
]

COMMIT_SECONDS = 60.0
"""A slow run still commits at least this often."""


@dataclass(eq=False)
class Job:
    """One video on its way through the stages."""

    entry: ManifestEntry
    clip: Clip | None = None
    gemma: np.ndarray | None = None
    landmarks: np.ndarray | None = None
    mask: np.ndarray | None = None
    error: str | None = None
    source: dict | None = None
    """What decoding found: real and total frame counts, the range used, whether clamped."""
    _remaining: int = 0

    @property
    def frames(self) -> np.ndarray:
        """The decoded frames (every stage after decode sees only decoded jobs)."""
        assert self.clip is not None, f"{self.entry.video_id} was not decoded"
        return self.clip.frames


def decode(entry: ManifestEntry, num_frames: int) -> tuple[Clip | None, str | None]:
    """The clip's T frames, or None and the reason ("missing: ...", "decode: ...")."""
    try:
        return decode_clip(entry.path, num_frames, entry.frame_start, entry.frame_end), None
    except DecodeError as exc:
        return None, f"{exc.reason}: {exc}"
    except Exception as exc:  # a decoder bug must not end the run
        return None, f"decode: {entry.path}: {type(exc).__name__}: {exc}"


def decoded_info(entry: ManifestEntry, clip: Clip) -> dict:
    """What the store records about decoding: frame counts, the range used, whether clamped."""
    clamped = (entry.frame_end != -1 and entry.frame_end > clip.total_frames) or (
        entry.frame_start < 1
    )
    return {
        "num_real_frames": clip.num_real_frames,
        "total_frames": clip.total_frames,
        "frames_used": [clip.frame_start, clip.frame_end],
        "range_clamped": bool(clamped),
    }


@dataclass
class Encoded:
    """Per video, features or the reason there are none; and what the forwards cost."""

    features: list[np.ndarray | None] = field(default_factory=list)
    errors: list[str | None] = field(default_factory=list)
    seconds: float = 0.0
    """Time of the forward passes that succeeded."""
    frames: int = 0


def encode(encoder: GemmaEncoder, videos: list[np.ndarray], paths: list[Path]) -> Encoded:
    """Encode the frames of several videos together; a batch that fails is retried one
    video at a time, so the others still get features and the error names the one at fault."""
    start = time.perf_counter()
    try:
        features = encoder.encode_videos(videos)
    except Exception as exc:
        if len(videos) == 1:
            return Encoded([None], [f"encoder: {paths[0]}: {exc}"])
        out = Encoded()
        for video, path in zip(videos, paths, strict=True):
            one = encode(encoder, [video], [path])
            out.features += one.features
            out.errors += one.errors
            out.seconds += one.seconds
            out.frames += one.frames
        return out
    seconds = time.perf_counter() - start
    return Encoded(list(features), [None] * len(features), seconds, sum(len(f) for f in features))


def _source(job: Job) -> dict:
    e = job.entry
    return {
        "path": str(e.path),
        "frame_start": e.frame_start,
        "frame_end": e.frame_end,
        **(job.source or {}),  # set by decoded_info for every decoded video
    }


def write(
    jobs: Iterable[Job],
    writer: Writer,
    summary: PopulateSummary,
    bar: tqdm,
    streams: dict[str, StreamSpec],
) -> None:
    """Put each finished video (or record its failure) in the caller's thread, the writer's,
    committing at least every ``COMMIT_SECONDS``."""
    last_commit = time.monotonic()
    write_s = 0.0
    for job in jobs:
        vid = job.entry.video_id
        start = time.perf_counter()
        if job.error is None:
            arrays: dict[str, np.ndarray] = {}
            if job.gemma is not None:
                arrays[GEMMA_STREAM] = job.gemma.astype(streams[GEMMA_STREAM].dtype)
            if job.landmarks is not None:
                assert job.mask is not None, "landmarks come with their mask"
                arrays[LANDMARKS_STREAM], arrays[LANDMARK_MASK_STREAM] = job.landmarks, job.mask
            try:
                writer.put(
                    vid,
                    arrays,
                    label=job.entry.label if job.entry.label is not None else -1,
                    gloss=job.entry.gloss,
                    split=job.entry.split,
                    source=_source(job),
                )
                summary.done += 1
            except InvalidVideoError as exc:
                job.error = f"write: {exc}"
        if job.error is not None:
            writer.fail(vid, job.error)
            summary.failures[vid] = job.error
            bar.set_postfix(failed=len(summary.failures), refresh=False)
        if writer.pending and time.monotonic() - last_commit > COMMIT_SECONDS:
            writer.flush()
            last_commit = time.monotonic()
        write_s += time.perf_counter() - start
        bar.update(1)
        hold_after(summary.done)  # test-only: a no-op unless a test asks
    summary.stage_seconds["write"] = write_s


_SAMPLING_KEYS = ("total_frames", "num_real_frames", "frames_used")


def changed_since(job: Job, recorded: Mapping) -> str | None:
    """Why the clip decoded now is not the one populate sampled (its frames would not line up
    with the stored landmarks), or None when it is."""
    now = job.source or {}
    for key in _SAMPLING_KEYS:
        if key in recorded and key in now and recorded[key] != now[key]:
            return (
                f"changed: {job.entry.path}: {key} is {now[key]} now, {recorded[key]} when "
                "populated; the new features would not match the stored frames"
            )
    return None


def write_features(
    jobs: Iterable[Job],
    writer: FeatureWriter,
    summary: PopulateSummary,
    bar: tqdm,
    blocks: list[list[ManifestEntry]],
    recorded: Mapping[str, Mapping],
) -> None:
    """Put each base block's features (or failures) once all its videos are finished, in
    storage order, then commit: the feature set's blocks line up with the base blocks.

    ``jobs`` may come in any order; only blocks still incomplete are held in memory, and a
    run stopped early commits none of them (a rerun redoes only those).
    """
    where = {e.video_id: i for i, block in enumerate(blocks) for e in block}
    left = [len(block) for block in blocks]
    finished: dict[int, dict[str, Job]] = {}
    write_s = 0.0
    for job in jobs:
        vid = job.entry.video_id
        i = where[vid]
        if job.error is None:
            job.error = changed_since(job, recorded.get(vid) or {})
        finished.setdefault(i, {})[vid] = job
        left[i] -= 1
        bar.update(1)
        if left[i]:
            continue
        start = time.perf_counter()
        done = finished.pop(i)
        for entry in blocks[i]:
            _put_features(done[entry.video_id], writer, summary)
        writer.flush()
        write_s += time.perf_counter() - start
        bar.set_postfix(failed=len(summary.failures), refresh=False)
        hold_after(summary.done)  # test-only: a no-op unless a test asks
    summary.stage_seconds["write"] = write_s


def _put_features(job: Job, writer: FeatureWriter, summary: PopulateSummary) -> None:
    vid = job.entry.video_id
    if job.error is None:
        assert job.gemma is not None, "a finished job without an error has its features"
        try:
            writer.put(vid, job.gemma)  # cast to the set's dtype by the writer
            summary.done += 1
            return
        except InvalidVideoError as exc:
            job.error = f"write: {exc}"
    writer.fail(vid, job.error)
    summary.failures[vid] = job.error
