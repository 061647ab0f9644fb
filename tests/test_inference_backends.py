"""Torch and ONNX Runtime predictors: ONNX export, parity between the backends, and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from conftest import make_scene, run_cli_without_loading
from PIL import Image
from typer.testing import CliRunner

from c2f.cli import app
from c2f.config import ModelConfig, WindowSettings
from c2f.errors import C2FError
from c2f.inference.backends import load_predictor
from c2f.inference.export import export_onnx
from c2f.inference.network_input import network_input
from c2f.inference.onnx_session import INPUT_NAME, OUTPUT_NAME, onnx_predictor
from c2f.inference.sliding_window import refine_probabilities
from c2f.io.label_maps import read_label_map, write_label_map
from c2f.io.label_sets import FASSEG_LABELS, LabelSet
from c2f.model import UNet
from c2f.weights import save_weights

SKY_LABELS = LabelSet(("ground", "sky", "tree"), ((90, 60, 30), (70, 130, 180), (20, 140, 40)))
# Small enough to export and run in seconds, deep enough (three poolings) to exercise every block.
SMALL_CONFIG = ModelConfig(width=4, depth=3)
# The two backends compute the same float32 network with differently ordered sums (ONNX Runtime
# folds batch norm into the convolutions and uses its own blocked kernels), so logits differ by
# about 1e-6. Softmax does not amplify differences, so 1e-4 on probabilities leaves 100x headroom,
# while a real divergence (a layer lost, batch norm in training mode, wrong weights) shows up
# at 1e-2 or more. Only pixels whose two best classes lie within ~1e-6 may flip class.
PROBABILITY_TOLERANCE = 1e-4
AGREEING_PIXEL_SHARE = 0.9999


def trained_looking_model(config: ModelConfig, seed: int = 0) -> UNet:
    """A random model whose batch norms carry statistics of real inputs and non-default affine parameters.

    Statistics gathered on synthetic faces keep every ReLU partly alive, so the
    network (not only the coarse map added to its logits) shapes the output.
    """
    torch.manual_seed(seed)
    model = UNet(config)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.momentum = None  # a plain average over the passes below
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.2, 0.2)
        if getattr(model, "coarse_gain", None) is not None:
            model.coarse_gain.fill_(0.3)  # at its initial 3 the coarse map would decide nearly every pixel
        model.train()
        for scene_seed in range(3):
            photo, coarse, _ = make_scene(64, 64, seed=100 + scene_seed)
            model(torch.from_numpy(network_input(photo, coarse if config.use_coarse else None,
                                                 config.num_classes)[None]))
    return model.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, Path]:
    """A conditional and an RGB-only model as safetensors, each exported beside itself as .onnx."""
    folder = tmp_path_factory.mktemp("backends")
    paths = {}
    for name, config in (("conditional", SMALL_CONFIG), ("rgb_only", ModelConfig(width=4, depth=2, use_coarse=False))):
        weights = folder / f"{name}.safetensors"
        save_weights(weights, trained_looking_model(config), FASSEG_LABELS, {"validation": {"val_accuracy": 0.5}})
        onnx_path, difference = export_onnx(weights)
        assert onnx_path == weights.with_suffix(".onnx")  # written next to its weights by default
        assert difference < 1e-4
        paths[name] = weights
    return paths


@pytest.mark.parametrize("settings", [WindowSettings(), WindowSettings(whole_image=True)],
                         ids=["windows", "whole-image"])
def test_torch_and_onnx_agree_on_real_sized_faces(exported, settings):
    weights = exported["conditional"]
    torch_backend, labels, _ = load_predictor(weights, None, "torch", "cpu")
    onnx_backend, onnx_labels, _ = load_predictor(weights.with_suffix(".onnx"), None, "onnx", "cpu")
    assert onnx_labels == labels
    for seed, (height, width) in enumerate([(512, 400), (512, 354)]):  # FASSEG-sized faces
        photo, coarse, _ = make_scene(height, width, seed=seed)
        expected = refine_probabilities(torch_backend, photo, coarse, labels.num_classes, settings)
        actual = refine_probabilities(onnx_backend, photo, coarse, labels.num_classes, settings)
        assert actual.shape == expected.shape == (labels.num_classes, height, width)
        assert np.abs(actual - expected).max() < PROBABILITY_TOLERANCE
        same_class = (actual.argmax(axis=0) == expected.argmax(axis=0)).mean()
        assert same_class >= AGREEING_PIXEL_SHARE
        # The network, not only the coarse map added to its logits, decides many pixels.
        assert (expected.argmax(axis=0) != coarse).mean() > 0.05


def test_export_carries_labels_config_and_the_weights_metadata(exported):
    model = onnx.load(str(exported["conditional"].with_suffix(".onnx")))
    metadata = {entry.key: entry.value for entry in model.metadata_props}
    assert LabelSet.from_dict(json.loads(metadata["labels"]), "test") == FASSEG_LABELS
    assert ModelConfig(**json.loads(metadata["model_config"])) == SMALL_CONFIG
    assert json.loads(metadata["validation"]) == {"val_accuracy": 0.5}
    assert json.loads(metadata["source_weights"]) == "conditional.safetensors"
    _, labels, uses_coarse = onnx_predictor(exported["conditional"].with_suffix(".onnx"), FASSEG_LABELS, "cpu")
    assert labels == FASSEG_LABELS and uses_coarse
    _, _, uses_coarse = onnx_predictor(exported["rgb_only"].with_suffix(".onnx"), None, "cpu")
    assert not uses_coarse


def test_export_has_dynamic_batch_height_and_width(exported):
    model = onnx.load(str(exported["conditional"].with_suffix(".onnx")))
    for value in (*model.graph.input, *model.graph.output):
        dimensions = value.type.tensor_type.shape.dim
        assert [bool(dimensions[axis].dim_param) for axis in range(4)] == [True, False, True, True], value.name
    assert [value.name for value in model.graph.input] == [INPUT_NAME]
    assert [value.name for value in model.graph.output] == [OUTPUT_NAME]
    predictor, _, _ = onnx_predictor(exported["conditional"].with_suffix(".onnx"), None, "cpu")
    for shape in [(1, 9, 64, 64), (3, 9, 96, 160)]:
        assert predictor(np.zeros(shape, np.float32)).shape == (shape[0], 6, *shape[2:])


def test_onnx_errors_name_the_file_and_say_what_to_do(exported, tmp_path):
    onnx_path = exported["conditional"].with_suffix(".onnx")
    with pytest.raises(C2FError, match="c2f export --weights"):
        onnx_predictor(exported["conditional"], None, "cpu")  # a .safetensors given to the ONNX backend
    with pytest.raises(C2FError, match="gone.onnx"):
        onnx_predictor(tmp_path / "gone.onnx", None, "cpu")
    content = onnx_path.read_bytes()
    (tmp_path / "cut.onnx").write_bytes(content[: len(content) // 3])
    with pytest.raises(C2FError, match="cut.onnx.*truncated"):
        onnx_predictor(tmp_path / "cut.onnx", None, "cpu")
    with pytest.raises(C2FError, match=r"conditional.onnx was trained for classes background.*not for ground"):
        onnx_predictor(onnx_path, SKY_LABELS, "cpu")
    foreign = onnx.load(str(onnx_path))
    del foreign.metadata_props[:]
    onnx.save(foreign, str(tmp_path / "foreign.onnx"))
    with pytest.raises(C2FError, match="foreign.onnx.*not one written by `c2f export`"):
        onnx_predictor(tmp_path / "foreign.onnx", None, "cpu")
    with pytest.raises(C2FError, match="unknown --device"):
        onnx_predictor(onnx_path, None, "tpu")


def test_an_export_that_fails_its_check_leaves_the_existing_onnx_file_untouched(exported, tmp_path, monkeypatch):
    import c2f.inference.export

    weights = tmp_path / "model.safetensors"
    weights.write_bytes(exported["conditional"].read_bytes())
    onnx_path, _ = export_onnx(weights)
    working = onnx_path.read_bytes()
    monkeypatch.setattr(c2f.inference.export, "EXPORT_TOLERANCE", -1.0)  # every difference is now too large
    with pytest.raises(C2FError, match="model.onnx disagrees with torch"):
        export_onnx(weights, onnx_path)
    assert onnx_path.read_bytes() == working
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model.onnx", "model.safetensors"]


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_both_backends_refuse_an_unknown_device_alike(exported, backend):
    weights = exported["conditional"]
    weights = weights.with_suffix(".onnx") if backend == "onnx" else weights
    with pytest.raises(C2FError, match=r"unknown --device 'gpu'; choose one of auto, cpu, cuda\."):
        load_predictor(weights, None, backend, "gpu")


def test_refining_with_the_onnx_backend_never_imports_torch(exported, tmp_path):
    photo, coarse, _ = make_scene(40, 52, seed=0)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    write_label_map(tmp_path / "coarse.png", coarse, FASSEG_LABELS, "color")
    run_cli_without_loading("torch", "refine", tmp_path / "photo.png", tmp_path / "coarse.png",
                            "-o", tmp_path / "fine.png", "--weights", exported["conditional"].with_suffix(".onnx"),
                            "--backend", "onnx", "--device", "cpu")
    assert (tmp_path / "fine.png").is_file()


def test_cuda_without_a_cuda_provider_runs_on_the_cpu_after_one_note(exported):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this ONNX Runtime has CUDA")
    notes: list[str] = []
    predictor, _, _ = onnx_predictor(exported["conditional"].with_suffix(".onnx"), None, "cuda", notes.append)
    assert len(notes) == 1 and "\n" not in notes[0]
    assert "runs on the CPU" in notes[0] and 'pip install "c2f[gpu]"' in notes[0]
    assert predictor(np.zeros((1, 9, 32, 32), np.float32)).shape == (1, 6, 32, 32)


def test_a_cuda_provider_that_fails_to_load_is_noted():
    from c2f.inference.onnx_session import cuda_note

    wanted = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert "could not load" in cuda_note("auto", wanted, ["CPUExecutionProvider"])
    assert cuda_note("auto", wanted, wanted) is None
    assert cuda_note("auto", ["CPUExecutionProvider"], ["CPUExecutionProvider"]) is None  # a CPU-only install
    assert cuda_note("cpu", ["CPUExecutionProvider"], ["CPUExecutionProvider"]) is None


def test_torch_cuda_without_a_gpu_runs_on_the_cpu_after_one_note(exported):
    import torch

    if torch.cuda.is_available():
        pytest.skip("torch sees a GPU")
    notes: list[str] = []
    predictor, _, _ = load_predictor(exported["conditional"], None, "torch", "cuda", notes.append)
    assert len(notes) == 1 and "runs on the CPU" in notes[0]
    assert predictor(np.zeros((1, 9, 32, 32), np.float32)).shape == (1, 6, 32, 32)


def test_without_a_note_callback_the_fallback_is_a_warning(exported):
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this ONNX Runtime has CUDA")
    with pytest.warns(RuntimeWarning, match="runs on the CPU"):
        load_predictor(exported["conditional"].with_suffix(".onnx"), None, "onnx", "cuda")


def test_the_onnx_backend_defaults_to_the_shipped_onnx_file():
    from c2f.shipped import default_onnx_path

    assert default_onnx_path().name == "fasseg.onnx"
    if default_onnx_path().is_file():
        _, labels, _ = load_predictor(None, None, "onnx", "cpu")
        assert labels == FASSEG_LABELS
    else:
        with pytest.raises(C2FError, match=r"fasseg.onnx.*run `c2f export`"):
            load_predictor(None, None, "onnx", "cpu")


def test_cli_export_then_refine_folders_gives_the_same_maps_with_both_backends(exported, tmp_path):
    runner = CliRunner()
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(exported["conditional"].read_bytes())
    result = runner.invoke(app, ["export", "--weights", str(weights)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "model.onnx").is_file() and "wrote" in result.output
    refused = runner.invoke(app, ["export", "--weights", str(weights)])
    assert refused.exit_code == 1 and "--overwrite" in refused.output
    photos, maps = tmp_path / "photos", tmp_path / "maps"
    photos.mkdir()
    for index in range(3):
        photo, coarse, _ = make_scene(96, 80, seed=index)
        Image.fromarray(photo).save(photos / f"face_{index}.png")
        write_label_map(maps / f"face_{index}.png", coarse, FASSEG_LABELS, "color")
    outputs = {}
    for backend, model in (("torch", weights), ("onnx", tmp_path / "model.onnx")):
        outputs[backend] = tmp_path / f"fine_{backend}"
        result = runner.invoke(app, ["refine", str(photos), str(maps), "-o", str(outputs[backend]), "--weights",
                                     str(model), "--backend", backend, "--window", "64", "--overlap", "16"])
        assert result.exit_code == 0 and "3 written" in result.output, result.output
    for index in range(3):
        torch_map = read_label_map(outputs["torch"] / f"face_{index}.png", FASSEG_LABELS).class_ids
        onnx_map = read_label_map(outputs["onnx"] / f"face_{index}.png", FASSEG_LABELS).class_ids
        assert (torch_map == onnx_map).mean() >= 0.999  # 7,680 pixels: allow a near tie or so


def test_the_encoder_model_exports_and_agrees_with_torch(tiny_encoder_weights, tmp_path):
    onnx_path, difference = export_onnx(tiny_encoder_weights, tmp_path / "lite.onnx")
    assert difference < 1e-4
    torch_backend, labels, _ = load_predictor(tiny_encoder_weights, None, "torch", "cpu")
    onnx_backend, _, _ = load_predictor(onnx_path, None, "onnx", "cpu")
    photo, coarse, _ = make_scene(90, 70, seed=3)  # padded to 96 x 96: a side that is no power of two
    for settings in (WindowSettings(whole_image=True), WindowSettings(window=64, overlap=16)):
        expected = refine_probabilities(torch_backend, photo, coarse, labels.num_classes, settings)
        actual = refine_probabilities(onnx_backend, photo, coarse, labels.num_classes, settings)
        assert actual.shape == (labels.num_classes, 90, 70)
        assert np.abs(actual - expected).max() < PROBABILITY_TOLERANCE
