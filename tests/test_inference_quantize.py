"""int8 export: a quantised tiny model agrees with its float32 self, carries its metadata, and loads for refine."""

from __future__ import annotations

import json

import onnx
import pytest
from conftest import make_generic_dataset, make_scene
from typer.testing import CliRunner

from c2f.cli import app
from c2f.config import QuantizeSettings
from c2f.errors import C2FError
from c2f.io.label_sets import FASSEG_LABELS
from c2f.inference.backends import load_predictor, model_file
from c2f.inference.export import export_int8, export_onnx
from c2f.inference.sliding_window import refine_map
from c2f.shipped import int8_onnx_path

# The tiny model is barely trained, so its classes are closer calls than a real model's.
MIN_TINY_AGREEMENT = 0.9


@pytest.fixture(scope="module")
def quantized(tiny_weights, tmp_path_factory):
    """(float32 .onnx, int8 .onnx, agreement) of the tiny model, calibrated on synthetic faces."""
    folder = tmp_path_factory.mktemp("quantized")
    calibration = make_generic_dataset(folder / "calibration", [(48, 40), (40, 56), (64, 48), (44, 44)])
    float_path, _ = export_onnx(tiny_weights, folder / "tiny.onnx")
    int8_path, difference, agreement = export_int8(calibration, tiny_weights, folder / "tiny.int8.onnx")
    assert difference < 1e-3
    return float_path, int8_path, agreement


def test_the_int8_model_gives_the_float32_class_on_most_pixels(quantized):
    float_path, int8_path, agreement = quantized
    assert agreement >= MIN_TINY_AGREEMENT
    photo, coarse, _ = make_scene(72, 60, seed=11)  # a face the calibration never saw
    maps = [refine_map(load_predictor(path, None, "onnx", "cpu")[0], photo, coarse, 6) for path in quantized[:2]]
    assert (maps[0] == maps[1]).mean() >= MIN_TINY_AGREEMENT


def test_the_int8_model_is_int8_and_keeps_the_float32_metadata(quantized):
    float_path, int8_path, _ = quantized
    float_metadata = {entry.key: entry.value for entry in onnx.load(str(float_path)).metadata_props}
    int8_model = onnx.load(str(int8_path))
    int8_metadata = {entry.key: entry.value for entry in int8_model.metadata_props}
    assert json.loads(float_metadata.pop("precision")) == "float32"
    assert json.loads(int8_metadata.pop("precision")) == "int8"
    assert int8_metadata == float_metadata
    assert {"QuantizeLinear", "DequantizeLinear"} <= {node.op_type for node in int8_model.graph.node}
    assert onnx.TensorProto.INT8 in {tensor.data_type for tensor in int8_model.graph.initializer}  # the weights


def test_an_int8_model_that_disagrees_too_much_is_not_written(tiny_weights, tmp_path):
    calibration = make_generic_dataset(tmp_path / "calibration", [(48, 40)])
    output = tmp_path / "tiny.int8.onnx"
    with pytest.raises(C2FError, match="not written"):
        export_int8(calibration, tiny_weights, output, settings=QuantizeSettings(min_agreement=1.01))
    assert not output.exists() and list(tmp_path.glob("*.onnx")) == []


def test_cli_export_quantize_needs_a_calibration_folder(tiny_weights, tmp_path):
    result = CliRunner().invoke(app, ["export", "--weights", str(tiny_weights), "--quantize", "int8",
                                      "-o", str(tmp_path / "m.int8.onnx")])
    assert result.exit_code == 1 and "--calibration" in result.output


def test_precision_picks_among_the_shipped_models_only():
    with pytest.raises(C2FError, match="--precision chooses among the shipped models"):
        model_file(int8_onnx_path(), "auto", "fp32")
    with pytest.raises(C2FError, match="ONNX Runtime"):
        model_file(None, "torch", "int8")
    if int8_onnx_path().is_file():
        assert model_file(None, "auto", "auto") == int8_onnx_path()
        assert model_file(None, "auto", "fp32").name == "fasseg.onnx"


def test_the_encoder_model_quantizes_to_int8_close_to_its_float32_self(tiny_encoder_weights, tmp_path):
    calibration = make_generic_dataset(tmp_path / "calibration", [(64, 64), (72, 64)])
    int8_path, difference, agreement = export_int8(calibration, tiny_encoder_weights, tmp_path / "lite.int8.onnx",
                                                  settings=QuantizeSettings(min_agreement=MIN_TINY_AGREEMENT))
    assert difference < 1e-4 and agreement >= MIN_TINY_AGREEMENT
    photo, coarse, _ = make_scene(64, 64, seed=12)
    predictor, labels, _ = load_predictor(int8_path, None, "onnx", "cpu")
    assert refine_map(predictor, photo, coarse, labels.num_classes).shape == (64, 64)


def test_a_nearest_upsampling_model_quantizes_every_convolution_and_agrees_with_float32(tmp_path):
    from c2f.config import ModelConfig, TrainConfig
    from c2f.training.loop import train_model
    from c2f.training.samples import find_samples, load_sample

    dataset = make_generic_dataset(tmp_path / "dataset", [(48, 40), (40, 56), (64, 48)])
    samples = [load_sample(sample, FASSEG_LABELS) for sample in find_samples(dataset)]
    config = TrainConfig(epochs=1, crops_per_image=2, crop_size=32, batch_size=4, validation_fraction=0.0)
    weights = train_model(samples, FASSEG_LABELS, ModelConfig(width=4, depth=2, upsampling="nearest"), config,
                          tmp_path / "run")
    int8_path, difference, agreement = export_int8(dataset, weights, tmp_path / "nearest.int8.onnx")
    assert difference < 1e-3 and agreement >= MIN_TINY_AGREEMENT
    graph = onnx.load(str(int8_path)).graph
    operators = [node.op_type for node in graph.node]
    assert "ConvTranspose" not in operators and operators.count("Resize") == 2
    # Every convolution, the 1x1 ones before each doubling included, reads dequantised int8 weights.
    int8_weights = {tensor.name for tensor in graph.initializer if tensor.data_type == onnx.TensorProto.INT8}
    dequantised = {node.output[0]: node.input[0] for node in graph.node if node.op_type == "DequantizeLinear"}
    convolutions = [node for node in graph.node if node.op_type == "Conv"]
    assert len(convolutions) == 3 * 2 + 2 * 2 + 2 + 1  # encoder and decoder blocks, 1x1 up-mixing, head
    assert all(dequantised.get(node.input[1]) in int8_weights for node in convolutions)
    photo, coarse, _ = make_scene(72, 60, seed=13)
    maps = [refine_map(load_predictor(path, None, "onnx", "cpu")[0], photo, coarse, 6)
            for path in (export_onnx(weights, tmp_path / "nearest.onnx")[0], int8_path)]
    assert (maps[0] == maps[1]).mean() >= MIN_TINY_AGREEMENT


def test_calibration_draws_coarse_maps_for_fine_only_photos_of_a_model_trained_with_coarsen(tmp_path):
    import shutil

    from c2f.inference.export import calibration_set

    folder = make_generic_dataset(tmp_path / "fine_only", [(48, 40), (40, 56)])
    shutil.rmtree(folder / "coarse")
    with pytest.raises(C2FError, match="no photo with a coarse map"):
        calibration_set(folder, FASSEG_LABELS, {}, True, QuantizeSettings())
    inputs = calibration_set(folder, FASSEG_LABELS, {"train_config": {"coarsen": "tolerance=1:2"}}, True,
                             QuantizeSettings())
    assert len(inputs) == 2 and all(batch.shape[1] == 3 + FASSEG_LABELS.num_classes for batch in inputs)
    assert all(batch[:, 3:].sum(axis=1).max() == 1 for batch in inputs)  # a one-hot coarse map, drawn
    assert len(calibration_set(folder, FASSEG_LABELS, {}, False, QuantizeSettings())) == 2  # RGB-only: photos
