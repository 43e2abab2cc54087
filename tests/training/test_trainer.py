"""Training against the store: it learns, writes its outputs, resumes exactly, runs under
torchrun, and turns bad input into clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from featurestore import open_store
from model import load_checkpoint
from tests.training.stores import class_video, make_store
from training import DataError, TrainConfig, train
from training.cli import eval_main, train_main

ROOT = Path(__file__).resolve().parents[2]
FAST = dict(batch_size=16, hidden_dim=32, dropout=0.1, workers=0, window_rows=40, progress=False)


@pytest.fixture(scope="module")
def store_url(tmp_path_factory):
    url = tmp_path_factory.mktemp("train") / "ten.zarr"
    make_store(url, classes=10, per_class={"train": 8, "val": 4, "test": 2})
    return str(url)


def run(store, out, **kw) -> dict:
    return train(TrainConfig(store=store, out=str(out), **{**FAST, **kw}))


def put_video(store, video_id: str, label: int, gloss: str, split: str, seed: int = 0) -> None:
    """One more video of class ``label`` (T = 4, dim 16) beside those make_store wrote."""
    rng = np.random.default_rng(seed)
    arrays = class_video(rng, label, 4, 16, rng.normal(size=(10, 16)))
    with store.writer() as w:
        w.put(video_id, arrays, label=label, gloss=gloss, split=split)


def test_reaches_90_percent_val_top1_on_10_classes_and_writes_outputs(store_url, tmp_path, capsys):
    out = tmp_path / "run"
    result = run(store_url, out, epochs=10, hidden_dim=64)
    printed = capsys.readouterr().out
    assert "trainable parameters" in printed and "samples/s" in printed
    assert result["best_val_top1"] >= 0.9, result
    for name in (
        "best.pt",
        "last.pt",
        "label_mapping.json",
        "metrics.jsonl",
        "loss.png",
        "accuracy.png",
    ):
        assert (out / name).stat().st_size > 0, name
    assert json.loads((out / "label_mapping.json").read_text()) == {
        str(c): f"sign{c}" for c in range(10)
    }
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == list(range(10))
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert all(h["train_samples"] == 80 and h["val_samples"] == 40 for h in history)

    best = load_checkpoint(out / "best.pt")
    assert (
        best.labels[3] == "sign3"
        and best.num_frames == 4
        and best.encoder["model_id"] == "synthetic-test"
    )
    assert best.metrics["val_top1"] == result["best_val_top1"]
    # asl-eval on the same split reproduces the checkpoint's own validation score
    assert (
        eval_main(
            [
                "--store",
                store_url,
                "--checkpoint",
                str(out / "best.pt"),
                "--split",
                "val",
                "--out",
                str(tmp_path / "ev"),
            ]
        )
        == 0
    )
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert report["count"] == 40 and report["top1"] == pytest.approx(best.metrics["val_top1"])
    assert report["top5"] >= report["top1"]
    assert set(report["per_class"]) == {f"sign{c}" for c in range(10)}
    assert np.array(report["confusion"]).sum() == 40
    assert (tmp_path / "ev" / "confusion.png").stat().st_size > 0


def test_resume_continues_from_the_saved_step_and_matches_an_uninterrupted_run(store_url, tmp_path):
    whole = run(store_url, tmp_path / "whole", epochs=2)
    stopped = run(store_url, tmp_path / "cut", epochs=2, max_steps=3)
    assert stopped["stopped"] == "max_steps" and stopped["global_step"] == 3
    state = load_checkpoint(tmp_path / "cut" / "last.pt").state
    assert (state["global_step"], state["epoch"], state["epoch_step"]) == (3, 0, 3)
    assert state["loader"]["window"] * 40 + state["loader"]["offset"] == 3 * 16

    resumed = run(store_url, tmp_path / "cut", epochs=2, resume=str(tmp_path / "cut" / "last.pt"))
    assert resumed["global_step"] == whole["global_step"] == 10
    assert resumed["val_top1"] == whole["val_top1"]
    a = load_checkpoint(tmp_path / "whole" / "last.pt").model.state_dict()
    b = load_checkpoint(tmp_path / "cut" / "last.pt").model.state_dict()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6, msg=k)
    epochs = [
        json.loads(line)["epoch"]
        for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    ]
    assert epochs == [0, 1]


@pytest.mark.parametrize(
    "fusion,modalities",
    [("attention", "both"), ("gated", "both"), ("concat", "landmarks"), ("concat", "visual")],
)
def test_every_fusion_and_modality_trains(store_url, tmp_path, fusion, modalities):
    result = run(store_url, tmp_path, epochs=1, fusion_type=fusion, modalities=modalities)
    ckpt = load_checkpoint(tmp_path / "last.pt")
    assert ckpt.config.fusion_type == fusion and ckpt.config.modalities == modalities
    expected = {
        "both": {"gemma", "landmarks", "landmark_mask"},
        "landmarks": {"landmarks", "landmark_mask"},
        "visual": {"gemma"},
    }
    assert set(ckpt.streams) == expected[modalities]
    assert np.isfinite(result["train_loss"])


# -- bad input ---------------------------------------------------------------------------


def cli_error(argv, main=train_main, capsys=None) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


def test_empty_split_is_a_clear_error(store_url, tmp_path, capsys):
    err = cli_error(
        ["--store", store_url, "--train-split", "nope", "--out", str(tmp_path)], capsys=capsys
    )
    assert "split 'nope'" in err and "empty or missing" in err and "train" in err
    err = cli_error(
        ["--store", store_url, "--checkpoint", "x.pt", "--split", "nope"], eval_main, capsys
    )
    assert "x.pt" in err


def test_store_without_labels_is_a_clear_error(tmp_path):
    url = tmp_path / "unlabeled.zarr"
    make_store(url, classes=3, per_class={"train": 2}, labelled=False)
    with pytest.raises(DataError, match="no labels"):
        run(str(url), tmp_path / "out", epochs=1)


def test_store_without_a_stream_the_modality_needs(tmp_path):
    url = tmp_path / "lm-only.zarr"
    make_store(url, classes=3, per_class={"train": 2}, streams=("landmarks", "landmark_mask"))
    with pytest.raises(DataError, match="--modalities landmarks"):
        run(str(url), tmp_path / "out", epochs=1)
    run(str(url), tmp_path / "out", epochs=1, modalities="landmarks")


def test_classes_in_val_missing_from_train_are_warned_and_reported(tmp_path, capsys):
    url = tmp_path / "gap.zarr"
    store = make_store(url, classes=4, per_class={"train": 2, "val": 1})
    store.set_labels({4: "only-in-val"})
    put_video(store, "val-extra", 4, "only-in-val", "val")
    run(str(url), tmp_path / "out", epochs=1)
    assert "only-in-val" in capsys.readouterr().out
    report = load_checkpoint(tmp_path / "out" / "last.pt").metrics["split_report"]
    assert report["val_classes_missing_in_train"] == {"4": "only-in-val"}


def test_checkpoint_of_another_encoder_is_refused(store_url, tmp_path, capsys):
    run(store_url, tmp_path / "a", epochs=1)
    other = tmp_path / "other.zarr"
    store = make_store(other, classes=10, per_class={"train": 2, "test": 1})
    assert (
        store.schema.encoder == open_store(store_url).schema.encoder
    )  # same fingerprint: accepted
    assert (
        eval_main(
            [
                "--store",
                str(other),
                "--checkpoint",
                str(tmp_path / "a" / "best.pt"),
                "--split",
                "test",
            ]
        )
        == 0
    )
    capsys.readouterr()
    foreign = tmp_path / "foreign.h5"
    s = make_store(foreign, classes=10, per_class={"test": 1}, dim=24)
    assert s.schema.encoder["feature_dim"] == 24
    err = cli_error(
        ["--store", str(foreign), "--checkpoint", str(tmp_path / "a" / "best.pt")],
        eval_main,
        capsys,
    )
    assert "encoder fingerprint" in err and "does not fit" in err
    err = cli_error(
        [
            "--store",
            str(foreign),
            "--train-split",
            "test",
            "--resume",
            str(tmp_path / "a" / "last.pt"),
            "--out",
            str(tmp_path / "b"),
        ],
        capsys=capsys,
    )
    assert "incompatible" in err


def test_non_finite_loss_stops_the_run_naming_the_videos(store_url, tmp_path, monkeypatch):
    import training.trainer

    def nan_logits(model, batch, visual):
        return torch.full((batch["label"].shape[0], 10), float("nan"), requires_grad=True)

    monkeypatch.setattr(training.trainer, "forward", nan_logits)
    with pytest.raises(FloatingPointError, match=r"non-finite loss at step 0 \(videos \['"):
        run(store_url, tmp_path / "nan", epochs=1)


def test_resume_from_missing_corrupt_or_stateless_checkpoint(store_url, tmp_path, capsys):
    base = ["--store", store_url, "--out", str(tmp_path / "o"), "--workers", "0", "--no-progress"]
    err = cli_error([*base, "--resume", str(tmp_path / "missing.pt")], capsys=capsys)
    assert "missing.pt does not exist" in err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    err = cli_error([*base, "--resume", str(bad)], capsys=capsys)
    assert "unreadable" in err
    run(store_url, tmp_path / "a", epochs=1)
    err = cli_error([*base, "--resume", str(tmp_path / "a" / "best.pt")], capsys=capsys)
    assert "no training state" in err


# -- DDP and end to end -------------------------------------------------------------------


@pytest.mark.slow
def test_torchrun_two_processes_on_cpu_agree_with_one(tmp_path):
    """81 training rows: rank 0 gets 41, rank 1 gets 40, so rank 1 takes one zero-weight
    step per epoch to keep DDP in lockstep."""
    store_url = str(tmp_path / "odd.zarr")
    store = make_store(store_url, classes=10, per_class={"train": 8, "val": 4})
    put_video(store, "train-extra", 2, "sign2", "train", seed=1)
    args = ["--store", store_url, "--epochs", "8", "--batch-size", "16", "--hidden-dim", "64",
            "--dropout", "0.1", "--workers", "1", "--window-rows", "20", "--no-progress"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    single = subprocess.run(
        [sys.executable, "-m", "training", *args, "--out", str(tmp_path / "one"), "--json", str(tmp_path / "one.json")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert single.returncode == 0, single.stderr[-2000:]
    ddp = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "training",
         *args, "--out", str(tmp_path / "two"), "--json", str(tmp_path / "two.json")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert ddp.returncode == 0, ddp.stderr[-2000:]
    one, two = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("one", "two"))
    assert one["global_step"] == two["global_step"] == 8 * 6
    assert two["train_samples"] == one["train_samples"] == 81  # every row, counted over both ranks
    assert two["val_samples"] == one["val_samples"] == 40
    assert abs(one["val_top1"] - two["val_top1"]) <= 0.1
    assert abs(one["val_loss"] - two["val_loss"]) <= 0.25 * one["val_loss"] + 0.05
    assert one["val_top1"] >= 0.85 and two["val_top1"] >= 0.85


@pytest.fixture(scope="module")
def populated_url(tmp_path_factory):
    """`featurestore synth` clips populated with the tiny-random encoder (and landmarks)."""
    extract = pytest.importorskip("featurestore.extract")
    root = tmp_path_factory.mktemp("e2e")
    manifest = extract.synthesize(root / "clips", classes=10, per_class=40, seed=0)
    url = str(root / "synth.zarr")
    cli = [sys.executable, "-m", "featurestore", "populate", "--store", url, "--manifest", str(manifest),
           "--encoder", "tiny-random", "--num-frames", "8", "--quiet"]  # fmt: skip
    done = subprocess.run(cli, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    return url


@pytest.mark.slow
def test_end_to_end_synth_populate_train_eval(populated_url, tmp_path):
    store = open_store(populated_url)
    assert len(store.labels) == 10 and store.splits()["val"] == 60
    result = run(populated_url, tmp_path / "run", epochs=5, hidden_dim=64, patience=0)
    history = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert result["train_samples"] == store.splits()["train"]
    ckpt = load_checkpoint(tmp_path / "run" / "best.pt")
    assert ckpt.encoder == store.schema.encoder and ckpt.num_frames == 8
    assert (
        eval_main(
            [
                "--store",
                populated_url,
                "--checkpoint",
                str(tmp_path / "run" / "best.pt"),
                "--out",
                str(tmp_path / "ev"),
            ]
        )
        == 0
    )
    assert (
        json.loads((tmp_path / "ev" / "report.json").read_text())["count"] == store.splits()["test"]
    )


@pytest.mark.slow
def test_synth_populate_reaches_90_percent_val_top1(populated_url, tmp_path):
    """The issue's bar: 10 synthetic classes, populated with tiny-random and MediaPipe,
    trained from the store with augmentation on and asl-train's defaults (lr, epochs,
    batch, dropout, window), >= 90% val top-1 (60 val clips)."""
    result = run(populated_url, tmp_path / "run", batch_size=32, hidden_dim=64, dropout=0.3,
                 window_rows=512, patience=0)  # fmt: skip
    assert result["best_val_top1"] >= 0.9, result


@pytest.mark.parametrize("workers", [0, 2])
def test_a_run_streaming_the_store_finishes_when_it_is_compacted_mid_run(
    tmp_path, monkeypatch, workers
):
    """Issue 22: the old segments go at once (grace 0) after epoch 1; later epochs read
    blocks of the old index, and the readers re-read the index instead of dying."""
    from training import trainer as trainer_module

    url = str(tmp_path / "c.zarr")
    make_store(url, classes=4, per_class={"train": 6, "val": 2, "test": 0}, block_size=4)
    end_epoch = trainer_module.Trainer._end_epoch
    compacted = []

    def compact_after_first(self, *args, **kwargs):
        if not compacted:
            compacted.append(open_store(url, "r+").compact(grace_s=0))
        return end_epoch(self, *args, **kwargs)

    monkeypatch.setattr(trainer_module.Trainer, "_end_epoch", compact_after_first)
    result = run(url, tmp_path / "run", epochs=3, data_in_memory="off", workers=workers)
    assert compacted and compacted[0]["segments_removed"] >= 1
    assert result["epoch"] == 2 and result["train_samples"] == 24, result  # 0-based: 3 epochs
