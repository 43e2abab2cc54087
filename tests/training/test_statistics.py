"""Feature statistics the model standardises with: exact on a small split, bounded reads on
a large one, NaN rows left out, and carried into the trained checkpoint."""

from __future__ import annotations

import numpy as np
import pytest

from featurestore import FeatureStore, open_store
from model import load_checkpoint
from tests.training.stores import make_store
from training import DataError, TrainConfig, train
from training.statistics import feature_statistics


def split_frames(store, split: str) -> np.ndarray:
    rows = np.concatenate(
        [store.read_block(b, ["gemma"]).arrays["gemma"] for b in store.blocks(split)]
    )
    return rows.reshape(-1, rows.shape[-1]).astype(np.float64)


def test_statistics_match_numpy_over_the_whole_split(tmp_path):
    store = make_store(tmp_path / "s.zarr")
    mean, std = feature_statistics(store, "train")
    frames = split_frames(store, "train")
    assert mean.dtype == std.dtype == np.float32 and mean.shape == (16,)
    np.testing.assert_allclose(mean, frames.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(std, frames.std(0), rtol=1e-4)


def test_statistics_read_a_bounded_sample_of_whole_blocks(tmp_path, monkeypatch):
    store = make_store(tmp_path / "s.zarr", per_class={"train": 20}, block_size=16)
    reads = []
    real = FeatureStore.read_block
    monkeypatch.setattr(
        FeatureStore, "read_block", lambda self, b, s=None: reads.append(len(b)) or real(self, b, s)
    )
    feature_statistics(open_store(store.url), "train", max_rows=40)
    assert sum(reads[:-1]) < 40 <= sum(reads) and all(n == 16 for n in reads)


def test_rows_with_nan_are_left_out_and_flat_dimensions_get_a_floor(tmp_path, monkeypatch):
    store = make_store(tmp_path / "s.zarr", per_class={"train": 2})
    real = FeatureStore.read_block

    def poisoned(self, block, streams=None):
        batch = real(self, block, streams)
        g = batch.arrays["gemma"]
        g[:, :, 0] = 3.0  # a dimension that never moves
        g[0] = np.nan  # the block's first video is broken
        return batch

    monkeypatch.setattr(FeatureStore, "read_block", poisoned)
    mean, std = feature_statistics(open_store(store.url), "train")
    monkeypatch.undo()
    frames = (
        np.concatenate(
            [
                b.arrays["gemma"][1:]
                for b in (store.read_block(blk, ["gemma"]) for blk in store.blocks("train"))
            ]
        )
        .reshape(-1, 16)
        .astype(np.float64)
    )
    np.testing.assert_allclose(mean[1:], frames.mean(0)[1:], rtol=1e-5, atol=1e-5)
    assert mean[0] == 3.0 and 0 < std[0] < 1e-2 * np.median(std[1:])


def test_no_usable_rows_is_a_clear_error(tmp_path):
    store = make_store(tmp_path / "s.zarr", per_class={"train": 1}, classes=1)
    with pytest.raises(DataError, match="no rows with finite 'gemma'"):
        feature_statistics(store, "val")


def test_training_stores_the_train_split_statistics_in_the_checkpoint(tmp_path):
    store = make_store(tmp_path / "s.zarr")
    train(TrainConfig(store=store.url, out=str(tmp_path / "run"), epochs=1, hidden_dim=32,
                      workers=0, progress=False))  # fmt: skip
    vp = load_checkpoint(tmp_path / "run" / "best.pt").model.visual_projection
    frames = split_frames(store, "train")
    np.testing.assert_allclose(vp.feature_mean.numpy(), frames.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(vp.feature_std.numpy(), frames.std(0), rtol=1e-4)
