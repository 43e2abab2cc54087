"""Training from memory: the same batches as streaming for a seed (ids, arrays, skipped
rows, resume), the split read once, and the automatic choice between the two modes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from featurestore import FeatureStore, open_store
from tests.training.stores import LAYOUT, make_store
from tests.training.test_feature_sets import add_features
from training import TrainConfig, in_memory, train
from training.augment import AugmentConfig, Augmenter
from training.cli import train_main
from training.in_memory import choose_in_memory, split_nbytes
from training.loader import StoreLoader

STREAMS = ["gemma", "landmarks", "landmark_mask"]


@pytest.fixture(scope="module", params=["zarr", "h5"])
def store_url(request, tmp_path_factory):
    """96 train rows in 6 blocks of 16 (and 24 val rows sharing the last blocks)."""
    url = tmp_path_factory.mktemp("stores") / f"mem.{request.param}"
    make_store(url, classes=8, per_class={"train": 12, "val": 3}, block_size=16)
    return str(url)


def loader(url, in_memory, **kw) -> StoreLoader:
    args = dict(batch_size=5, window_rows=12, seed=7, streams=STREAMS)
    args.update(kw)
    return StoreLoader(open_store(url), "train", in_memory=in_memory, **args)


def assert_same_batches(a: StoreLoader, b: StoreLoader, epochs=(0, 1)) -> None:
    for epoch in epochs:
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        got, want = list(a), list(b)
        assert len(got) == len(want) > 0
        for x, y in zip(got, want, strict=True):
            assert x["ids"] == y["ids"], f"epoch {epoch}"
            for k in ("label", *a.streams):
                assert x[k].dtype == y[k].dtype and torch.equal(x[k], y[k]), (epoch, k)
        assert a.skipped == b.skipped


@pytest.mark.parametrize("augment", [False, True])
def test_two_epochs_match_streaming_batch_for_batch(store_url, augment):
    aug = Augmenter(AugmentConfig(), LAYOUT["parts"], LAYOUT["sizes"]) if augment else None
    streamed = loader(store_url, False, augmenter=aug)
    held = loader(store_url, True, augmenter=aug)
    assert_same_batches(held, streamed)
    first = [v for b in held for v in b["ids"]]
    assert sorted(first) == open_store(store_url).ids("train")


def test_workers_share_the_split_and_keep_the_order(store_url):
    aug = Augmenter(AugmentConfig(), LAYOUT["parts"], LAYOUT["sizes"])
    held = loader(store_url, True, num_workers=2, augmenter=aug)
    assert all(t.is_shared() for t in held.dataset.arrays.values())
    streamed = loader(store_url, False, augmenter=aug)
    assert_same_batches(held, streamed)


def test_ranks_unshuffled_splits_and_resume_match_streaming(store_url):
    for rank in range(2):
        assert_same_batches(
            loader(store_url, True, rank=rank, world_size=2),
            loader(store_url, False, rank=rank, world_size=2),
        )
    assert_same_batches(
        loader(store_url, True, shuffle=False), loader(store_url, False, shuffle=False)
    )
    first = loader(store_url, True)
    first.set_epoch(1)
    it = iter(first)
    done = [v for _ in range(4) for v in next(it)["ids"]]
    resumed = loader(store_url, True)
    resumed.load_state_dict(first.state_dict())
    ref = loader(store_url, False)
    ref.set_epoch(1)
    assert done + [v for b in resumed for v in b["ids"]] == [v for b in ref for v in b["ids"]]


def test_the_split_is_read_once_and_bad_rows_are_skipped_as_streaming_does(store_url, monkeypatch):
    original = FeatureStore.read_block
    reads = []

    def read_block(self, block, streams=None):
        batch = original(self, block, streams)
        reads.append(len(block))
        for i, vid in enumerate(batch.ids):
            if vid.endswith("-003"):
                batch.arrays["landmarks"][i, 0, 0, 0] = np.nan
            if vid.endswith("-005"):
                batch.labels[i] = -1
        return batch

    monkeypatch.setattr(FeatureStore, "read_block", read_block)
    held = loader(store_url, True)
    assert sum(reads) == 96, "one read of every train row"
    streamed = loader(store_url, False)
    assert_same_batches(held, streamed)
    assert sum(reads) == 96 + 2 * 96, "only streaming read again"
    assert len(held.skipped) == 16
    assert "non-finite" in held.skipped["train-002-003"]
    assert "unlabeled" in held.skipped["train-002-005"]


def test_a_feature_set_added_to_some_videos_matches_streaming(tmp_path):
    url = str(tmp_path / "sets.zarr")
    make_store(url, classes=4, per_class={"train": 8}, block_size=16)
    lacking = ("train-000-000", "train-002-005")
    add_features(open_store(url, "r+"), "alt", {"model_id": "alt"}, 12, skip=lacking)
    streams = ["alt", "landmarks", "landmark_mask"]
    aug = Augmenter(AugmentConfig(), LAYOUT["parts"], LAYOUT["sizes"])
    held = loader(url, True, streams=streams, augmenter=aug)
    assert_same_batches(held, loader(url, False, streams=streams, augmenter=aug))
    alt = held.dataset.arrays["alt"]
    assert alt.shape == (30, 4, 12) and alt.dtype == torch.float16
    nbytes = 30 * (4 * 12 * 2 + 4 * 75 * 3 * 4 + 4 * 3)
    assert split_nbytes(open_store(url), "train", streams) == nbytes


def test_auto_holds_the_split_only_when_it_fits(store_url, monkeypatch):
    store = open_store(store_url)
    nbytes = split_nbytes(store, "train", STREAMS)
    assert nbytes == 96 * (4 * 16 * 2 + 4 * 75 * 3 * 4 + 4 * 3)
    assert choose_in_memory("auto", nbytes, 4 * nbytes)[0]
    assert not choose_in_memory("auto", nbytes, 4 * nbytes - 1)[0]
    assert not choose_in_memory("auto", nbytes, 4 * nbytes, ranks_per_machine=2)[0]
    assert not choose_in_memory("auto", nbytes, None)[0], "unknown memory: stream"
    assert choose_in_memory("on", nbytes, None)[0]
    assert not choose_in_memory("off", nbytes, 10**12)[0]
    with pytest.raises(MemoryError, match="only"):
        choose_in_memory("on", nbytes, nbytes - 1)
    with pytest.raises(ValueError, match="auto"):
        choose_in_memory("yes", nbytes, nbytes)
    monkeypatch.setattr(in_memory.Path, "read_text", lambda self: "MemAvailable: 2048 kB\n")
    assert in_memory.available_memory() == 2048 * 1024


def test_training_in_memory_equals_streaming_and_logs_the_choice(tmp_path, capsys, monkeypatch):
    url = str(tmp_path / "ten.zarr")
    make_store(url, classes=10, per_class={"train": 8, "val": 4})
    fast = dict(batch_size=16, hidden_dim=32, workers=0, window_rows=40, progress=False)
    runs = {
        mode: train(
            TrainConfig(store=url, out=str(tmp_path / mode), epochs=2, data_in_memory=mode, **fast)
        )
        for mode in ("on", "off")
    }
    printed = capsys.readouterr().out
    assert "data: train and val in memory (--data-in-memory on;" in printed
    assert "data: train and val streaming (--data-in-memory off;" in printed
    for key in ("train_loss", "val_loss", "val_top1", "global_step"):
        assert runs["on"][key] == runs["off"][key], key

    for available, mode in ((10**12, "in memory"), (1000, "streaming")):
        monkeypatch.setattr(in_memory, "available_memory", lambda a=available: a)
        train(TrainConfig(store=url, out=str(tmp_path / "auto"), epochs=1, **fast))
        assert f"data: train and val {mode} (auto:" in capsys.readouterr().out
    argv = ["--store", url, "--out", str(tmp_path / "x"), "--data-in-memory", "on", "--epochs", "1"]
    assert train_main(argv) == 2
    assert "only 0 MiB available" in capsys.readouterr().err
