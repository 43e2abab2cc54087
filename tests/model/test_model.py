"""The hybrid model: shapes for every fusion and modality, parameter count, masks,
landmark normalisation, predict, and checkpoints."""

from __future__ import annotations

import pytest
import torch

import featurestore
from model import (
    GEMMA_STREAM,
    INPUT_STREAMS,
    LANDMARK_MASK_STREAM,
    LANDMARKS_STREAM,
    CheckpointError,
    HybridASLModel,
    ModelConfig,
    landmark_features,
    load_checkpoint,
    model_inputs,
    parameter_breakdown,
    save_checkpoint,
)
from model.landmarks import feature_dim, signer_feature_dim, signer_features

T, D, C = 4, 16, 7
PARTS, SIZES = ("pose", "left_hand", "right_hand"), (33, 21, 21)


def small_config(**kw) -> ModelConfig:
    base = dict(num_classes=C, gemma_dim=D, num_frames=T, hidden_dim=32, dropout=0.1)
    return ModelConfig(**{**base, **kw})


def inputs(batch: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    gemma = torch.randn(batch, T, D, generator=g)
    lm = torch.rand(batch, T, 75, 3, generator=g)
    mask = torch.ones(batch, T, 3, dtype=torch.bool)
    return gemma, lm, mask


@pytest.mark.parametrize("fusion", ["concat", "attention", "gated"])
@pytest.mark.parametrize("modalities", ["both", "landmarks", "visual"])
def test_forward_shapes_every_fusion_and_modality(fusion, modalities):
    model = HybridASLModel(small_config(fusion_type=fusion, modalities=modalities))
    gemma, lm, mask = inputs()
    if modalities == "landmarks":
        gemma = None
    if modalities == "visual":
        lm = mask = None
    logits = model(gemma, lm, mask)
    assert logits.shape == (3, C)
    assert torch.isfinite(logits).all()
    logits.sum().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads), "every parameter takes part in the forward pass"


def test_the_model_reads_the_streams_the_store_writes():
    """model/ repeats the stream names (it imports torch only); they must stay the store's."""
    ours = (GEMMA_STREAM, LANDMARKS_STREAM, LANDMARK_MASK_STREAM)
    store = (featurestore.GEMMA_STREAM, featurestore.LANDMARKS_STREAM)
    assert ours == INPUT_STREAMS == (*store, featurestore.LANDMARK_MASK_STREAM)


def test_the_model_expects_the_landmark_parts_the_store_records():
    """model/ repeats the Holistic parts and sizes (it imports torch only); they must stay
    the store's layout, in order, or a default config would misread every landmark."""
    from featurestore.layout import PARTS as STORE_PARTS
    from featurestore.layout import landmark_layout
    from model.config import HOLISTIC_PARTS, HOLISTIC_SIZES

    layout = landmark_layout()
    assert HOLISTIC_PARTS == tuple(layout["parts"]) == tuple(n for n, _ in STORE_PARTS)
    assert HOLISTIC_SIZES == tuple(layout["sizes"]) == tuple(s for _, s in STORE_PARTS)
    config = ModelConfig(num_classes=2, gemma_dim=4)
    assert config.num_landmarks == sum(layout["sizes"]) and config.num_parts == len(layout["parts"])


@pytest.mark.parametrize("modalities", ["both", "landmarks", "visual"])
def test_forward_batch_maps_stream_names_to_the_inputs(modalities):
    m = HybridASLModel(small_config(modalities=modalities)).eval()
    gemma, lm, mask = inputs()
    batch = {
        GEMMA_STREAM: gemma,
        LANDMARKS_STREAM: lm,
        LANDMARK_MASK_STREAM: mask,
        "label": torch.zeros(3, dtype=torch.int64),
    }
    if modalities == "landmarks":
        del batch[GEMMA_STREAM]
    if modalities == "visual":
        del batch[LANDMARKS_STREAM], batch[LANDMARK_MASK_STREAM]
    with torch.no_grad():
        expected = m(batch.get("gemma"), batch.get("landmarks"), batch.get("landmark_mask"))
        assert torch.equal(m.forward_batch(batch), expected)
        assert torch.equal(m(**model_inputs(batch)), expected)
    swapped = {**batch, LANDMARK_MASK_STREAM: ~mask}
    if modalities != "visual":
        with torch.no_grad():
            assert not torch.equal(m.forward_batch(swapped), expected), "the mask is read"


def test_ablations_do_not_build_the_other_branch():
    both = parameter_breakdown(HybridASLModel(small_config()))
    visual = parameter_breakdown(HybridASLModel(small_config(modalities="visual")))
    landmarks = parameter_breakdown(
        HybridASLModel(small_config(modalities="landmarks", gemma_dim=0))
    )
    assert (
        visual["landmark_encoder"] == 0 and visual["visual_projection"] == both["visual_projection"]
    )
    assert (
        landmarks["visual_projection"] == 0
        and landmarks["landmark_encoder"] == both["landmark_encoder"]
    )
    assert visual["total"] < both["total"] and landmarks["total"] < both["total"]


def test_parameter_count_at_seed_size():
    """About 1.9M trainable parameters at hidden 256, a 2560-d encoder, 100 classes (the
    seed's 2.8M with the transformer landmark encoder, kept as landmark_encoder="body")."""
    counts = parameter_breakdown(HybridASLModel(ModelConfig(num_classes=100, gemma_dim=2560)))
    print("parameters:", counts)
    assert 1_800_000 <= counts["total"] <= 2_000_000
    body = HybridASLModel(ModelConfig(num_classes=100, gemma_dim=2560, landmark_encoder="body"))
    assert 2_600_000 <= parameter_breakdown(body)["total"] <= 3_100_000
    assert counts["total"] == sum(v for k, v in counts.items() if k != "total")
    # the frame projection 2560 -> 256 alone is 655,616
    assert 900_000 <= counts["visual_projection"] <= 1_100_000
    assert counts["classifier"] == 256 * 256 + 256 + 256 * 100 + 100


def test_predict_returns_sorted_topk_probabilities_and_keeps_mode():
    model = HybridASLModel(small_config()).train()
    probs, idx = model.predict(*inputs(), top_k=3)
    assert probs.shape == idx.shape == (3, 3)
    assert (probs[:, :-1] >= probs[:, 1:]).all()
    assert (probs.sum(-1) <= 1 + 1e-6).all() and (probs > 0).all()
    assert model.training, "predict restores the caller's mode"
    probs, idx = model.predict(*inputs(), top_k=50)
    assert probs.shape == (3, C)
    torch.testing.assert_close(probs.sum(-1), torch.ones(3))
    model.eval()
    full = model(*inputs()).softmax(-1)
    torch.testing.assert_close(probs, full.sort(-1, descending=True).values)


def test_padded_and_missing_frames_do_not_change_the_output():
    model = HybridASLModel(small_config()).eval()
    gemma, lm, mask = inputs(2)
    frame_mask = torch.ones(2, T, dtype=torch.bool)
    frame_mask[:, -1] = False
    ref = model(gemma, lm, mask, frame_mask)
    gemma2, lm2 = gemma.clone(), lm.clone()
    gemma2[:, -1] = 100.0  # padded frame: ignored by both streams
    lm2[:, -1] = 0.9
    torch.testing.assert_close(model(gemma2, lm2, mask, frame_mask), ref)
    # a frame where no part was detected is padding for the landmark encoder
    mask3 = mask.clone()
    mask3[:, 1] = False
    ref3 = model(gemma, lm, mask3)
    lm3 = lm.clone()
    lm3[:, 1] = torch.rand(2, 75, 3)
    torch.testing.assert_close(model(gemma, lm3, mask3), ref3)


def test_every_frame_missing_still_gives_finite_logits():
    model = HybridASLModel(small_config()).eval()
    gemma, lm, _ = inputs(2)
    out = model(gemma, torch.zeros_like(lm), torch.zeros(2, T, 3, dtype=torch.bool))
    assert torch.isfinite(out).all()


def test_landmark_features_are_body_relative():
    _, lm, mask = inputs(2)
    lm[..., 2] = 0  # z is centred too, keep it simple
    f = landmark_features(lm, mask, PARTS, SIZES)
    assert f.shape == (2, T, feature_dim(PARTS, SIZES)) == (2, T, 75 * 3 + 42 * 3 + 3)
    moved = lm.clone()
    moved[..., :2] = lm[..., :2] * 0.5 + 0.2  # the same signer, further away and to the side
    torch.testing.assert_close(
        landmark_features(moved, mask, PARTS, SIZES), f, atol=1e-4, rtol=1e-4
    )
    # shoulders land at +-0.5 on x after normalisation
    body = f[..., : 75 * 3].reshape(2, T, 75, 3)
    shoulder_gap = (body[:, :, 11, :2] - body[:, :, 12, :2]).norm(dim=-1)
    torch.testing.assert_close(shoulder_gap.mean(dim=1), torch.ones(2), atol=0.3, rtol=0)
    # each hand's wrist is the origin of its wrist-relative block
    hands = f[..., 75 * 3 : 75 * 3 + 126].reshape(2, T, 42, 3)
    assert hands[:, :, 0].abs().max() == 0 and hands[:, :, 21].abs().max() == 0


def test_missing_parts_are_zero_and_flagged():
    _, lm, mask = inputs(1)
    mask[:, :, 1] = False  # left hand never detected
    f = landmark_features(lm, mask, PARTS, SIZES)
    body = f[..., : 75 * 3].reshape(1, T, 75, 3)
    assert body[:, :, 33:54].abs().max() == 0
    assert (f[..., -3:] == mask.float()).all()


def test_wrong_input_shapes_fail_with_the_input_named():
    model = HybridASLModel(small_config())
    gemma, lm, mask = inputs()
    with pytest.raises(ValueError, match="gemma has shape"):
        model(gemma[:, :, :5], lm, mask)
    with pytest.raises(ValueError, match="landmarks is required"):
        model(gemma, None, mask)
    with pytest.raises(ValueError, match="batch size"):
        model(gemma, lm[:2], mask[:2])


def test_config_rejects_unknown_options():
    with pytest.raises(ValueError, match="fusion_type"):
        small_config(fusion_type="sum")
    with pytest.raises(ValueError, match="modalities"):
        small_config(modalities="audio")
    with pytest.raises(ValueError, match="part_sizes"):
        small_config(part_sizes=(33, 21, 20))


def _save(tmp_path, model, **kw):
    args = dict(
        labels={i: f"g{i}" for i in range(C)},
        encoder={"model_id": "enc-a", "feature_dim": D},
        landmark_layout={"parts": list(PARTS), "sizes": list(SIZES)},
        num_frames=T,
        streams={"gemma": {"shape": [T, D], "dtype": "float16"}},
        train_args={"lr": 0.001},
        metrics={"val_top1": 0.5},
    )
    args.update(kw)
    return save_checkpoint(tmp_path / "m.pt", model, **args)


@pytest.mark.parametrize("fusion", ["concat", "attention", "gated"])
def test_checkpoint_round_trip_gives_identical_logits(tmp_path, fusion):
    model = HybridASLModel(small_config(fusion_type=fusion)).eval()
    path = _save(tmp_path, model)
    ckpt = load_checkpoint(path)
    assert not ckpt.model.training
    assert ckpt.config == model.config
    assert ckpt.labels == {i: f"g{i}" for i in range(C)}
    assert ckpt.encoder["model_id"] == "enc-a" and ckpt.num_frames == T
    assert ckpt.train_args == {"lr": 0.001} and ckpt.metrics == {"val_top1": 0.5}
    x = inputs(seed=3)
    assert torch.equal(ckpt.model(*x), model(*x))


def test_feature_statistics_standardise_the_input_and_travel_in_the_checkpoint(tmp_path):
    model = HybridASLModel(small_config(modalities="visual")).eval()
    gemma = inputs()[0]
    mean, std = torch.linspace(-5, 5, D), torch.linspace(0.01, 100, D)
    model.set_feature_statistics(mean, std)
    same = HybridASLModel(small_config(modalities="visual")).eval()
    same.load_state_dict(model.state_dict())
    same.set_feature_statistics(torch.zeros(D), torch.ones(D))
    # features at this mean and scale give what unit features give a model without them
    assert torch.allclose(model(gemma * std + mean, None, None), same(gemma, None, None), atol=1e-5)
    ckpt = load_checkpoint(_save(tmp_path, model))
    assert torch.equal(ckpt.model.visual_projection.feature_std, std)
    assert torch.equal(ckpt.model(gemma, None, None), model(gemma, None, None))
    with pytest.raises(ValueError, match="std > 0"):
        model.set_feature_statistics(mean, torch.zeros(D))
    with pytest.raises(ValueError, match="no visual stream"):
        HybridASLModel(small_config(modalities="landmarks")).set_feature_statistics(mean, std)


def test_checkpoint_of_another_format_version_is_refused(tmp_path):
    path = _save(tmp_path, HybridASLModel(small_config()))
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = 1
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="format version 1; this code reads version 2"):
        load_checkpoint(path)


def test_checkpoint_missing_or_corrupt_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope.pt")
    path = _save(tmp_path, HybridASLModel(small_config()))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="unreadable"):
        load_checkpoint(path)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(1)}, other)
    with pytest.raises(CheckpointError, match="not a signstore-checkpoint"):
        load_checkpoint(other)


def test_checkpoint_refuses_a_store_of_another_encoder_or_T(tmp_path):
    from featurestore import StoreSchema, StreamSpec, create_store

    path = _save(tmp_path, HybridASLModel(small_config()))
    ckpt = load_checkpoint(path)

    def store(name, encoder, frames):
        sch = StoreSchema(frames, {"gemma": StreamSpec((frames, D), "float16")}, encoder=encoder)
        return create_store(str(tmp_path / name), sch)

    ckpt.check_store(store("same.zarr", {"model_id": "enc-a", "feature_dim": D}, T))
    with pytest.raises(CheckpointError, match="feature set 'gemma': encoder fingerprint"):
        ckpt.check_store(store("other.zarr", {"model_id": "enc-b", "feature_dim": D}, T))
    with pytest.raises(CheckpointError, match="num_frames"):
        ckpt.check_store(store("longer.zarr", {"model_id": "enc-a", "feature_dim": D}, T + 4))


# -- signer features (the default landmark encoder) --------------------------------------
SIGNER_DIM = 2 * (23 + 42) * 2 + 3 * 42 + 3


def signer_clip(batch: int = 2, seed: int = 0):
    """Landmarks that look like a person: shoulders apart, hands of a real size."""
    g = torch.Generator().manual_seed(seed)
    lm = 0.3 + 0.4 * torch.rand(batch, T, 75, 3, generator=g)
    lm[:, :, 11, :2] = torch.tensor([0.62, 0.5])  # left shoulder (on the image's right)
    lm[:, :, 12, :2] = torch.tensor([0.38, 0.5])
    mask = torch.ones(batch, T, 3, dtype=torch.bool)
    return lm, mask


def test_signer_features_do_not_depend_on_where_the_signer_sits():
    lm, mask = signer_clip()
    f = signer_features(lm, mask, PARTS, SIZES)
    assert f.shape == (2, T, signer_feature_dim(PARTS, SIZES)) == (2, T, SIGNER_DIM)
    moved = lm * 0.6  # closer to the camera is bigger: scale x, y and z alike
    moved[..., :2] += torch.tensor([0.25, -0.1])  # and elsewhere in the image
    torch.testing.assert_close(signer_features(moved, mask, PARTS, SIZES), f)
    # shoulders at x = +-0.5 in the shoulder frame
    pose = f[..., : 23 * 2].reshape(2, T, 23, 2)
    torch.testing.assert_close(pose[:, :, 11, 0], torch.full((2, T), 0.5))


def test_signer_features_of_a_mirrored_clip_are_the_mirrored_features():
    from training.augment import mirror_permutations

    lm, mask = signer_clip()
    mask[:, :, 1] = False  # only the right hand signs
    k_perm, p_perm = mirror_permutations(PARTS, SIZES)
    mirrored = lm[:, :, k_perm].clone()
    mirrored[..., 0] = 1.0 - mirrored[..., 0]
    f = signer_features(lm, mask, PARTS, SIZES)
    fm = signer_features(mirrored, mask[..., p_perm], PARTS, SIZES)

    def blocks(x):
        """(pose xy, left xy, right xy, left shape, right shape, motion, mask)."""
        return x.split([46, 42, 42, 63, 63, 130, 3], dim=-1)

    def flip_x(x, width):
        x = x.reshape(*x.shape[:-1], -1, width).clone()
        x[..., 0] = -x[..., 0]
        return x

    pose, left, right, left_shape, right_shape, _, flags = blocks(f)
    m_pose, m_left, m_right, m_left_shape, m_right_shape, _, m_flags = blocks(fm)
    torch.testing.assert_close(flip_x(m_pose, 2), pose.reshape(2, T, 23, 2)[:, :, k_perm[:23]])
    torch.testing.assert_close(flip_x(m_left, 2), flip_x(right, 2) * torch.tensor([-1.0, 1.0]))
    torch.testing.assert_close(flip_x(m_left_shape, 3), right_shape.reshape(2, T, 21, 3))
    assert m_right.abs().max() == 0 and m_right_shape.abs().max() == 0
    assert (m_flags == flags[..., p_perm]).all()


def test_signer_features_keep_a_missing_hand_zero_and_flagged():
    lm, mask = signer_clip(1)
    mask[:, 2:, 1] = False  # the left hand leaves the frame at frame 2
    lm[:, 2:, 33:54] = 0.0
    f = signer_features(lm, mask, PARTS, SIZES)
    _, left, _, left_shape, _, motion, flags = f.split([46, 42, 42, 63, 63, 130, 3], dim=-1)
    assert left[:, 2:].abs().max() == 0 and left_shape[:, 2:].abs().max() == 0
    assert left[:, :2].abs().min() > 0  # present before
    left_motion = motion[..., 46:88]
    assert left_motion[:, 2:].abs().max() == 0, "leaving the frame is not a movement"
    assert left_motion[:, 1].abs().max() > 0
    assert (flags == mask.float()).all()


def test_signer_features_drop_the_legs_and_the_pose_depth():
    lm, mask = signer_clip(1)
    legs, depth = lm.clone(), lm.clone()
    legs[:, :, 23:33] += torch.rand(1, T, 10, 3)  # guessed hips and legs wander
    depth[:, :, :33, 2] = torch.rand(1, T, 33)
    f = signer_features(lm, mask, PARTS, SIZES)
    torch.testing.assert_close(signer_features(legs, mask, PARTS, SIZES), f)
    torch.testing.assert_close(signer_features(depth, mask, PARTS, SIZES), f)


def test_signer_features_on_hands_only_and_on_nothing():
    lm, mask = signer_clip(1)
    hands = signer_features(lm[:, :, 33:], mask[..., 1:], PARTS[1:], SIZES[1:])
    assert hands.shape[-1] == signer_feature_dim(PARTS[1:], SIZES[1:]) and hands.isfinite().all()
    none = signer_features(torch.zeros_like(lm), torch.zeros_like(mask), PARTS, SIZES)
    assert none.abs().max() == 0


def test_a_config_saved_before_the_encoder_choice_loads_as_the_body_encoder():
    saved = small_config().to_dict()
    del saved["landmark_encoder"]
    assert ModelConfig.from_dict(saved).landmark_encoder == "body"
    assert small_config().landmark_encoder == "signer"
    with pytest.raises(ValueError, match="landmark_encoder"):
        small_config(landmark_encoder="lstm")
