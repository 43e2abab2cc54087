"""Training and evaluation on a named feature set: `asl-train --features NAME` reads the
landmarks joined with that set (only the videos holding it), the checkpoint records the
set and its fingerprint, and `asl-eval` refuses a store that lacks it or holds it from
another encoder. Stores written before feature sets still open and train."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from featurestore import (
    GEMMA_STREAM,
    LANDMARK_MASK_STREAM,
    LANDMARKS_STREAM,
    fingerprint_digest,
    open_store,
)
from model import CheckpointError, load_checkpoint
from tests.training.stores import make_store
from training import TrainConfig, train
from training.cli import eval_main, train_main

DATA = Path(__file__).resolve().parents[1] / "featurestore" / "data"
FAST = dict(batch_size=16, hidden_dim=32, dropout=0.1, workers=0, window_rows=40, progress=False)
ALT = {"model_id": "alt-encoder", "revision": "1", "pooling": "mean_vision_patches"}
ALT_DIM, CLASSES = 12, 4
LACKING = ("train-000-000", "train-001-000")
"""Videos the added set is never written for: training must leave them out."""


def add_features(store, name: str, encoder: dict, dim: int, skip=(), seed: int = 1) -> None:
    """Feature set `name` for every video but `skip`: features near a per-class centre,
    written block by block as populate --add-features does."""
    rng = np.random.default_rng(seed)
    centres = 3 * rng.normal(size=(max(store.labels) + 1, dim))
    T = store.schema.num_frames
    store.add_feature_set(name, {**encoder, "feature_dim": dim}, (T, dim))
    with store.feature_writer(name) as w:
        for block in store.blocks():
            for vid in block.video_ids:
                if vid not in skip:
                    label = store.entry(vid).label
                    w.put(vid, centres[label] + 0.3 * rng.normal(size=(T, dim)))
            w.flush()


@pytest.fixture(scope="module")
def two_sets(tmp_path_factory) -> str:
    """Base gemma that carries no class signal, and an added set `alt` that does."""
    url = str(tmp_path_factory.mktemp("sets") / "two.zarr")
    make_store(url, classes=CLASSES, per_class={"train": 8, "val": 4, "test": 3}, noise=50.0)
    add_features(open_store(url, "r+"), "alt", ALT, ALT_DIM, skip=LACKING)
    return url


def run(store: str, out, **kw) -> dict:
    return train(TrainConfig(store=store, out=str(out), **{**FAST, **kw}))


def cli_error(argv, main, capsys) -> str:
    capsys.readouterr()
    assert main(argv) == 2
    return capsys.readouterr().err


def test_each_feature_set_trains_evaluates_and_is_recorded(two_sets, tmp_path, capsys):
    store = open_store(two_sets)
    alt = run(two_sets, tmp_path / "alt", epochs=6, modalities="visual", features="alt")
    base = run(two_sets, tmp_path / "gemma", epochs=6, modalities="visual")
    # only alt carries the classes, so only a model fed alt (and not gemma) learns them
    assert alt["best_val_top1"] >= 0.9 > base["best_val_top1"], (alt, base)
    assert alt["train_samples"] == CLASSES * 8 - len(LACKING)  # videos without alt left out
    assert base["train_samples"] == CLASSES * 8

    ckpt = load_checkpoint(tmp_path / "alt" / "best.pt")
    assert ckpt.features == "alt" and ckpt.config.gemma_dim == ALT_DIM
    assert ckpt.encoder == store.schema.fingerprint("alt")
    assert set(ckpt.streams) == {"alt"} and ckpt.streams["alt"]["shape"] == [4, ALT_DIM]
    gemma = load_checkpoint(tmp_path / "gemma" / "best.pt")
    assert gemma.features == GEMMA_STREAM and gemma.encoder == store.schema.encoder

    for name, run_result in (("alt", alt), ("gemma", base)):
        ckpt_path = str(tmp_path / name / "best.pt")
        argv = ["--store", two_sets, "--checkpoint", ckpt_path, "--split", "val"]
        assert eval_main([*argv, "--out", str(tmp_path / f"ev-{name}")]) == 0
        report = json.loads((tmp_path / f"ev-{name}" / "report.json").read_text())
        assert report["features"] == name and report["count"] == CLASSES * 4
        # asl-eval reads the same set as training did: the same validation score
        assert report["top1"] == pytest.approx(run_result["best_val_top1"])


def test_both_modalities_on_an_added_set_via_the_cli(two_sets, tmp_path):
    out = tmp_path / "both"
    argv = ["--store", two_sets, "--features", "alt", "--epochs", "1", "--out", str(out)]
    argv += ["--batch-size", "16", "--hidden-dim", "32", "--workers", "0", "--no-progress"]
    assert train_main(argv) == 0
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt.features == "alt"
    assert ckpt.input_streams == ["alt", LANDMARKS_STREAM, LANDMARK_MASK_STREAM]
    # landmarks only: no feature set is read or recorded, so none is required
    lm = tmp_path / "lm"
    run(two_sets, lm, epochs=1, modalities="landmarks", features="no-such-set")
    ckpt = load_checkpoint(lm / "last.pt")
    assert ckpt.features is None and ckpt.encoder == {}
    assert ckpt.input_streams == [LANDMARKS_STREAM, LANDMARK_MASK_STREAM]


def test_an_unknown_feature_set_is_refused_naming_the_sets_there(two_sets, tmp_path, capsys):
    argv = ["--store", two_sets, "--features", "siglip", "--out", str(tmp_path / "x")]
    err = cli_error(argv, train_main, capsys)
    assert "no feature set 'siglip'" in err and "['gemma', 'alt']" in err


def test_a_checkpoint_is_refused_by_a_store_with_only_the_other_set(two_sets, tmp_path, capsys):
    run(two_sets, tmp_path / "alt", epochs=1, features="alt")
    run(two_sets, tmp_path / "gemma", epochs=1)
    alt_ckpt, gemma_ckpt = str(tmp_path / "alt" / "last.pt"), str(tmp_path / "gemma" / "last.pt")

    only_gemma = tmp_path / "only-gemma.zarr"
    make_store(only_gemma, classes=CLASSES, per_class={"test": 2})
    err = cli_error(["--store", str(only_gemma), "--checkpoint", alt_ckpt], eval_main, capsys)
    assert "does not fit" in err and "feature set 'alt': missing from the store" in err

    only_alt = tmp_path / "only-alt.h5"
    lm_streams = (LANDMARKS_STREAM, LANDMARK_MASK_STREAM)
    make_store(only_alt, classes=CLASSES, per_class={"test": 2}, streams=lm_streams)
    add_features(open_store(str(only_alt), "r+"), "alt", ALT, ALT_DIM)
    assert eval_main(["--store", str(only_alt), "--checkpoint", alt_ckpt]) == 0
    err = cli_error(["--store", str(only_alt), "--checkpoint", gemma_ckpt], eval_main, capsys)
    assert "feature set 'gemma': missing from the store (its feature sets: ['alt'])" in err

    # the same name from another encoder: refused, with both digests and what differs
    other = tmp_path / "other-alt.zarr"
    make_store(other, classes=CLASSES, per_class={"test": 2})
    retrained = {**ALT, "revision": "2"}
    add_features(open_store(str(other), "r+"), "alt", retrained, ALT_DIM)
    err = cli_error(["--store", str(other), "--checkpoint", alt_ckpt], eval_main, capsys)
    have = open_store(str(other)).schema.fingerprint("alt")
    assert "feature set 'alt': encoder fingerprint differs" in err
    trained = load_checkpoint(alt_ckpt).encoder
    assert fingerprint_digest(have) in err and fingerprint_digest(trained) in err
    assert "revision: store '2', checkpoint '1'" in err
    # resuming on it is refused the same way
    argv = ["--store", str(other), "--train-split", "test", "--resume", alt_ckpt]
    err = cli_error([*argv, "--out", str(tmp_path / "r")], train_main, capsys)
    assert "incompatible" in err and "feature set 'alt'" in err


def test_resume_keeps_the_feature_set_of_the_checkpoint(two_sets, tmp_path):
    out = tmp_path / "run"
    run(two_sets, out, epochs=2, features="alt", max_steps=1)
    result = run(two_sets, out, epochs=2, resume=str(out / "last.pt"))  # no --features given
    assert result["global_step"] > 1
    assert load_checkpoint(out / "last.pt").features == "alt"


def test_a_features_flag_that_cannot_apply_is_named_not_silently_dropped(
    two_sets, tmp_path, capsys
):
    out = tmp_path / "run"
    run(two_sets, out, epochs=1, features="alt", max_steps=1)
    capsys.readouterr()
    run(two_sets, out, epochs=2, resume=str(out / "last.pt"), features="gemma2", max_steps=2)
    assert "--features gemma2 ignored: resuming keeps 'alt'" in capsys.readouterr().out
    run(two_sets, tmp_path / "lm", epochs=1, modalities="landmarks", features="alt", max_steps=1)
    assert "--features alt ignored: --modalities landmarks reads none" in capsys.readouterr().out


def test_a_checkpoint_from_before_feature_sets_means_gemma(two_sets, tmp_path):
    run(two_sets, tmp_path / "run", epochs=1)
    path = tmp_path / "run" / "best.pt"
    payload = torch.load(path, weights_only=True)
    del payload["features"]  # what files written before feature sets hold
    torch.save(payload, path)
    ckpt = load_checkpoint(path)
    assert ckpt.features == GEMMA_STREAM
    ckpt.check_store(open_store(two_sets))
    other = tmp_path / "only-alt.zarr"
    make_store(other, classes=CLASSES, per_class={"test": 2}, streams=(LANDMARKS_STREAM,))
    with pytest.raises(CheckpointError, match="feature set 'gemma': missing"):
        ckpt.check_store(open_store(str(other)))


@pytest.mark.parametrize("name", ["store_v1.zarr", "store_v1.h5"])
def test_a_store_written_before_feature_sets_opens_trains_and_takes_one(name, tmp_path):
    url = tmp_path / name
    copy = shutil.copytree if (DATA / name).is_dir() else shutil.copy
    copy(DATA / name, url)
    result = run(str(url), tmp_path / "old", epochs=1, val_split="test", batch_size=4)
    assert result["global_step"] >= 1
    ckpt = load_checkpoint(tmp_path / "old" / "best.pt")
    assert ckpt.features == GEMMA_STREAM and ckpt.encoder == open_store(str(url)).schema.encoder
    argv = ["--store", str(url), "--checkpoint", str(tmp_path / "old" / "best.pt")]
    assert eval_main(argv) == 0
    # an encoder's features added to it train like the base set
    add_features(open_store(str(url), "r+"), "alt", ALT, ALT_DIM)
    run(str(url), tmp_path / "alt", epochs=1, val_split="test", batch_size=4, features="alt")
    assert load_checkpoint(tmp_path / "alt" / "best.pt").features == "alt"


@pytest.mark.slow
def test_populate_add_features_then_each_set_trains_evaluates_and_is_refused_elsewhere(
    tmp_path, capsys
):
    """The issue's flow with real extraction: tiny-random populate, a second set from the
    same model pooled before the projector (another fingerprint, 32-d not 48-d)."""
    from featurestore.extract import add_features as add_set
    from featurestore.extract import populate, read_manifest, synthesize

    entries = read_manifest(synthesize(tmp_path / "clips", 2, 4, frames=12, size=(64, 64)))
    both = str(tmp_path / "both.zarr")
    populate(both, entries, "tiny-random", num_frames=4, workers=1, progress=False)
    add_set(both, "patches", "tiny-random", pooling="mean_vision_patches", progress=False)
    only_patches = str(tmp_path / "patches.zarr")
    populate(only_patches, entries, None, num_frames=4, workers=1, progress=False)
    add_set(only_patches, "patches", "tiny-random", pooling="mean_vision_patches", progress=False)
    only_gemma = str(tmp_path / "gemma.zarr")
    shutil.copytree(both, only_gemma)
    open_store(only_gemma, "r+").drop_feature_set("patches")

    fast = ["--batch-size", "16", "--hidden-dim", "32", "--workers", "0", "--no-progress"]
    for name, other in (("gemma", only_patches), ("patches", only_gemma)):
        out = tmp_path / name
        argv = ["--store", both, "--features", name, "--epochs", "1", "--out", str(out)]
        assert train_main([*argv, *fast]) == 0
        ckpt = load_checkpoint(out / "best.pt")
        assert ckpt.features == name
        assert ckpt.encoder == open_store(both).schema.fingerprint(name)
        assert eval_main(["--store", both, "--checkpoint", str(out / "best.pt")]) == 0
        err = cli_error(["--store", other, "--checkpoint", str(out / "best.pt")], eval_main, capsys)
        assert f"feature set {name!r}: missing from the store" in err
    widths = {
        n: load_checkpoint(tmp_path / n / "best.pt").config.gemma_dim for n in ("gemma", "patches")
    }
    assert widths == {"gemma": 48, "patches": 32}
