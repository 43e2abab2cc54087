"""The GPU stage on Ray: an encoder actor that owns one store writer, so one segment.

Zarr v3 has no locks, so no two writers may touch the same object: each actor writes a
segment of its own. It encodes the frames of a shard's videos in batches (the decode tasks
hand them over through the object store) and commits the shard as one block, arrays first,
then its commit record: a worker killed mid-shard leaves nothing half-written.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

import numpy as np
import ray
from ray.exceptions import RayError, WorkerCrashedError
from tqdm import tqdm

from ...schema import GEMMA_STREAM
from ...summary import PopulateSummary
from .. import stages
from ..stages import Job
from .decode import Decoded

if TYPE_CHECKING:
    from ...manifest import ManifestEntry
    from ...schema import StoreSchema, StreamSpec
    from ...store import FeatureStore
    from ...writer import FeatureWriter, Writer
    from ..clip import ClipExtractor
    from ..options import PopulateOptions

__all__ = ["EncoderWriter", "ShardResult"]


@dataclass
class ShardResult:
    """What one actor call committed (passed to ``on_shard``)."""

    shard: int
    worker: str
    """Ray actor name of the worker that wrote it."""
    segment: str
    """The store segment that worker owns (no other writer touches it)."""
    ids: list[str]
    """Videos committed."""
    node: str
    """Id of the node the worker runs on."""
    task_nodes: dict[str, int]
    """Node id -> decode tasks of this shard that ran there."""
    done: int
    skipped: int
    failed: dict[str, str]
    stage_seconds: dict[str, float]
    frames_encoded: int


class EncoderWriter:
    """Encodes the frames of a shard's videos in batches and commits the shard as one block
    (of the base streams, or of feature set ``features`` when one is being added)."""

    def __init__(
        self, name: str, store_url: str, options: PopulateOptions, features: str | None = None
    ):
        self.name = name
        self.url, self.options = store_url, options
        self._features = features
        self._extractor: ClipExtractor | None = None
        self._store: FeatureStore | None = None
        self._writer: Writer | FeatureWriter | None = None
        self._frames = 0
        self._task_nodes: dict[str, int] = {}  # node id -> decode tasks of this shard

    def node(self) -> str:
        """Answers as soon as Ray has placed the actor (the encoder loads on first use)."""
        return ray.get_runtime_context().get_node_id()

    @property
    def extractor(self) -> ClipExtractor:
        if self._extractor is None:
            self._extractor = self.options.extractor()
        return self._extractor

    def schema(self) -> StoreSchema:
        """The run's schema, labels aside."""
        return self.extractor.schema()

    def fingerprint(self) -> dict:
        return self.extractor.fingerprint

    def feature_spec(self) -> StreamSpec:
        """The (T, D) spec of the features this actor's encoder makes."""
        return self.extractor.streams[GEMMA_STREAM]

    def _open(self) -> tuple[FeatureStore, Writer | FeatureWriter]:
        from ...store import open_store

        overwrite = self.options.overwrite
        if self._store is None or self._writer is None:
            self._store = store = open_store(self.url, "r+", self.options.storage_options)
            if self._features is None:
                store.check_compatible(
                    encoder=self.extractor.fingerprint,
                    num_frames=self.extractor.num_frames,
                    streams=self.extractor.streams,
                )
                self._writer = store.writer(overwrite=overwrite)
            else:
                fingerprint = store.schema.fingerprint(self._features)
                if fingerprint != self.extractor.fingerprint:
                    raise RuntimeError(
                        f"feature set {self._features!r} in {self.url} was made by another "
                        f"encoder than this worker's: {fingerprint} != {self.extractor.fingerprint}"
                    )
                self._writer = store.feature_writer(self._features, overwrite=overwrite)
        return self._store, self._writer

    def _committed(self, store: FeatureStore) -> set[str]:
        store.refresh()
        return store.feature_ids(self._features) if self._features else set(store.ids())

    def write_shard(
        self,
        shard: int,
        entries: list[ManifestEntry],
        refs: list,
        retry: bool,
        recorded: dict[str, dict] | None = None,
    ) -> ShardResult:
        store, writer = self._open()
        summary = PopulateSummary()
        if retry and not self.options.overwrite:  # a dead worker may have committed part of it
            committed = self._committed(store)
            keep = [i for i, e in enumerate(entries) if e.video_id not in committed]
            summary.skipped = len(entries) - len(keep)
            entries, refs = [entries[i] for i in keep], [refs[i] for i in keep]
        self._frames, self._task_nodes = 0, {}
        jobs = self._encoded(entries, refs, summary.stage_seconds)
        with tqdm(disable=True) as bar:
            if self._features is None:
                stages.write(jobs, writer, summary, bar, self.extractor.streams)
            else:  # a shard is one base block: committed as one feature block
                added = cast("FeatureWriter", writer)
                stages.write_features(jobs, added, summary, bar, [entries], recorded or {})
        writer.flush()
        return ShardResult(
            shard,
            self.name,
            writer.segment,
            [e.video_id for e in entries if e.video_id not in summary.failures],
            self.node(),
            self._task_nodes,
            summary.done,
            summary.skipped,
            summary.failures,
            dict(summary.stage_seconds),
            self._frames,
        )

    def _encoded(self, entries: list[ManifestEntry], refs: list, seconds: dict) -> Iterator[Job]:
        """Jobs in shard order, each with its features; frames of several videos per forward."""
        pending: list[tuple[Job, np.ndarray]] = []
        for entry, ref in zip(entries, refs, strict=True):
            job = Job(entry)
            try:
                decoded: Decoded = ray.get(ref)
            except WorkerCrashedError:  # on every retry: a clip that crashes the decoder/Holistic
                decoded = Decoded(error=f"worker: {entry.path}: worker process died")
            except RayError as exc:
                decoded = Decoded(error=f"worker: {entry.path}: {type(exc).__name__}: {exc}")
            for stage, s in decoded.seconds.items():
                seconds[stage] = seconds.get(stage, 0.0) + s
            if decoded.node:
                self._task_nodes[decoded.node] = self._task_nodes.get(decoded.node, 0) + 1
            job.error, job.landmarks, job.mask = decoded.error, decoded.landmarks, decoded.mask
            if decoded.clip is not None:
                job.source = stages.decoded_info(entry, decoded.clip)
            if job.error is not None or self.extractor.encoder is None:
                yield from self._encode(pending, seconds)
                pending = []
                yield job
                continue
            # frames from the object store are read-only; torch wants to own writable ones
            assert decoded.clip is not None, "a task without an error decoded its clip"
            pending.append((job, np.require(decoded.clip.frames, requirements="W")))
            if sum(len(f) for _, f in pending) >= self.extractor.encoder.batch_size:
                yield from self._encode(pending, seconds)
                pending = []
        yield from self._encode(pending, seconds)

    def _encode(self, pending: list[tuple[Job, np.ndarray]], seconds: dict) -> Iterator[Job]:
        if not pending:
            return
        encoder = self.extractor.encoder
        assert encoder is not None, "videos wait for the encoder only when there is one"
        videos, paths = [f for _, f in pending], [job.entry.path for job, _ in pending]
        done = stages.encode(encoder, videos, paths)
        if done.frames:
            seconds["encoder"] = seconds.get("encoder", 0.0) + done.seconds
        self._frames += done.frames
        for (job, _), feats, error in zip(pending, done.features, done.errors, strict=True):
            job.gemma, job.error = feats, error
            yield job
