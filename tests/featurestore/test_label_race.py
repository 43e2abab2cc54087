"""Many writers into one store at once, each bringing glosses no other has (issue 22).

Before labels were claimed through the metadata's generations, 13 imports of one gloss
each into one store landed 350 of 650 sequences, the store knew 6 of the 13 glosses and 50
videos carried a label naming another gloss. Here every process starts on one signal, so
their metadata changes collide, round after round, on Zarr, HDF5 and S3.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from featurestore import create_store, open_store
from featurestore.extract.synth import write_video
from tests.helpers import small_schema
from tests.importers.test_mpdata import write_tree

pytestmark = pytest.mark.slow

PROC = str(Path(__file__).with_name("race_proc.py"))
WRITERS = 8
SEQUENCES = 4


def start_together(go: Path, commands: list[list[str]]) -> list[str]:
    """Run the commands as children released at the same moment; their outputs."""
    procs = [
        subprocess.Popen(
            [sys.executable, PROC, str(go), *cmd],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for cmd in commands
    ]
    go.touch()
    outs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out
    go.unlink()
    return outs


def gloss_folders(root: Path, glosses: list[str]) -> list[Path]:
    """One mpdata tree per gloss: ``root/<gloss>-src/<gloss>/<n>/<t>.npy``."""
    out = []
    for k, gloss in enumerate(glosses):
        folder = root / f"{gloss}-src"
        write_tree(folder, {gloss: list(range(SEQUENCES))}, frames=5, seed=k)
        out.append(folder)
    return out


def import_command(folder: Path, url: str) -> list[str]:
    return ["featurestore", "import", "mpdata", str(folder), "--store", url, "--quiet"]


def assert_labels_name_their_glosses(url: str, glosses: list[str], per_gloss: int) -> None:
    store = open_store(url)
    labels = store.labels
    assert sorted(labels.values()) == sorted(glosses), "every gloss known, each once"
    assert len(set(labels)) == len(labels)
    counts = dict.fromkeys(glosses, 0)
    for vid in store.ids():
        e = store.entry(vid)
        assert labels[e.label] == e.gloss, f"{vid}: label {e.label} names {labels[e.label]!r}"
        counts[e.gloss] += 1
    assert counts == dict.fromkeys(glosses, per_gloss), "every sequence landed"
    assert store.verify() == []


def race_imports(tmp_path: Path, url_of, rounds: int) -> None:
    glosses = [f"sign{k}" for k in range(WRITERS)]
    folders = gloss_folders(tmp_path / "src", glosses)
    for r in range(rounds):
        url = url_of(r)
        start_together(tmp_path / "go", [import_command(f, url) for f in folders])
        assert_labels_name_their_glosses(url, glosses, SEQUENCES)
    before = {v: open_store(url).entry(v) for v in open_store(url).ids()}
    outs = start_together(tmp_path / "go", [import_command(f, url) for f in folders])
    assert all(f"0 imported, {SEQUENCES} skipped" in out for out in outs), outs
    after = open_store(url)
    assert {v: after.entry(v) for v in after.ids()} == before, "a rerun adds nothing"


@pytest.mark.parametrize("suffix", [".zarr", ".h5"])
def test_concurrent_imports_of_new_glosses_label_every_video_right(tmp_path, suffix):
    race_imports(tmp_path, lambda r: str(tmp_path / f"s{r}{suffix}"), rounds=3)


@pytest.mark.ray
def test_concurrent_imports_into_s3_label_every_video_right(tmp_path, monkeypatch):
    pytest.importorskip("moto")
    from tests.s3_server import shared_s3_server

    s3 = shared_s3_server()
    for key, value in s3.env.items():  # this process and its children reach the server
        monkeypatch.setenv(key, value)
    bucket = s3.make_bucket()
    race_imports(tmp_path, lambda r: f"s3://{bucket}/s{r}.zarr", rounds=2)


def write_clips(root: Path, glosses: list[str], per_gloss: int) -> list[Path]:
    """One folder of tiny synthetic clips per gloss: ``root/<gloss>-clips/<gloss>/<n>.mp4``."""
    rng = np.random.default_rng(0)
    out = []
    for gloss in glosses:
        folder = root / f"{gloss}-clips"
        for n in range(per_gloss):
            frames = rng.integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)
            write_video(folder / gloss / f"{gloss}-{n}.mp4", frames)
        out.append(folder)
    return out


def populate_command(folder: Path, url: str, *flags: str) -> list[str]:
    return ["featurestore", "populate", "--store", url, "--videos", str(folder), *flags]


def test_concurrent_populates_on_disjoint_glosses_label_every_video_right(tmp_path):
    glosses = [f"word{k}" for k in range(WRITERS)]
    url = str(tmp_path / "p.zarr")
    flags = ("--no-landmarks", "--encoder", "tiny-random", "--num-frames", "4", "--quiet")
    folders = write_clips(tmp_path / "clips", glosses, per_gloss=2)
    start_together(tmp_path / "go", [populate_command(f, url, *flags) for f in folders])
    assert_labels_name_their_glosses(url, glosses, 2)


def test_imports_and_populates_at_once_share_one_label_map(tmp_path):
    """Landmark-only stores take both: imported sequences and clips through MediaPipe."""
    half = WRITERS // 2
    glosses = [f"g{k}" for k in range(WRITERS)]
    url = str(tmp_path / "mix.zarr")
    sequences = gloss_folders(tmp_path / "src", glosses[:half])
    clips = write_clips(tmp_path / "clips", glosses[half:], per_gloss=SEQUENCES)
    flags = ("--no-encoder", "--num-frames", "5", "--workers", "1", "--quiet")
    commands = [[*import_command(f, url), "--num-frames", "5"] for f in sequences]
    commands += [populate_command(f, url, *flags) for f in clips]
    start_together(tmp_path / "go", commands)
    assert_labels_name_their_glosses(url, glosses, SEQUENCES)


def test_two_processes_registering_two_feature_sets_both_land(tmp_path):
    for r in range(4):
        url = str(tmp_path / f"f{r}.zarr")
        create_store(url, small_schema())
        start_together(
            tmp_path / "go",
            [["add-set", url, name, str(r)] for name in ("siglip", "signgemma", "clip", "dino")],
        )
        sets = open_store(url).schema.feature_sets
        assert sorted(sets) == ["clip", "dino", "siglip", "signgemma"]
        assert sets["clip"].encoder == {"model_id": "enc-clip", "seed": r}
