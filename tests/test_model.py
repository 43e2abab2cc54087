"""The hybrid model: shapes for every fusion and modality, parameter count, masks,
landmark normalisation, predict, and checkpoints."""

from __future__ import annotations

import pytest
import torch

from model import (
    CheckpointError,
    HybridASLModel,
    ModelConfig,
    landmark_features,
    load_checkpoint,
    parameter_breakdown,
    save_checkpoint,
)
from model.landmarks import feature_dim

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
    """About 2.8M trainable parameters at hidden 256, a 2560-d encoder, 100 classes."""
    counts = parameter_breakdown(HybridASLModel(ModelConfig(num_classes=100, gemma_dim=2560)))
    print("parameters:", counts)
    assert 2_600_000 <= counts["total"] <= 3_100_000
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
    from featurestore import SchemaMismatchError, StoreSchema, StreamSpec, create_store

    path = _save(tmp_path, HybridASLModel(small_config()))
    ckpt = load_checkpoint(path)

    def store(name, encoder, frames):
        sch = StoreSchema(frames, {"gemma": StreamSpec((frames, D), "float16")}, encoder=encoder)
        return create_store(str(tmp_path / name), sch)

    ckpt.check_store(store("same.zarr", {"model_id": "enc-a", "feature_dim": D}, T))
    with pytest.raises(SchemaMismatchError, match="encoder fingerprint"):
        ckpt.check_store(store("other.zarr", {"model_id": "enc-b", "feature_dim": D}, T))
    with pytest.raises(SchemaMismatchError, match="num_frames"):
        ckpt.check_store(store("longer.zarr", {"model_id": "enc-a", "feature_dim": D}, T + 4))
