"""What training needs to know about a store before reading any array: which streams
feed the model, the label map, and whether the splits make sense."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from featurestore import GEMMA_STREAM, LANDMARK_MASK_STREAM, LANDMARKS_STREAM, FeatureStore
from model import ModelConfig

VISUAL_STREAMS = (GEMMA_STREAM,)
LANDMARK_STREAMS = (LANDMARKS_STREAM, LANDMARK_MASK_STREAM)


class DataError(ValueError):
    """The store cannot be trained or evaluated on as asked."""


def model_streams(modalities: str) -> list[str]:
    """Store streams a model with these modalities reads."""
    streams: list[str] = []
    if modalities in ("both", "visual"):
        streams += VISUAL_STREAMS
    if modalities in ("both", "landmarks"):
        streams += LANDMARK_STREAMS
    return streams


def checkpoint_stream_specs(store: FeatureStore, streams: list[str]) -> dict[str, dict]:
    """The stored shape and dtype of each stream the model reads, as a checkpoint keeps
    them (so a server can refuse a store they do not fit)."""
    return {s: store.schema.streams[s].to_json() for s in streams}


def check_streams(store: FeatureStore, modalities: str) -> list[str]:
    """The streams to read, or a DataError naming what the store lacks."""
    streams = model_streams(modalities)
    missing = [s for s in streams if s not in store.schema.streams]
    if missing:
        have = sorted(store.schema.streams)
        hint = (
            " (try --modalities landmarks)"
            if GEMMA_STREAM in missing
            else " (try --modalities visual)"
        )
        raise DataError(
            f"store {store.url} has no stream {missing} needed for --modalities {modalities}; it has {have}{hint}"
        )
    return streams


def split_labels(store: FeatureStore, split: str) -> dict[str, int]:
    """video id -> label for one split, from the index (no array reads)."""
    return {v: store.entry(v).label for b in store.blocks(split) for v in b.video_ids}


@dataclass
class SplitReport:
    """Label coverage of the training and validation splits."""

    train_rows: int
    val_rows: int
    train_unlabeled: int
    val_missing_classes: dict[int, str]
    """Classes present in val but absent from train (a model cannot learn them)."""

    def to_dict(self) -> dict:
        return {
            "train_rows": self.train_rows,
            "val_rows": self.val_rows,
            "train_unlabeled": self.train_unlabeled,
            "val_classes_missing_in_train": {
                str(k): v for k, v in self.val_missing_classes.items()
            },
        }


def check_splits(store: FeatureStore, train_split: str, val_split: str | None) -> SplitReport:
    """Fail early on an empty train split or a store without labels; warn about the rest."""
    splits = store.splits()
    if not splits.get(train_split):
        raise DataError(
            f"split {train_split!r} of store {store.url} is empty or missing; its splits: {splits or 'none'}"
        )
    labels = store.labels
    train = split_labels(store, train_split)
    labelled = {v: lab for v, lab in train.items() if lab >= 0}
    if not labels or not labelled:
        raise DataError(
            f"store {store.url} has no labels to train on (label map: {len(labels)} entries, "
            f"labelled {train_split!r} videos: {len(labelled)})"
        )
    unknown = sorted({lab for lab in labelled.values() if lab not in labels})
    if unknown:
        raise DataError(
            f"store {store.url}: labels {unknown[:10]} are used by videos but missing from its label map"
        )
    unlabeled = len(train) - len(labelled)
    if unlabeled:
        warnings.warn(
            f"{unlabeled} unlabeled videos in split {train_split!r} will be skipped", stacklevel=2
        )
    val = split_labels(store, val_split) if val_split and splits.get(val_split) else {}
    if val_split and not val:
        warnings.warn(
            f"validation split {val_split!r} is empty: no validation, no early stopping, best.pt = last epoch",
            stacklevel=2,
        )
    missing = sorted({lab for lab in val.values() if lab >= 0} - set(labelled.values()))
    if missing:
        names = {lab: labels.get(lab, str(lab)) for lab in missing}
        warnings.warn(
            f"{len(missing)} classes in {val_split!r} never occur in {train_split!r} and cannot be "
            f"learned: {list(names.values())[:10]}",
            stacklevel=2,
        )
    else:
        names = {}
    return SplitReport(len(train), len(val), unlabeled, names)


def model_config_for(
    store: FeatureStore, modalities: str, gemma_dim: int | None = None, **kwargs: Any
) -> ModelConfig:
    """A ModelConfig sized by the store: classes from its label map, T, the encoder's
    feature width (a `gemma_dim` override must agree with the stored features)."""
    streams = store.schema.streams
    stored_dim = streams[GEMMA_STREAM].shape[-1] if GEMMA_STREAM in streams else 0
    if gemma_dim is not None and modalities != "landmarks" and gemma_dim != stored_dim:
        raise DataError(
            f"--gemma-dim {gemma_dim} does not match the store's gemma features ({stored_dim}-d)"
        )
    return ModelConfig.from_layout(
        store.schema.landmark_layout if LANDMARKS_STREAM in streams else None,
        num_classes=max(store.labels) + 1,
        gemma_dim=stored_dim if modalities != "landmarks" else 0,
        num_frames=store.schema.num_frames,
        modalities=modalities,
        **kwargs,
    )
