"""``featurestore import mpdata``: <gloss>/<sequence>/<frame>.npy trees, as folders or zips."""

import csv
import zipfile
from pathlib import Path

import numpy as np
import pytest

from featurestore import SchemaMismatchError, import_dataset, open_store
from featurestore.cli import main
from featurestore.extract import FACE_SUBSET, landmark_layout

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "landmarks"


def frame_vector(rng, width: int, missing: tuple[str, ...] = ()) -> np.ndarray:
    """One MediaPipe vector; parts named in ``missing`` are zeros, as the datasets write them."""
    v = rng.uniform(0.05, 0.95, width)
    spans = {
        1662: {
            "pose": (0, 132),
            "face": (132, 1536),
            "left_hand": (1536, 1599),
            "right_hand": (1599, 1662),
        },
        258: {"pose": (0, 132), "left_hand": (132, 195), "right_hand": (195, 258)},
        126: {"left_hand": (0, 63), "right_hand": (63, 126)},
    }[width]
    for part in missing:
        lo, hi = spans[part]
        v[lo:hi] = 0
    return v


def write_tree(root: Path, sequences: dict, width: int = 258, frames: int = 6, seed: int = 0):
    """``{gloss: [sequence names]}`` -> a tree of random frames; returns the vectors written."""
    rng = np.random.default_rng(seed)
    written = {}
    for gloss, names in sequences.items():
        for name in names:
            folder = root / gloss / str(name)
            folder.mkdir(parents=True, exist_ok=True)
            vectors = np.stack([frame_vector(rng, width) for _ in range(frames)])
            for t, v in enumerate(vectors):
                np.save(folder / f"{t}.npy", v)
            written[(gloss, str(name))] = vectors
    return written


def zip_tree(folder: Path, out: Path, inner: str = "MP_Data") -> Path:
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for path in sorted(folder.rglob("*")):
            z.write(path, f"{inner}/{path.relative_to(folder).as_posix()}")
    return out


def assert_one_split_per_signer(store) -> None:
    """No signer in two splits, and all three splits used."""
    split_of = {}
    for v in store.ids():
        e = store.entry(v)
        split_of.setdefault(e.source["signer"], set()).add(e.split)
    assert all(len(s) == 1 for s in split_of.values()), split_of
    assert set().union(*split_of.values()) == {"train", "val", "test"}


def by_member(store) -> dict:
    return {store.entry(v).source["member"]: store.get(v) for v in store.ids()}


def test_round_trip_258_matches_the_source(tmp_path):
    written = write_tree(tmp_path / "data", {"hello": [0, 1], "yes": [0]})
    summary = import_dataset("mpdata", [tmp_path / "data"], tmp_path / "s.zarr", progress=False)
    assert (summary.imported, summary.failed, summary.num_frames) == (3, 0, 6)
    assert summary.layout == {"258": 3}
    store = open_store(tmp_path / "s.zarr")
    assert store.schema.landmark_layout == landmark_layout(False)
    for (gloss, name), vectors in written.items():
        video = by_member(store)[f"{gloss}/{name}"]
        assert video.gloss == gloss
        pts = video.arrays["landmarks"]
        np.testing.assert_allclose(
            pts[:, :33], vectors[:, :132].reshape(6, 33, 4)[..., :3], rtol=1e-6
        )
        np.testing.assert_allclose(pts[:, 33:54], vectors[:, 132:195].reshape(6, 21, 3), rtol=1e-6)
        np.testing.assert_allclose(pts[:, 54:], vectors[:, 195:].reshape(6, 21, 3), rtol=1e-6)
        assert video.arrays["landmark_mask"].all()
        assert video.source["layout"] == "258" and video.source["frames"] == 6


def test_126_values_have_no_pose_and_zero_hands_are_missing(tmp_path):
    root = tmp_path / "data" / "a" / "0"
    root.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for t in range(4):
        np.save(root / f"{t}.npy", frame_vector(rng, 126, ("right_hand",) if t % 2 else ()))
    import_dataset(
        "mpdata", [tmp_path / "data"], tmp_path / "s.zarr", split="train", progress=False
    )
    video = open_store(tmp_path / "s.zarr").get(open_store(tmp_path / "s.zarr").ids()[0])
    mask = video.arrays["landmark_mask"]
    assert not mask[:, 0].any()  # pose
    assert mask[:, 1].all()  # left hand
    assert mask[:, 2].tolist() == [True, False, True, False]
    assert (video.arrays["landmarks"][:, :33] == 0).all()
    assert (video.arrays["landmarks"][1, 54:] == 0).all()
    assert video.source["layout"] == "126"


def test_1662_values_map_pose_hands_and_face(tmp_path):
    root = tmp_path / "data" / "a" / "0"
    root.mkdir(parents=True)
    v = frame_vector(np.random.default_rng(2), 1662)
    for t in range(3):
        np.save(root / f"{t}.npy", v)
    import_dataset("mpdata", [tmp_path / "data"], tmp_path / "f.zarr", face=True, progress=False)
    import_dataset("mpdata", [tmp_path / "data"], tmp_path / "n.zarr", progress=False)
    with_face = open_store(tmp_path / "f.zarr")
    assert with_face.schema.landmark_layout == landmark_layout(True)
    pts = with_face.get(with_face.ids()[0]).arrays["landmarks"][0]
    np.testing.assert_allclose(pts[:33], v[:132].reshape(33, 4)[:, :3], rtol=1e-6)
    np.testing.assert_allclose(pts[75:], v[132:1536].reshape(468, 3)[list(FACE_SUBSET)], rtol=1e-6)
    np.testing.assert_allclose(pts[33:54], v[1536:1599].reshape(21, 3), rtol=1e-6)
    np.testing.assert_allclose(pts[54:75], v[1599:].reshape(21, 3), rtol=1e-6)
    without = open_store(tmp_path / "n.zarr")
    assert without.get(without.ids()[0]).arrays["landmarks"].shape == (3, 75, 3)
    # a later import into the face store keeps the face without being told again
    (tmp_path / "data" / "b" / "0").mkdir(parents=True)
    for t in range(3):
        np.save(tmp_path / "data" / "b" / "0" / f"{t}.npy", v)
    import_dataset("mpdata", [tmp_path / "data"], tmp_path / "f.zarr", progress=False)
    again = open_store(tmp_path / "f.zarr")
    assert len(again) == 2 and again.schema.landmark_layout == landmark_layout(True)


def test_resampled_to_t_and_short_sequences_padded(tmp_path):
    write_tree(tmp_path / "long", {"a": [0]}, frames=9)
    write_tree(tmp_path / "short", {"a": [0]}, frames=2, seed=1)
    summary = import_dataset(
        "mpdata",
        [tmp_path / "long", tmp_path / "short"],
        tmp_path / "s.zarr",
        num_frames=5,
        progress=False,
    )
    assert summary.imported == 2 and summary.num_frames == 5
    store = open_store(tmp_path / "s.zarr")
    videos = [store.get(v) for v in store.ids()]
    assert {v.source["frames"] for v in videos} == {9, 2}
    for v in videos:
        pts = v.arrays["landmarks"]
        assert pts.shape == (5, 75, 3)
        if v.source["frames"] == 2:
            np.testing.assert_array_equal(pts[1], pts[4])  # padded with the last frame
            assert not np.array_equal(pts[0], pts[1])


def test_default_t_is_16_when_lengths_disagree(tmp_path):
    write_tree(tmp_path / "d", {"a": [0]}, frames=9)
    write_tree(tmp_path / "d", {"b": [0]}, frames=7)
    assert (
        import_dataset("mpdata", [tmp_path / "d"], tmp_path / "s.zarr", progress=False).num_frames
        == 16
    )


def test_unicode_glosses_kept_as_written(tmp_path):
    glosses = ["thank you", "what's up", "ñandú", "谢谢", "-"]
    write_tree(tmp_path / "d", {g: [0, 1] for g in glosses})
    import_dataset("mpdata", [tmp_path / "d"], tmp_path / "s.zarr", progress=False)
    store = open_store(tmp_path / "s.zarr")
    assert sorted(store.labels.values()) == sorted(glosses)
    assert len(store) == 10
    assert {store.entry(v).gloss for v in store.ids()} == set(glosses)


def test_ids_unique_and_stable_across_sources_with_the_same_names(tmp_path):
    for side in ("a", "b"):
        write_tree(tmp_path / side / "MP_Data", {"hello": [0, 1]})
    sources = [tmp_path / "a" / "MP_Data", tmp_path / "b" / "MP_Data"]
    first = import_dataset("mpdata", sources, tmp_path / "s.zarr", progress=False)
    assert first.imported == 4
    ids = open_store(tmp_path / "s.zarr").ids()
    assert len(set(ids)) == 4
    again = import_dataset("mpdata", sources, tmp_path / "s.zarr", progress=False)
    assert (again.imported, again.skipped) == (0, 4)
    import_dataset("mpdata", sources, tmp_path / "t.zarr", progress=False)
    assert open_store(tmp_path / "t.zarr").ids() == ids


def test_an_id_taken_by_another_source_is_an_error_naming_both(tmp_path):
    write_tree(tmp_path / "a" / "data", {"hello": [0]})
    write_tree(tmp_path / "b" / "data", {"hello": [0]})
    import_dataset("mpdata", [tmp_path / "a" / "data"], tmp_path / "s.zarr", progress=False)
    with pytest.raises(ValueError, match="already in") as err:
        import_dataset("mpdata", [tmp_path / "b" / "data"], tmp_path / "s.zarr", progress=False)
    assert str(tmp_path / "a" / "data") in str(err.value) and str(tmp_path / "b") in str(err.value)
    assert len(open_store(tmp_path / "s.zarr")) == 1


def test_split_flag_and_stratified_splits(tmp_path):
    write_tree(tmp_path / "d", {"a": range(20), "b": range(10)}, frames=2)
    import_dataset("mpdata", [tmp_path / "d"], tmp_path / "one.zarr", split="val", progress=False)
    assert open_store(tmp_path / "one.zarr").splits() == {"val": 30}
    import_dataset("mpdata", [tmp_path / "d"], tmp_path / "s.zarr", seed=3, progress=False)
    store = open_store(tmp_path / "s.zarr")
    per_gloss = {}
    for v in store.ids():
        e = store.entry(v)
        per_gloss.setdefault(e.gloss, []).append(e.split)
    assert sorted(per_gloss["a"]).count("test") == 3 and per_gloss["a"].count("val") == 3
    assert per_gloss["b"].count("test") == 2 and per_gloss["b"].count("val") == 2
    import_dataset("mpdata", [tmp_path / "d"], tmp_path / "t.zarr", seed=3, progress=False)
    other = open_store(tmp_path / "t.zarr")
    assert [other.entry(v).split for v in other.ids()] == [
        store.entry(v).split for v in store.ids()
    ]


def _signers_csv(path: Path, rows) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["gloss", "sequence", "recorded_by"])
        w.writerows(rows)
    return path


def test_splits_by_signer_keep_each_signer_in_one_split(tmp_path):
    write_tree(tmp_path / "d", {"a": range(12), "b": range(12)}, frames=2)
    people = ["ann", "bob", "cem", "dee"]
    csv_path = _signers_csv(
        tmp_path / "s.csv", [(g, n, people[n % 4]) for g in "ab" for n in range(12)]
    )
    import_dataset(
        "mpdata",
        [tmp_path / "d"],
        tmp_path / "s.zarr",
        split_by="signer",
        signers=csv_path,
        progress=False,
    )
    assert_one_split_per_signer(open_store(tmp_path / "s.zarr"))

    import_dataset(
        "mpdata",
        [tmp_path / "d"],
        tmp_path / "t.zarr",
        signers=csv_path,
        test_signers=["bob"],
        progress=False,
    )
    store = open_store(tmp_path / "t.zarr")
    for v in store.ids():
        e = store.entry(v)
        assert (e.split == "test") == (e.source["signer"] == "bob")
    assert store.splits()["val"] > 0


def test_bad_input_is_recorded_and_the_rest_lands(tmp_path):
    root = tmp_path / "d"
    write_tree(root, {"good": [0, 1], "bad": ["width", "gap", "junk", "nan", "empty"]}, frames=3)
    np.save(root / "bad" / "width" / "1.npy", np.ones(200))
    (root / "bad" / "gap" / "1.npy").unlink()
    (root / "bad" / "junk" / "2.npy").write_bytes(b"not a numpy file")
    v = np.load(root / "bad" / "nan" / "0.npy")
    v[140] = np.nan
    np.save(root / "bad" / "nan" / "0.npy", v)
    for f in (root / "bad" / "empty").iterdir():
        f.unlink()
    (root / "good" / "0" / "notes.txt").write_text("hi")
    (root / "nothing").mkdir()
    summary = import_dataset("mpdata", [root], tmp_path / "s.zarr", split="train", progress=False)
    store = open_store(tmp_path / "s.zarr")
    assert summary.imported == 2 and len(store) == 2
    reasons = "\n".join(f"{k}: {v}" for k, v in summary.failures.items())
    assert "width/1.npy: frame has shape (200,)" in reasons
    assert "frame 1.npy is missing" in reasons
    assert "junk/2.npy: not a .npy file" in reasons
    assert "NaN or inf in left_hand of frame 0" in reasons
    assert "empty: empty folder" in reasons
    assert "notes.txt: not a .npy file" in reasons
    assert "nothing: empty folder" in reasons
    assert summary.failed == 7
    assert store.failures() == summary.failures


def test_unusable_sources_and_stores_fail_before_writing(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        import_dataset("mpdata", [tmp_path / "absent"], tmp_path / "s.zarr", progress=False)
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "a.mp4").write_bytes(b"x")
    with pytest.raises(ValueError, match="no <gloss>/<sequence>/<frame>.npy"):
        import_dataset("mpdata", [tmp_path / "videos"], tmp_path / "s.zarr", progress=False)
    assert not (tmp_path / "s.zarr").exists()
    write_tree(tmp_path / "d", {"a": [0]}, frames=4)
    import_dataset("mpdata", [tmp_path / "d"], tmp_path / "s.zarr", progress=False)
    write_tree(tmp_path / "e", {"a": [0]}, frames=4)
    with pytest.raises(SchemaMismatchError, match="num_frames"):
        import_dataset(
            "mpdata", [tmp_path / "e"], tmp_path / "s.zarr", num_frames=8, progress=False
        )
    with pytest.raises(SchemaMismatchError):
        import_dataset("mpdata", [tmp_path / "e"], tmp_path / "s.zarr", face=True, progress=False)
    assert len(open_store(tmp_path / "s.zarr")) == 1


def test_zip_import_equals_folder_import(tmp_path):
    write_tree(tmp_path / "data", {"hello": [0, 1], "thank you": [0]}, frames=5)
    (tmp_path / "data" / ".DS_Store").write_bytes(b"\0")
    zip_tree(tmp_path / "data", tmp_path / "data.zip")
    a = import_dataset("mpdata", [tmp_path / "data"], tmp_path / "f.zarr", progress=False)
    b = import_dataset("mpdata", [tmp_path / "data.zip"], tmp_path / "z.zarr", progress=False)
    assert a.imported == b.imported == 3 and a.failed == b.failed == 0
    fs, zs = open_store(tmp_path / "f.zarr"), open_store(tmp_path / "z.zarr")
    assert fs.ids() == zs.ids() and fs.labels == zs.labels
    for vid in fs.ids():
        f, z = fs.get(vid), zs.get(vid)
        assert (f.split, f.label) == (z.split, z.label)
        for name in f.arrays:
            np.testing.assert_array_equal(f.arrays[name], z.arrays[name])


def test_cli_import_then_info_shows_splits(tmp_path, capsys):
    write_tree(tmp_path / "d", {"a": range(8)}, frames=3)
    rc = main(
        ["import", "mpdata", str(tmp_path / "d"), "--store", str(tmp_path / "s.zarr"), "--quiet"]
    )
    assert rc == 0
    assert "8 imported" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "s.zarr")]) == 0
    assert "train=" in capsys.readouterr().out
    assert (
        main(["import", "mpdata", str(tmp_path / "nope"), "--store", str(tmp_path / "s.zarr")]) == 2
    )
    assert "not found" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/data/landmarks is not here")
def test_the_traduttore_zip_imports_completely_and_trains(tmp_path):
    url = str(tmp_path / "s.zarr")
    summary = import_dataset(
        "mpdata",
        [SHARED / "traduttore-asl-mpdata.zip"],
        url,
        signers=SHARED / "traduttore-recorders.csv",
        progress=False,
    )
    assert (summary.imported, summary.failed, summary.num_frames) == (4693, 0, 20)
    store = open_store(url)
    assert len(store.labels) == 33 and len(store) == 4693
    assert all(store.entry(v).source.get("signer") for v in store.ids()[:50])
    from training.cli import train_main

    argv = ["--store", url, "--modalities", "landmarks", "--epochs", "1", "--no-progress"]
    assert train_main([*argv, "--out", str(tmp_path / "run")]) == 0
