"""One populate run, before either runner starts: its options and its one planning step.

``plan`` merges the label map add-only with the store's, checks the run's schema (encoder
fingerprint, T, streams, landmark layout) against the store, creating it if absent, before
anything is extracted, and sorts the entries into committed (skipped), failed while reading
the manifest, and to do. The local pipeline and Ray then run the same plan.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from ..errors import StoreError
from ..schema import StoreSchema
from ..store import FeatureStore, create_store, open_store
from .manifest import ManifestEntry, assign_labels

if TYPE_CHECKING:
    from .summary import PopulateSummary

__all__ = ["Plan", "PopulateOptions", "plan"]


@dataclass(frozen=True)
class PopulateOptions:
    """What to extract and how: the arguments both runners take."""

    encoder: Any = "tiny-random"
    """A preset, a Hugging Face id, a local folder, a loaded GemmaEncoder, or None."""
    num_frames: int = 16
    device: str = "cpu"
    batch_size: int = 64
    """Frames per encoder forward."""
    overwrite: bool = False
    limit: int | None = None
    """Only the first N entries."""
    landmarks: bool = True
    progress: bool = True
    labels: dict[int, str] | None = None
    """label -> gloss fixed by the source (WLASL); otherwise assigned from the glosses."""
    face: bool = False
    pooling: str = "mean_soft_tokens"
    flash_attention: bool = False
    revision: str | None = None
    storage_options: dict | None = None

    @classmethod
    def pick(cls, arguments: dict[str, Any], **changes: Any) -> PopulateOptions:
        """The options among a runner's arguments (its ``locals()``), with ``changes``."""
        return cls(**{f.name: arguments[f.name] for f in fields(cls)} | changes)

    def extractor_args(self) -> dict[str, Any]:
        """Keyword arguments of the ``ClipExtractor`` this run extracts with."""
        return {name: getattr(self, name) for name in _EXTRACTOR_ARGS}


_EXTRACTOR_ARGS = (
    "encoder",
    "num_frames",
    "device",
    "landmarks",
    "face",
    "pooling",
    "flash_attention",
    "batch_size",
    "revision",
)


@dataclass
class Plan:
    """The store, checked against the run's schema, and the entries still to extract."""

    store: FeatureStore
    todo: list[ManifestEntry]


def _existing_labels(store_url: str, storage_options: dict | None) -> dict[int, str]:
    """The store's label map, or {} when there is no store yet (create_store then reports
    anything worse than absence, such as a folder that is not a store)."""
    try:
        return open_store(store_url, storage_options=storage_options).labels
    except (StoreError, FileNotFoundError):
        return {}


def plan(
    store_url: str,
    entries: Iterable[ManifestEntry],
    options: PopulateOptions,
    schema_for: Callable[[dict[int, str]], StoreSchema],
    summary: PopulateSummary,
) -> Plan:
    """Open or create the store (refusing a mismatch), merge labels, and pick what to do.

    ``schema_for(label_map)`` is the run's schema (it needs the encoder, which only the
    runner has loaded). Skipped and manifest-failed entries are counted in ``summary``.
    """
    entries = list(entries)
    existing = _existing_labels(store_url, options.storage_options)
    entries, label_map = assign_labels(entries, existing)
    if options.labels:
        label_map = {**label_map, **options.labels}
    entries = entries[: options.limit] if options.limit is not None else entries
    store = create_store(
        store_url, schema_for(label_map), exist_ok=True, storage_options=options.storage_options
    )
    committed = set() if options.overwrite else set(store.ids())
    todo = []
    for e in entries:
        if e.video_id in committed:
            summary.skipped += 1
        elif e.error:
            summary.failed[e.video_id] = e.error
        else:
            todo.append(e)
    return Plan(store, todo)
