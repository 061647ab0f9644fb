"""Weights files: round trips, carried metadata, and clear errors for the wrong file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from c2f.config import ModelConfig, WindowSettings
from c2f.errors import C2FError
from c2f.io.label_sets import FASSEG_LABELS, LabelSet
from c2f.model import EncoderUNet, UNet, build_model
from c2f.shipped import default_weights_path
from c2f.weights import (
    clean_state_dict,
    load_tensors,
    load_weights,
    model_metadata,
    save_tensors,
    save_weights,
)

SKY_LABELS = LabelSet(("ground", "sky", "tree"), ((90, 60, 30), (70, 130, 180), (20, 140, 40)))


def trained_looking_model(config: ModelConfig = ModelConfig(width=4, depth=2)) -> UNet | EncoderUNet:
    """A model whose batch-norm statistics have moved away from their defaults, as after training."""
    torch.manual_seed(0)
    model = build_model(config)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(2, config.in_channels, 32, 32) * 3 + 1)
    return model.eval()


def test_saved_and_loaded_model_gives_identical_outputs(tmp_path):
    model = trained_looking_model()
    save_weights(tmp_path / "model.safetensors", model, FASSEG_LABELS)
    loaded, labels, _ = load_weights(tmp_path / "model.safetensors")
    assert loaded.config == model.config
    assert labels == FASSEG_LABELS
    assert not loaded.training
    inputs = torch.randn(1, model.config.in_channels, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(inputs), model(inputs))


def test_config_labels_and_extra_metadata_travel_with_the_weights(tmp_path):
    config = ModelConfig(num_classes=3, use_coarse=False, width=2, depth=1)
    extra = {"training_command": "c2f train --data d --out o", "split": {"train": ["a"], "validation": ["b"]}}
    save_weights(tmp_path / "sky.safetensors", UNet(config), SKY_LABELS, extra)
    model, labels, metadata = load_weights(tmp_path / "sky.safetensors", SKY_LABELS)
    assert model.config == config
    assert labels == SKY_LABELS
    assert metadata["training_command"] == extra["training_command"]
    assert metadata["split"] == extra["split"]
    assert metadata["model_config"] == {"num_classes": 3, "use_coarse": False, "width": 2, "depth": 1,
                                        "encoder": "unet", "upsampling": "nearest"}


def test_weights_for_another_label_set_are_refused_naming_both(tmp_path):
    save_weights(tmp_path / "face.safetensors", UNet(ModelConfig(width=2, depth=1)), FASSEG_LABELS)
    with pytest.raises(C2FError) as error:
        load_weights(tmp_path / "face.safetensors", SKY_LABELS)
    message = str(error.value)
    assert "face.safetensors" in message
    assert "background, hair, skin" in message  # what the file was trained for
    assert "ground, sky, tree" in message  # what was asked for


def test_tensors_that_do_not_match_the_stored_config_are_refused(tmp_path):
    small = UNet(ModelConfig(width=2, depth=1))
    save_tensors(tmp_path / "mixed.safetensors", small.state_dict(),
                 model_metadata(ModelConfig(width=4, depth=1), FASSEG_LABELS))
    with pytest.raises(C2FError, match="do not match its stored model config"):
        load_weights(tmp_path / "mixed.safetensors")


def test_a_model_deeper_than_refine_pads_for_is_refused_and_depth_five_refines(tmp_path):
    from c2f.inference.sliding_window import refine_map
    from c2f.inference.torch_backend import torch_predictor

    save_weights(tmp_path / "deep.safetensors", UNet(ModelConfig(width=2, depth=6)), FASSEG_LABELS)
    with pytest.raises(C2FError, match=r"deep.safetensors: its model halves its input 6 times.*--depth 5 or less"):
        load_weights(tmp_path / "deep.safetensors")
    save_weights(tmp_path / "five.safetensors", UNet(ModelConfig(width=2, depth=5)), FASSEG_LABELS)
    model, _, _ = load_weights(tmp_path / "five.safetensors")
    photo, coarse = np.zeros((40, 52, 3), np.uint8), np.zeros((40, 52), np.uint8)
    assert refine_map(torch_predictor(model), photo, coarse, 6, WindowSettings(whole_image=True)).shape == (40, 52)


def test_a_foreign_safetensors_file_is_not_taken_for_c2f_weights(tmp_path):
    save_file(UNet(ModelConfig(width=2, depth=1)).state_dict(), str(tmp_path / "other.safetensors"))
    with pytest.raises(C2FError, match="not one written by c2f"):
        load_weights(tmp_path / "other.safetensors")


def test_a_file_that_is_not_safetensors_is_refused(tmp_path):
    (tmp_path / "notes.safetensors").write_bytes(b"these are not tensors")
    with pytest.raises(C2FError, match="not a readable safetensors file"):
        load_weights(tmp_path / "notes.safetensors")


def test_a_missing_weights_file_is_reported_by_name(tmp_path):
    with pytest.raises(C2FError, match="missing.safetensors"):
        load_weights(tmp_path / "missing.safetensors")


def test_metadata_is_stored_as_json_strings(tmp_path):
    save_tensors(tmp_path / "t.safetensors", {"x": torch.ones(2)}, {"numbers": [1, 2.5], "name": "face"})
    tensors, metadata = load_tensors(tmp_path / "t.safetensors")
    assert torch.equal(tensors["x"], torch.ones(2))
    assert metadata == {"numbers": [1, 2.5], "name": "face"}
    from safetensors import safe_open
    with safe_open(str(tmp_path / "t.safetensors"), framework="pt") as handle:
        assert json.loads(handle.metadata()["numbers"]) == [1, 2.5]


def test_wrapped_state_dicts_load_once_cleaned(tmp_path):
    model = trained_looking_model()
    wrapped = {f"module.{name}": tensor for name, tensor in model.state_dict().items()}
    wrapped["optimizer.0.exp_avg"] = torch.zeros(3)
    assert_loads_as(model, wrapped, tmp_path)


def assert_loads_as(model, tensors: dict, tmp_path) -> None:
    """Saved with extra or prefixed tensors, a state dict must load back as exactly `model`."""
    assert set(clean_state_dict(tensors)) == set(model.state_dict())
    save_tensors(tmp_path / "saved.safetensors", tensors, model_metadata(model.config, FASSEG_LABELS))
    loaded, _, _ = load_weights(tmp_path / "saved.safetensors")
    inputs = torch.randn(1, model.config.in_channels, 16, 16)
    with torch.no_grad():
        assert torch.equal(loaded(inputs), model(inputs))


def test_a_gan_training_checkpoint_loads_as_weights(tmp_path):
    from c2f.training.gan import Discriminator

    model = trained_looking_model()
    discriminator = Discriminator(model.config.num_classes)
    checkpoint = {f"model.{name}": tensor for name, tensor in model.state_dict().items()}
    checkpoint.update({f"discriminator.{name}": tensor for name, tensor in discriminator.state_dict().items()})
    checkpoint.update({"optimizer.0.exp_avg": torch.zeros(3), "discriminator_optimizer.0.exp_avg": torch.zeros(3)})
    assert_loads_as(model, checkpoint, tmp_path)


def test_default_weights_path_names_the_shipped_fasseg_file():
    assert default_weights_path().name == "fasseg.safetensors"


def test_refine_picks_the_shipped_model_made_for_the_label_table(tmp_path):
    from c2f.errors import C2FError
    from c2f.shipped import default_weights_path, refine_weights, shipped_model_file, shipped_model_for_labels

    assert shipped_model_for_labels("camvid") == "camvid"
    assert shipped_model_for_labels(None) is None and shipped_model_for_labels("cityscapes") is None
    assert shipped_model_for_labels(tmp_path / "camvid.toml") is None  # a table of one's own, not the shipped one
    assert refine_weights(None, None, None, "auto") == shipped_model_file("fasseg")
    assert refine_weights(tmp_path / "mine.safetensors", None, "camvid", "auto") == tmp_path / "mine.safetensors"
    assert refine_weights(None, "fasseg", None, "auto", "fp32") == default_weights_path("fasseg.onnx")
    assert refine_weights(None, "camvid", None, "auto") == shipped_model_file("camvid")
    assert refine_weights(None, "camvid", None, "auto", "fp32") == default_weights_path("camvid.onnx")
    assert refine_weights(None, "camvid", None, "torch") == default_weights_path("camvid.safetensors")
    with pytest.raises(C2FError, match="--precision chooses among the shipped models"):
        refine_weights(tmp_path / "mine.onnx", None, None, "auto", "fp32")
    with pytest.raises(C2FError, match="not both"):
        refine_weights(tmp_path / "mine.safetensors", "fasseg", None, "auto")


def test_a_shipped_models_precision_picks_its_file(tmp_path, monkeypatch):
    from c2f import shipped
    from c2f.errors import C2FError

    monkeypatch.setattr(shipped, "default_weights_path", lambda name=shipped.DEFAULT_WEIGHTS_NAME: tmp_path / name)
    for name in ("camvid.safetensors", "camvid.onnx"):
        (tmp_path / name).write_bytes(b"")
    assert shipped.shipped_model_file("camvid") == tmp_path / "camvid.onnx"  # no int8 export shipped: float32
    with pytest.raises(C2FError, match="camvid model has no int8 export"):
        shipped.shipped_model_file("camvid", precision="int8")
    (tmp_path / "camvid.int8.onnx").write_bytes(b"")
    assert shipped.shipped_model_file("camvid") == tmp_path / "camvid.int8.onnx"
    assert shipped.shipped_model_file("camvid", precision="fp32") == tmp_path / "camvid.onnx"
    assert shipped.shipped_model_file("camvid", backend="torch") == tmp_path / "camvid.safetensors"
    with pytest.raises(C2FError, match="ONNX Runtime"):
        shipped.shipped_model_file("camvid", backend="torch", precision="int8")
    assert shipped.shipped_model_file("camvid", precision="bf16") == tmp_path / "camvid.safetensors"  # torch runs it
    with pytest.raises(C2FError, match="bf16 runs on the torch backend; drop --backend onnx"):
        shipped.shipped_model_file("camvid", backend="onnx", precision="bf16")


def test_bf16_runs_your_own_safetensors_file_but_not_an_onnx_one(tmp_path):
    from c2f.shipped import refine_weights

    assert refine_weights(tmp_path / "mine.safetensors", None, None, precision="bf16") == tmp_path / "mine.safetensors"
    with pytest.raises(C2FError, match="mine.onnx is an ONNX file"):
        refine_weights(tmp_path / "mine.onnx", None, None, precision="bf16")

def test_an_encoder_model_rebuilds_itself_from_its_weights_file(tmp_path):
    model = trained_looking_model(ModelConfig(num_classes=3, encoder="efficientnet-lite0"))
    save_weights(tmp_path / "lite.safetensors", model, SKY_LABELS)
    loaded, _, metadata = load_weights(tmp_path / "lite.safetensors")
    assert type(loaded) is EncoderUNet and loaded.config == model.config
    assert metadata["model_config"]["encoder"] == "efficientnet-lite0"
    inputs = torch.randn(1, model.config.in_channels, 64, 32)
    with torch.no_grad():
        assert torch.equal(loaded(inputs), model(inputs))


def test_weights_written_before_the_encoder_option_load_as_the_unet(tmp_path):
    model = UNet(ModelConfig(width=2, depth=1))
    stored = model_metadata(model.config, FASSEG_LABELS)
    del stored["model_config"]["encoder"]
    save_tensors(tmp_path / "old.safetensors", model.state_dict(), stored)
    loaded, _, _ = load_weights(tmp_path / "old.safetensors")
    assert type(loaded) is UNet and loaded.config.encoder == "unet"


def test_weights_written_before_the_upsampling_option_load_with_transposed_convolutions(tmp_path):
    model = UNet(ModelConfig(width=2, depth=1, upsampling="transposed"))
    stored = model_metadata(model.config, FASSEG_LABELS)
    del stored["model_config"]["upsampling"]
    save_tensors(tmp_path / "old.safetensors", model.state_dict(), stored)
    loaded, _, _ = load_weights(tmp_path / "old.safetensors")
    assert loaded.config.upsampling == "transposed" and isinstance(loaded.upsamplers[0], torch.nn.ConvTranspose2d)


def test_a_nearest_upsampling_model_rebuilds_itself_and_an_unknown_upsampling_is_damage(tmp_path):
    model = trained_looking_model(ModelConfig(num_classes=3, width=2, depth=2, upsampling="nearest"))
    save_weights(tmp_path / "nearest.safetensors", model, SKY_LABELS)
    loaded, _, _ = load_weights(tmp_path / "nearest.safetensors")
    inputs = torch.randn(1, model.config.in_channels, 16, 8)
    with torch.no_grad():
        assert loaded.config == model.config and torch.equal(loaded(inputs), model(inputs))
    metadata = model_metadata(model.config, SKY_LABELS)
    metadata["model_config"]["upsampling"] = "bicubic"
    save_tensors(tmp_path / "odd.safetensors", model.state_dict(), metadata)
    with pytest.raises(C2FError, match="odd.safetensors: its stored model config .* is damaged"):
        load_weights(tmp_path / "odd.safetensors")


def test_an_unknown_encoder_is_refused_as_damage(tmp_path):
    metadata = model_metadata(ModelConfig(width=2, depth=1), FASSEG_LABELS)
    metadata["model_config"]["encoder"] = "resnet-1000"
    save_tensors(tmp_path / "odd.safetensors", UNet(ModelConfig(width=2, depth=1)).state_dict(), metadata)
    with pytest.raises(C2FError, match="odd.safetensors: its stored model config .* is damaged"):
        load_weights(tmp_path / "odd.safetensors")
