"""One populate run's settings as frozen, typed values: ``PopulateOptions`` (what to extract
and how) and ``RayCluster`` (the cluster flags, for a run on Ray).

The CLI builds them once from its flags; the local runner and the Ray runner take them as
they are, and the public keyword functions (``populate``, ``populate_with_ray``, ...) are
thin wrappers that build them. A new setting is one field here, one flag in ``cli.py`` and,
when the encoder needs it, one argument in ``extractor()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .clip import ClipExtractor
    from .gemma import GemmaEncoder

__all__ = ["DEFAULT_NUM_FRAMES", "DEFAULT_SCHEDULE_TIMEOUT_S", "PopulateOptions", "RayCluster"]

DEFAULT_NUM_FRAMES = 16
"""T of a new store when none is given."""
DEFAULT_SCHEDULE_TIMEOUT_S = 300.0
"""Seconds a worker or decode task may wait for Ray to schedule it before the run stops."""


@dataclass(frozen=True)
class PopulateOptions:
    """What to extract and how: the settings both runners take."""

    # -- the extraction
    encoder: str | GemmaEncoder | None = "tiny-random"
    """A preset, a Hugging Face id, a local folder, a loaded GemmaEncoder, or None."""
    num_frames: int | None = None
    """T; None: 16 for populate, the store's when adding a feature set."""
    device: str | None = None
    """None: cpu on this machine; on Ray, cuda when the workers have GPUs."""
    batch_size: int = 64
    """Frames per encoder forward."""
    pooling: str = "mean_soft_tokens"
    flash_attention: bool = False
    revision: str | None = None
    fast_path: str = "auto"
    """The encoder's compiled forward: auto (on for CUDA), on, off."""
    sdpa_backend: str = "auto"
    """The attention kernel: auto (PyTorch's choice), cudnn, flash, efficient, math."""
    landmarks: bool = True
    face: bool = False
    # -- the run
    labels: dict[int, str] | None = None
    """label -> gloss fixed by the source (WLASL); otherwise assigned from the glosses."""
    overwrite: bool = False
    limit: int | None = None
    """Only the first N entries (or stored videos, when adding a feature set)."""
    progress: bool = True
    storage_options: dict | None = None
    commit_every: int | None = None
    """Videos per commit (default: a store block, and at least once a minute); on Ray, the
    videos of one shard, which one worker commits as one block."""
    workers: int | None = None
    """Landmark processes on this machine (default: the CPU count)."""
    decode_threads: int | None = None
    """Decoding threads on this machine (default: a quarter of the CPUs, 2 to 8)."""
    shard_index: int = 0
    """Adding a feature set: this process takes every ``num_shards``-th stored block, from
    the ``shard_index``-th, so several processes can add one set at once."""
    num_shards: int = 1

    @property
    def frames(self) -> int:
        """T as the extractor samples it."""
        return DEFAULT_NUM_FRAMES if self.num_frames is None else int(self.num_frames)

    def extractor(self) -> ClipExtractor:
        """The clip extractor this run extracts with (loads the encoder)."""
        from .clip import ClipExtractor

        return ClipExtractor(
            self.encoder,
            self.frames,
            self.device or "cpu",
            self.landmarks,
            face=self.face,
            pooling=self.pooling,
            flash_attention=self.flash_attention,
            batch_size=self.batch_size,
            revision=self.revision,
            fast_path=self.fast_path,
            sdpa_backend=self.sdpa_backend,
        )


@dataclass(frozen=True)
class RayCluster:
    """Where and how a run uses Ray: None sizes a setting from the cluster (``plan_ray``)."""

    address: str | None = None
    """A cluster (``auto``, ``127.0.0.1:6379``, ``ray://host:10001``); None starts a local
    Ray unless one is running."""
    num_workers: int | None = None
    """Encoder actors, each owning one store segment."""
    gpus_per_worker: float | None = None
    cpus_per_worker: float | None = None
    cpus_per_task: float = 1
    """CPUs of one decode (+ landmarks) task; one task per video."""
    schedule_timeout_s: float = DEFAULT_SCHEDULE_TIMEOUT_S
    """Work Ray leaves unscheduled this long stops the run (committed shards stay)."""
    max_retries: int = 2
    """Times a shard whose worker died is retried on a fresh worker before it is lost."""
    ray_init: dict | None = None
    """Extra ``ray.init`` arguments."""
