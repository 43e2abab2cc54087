"""The frozen Gemma 3 encoder: tiny-random determinism, preprocessing, loading real layouts."""

import json
import logging
import subprocess
import sys

import numpy as np
import pytest
import torch

from featurestore.extract import EncoderError, load_encoder
from featurestore.extract.gemma import preset_config

# Golden values: the same on any machine with this torch/transformers (float tolerance).
TINY_SHA = "a915fd87ad01d2c3a090962eac9695b85db628dd63ef6aa351dde17f90ec5e9f"
GOLDEN = np.array(
    [
        [1.5722644, 0.80254173, -0.44395107, 0.14508441],
        [1.5264955, 0.3553933, -0.36093003, -0.34748083],
        [1.7006475, 0.3685418, -0.33806252, 0.02088995],
    ]
)


def _frames(n=3, h=80, w=72, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def test_tiny_random_shape_dtype_and_golden_values(tiny_encoder):
    features = tiny_encoder.encode(_frames())
    assert features.shape == (3, 48) and features.dtype == np.float32
    assert np.allclose(features[:, :4], GOLDEN, atol=1e-4)
    assert tiny_encoder.fingerprint["weights_sha256"] == TINY_SHA


def test_tiny_random_is_identical_when_rebuilt(tiny_encoder):
    again = load_encoder("tiny-random")
    assert again.fingerprint == tiny_encoder.fingerprint
    assert np.array_equal(again.encode(_frames()), tiny_encoder.encode(_frames()))


def test_tiny_random_in_a_fresh_process_matches():
    code = (
        "import numpy as np, json;"
        "from featurestore.extract import load_encoder;"
        "e = load_encoder('tiny-random');"
        "x = np.random.default_rng(0).integers(0, 256, (3, 80, 72, 3), dtype=np.uint8);"
        "print(json.dumps(e.encode(x)[:, :4].tolist()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert np.allclose(json.loads(out.stdout.strip().splitlines()[-1]), GOLDEN, atol=1e-4)


def test_fingerprint_names_everything_that_changes_features(tiny_encoder):
    fp = tiny_encoder.fingerprint
    assert fp == {
        "model_id": "tiny-random",
        "revision": None,
        "weights_sha256": TINY_SHA,
        "pooling": "mean_soft_tokens",
        "image_size": 64,
        "dtype": "float32",
        "feature_dim": 48,
    }
    json.dumps(fp)  # the store keeps it as JSON


def test_vision_patch_pooling_skips_the_projector():
    enc = load_encoder("tiny-random", pooling="mean_vision_patches")
    assert enc.projector is None and enc.feature_dim == 32
    assert enc.encode(_frames()).shape == (3, 32)
    assert enc.fingerprint["pooling"] == "mean_vision_patches"


def test_features_depend_on_the_image(tiny_encoder):
    a, b = tiny_encoder.encode(_frames(seed=1)), tiny_encoder.encode(_frames(seed=2))
    assert not np.allclose(a, b, atol=1e-3)


def test_batch_size_and_video_grouping_do_not_change_features(tiny_encoder):
    small = load_encoder("tiny-random", batch_size=2)
    x = _frames(n=7)
    full = tiny_encoder.encode(x)
    assert np.allclose(small.encode(x), full, atol=1e-5)
    assert small.forward_calls == 4  # 7 frames in forwards of 2
    other = _frames(n=3, h=40, w=90, seed=5)  # another size, batched in the same forward
    split = tiny_encoder.encode_videos([x, other])
    assert np.allclose(split[0], full, atol=1e-5)
    assert np.allclose(split[1], tiny_encoder.encode(other), atol=1e-5)


def test_preprocessing_matches_gemma3_image_processor(tiny_encoder):
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    img = _frames(n=1, h=96, w=120)[0]
    reference = Gemma3ImageProcessorPil(size={"height": 64, "width": 64})(
        images=[img], return_tensors="pt"
    )["pixel_values"]
    ours = tiny_encoder.preprocess(img[None])
    assert ours.shape == reference.shape
    diff = (ours - reference).abs()
    assert diff.max() <= 2 / 255 + 1e-6  # at most one grey level (uint8 rounding) ...
    assert (diff > 1e-6).float().mean() < 0.05  # ... on a few percent of the values


def test_frozen_and_in_eval_mode(tiny_encoder):
    modules = [tiny_encoder.vision_tower, tiny_encoder.projector]
    assert all(not m.training for m in modules)
    assert all(not p.requires_grad for m in modules for p in m.parameters())


def _save_full_gemma3(folder, encoder, v4_layout=False):
    """A Hugging Face-style Gemma 3 folder holding tiny-random's vision weights."""
    from safetensors.torch import save_file
    from transformers import Gemma3ForConditionalGeneration

    model = Gemma3ForConditionalGeneration(preset_config("tiny-random"))
    model.model.vision_tower.load_state_dict(encoder.vision_tower.state_dict())
    model.model.multi_modal_projector.load_state_dict(encoder.projector.state_dict())
    model.save_pretrained(folder)
    if v4_layout:  # transformers 4.x names and a sharded index, as on the Hub
        from safetensors.torch import load_file

        state = load_file(folder / "model.safetensors")
        (folder / "model.safetensors").unlink()
        vision = {
            k.replace("vision_tower.", "vision_tower.vision_model."): v
            for k, v in state.items()
            if k.startswith("vision_tower.")
        }
        rest = {k: v for k, v in state.items() if not k.startswith("vision_tower.")}
        save_file(vision, folder / "model-00002-of-00002.safetensors")
        save_file(rest, folder / "model-00001-of-00002.safetensors")
        weight_map = {k: "model-00002-of-00002.safetensors" for k in vision}
        weight_map.update({k: "model-00001-of-00002.safetensors" for k in rest})
        (folder / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {}, "weight_map": weight_map})
        )
    return folder


@pytest.mark.parametrize("v4_layout", [False, True], ids=["v5-single-file", "v4-sharded"])
def test_local_folder_loads_only_vision_weights(tmp_path, tiny_encoder, v4_layout):
    folder = _save_full_gemma3(tmp_path / "gemma", tiny_encoder, v4_layout)
    enc = load_encoder(str(folder))
    assert enc.fingerprint["weights_sha256"] == TINY_SHA
    assert enc.fingerprint["model_id"] == str(folder)
    assert np.allclose(enc.encode(_frames()), tiny_encoder.encode(_frames()), atol=1e-6)
    names = [n for m in (enc.vision_tower, enc.projector) for n, _ in m.named_parameters()]
    assert not any("language_model" in n or "embed_tokens" in n for n in names)


def test_local_folder_preprocessor_config_is_used(tmp_path, tiny_encoder):
    folder = _save_full_gemma3(tmp_path / "gemma", tiny_encoder)
    (folder / "preprocessor_config.json").write_text(
        json.dumps(
            {"size": {"height": 64, "width": 64}, "image_mean": [0.4] * 3, "image_std": [0.3] * 3}
        )
    )
    enc = load_encoder(str(folder))
    assert enc.preprocess_spec.mean == (0.4, 0.4, 0.4) and enc.preprocess_spec.std == (
        0.3,
        0.3,
        0.3,
    )


def test_unknown_encoder_is_a_clear_error(tmp_path):
    with pytest.raises(EncoderError, match="unknown encoder"):
        load_encoder(str(tmp_path / "no-such-model"))


def test_non_gemma_folder_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(EncoderError, match="not a Gemma 3"):
        load_encoder(str(tmp_path))


def test_bad_pooling_and_dtype_are_refused():
    with pytest.raises(EncoderError, match="pooling"):
        load_encoder("tiny-random", pooling="max")
    with pytest.raises(EncoderError, match="dtype"):
        load_encoder("tiny-random", dtype="int8")


def test_flash_attention_without_cuda_falls_back_to_sdpa_with_a_note(caplog):
    with caplog.at_level(logging.WARNING):
        enc = load_encoder("tiny-random", flash_attention=True)
    assert enc.vision_tower.config._attn_implementation == "sdpa"
    assert "SDPA" in caplog.text


def test_bfloat16_runs_on_cpu_and_is_recorded():
    enc = load_encoder("tiny-random", dtype="bfloat16")
    assert enc.fingerprint["dtype"] == "bfloat16"
    assert enc.fingerprint["weights_sha256"] == TINY_SHA  # weights hashed before the cast
    out = enc.encode(_frames())
    assert out.dtype == np.float32 and np.isfinite(out).all()


def test_gemma_3_4b_random_preset_has_the_real_vision_sizes():
    cfg = preset_config("gemma-3-4b-random")
    v = cfg.vision_config
    assert (v.hidden_size, v.num_hidden_layers, v.intermediate_size, v.num_attention_heads) == (
        1152,
        27,
        4304,
        16,
    )
    assert (v.image_size, v.patch_size, cfg.mm_tokens_per_image) == (896, 14, 256)
    assert cfg.text_config.hidden_size == 2560


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_bf16_path():
    enc = load_encoder("tiny-random", device="cuda")
    assert enc.fingerprint["dtype"] == "bfloat16"
    cpu = load_encoder("tiny-random")
    assert np.allclose(enc.encode(_frames()), cpu.encode(_frames()), atol=3e-2)
