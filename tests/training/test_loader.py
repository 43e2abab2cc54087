"""The streaming loader: every row once per epoch across workers and ranks, the same order
whatever the number of workers, mid-epoch resume, bad rows, and augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from featurestore import open_store
from tests.training.stores import LAYOUT, make_store
from training.augment import AugmentConfig, Augmenter, mirror_permutations
from training.loader import StoreLoader
from training.plan import plan_epoch, rank_windows

PARTS, SIZES = LAYOUT["parts"], LAYOUT["sizes"]


@pytest.fixture(scope="module", params=["zarr", "h5"])
def store_url(request, tmp_path_factory):
    """96 train rows in 6 blocks of 16, on each backend."""
    url = tmp_path_factory.mktemp("stores") / f"loader.{request.param}"
    make_store(url, classes=8, per_class={"train": 12, "val": 3}, block_size=16)
    return str(url)


def ids_of(loader) -> list[str]:
    return [v for batch in loader for v in batch["ids"]]


def loader(url, **kw) -> StoreLoader:
    args = dict(batch_size=5, window_rows=12, seed=7)
    args.update(kw)
    return StoreLoader(open_store(url), "train", **args)


def test_plan_covers_every_row_once_for_any_world_size(store_url):
    store = open_store(store_url)
    blocks = store.blocks("train")
    for world in (1, 2, 3, 5):
        windows = plan_epoch(blocks, 10, seed=1, epoch=0, world_size=world)
        ranks = [
            [v for w in rank_windows(windows, r, world) for v in w.video_ids] for r in range(world)
        ]
        assert sorted(v for ids in ranks for v in ids) == store.ids("train")
        sizes = [len(w) for w in windows]
        assert max(sizes) <= 10 and max(sizes) - min(sizes) <= 1 and len(windows) % world == 0
        rows = [len(ids) for ids in ranks]
        assert max(rows) - min(rows) <= 1, f"ranks get equal shares: {rows}"


def test_every_row_exactly_once_across_two_workers_and_two_ranks(store_url):
    """Real DataLoader worker processes on each backend: no overlap, no loss."""
    seen = []
    for rank in range(2):
        ids = ids_of(loader(store_url, num_workers=2, rank=rank, world_size=2))
        assert len(ids) == len(set(ids))
        seen.append(set(ids))
    assert not seen[0] & seen[1]
    assert sorted(seen[0] | seen[1]) == open_store(store_url).ids("train")


def test_same_order_for_one_and_two_workers(store_url):
    ref = ids_of(loader(store_url, num_workers=0))
    assert ids_of(loader(store_url, num_workers=1)) == ref
    assert ids_of(loader(store_url, num_workers=2)) == ref
    assert sorted(ref) == open_store(store_url).ids("train")


def test_batches_carry_arrays_that_match_the_store(store_url):
    store = open_store(store_url)
    batch = next(iter(loader(store_url, batch_size=7)))
    assert batch["gemma"].shape == (7, 4, 16) and batch["gemma"].dtype == torch.float16
    assert batch["landmarks"].shape == (7, 4, 75, 3) and batch["landmark_mask"].dtype == torch.bool
    ref = store.get_many(batch["ids"])
    np.testing.assert_array_equal(batch["gemma"].numpy(), ref.arrays["gemma"])
    np.testing.assert_array_equal(batch["label"].numpy(), ref.labels)


def test_order_changes_with_seed_and_epoch_and_not_otherwise(store_url):
    a = loader(store_url)
    first = ids_of(a)
    assert ids_of(a) == first, "the same epoch replays identically"
    a.set_epoch(1)
    assert ids_of(a) != first
    assert ids_of(loader(store_url, seed=8)) != first
    assert ids_of(loader(store_url, shuffle=False)) == [
        v for b in open_store(store_url).blocks("train") for v in b.video_ids
    ]


@pytest.mark.parametrize("stop_after", [1, 3, 7])
def test_resume_mid_epoch_continues_where_it_stopped(store_url, stop_after):
    full = loader(store_url, num_workers=0)
    full.set_epoch(2)
    ref = ids_of(full)
    first = loader(store_url)
    first.set_epoch(2)
    it = iter(first)
    done = [v for _ in range(stop_after) for v in next(it)["ids"]]
    state = first.state_dict()
    resumed = loader(store_url, num_workers=2)
    resumed.load_state_dict(state)
    assert done + ids_of(resumed) == ref
    assert state["epoch"] == 2


def test_len_and_steps_per_epoch_match_what_is_yielded(store_url):
    for rank in range(3):
        ld = loader(store_url, rank=rank, world_size=3)
        batches = list(ld)
        assert len(batches) == len(ld) <= ld.steps_per_epoch()
        assert all(len(b["ids"]) == 5 for b in batches[:-1])


def test_non_finite_and_unlabeled_rows_are_skipped_and_counted(store_url, monkeypatch):
    from featurestore import FeatureStore

    original = FeatureStore.read_block
    poisoned = {}

    def read_block(self, block, streams=None):
        batch = original(self, block, streams)
        if not poisoned:
            poisoned["nan"], poisoned["unlabeled"] = batch.ids[0], batch.ids[1]
            poisoned["large"] = batch.ids[2]
            batch.arrays["gemma"][0, 1, 2] = np.nan
            batch.labels[1] = -1
            batch.arrays["gemma"][2] = 60000.0  # finite, though its sum overflows float16
        return batch

    monkeypatch.setattr(FeatureStore, "read_block", read_block)
    ld = loader(store_url, num_workers=0)
    ids = ids_of(ld)
    assert poisoned["nan"] not in ids and poisoned["unlabeled"] not in ids
    assert poisoned["large"] in ids
    assert len(ids) == len(open_store(store_url).ids("train")) - 2
    assert "non-finite" in ld.skipped[poisoned["nan"]] and "gemma" in ld.skipped[poisoned["nan"]]
    assert "unlabeled" in ld.skipped[poisoned["unlabeled"]]


def test_augmentation_is_deterministic_per_window_and_keeps_shapes(store_url):
    aug = Augmenter(AugmentConfig(), PARTS, SIZES)
    plain = next(iter(loader(store_url, shuffle=False, batch_size=12)))
    a = next(iter(loader(store_url, shuffle=False, batch_size=12, augmenter=aug)))
    b = next(iter(loader(store_url, shuffle=False, batch_size=12, augmenter=aug, num_workers=2)))
    for k in ("gemma", "landmarks", "landmark_mask"):
        assert a[k].shape == plain[k].shape and a[k].dtype == plain[k].dtype
        assert torch.equal(a[k], b[k]), f"{k}: worker count changed the augmentation"
    assert not torch.equal(a["gemma"], plain["gemma"])
    assert not torch.equal(a["landmarks"], plain["landmarks"])


def test_mirror_swaps_hands_and_flips_x():
    cfg = AugmentConfig(rotate_deg=0, scale=0, shift=0, time_warp=0, frame_drop=0, mirror=1.0)
    aug = Augmenter(cfg, PARTS, SIZES)
    rng = np.random.default_rng(0)
    lm = rng.uniform(0.2, 0.8, (2, 4, 75, 3)).astype(np.float32)
    mask = np.ones((2, 4, 3), bool)
    mask[:, :, 1] = False  # only the right hand was seen
    lm[:, :, 33:54] = 0
    out = aug({"landmarks": lm, "landmark_mask": mask}, np.random.default_rng(1))
    assert (out["landmark_mask"][:, :, 1]).all() and not out["landmark_mask"][:, :, 2].any()
    np.testing.assert_allclose(out["landmarks"][:, :, 33:54, 0], 1 - lm[:, :, 54:75, 0], atol=1e-6)
    assert (out["landmarks"][:, :, 54:75] == 0).all(), "the missing hand stays missing"
    np.testing.assert_allclose(out["landmarks"][:, :, 11, 0], 1 - lm[:, :, 12, 0], atol=1e-6)
    k_perm, p_perm = mirror_permutations(PARTS, SIZES)
    assert sorted(k_perm) == list(range(75)) and (k_perm[k_perm] == np.arange(75)).all()
    assert list(p_perm) == [0, 2, 1]


def test_augmentation_leaves_missing_points_at_zero():
    aug = Augmenter(AugmentConfig(mirror=0.5), PARTS, SIZES)
    rng = np.random.default_rng(0)
    lm = rng.uniform(0.2, 0.8, (8, 6, 75, 3)).astype(np.float32)
    mask = rng.random((8, 6, 3)) > 0.3
    lm[~np.repeat(mask, SIZES, axis=-1)] = 0
    g = rng.normal(size=(8, 6, 16)).astype(np.float16)
    out = aug({"gemma": g, "landmarks": lm, "landmark_mask": mask}, np.random.default_rng(2))
    missing = ~np.repeat(out["landmark_mask"], SIZES, axis=-1)
    assert (out["landmarks"][missing] == 0).all()
    assert out["gemma"].dtype == np.float16 and np.isfinite(out["gemma"]).all()


def test_time_resampling_plays_the_kept_frames_in_order_at_a_new_speed():
    """Each row's T output frames come from its kept frames (first and last always kept), in
    order; with nothing dropped and speed 1 the clip is unchanged."""
    t = 16
    frames = np.broadcast_to(np.arange(t, dtype=np.float32)[None, :, None], (64, t, 1))
    cfg = AugmentConfig(time_warp=0.3, frame_drop=0.3, gemma_noise=0, gemma_frame_dropout=0)
    aug = Augmenter(cfg)
    out = aug({"gemma": frames.copy()}, np.random.default_rng(0))["gemma"][..., 0]
    assert out.shape == (64, t)
    assert (np.diff(out, axis=1) >= 0).all(), "frames stay in order"
    assert len({tuple(row) for row in out}) > 32, "rows get their own drops and speeds"
    index = aug._time_index(64, t, np.random.default_rng(1))
    keep = np.random.default_rng(1).random((64, t)) >= cfg.frame_drop  # the same draws
    keep[:, [0, -1]] = True
    assert all(set(row) <= set(np.flatnonzero(k)) for row, k in zip(index, keep, strict=True))
    still = Augmenter(AugmentConfig(time_warp=0, frame_drop=0))._time_index(
        8, t, np.random.default_rng(2)
    )
    assert (still == np.arange(t)).all()


def test_gemma_frame_dropout_repeats_the_previous_frame():
    """A lost frame stalls (the one before stands in); blanking it would look like a jump."""
    cfg = AugmentConfig(time_warp=0, frame_drop=0, gemma_noise=0, gemma_frame_dropout=0.5)
    g = np.arange(4 * 10 * 3, dtype=np.float32).reshape(4, 10, 3)
    out = Augmenter(cfg)({"gemma": g}, np.random.default_rng(0))["gemma"]
    assert (out[:, 0] == g[:, 0]).all(), "the first frame is always kept"
    for row_in, row_out in zip(g, out, strict=True):
        kept = [t for t in range(10) if (row_out[t] == row_in[t]).all()]
        assert 2 <= len(kept) < 10
        for t in range(10):
            assert (row_out[t] == row_in[max(k for k in kept if k <= t)]).all()


def test_gemma_noise_follows_each_dimensions_std():
    cfg = AugmentConfig(time_warp=0, frame_drop=0, gemma_noise=0.1, gemma_frame_dropout=0)
    std = np.array([100.0, 1.0, 0.01], np.float32)
    g = np.zeros((64, 8, 3), np.float32)
    out = Augmenter(cfg, feature_std=std)({"gemma": g}, np.random.default_rng(0))["gemma"]
    np.testing.assert_allclose(out.reshape(-1, 3).std(axis=0), 0.1 * std, rtol=0.1)


def test_a_window_of_only_unusable_rows_neither_stalls_nor_breaks_resume(store_url, monkeypatch):
    from featurestore import FeatureStore

    store = open_store(store_url)
    doomed = set(plan_epoch(store.blocks("train"), 12, seed=7, epoch=0)[1].video_ids)
    original = FeatureStore.read_block

    def read_block(self, block, streams=None):
        batch = original(self, block, streams)
        for i, vid in enumerate(batch.ids):
            if vid in doomed:
                batch.arrays["landmarks"][i, 0, 0, 0] = np.inf
        return batch

    monkeypatch.setattr(FeatureStore, "read_block", read_block)
    ref = ids_of(loader(store_url))
    assert len(ref) == 96 - 12 and not doomed & set(ref)
    for stop_after in range(1, len(ref) // 5 + 1):
        first = loader(store_url)
        it = iter(first)
        done = [v for _ in range(stop_after) for v in next(it)["ids"]]
        resumed = loader(store_url)
        resumed.load_state_dict(first.state_dict())
        assert done + ids_of(resumed) == ref, stop_after


def test_a_store_written_one_class_after_another_still_gives_mixed_windows(tmp_path):
    """Importers write a source in order, gloss after gloss, so each block holds one
    class; a window made of whole blocks held 4 classes of 16 here, and training
    stalled. Windows of pieces from across the split hold most classes."""
    from featurestore import create_store
    from tests.training.stores import class_video, schema

    rng = np.random.default_rng(0)
    classes, per_class = 16, 32
    centres = rng.normal(size=(classes, 16))
    store = create_store(str(tmp_path / "sorted.zarr"), schema(4, 16, classes), block_size=32)
    with store.writer() as w:
        for c in range(classes):
            for i in range(per_class):
                w.put(f"c{c:02d}-{i:02d}", class_video(rng, c, 4, 16, centres, 0.6), label=c)
    store = open_store(str(tmp_path / "sorted.zarr"))
    label = {v: int(v[1:3]) for v in store.ids("train")}
    windows = plan_epoch(store.blocks("train"), 128, seed=0, epoch=0)
    assert len(windows) == 4
    assert all(len({label[v] for v in w.video_ids}) >= 10 for w in windows)
    assert sorted(v for w in windows for v in w.video_ids) == store.ids("train")
    ordered = plan_epoch(store.blocks("train"), 128, seed=0, epoch=0, shuffle=False)
    assert [v for w in ordered for v in w.video_ids] == store.ids("train")
