"""The featurestore CLI: output, exit codes and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from featurestore import create_store
from featurestore.cli import main
from tests.helpers import random_video, small_schema


@pytest.fixture
def url(tmp_path, rng):
    url = str(tmp_path / "c.zarr")
    store = create_store(url, small_schema())
    with store.writer() as w:
        w.put("a1", random_video(rng), label=0, split="train")
        w.put("b2", random_video(rng), label=1, split="val")
    return url


def test_info_json(url, capsys):
    assert main(["info", url, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["videos"] == 2 and info["splits"] == {"train": 1, "val": 1}


def test_ls_by_split(url, capsys):
    assert main(["ls", url, "--split", "val", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == [
        {"video_id": "b2", "label": 1, "gloss": "thankyou", "split": "val"}
    ]


def test_get_stream_to_npy(url, tmp_path):
    out = tmp_path / "g.npy"
    assert main(["get", url, "a1", "--stream", "gemma", "--out", str(out)]) == 0
    arr = np.load(out)
    assert arr.shape == (4, 8) and arr.dtype == np.float16


def test_verify_and_compact(url, capsys):
    assert main(["verify", url, "--quiet"]) == 0
    assert "0 problem(s)" in capsys.readouterr().out
    assert main(["compact", url, "--quiet"]) == 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (["get", "{url}", "missing"], "video 'missing' is not in store"),
        (["info", "{tmp}/nowhere.zarr"], "no feature store at"),
        (["get", "{url}", "a1", "--stream", "nope"], "unknown stream 'nope'"),
    ],
)
def test_errors_are_one_line_without_traceback(url, tmp_path, argv, message):
    argv = [a.format(url=url, tmp=tmp_path) for a in argv]
    proc = subprocess.run(
        [sys.executable, "-m", "featurestore", *argv], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
