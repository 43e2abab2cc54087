"""The default model learns real signs: the traduttore ASL landmarks (where
../shared/data/landmarks holds them), trained on two people, tested on a third."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from featurestore import import_dataset, open_store
from model import load_checkpoint
from training import TrainConfig, train

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "landmarks"
ZIP, RECORDERS = SHARED / "traduttore-asl-mpdata.zip", SHARED / "traduttore-recorders.csv"


@pytest.mark.slow
def test_default_model_recognises_a_signer_it_never_saw(tmp_path):
    """Train on TheCamNelson and Alex (2,188 clips), test on dmohazab's 2,220 clips of the
    glosses they also recorded. The first model reached 54% here after 50 epochs; the
    default model passes 70% after 10 epochs (77%; 80.5% with the default 50,
    benchmarks/real_signs.py)."""
    if not (ZIP.is_file() and RECORDERS.is_file()):
        pytest.skip(f"the traduttore landmarks are not on this machine ({SHARED})")
    url = str(tmp_path / "recorder.zarr")
    import_dataset(
        "mpdata", [ZIP], url, signers=RECORDERS, test_signers=["dmohazab"], progress=False
    )
    out = tmp_path / "run"
    train(TrainConfig(store=url, modalities="landmarks", epochs=10, out=str(out), progress=False))

    store = open_store(url)
    known = {store.entry(v).label for v in store.ids("train")}
    test = [b for b in store.iter_batches("test", 512, ["landmarks", "landmark_mask"])]
    labels = np.concatenate([b.labels for b in test])
    model = load_checkpoint(out / "best.pt").model
    _, top = model.predict(
        None,
        torch.from_numpy(np.concatenate([b.arrays["landmarks"] for b in test])),
        torch.from_numpy(np.concatenate([b.arrays["landmark_mask"] for b in test])),
        top_k=1,
    )
    keep = np.isin(labels, list(known))
    assert keep.sum() == 2220
    top1 = float((top[:, 0].numpy()[keep] == labels[keep]).mean())
    assert top1 >= 0.70, top1
