"""The README's first command, end to end on a tiny set: every step's output is checked."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from featurestore import open_store

DEMO = Path(__file__).resolve().parents[1] / "scripts" / "demo.py"


def load_demo():
    spec = importlib.util.spec_from_file_location("demo", DEMO)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_demo_end_to_end_and_rerun(tmp_path):
    torch.manual_seed(0)
    demo = load_demo()
    out = tmp_path / "demo"
    args = [
        "--out",
        str(out),
        "--classes",
        "3",
        "--per-class",
        "6",
        "--epochs",
        "3",
        "--workers",
        "1",
    ]
    result = demo.main(args)

    store = open_store(result["store"])
    assert store.verify() == []
    assert len(store) == 18 and set(store.splits()) == {"train", "val", "test"}
    glosses = set(store.labels.values())

    from model import load_checkpoint

    ckpt = load_checkpoint(result["checkpoint"])
    store.check_compatible(encoder=ckpt.encoder, num_frames=ckpt.num_frames, streams=ckpt.streams)
    assert 0.0 <= result["report"]["top1"] <= 1.0

    by_id = result["served"]["by_id"]["predictions"][0]
    assert by_id["video_id"] == result["test_row"]["video_id"]
    assert by_id["top_k"][0]["gloss"] in glosses
    assert result["served"]["page"] and result["page_url"] == "http://127.0.0.1:8000/"
    upload = result["served"]["upload"]["predictions"][0]
    assert upload["top_k"][0]["gloss"] in glosses
    assert abs(sum(p["prob"] for p in upload["top_k"]) - 1.0) < 1e-3  # top-3 of 3 classes

    # a rerun reuses the clips, the store and the checkpoint
    again = demo.main([*args, "--no-serve"])
    assert again["checkpoint"] == result["checkpoint"]
    assert len(open_store(again["store"])) == 18
