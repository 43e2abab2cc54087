"""``featurestore import`` for Kaggle ISLR parquet, ``.pose`` files and the seed's ``.npy``."""

import json

import numpy as np
import pytest

from featurestore import SchemaMismatchError, import_dataset, open_store
from featurestore.cli import main
from featurestore.extract import FACE_SUBSET
from tests.importers.test_mpdata import assert_one_split_per_signer

pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

KAGGLE_PARTS = (("face", 468), ("left_hand", 21), ("pose", 33), ("right_hand", 21))


# -- Kaggle ISLR ------------------------------------------------------------------------------


def kaggle_frames(rng, frames: int, missing=("right_hand",)):
    """(frames, 543, 3) as Kaggle writes them: NaN where a part was not found."""
    xyz = rng.uniform(0.05, 0.95, (frames, 543, 3)).astype(np.float32)
    start = 0
    for name, size in KAGGLE_PARTS:
        if name in missing:
            xyz[1::2, start : start + size] = np.nan
        start += size
    return xyz


def write_parquet(path, xyz, first_frame=20):
    rows = []
    for t, frame in enumerate(xyz):
        start = 0
        for name, size in KAGGLE_PARTS:
            for i in range(size):
                x, y, z = frame[start + i]
                rows.append((first_frame + t, f"{first_frame + t}-{name}-{i}", name, i, x, y, z))
            start += size
    cols = ["frame", "row_id", "type", "landmark_index", "x", "y", "z"]
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=cols).to_parquet(path)


def write_kaggle(root, sequences):
    """``[(participant, sequence_id, sign, xyz)]`` -> train.csv + one parquet each."""
    lines = ["path,participant_id,sequence_id,sign"]
    for participant, seq, sign, xyz in sequences:
        rel = f"train_landmark_files/{participant}/{seq}.parquet"
        if xyz is not None:
            write_parquet(root / rel, xyz)
        lines.append(f"{rel},{participant},{seq},{sign}")
    root.mkdir(parents=True, exist_ok=True)
    (root / "train.csv").write_text("\n".join(lines) + "\n")
    return root


def test_kaggle_round_trip_and_part_mapping(tmp_path):
    rng = np.random.default_rng(0)
    xyz = kaggle_frames(rng, 4)
    write_kaggle(tmp_path / "asl", [("16069", "100015657", "cloud", xyz)])
    summary = import_dataset(
        "kaggle-islr",
        [tmp_path / "asl"],
        tmp_path / "s.zarr",
        face=True,
        split="train",
        progress=False,
    )
    assert (summary.imported, summary.num_frames, summary.layout) == (1, 4, {"543": 1})
    store = open_store(tmp_path / "s.zarr")
    video = store.get(store.ids()[0])
    pts, mask = video.arrays["landmarks"], video.arrays["landmark_mask"]
    np.testing.assert_array_equal(pts[:, :33], xyz[:, 489:522])
    np.testing.assert_array_equal(pts[:, 33:54], xyz[:, 468:489])
    np.testing.assert_array_equal(pts[0, 54:75], xyz[0, 522:543])
    np.testing.assert_array_equal(pts[:, 75:], xyz[:, list(FACE_SUBSET)])
    assert mask[:, 2].tolist() == [True, False, True, False]  # right hand NaN in odd frames
    assert (pts[1, 54:75] == 0).all()
    assert video.source["signer"] == "16069" and video.gloss == "cloud"


def test_kaggle_signer_split_and_bad_parquets(tmp_path):
    rng = np.random.default_rng(1)
    seqs = [
        (p, f"{p}{n}{'ab'.index(sign)}", sign, kaggle_frames(rng, 3))
        for p in ("1", "2", "3", "4")
        for n in range(3)
        for sign in ("a", "b")
    ]
    root = write_kaggle(tmp_path / "asl", seqs + [("5", "99", "a", None)])
    bad = root / "train_landmark_files" / "1" / "100.parquet"
    pd.read_parquet(bad).drop(columns=["z"]).to_parquet(bad)
    (root / "train_landmark_files" / "2" / "200.parquet").write_bytes(b"garbage")
    summary = import_dataset(
        "kaggle-islr", [root / "train.csv"], tmp_path / "s.zarr", split_by="signer", progress=False
    )
    assert (summary.imported, summary.failed) == (22, 3)
    reasons = "\n".join(summary.failures.values())
    assert "100.parquet: parquet lacks column(s) z" in reasons
    assert "200.parquet: unreadable parquet" in reasons
    assert "99.parquet: file not found" in reasons
    assert_one_split_per_signer(open_store(tmp_path / "s.zarr"))


def test_kaggle_resampled_and_not_a_kaggle_folder(tmp_path):
    rng = np.random.default_rng(2)
    write_kaggle(
        tmp_path / "asl",
        [("1", "7", "a", kaggle_frames(rng, 11, ())), ("1", "8", "a", kaggle_frames(rng, 5, ()))],
    )
    summary = import_dataset(
        "kaggle-islr", [tmp_path / "asl"], tmp_path / "s.zarr", split="x", progress=False
    )
    assert summary.num_frames == 16  # lengths disagree
    store = open_store(tmp_path / "s.zarr")
    assert sorted(store.entry(v).source["frames"] for v in store.ids()) == [5, 11]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "train.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="missing column"):
        import_dataset("kaggle-islr", [tmp_path / "other"], tmp_path / "t.zarr", progress=False)
    with pytest.raises(ValueError, match="no train.csv"):
        import_dataset("kaggle-islr", [tmp_path / "nothing"], tmp_path / "t.zarr", progress=False)


# -- .pose --------------------------------------------------------------------------------------


def write_pose(path, rng, frames=5, width=640, height=480, hide_left_in=(1,), face_points=478):
    """A MediaPipe Holistic .pose as pose-format writes one (x, y in pixels)."""
    from pose_format import Pose
    from pose_format.numpy import NumPyPoseBody
    from pose_format.pose_header import PoseHeader, PoseHeaderComponent, PoseHeaderDimensions

    sizes = [
        ("POSE_LANDMARKS", 33),
        ("FACE_LANDMARKS", face_points),
        ("LEFT_HAND_LANDMARKS", 21),
        ("RIGHT_HAND_LANDMARKS", 21),
        ("POSE_WORLD_LANDMARKS", 33),
    ]
    components = [
        PoseHeaderComponent(name, [str(i) for i in range(n)], [(0, 1)], [(255, 0, 0)], "XYZC")
        for name, n in sizes
    ]
    header = PoseHeader(0.1, PoseHeaderDimensions(width, height, 0), components)
    points = sum(n for _, n in sizes)
    norm = rng.uniform(0.05, 0.95, (frames, 1, points, 3)).astype(np.float32)
    data = norm * np.array([width, height, 1], np.float32)
    confidence = np.ones((frames, 1, points), np.float32)
    left = 33 + face_points
    for t in hide_left_in:
        confidence[t, 0, left : left + 21] = 0
        data[t, 0, left : left + 21] = 0
    mask = np.repeat((confidence == 0)[..., None], 3, axis=-1)
    body = NumPyPoseBody(25, np.ma.masked_array(data, mask=mask), confidence)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        Pose(header, body).write(fh)
    return norm[:, 0]


def test_pose_round_trip_normalises_pixels(tmp_path):
    pytest.importorskip("pose_format")
    rng = np.random.default_rng(3)
    norm = write_pose(tmp_path / "poses" / "hello" / "a.pose", rng)
    write_pose(tmp_path / "poses" / "thank you" / "b.pose", rng, frames=5)
    summary = import_dataset(
        "pose", [tmp_path / "poses"], tmp_path / "s.zarr", face=True, split="train", progress=False
    )
    assert (summary.imported, summary.num_frames, summary.layout) == (2, 5, {"pose": 2})
    store = open_store(tmp_path / "s.zarr")
    video = next(store.get(v) for v in store.ids() if store.entry(v).gloss == "hello")
    pts, mask = video.arrays["landmarks"], video.arrays["landmark_mask"]
    np.testing.assert_allclose(pts[:, :33], norm[:, :33], rtol=1e-5)
    np.testing.assert_allclose(pts[:, 75:], norm[:, 33:][:, list(FACE_SUBSET)], rtol=1e-5)
    left = 33 + 478
    np.testing.assert_allclose(pts[0, 33:54], norm[0, left : left + 21], rtol=1e-5)
    np.testing.assert_allclose(pts[:, 54:75], norm[:, left + 21 : left + 42], rtol=1e-5)
    assert mask[:, 1].tolist() == [True, False, True, True, True]
    assert (pts[1, 33:54] == 0).all()
    assert sorted(store.labels.values()) == ["hello", "thank you"]


def test_unreadable_pose_is_recorded(tmp_path):
    pytest.importorskip("pose_format")
    write_pose(tmp_path / "poses" / "a" / "good.pose", np.random.default_rng(4))
    (tmp_path / "poses" / "a" / "bad.pose").write_bytes(b"\x00\x01 not a pose")
    summary = import_dataset(
        "pose", [tmp_path / "poses"], tmp_path / "s.zarr", num_frames=4, progress=False
    )
    assert summary.imported == 1
    assert "bad.pose: unreadable .pose" in "\n".join(summary.failures.values())


def test_pose_without_pose_format_says_which_package(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_pose_format(name, *args, **kwargs):
        if name.startswith("pose_format"):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pose_format)
    (tmp_path / "x.pose").write_bytes(b"")
    with pytest.raises(ValueError, match="needs the pose-format package"):
        import_dataset("pose", [tmp_path / "x.pose"], tmp_path / "s.zarr", progress=False)


# -- the seed's .npy ------------------------------------------------------------------------------


def write_seed(root, rng, videos, dim=32, frames=6, metadata=True):
    """A WLASL folder, the seed's gemma folder and its landmarks folder."""
    wlasl, gemma, marks = root / "wlasl", root / "gemma", root / "landmarks"
    for d in (wlasl, gemma, marks):
        d.mkdir(parents=True, exist_ok=True)
    glosses = sorted({g for _, g, _ in videos})
    index = [
        {"gloss": g, "instances": [{"video_id": v, "split": s} for v, gg, s in videos if gg == g]}
        for g in glosses
    ]
    (wlasl / "WLASL_v0.3.json").write_text(json.dumps(index))
    subset = {v: {"subset": s, "action": [glosses.index(g), 1, -1]} for v, g, s in videos}
    (wlasl / "nslt_2.json").write_text(json.dumps(subset))
    written = {}
    for vid, _, _ in videos:
        g = rng.normal(size=(frames, dim)).astype(np.float32)
        lm = rng.uniform(0.05, 0.95, (frames, 162)).astype(np.float32)
        lm[::2, 63:126] = 0  # right hand missing in even frames
        np.save(gemma / f"{vid}_gemma.npy", g)
        np.save(marks / f"{vid}_landmarks.npy", lm)
        written[vid] = (g, lm)
    if metadata:
        meta = {
            "model_name": "google/gemma-3-4b-it",
            "num_frames": frames,
            "feature_dim": dim,
            "subset": "nslt_2.json",
            "success_count": len(videos),
            "error_count": 0,
        }
        (gemma / "extraction_metadata.json").write_text(json.dumps(meta))
    return wlasl, gemma, marks, written


def test_seed_npy_fills_gemma_and_landmarks_with_wlasl_labels(tmp_path):
    rng = np.random.default_rng(5)
    videos = [("00001", "book", "train"), ("00002", "book", "val"), ("00003", "drink", "test")]
    wlasl, gemma, marks, written = write_seed(tmp_path, rng, videos)
    (gemma / "00003_gemma.npy").unlink()
    summary = import_dataset(
        "seed-npy",
        [gemma],
        tmp_path / "s.zarr",
        wlasl=wlasl,
        subset="nslt_2.json",
        landmarks_dir=marks,
        progress=False,
    )
    assert summary.imported == 2 and "00003" in summary.failures
    store = open_store(tmp_path / "s.zarr")
    assert store.ids() == ["00001", "00002"]
    assert store.schema.encoder["model_id"] == "google/gemma-3-4b-it"
    assert (
        store.schema.encoder["pooling"] == "unknown" and store.schema.encoder["feature_dim"] == 32
    )
    assert store.schema.streams["gemma"].shape == (6, 32)
    assert store.labels == {0: "book", 1: "drink"}
    video = store.get("00002")
    assert (video.label, video.split, video.source["pose_points"]) == (0, "val", "11-22")
    g, lm = written["00002"]
    np.testing.assert_allclose(video.arrays["gemma"], g, atol=2e-3, rtol=1e-3)  # float16
    pts, mask = video.arrays["landmarks"], video.arrays["landmark_mask"]
    np.testing.assert_array_equal(pts[:, 33:54].reshape(6, 63), lm[:, :63])
    np.testing.assert_array_equal(pts[1, 54:75].reshape(63), lm[1, 63:126])
    np.testing.assert_array_equal(pts[:, 11:23].reshape(6, 36), lm[:, 126:])
    assert (pts[:, :11] == 0).all() and (pts[:, 23:33] == 0).all()
    assert mask[:, 0].all() and mask[:, 2].tolist() == [False, True] * 3


def test_seed_npy_cli_with_train_simple_spellings(tmp_path, capsys):
    rng = np.random.default_rng(6)
    wlasl, gemma, marks, _ = write_seed(tmp_path, rng, [("00001", "a", "train")], metadata=False)
    np.save(gemma / "00001_gemma.npy", np.full((6, 32), np.nan, np.float32))
    rc = main(
        [
            "import",
            "seed-npy",
            "--gemma_features_dir",
            str(gemma),
            "--landmarks_dir",
            str(marks),
            "--data_dir",
            str(wlasl),
            "--subset",
            "nslt_2.json",
            "--num_frames",
            "4",
            "--store",
            str(tmp_path / "s.zarr"),
            "--quiet",
        ]
    )
    assert rc == 0
    err = capsys.readouterr().err
    assert "0 imported" in err and "non-finite" in err
    store = open_store(tmp_path / "s.zarr")
    assert store.schema.encoder["model_id"] == "unknown" and store.schema.num_frames == 4
    rc = main(
        [
            "import",
            "seed-npy",
            str(gemma),
            "--store",
            str(tmp_path / "s.zarr"),
            "--data_dir",
            str(wlasl),
            "--subset",
            "nslt_2.json",
        ]
    )
    assert rc == 2 and "landmark" in capsys.readouterr().err


def test_seed_npy_refuses_a_store_of_another_encoder(tmp_path):
    rng = np.random.default_rng(7)
    wlasl, gemma, marks, _ = write_seed(tmp_path, rng, [("00001", "a", "train")])
    import_dataset(
        "seed-npy", [gemma], tmp_path / "s.zarr", wlasl=wlasl, subset="nslt_2.json", progress=False
    )
    meta = json.loads((gemma / "extraction_metadata.json").read_text())
    meta["model_name"] = "google/gemma-3-12b-it"
    (gemma / "extraction_metadata.json").write_text(json.dumps(meta))
    with pytest.raises(SchemaMismatchError, match="encoder"):
        import_dataset(
            "seed-npy",
            [gemma],
            tmp_path / "s.zarr",
            wlasl=wlasl,
            subset="nslt_2.json",
            progress=False,
        )
