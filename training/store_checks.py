"""What training needs to know about a store before reading any array: which streams
feed the model (the landmarks and one named feature set), the label map, and whether the
splits make sense. Only videos that hold every stream read are trained on."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from featurestore import GEMMA_STREAM, LANDMARKS_STREAM, FeatureStore
from model import ModelConfig, input_streams


class DataError(ValueError):
    """The store cannot be trained or evaluated on as asked."""


def visual_features(modalities: str, features: str = GEMMA_STREAM) -> str | None:
    """The feature set a model with these modalities reads (None: landmarks only)."""
    return features if modalities in ("both", "visual") else None


def model_streams(modalities: str, features: str = GEMMA_STREAM) -> list[str]:
    """Store streams a model with these modalities reads."""
    return input_streams(visual_features(modalities, features), modalities != "visual")


def checkpoint_stream_specs(store: FeatureStore, streams: list[str]) -> dict[str, dict]:
    """The stored shape and dtype of each stream the model reads, as a checkpoint keeps
    them (so a server can refuse a store they do not fit)."""
    return {s: store.schema.spec(s).to_json() for s in streams}


def check_streams(store: FeatureStore, modalities: str, features: str = GEMMA_STREAM) -> list[str]:
    """The streams to read, or a DataError naming what the store lacks."""
    streams = model_streams(modalities, features)
    visual = visual_features(modalities, features)
    sets = store.schema.feature_names()
    if visual is not None and visual not in sets:
        hint = f"--features {sets[0]}, or " if sets else ""
        raise DataError(
            f"store {store.url} has no feature set {visual!r} needed for --modalities "
            f"{modalities}; its feature sets: {sets or 'none'} (try {hint}--modalities landmarks)"
        )
    missing = [s for s in streams if s != visual and s not in store.schema.streams]
    if missing:
        have = sorted(store.schema.streams)
        raise DataError(
            f"store {store.url} has no stream {missing} needed for --modalities {modalities}; "
            f"it has {have} (try --modalities visual)"
        )
    return streams


def split_labels(
    store: FeatureStore, split: str, streams: list[str] | None = None
) -> dict[str, int]:
    """video id -> label for the videos of one split that hold all `streams`, from the
    index (no array reads)."""
    return {
        v: store.entry(v).label for b in store.blocks(split, streams=streams) for v in b.video_ids
    }


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


def check_splits(
    store: FeatureStore,
    train_split: str,
    val_split: str | None,
    streams: list[str] | None = None,
) -> SplitReport:
    """Fail early on an empty train split or a store without labels; warn about the rest.
    Counts only the videos that hold all `streams` (a feature set added to some videos)."""
    splits = store.splits()
    if not splits.get(train_split):
        raise DataError(
            f"split {train_split!r} of store {store.url} is empty or missing; its splits: {splits or 'none'}"
        )
    labels = store.labels
    train = split_labels(store, train_split, streams)
    added = [s for s in streams or [] if s in store.schema.feature_sets]
    if not train:
        raise DataError(
            f"no video of split {train_split!r} of store {store.url} holds feature set {added[0]!r} "
            f"yet (add it: featurestore populate --store {store.url} --add-features {added[0]} ...)"
            if added
            else f"split {train_split!r} of store {store.url} has no video with streams {streams}"
        )
    held = len(train)
    if added and held < splits[train_split]:
        warnings.warn(
            f"{splits[train_split] - held} of {splits[train_split]} videos in split {train_split!r} "
            f"lack feature set {added[0]!r} and are left out",
            stacklevel=2,
        )
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
    val = split_labels(store, val_split, streams) if val_split and splits.get(val_split) else {}
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
    store: FeatureStore,
    modalities: str,
    gemma_dim: int | None = None,
    features: str = GEMMA_STREAM,
    **kwargs: Any,
) -> ModelConfig:
    """A ModelConfig sized by the store: classes from its label map, T, the width of the
    feature set read (a `gemma_dim` override must agree with the stored features)."""
    schema = store.schema
    visual = visual_features(modalities, features)
    stored_dim = schema.spec(visual).shape[-1] if visual in schema.all_streams else 0
    if gemma_dim is not None and visual is not None and gemma_dim != stored_dim:
        raise DataError(
            f"--gemma-dim {gemma_dim} does not match the store's {visual!r} features ({stored_dim}-d)"
        )
    return ModelConfig.from_layout(
        schema.landmark_layout if LANDMARKS_STREAM in schema.streams else None,
        num_classes=max(store.labels) + 1,
        gemma_dim=stored_dim if visual is not None else 0,
        num_frames=schema.num_frames,
        modalities=modalities,
        **kwargs,
    )
