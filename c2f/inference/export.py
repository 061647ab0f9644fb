"""ONNX export of a trained U-Net, checked against torch before the file is kept.

An exported file carries what its safetensors source carries: the label set and
model config (and any other metadata) as JSON strings in the ONNX model's
metadata_props, so an .onnx file rebuilds its predictor on its own.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from c2f.config import FORMAT_VERSION, QuantizeSettings
from c2f.errors import C2FError
from c2f.inference.onnx_session import INPUT_NAME, OUTPUT_NAME, onnx_predictor
from c2f.inference.quantize import calibration_inputs, quantize_model
from c2f.io.files import check_new_file, guard_outputs, sweep_stale_temporaries, write_atomically
from c2f.model import Network
from c2f.io.label_sets import LabelSet
from c2f.shipped import default_weights_path, is_inside_package
from c2f.training.coarsen import draw_coarse_maps, parse_coarsen_spec
from c2f.training.samples import find_samples, load_sample
from c2f.weights import load_weights

# Every operator of the U-Net exists since opset 11; 17 loads in every ONNX Runtime we allow (>= 1.17).
ONNX_OPSET = 17
# Largest |ONNX - torch| logit difference export accepts when it checks its own file.
EXPORT_TOLERANCE = 1e-3


def export_onnx(weights: Path | None = None, output: Path | None = None,
                overwrite: bool = True) -> tuple[Path, float]:
    """Write a weights file's model as float32 ONNX (next to it by default); return its path and checked difference."""
    path, difference, _ = export_model(weights, output, overwrite)
    return path, difference


def export_int8(calibration: Path, weights: Path | None = None, output: Path | None = None, overwrite: bool = True,
                settings: QuantizeSettings = QuantizeSettings()) -> tuple[Path, float, float]:
    """Write a weights file's model as int8 ONNX (NAME.int8.onnx by default): its path, float32's checked
    difference from torch, and the int8 model's class agreement with float32 on the calibration photos."""
    path, difference, agreement = export_model(weights, output, overwrite, calibration, settings)
    return path, difference, agreement


def export_model(weights: Path | None = None, output: Path | None = None, overwrite: bool = True,
                 calibration: Path | None = None,
                 settings: QuantizeSettings = QuantizeSettings()) -> tuple[Path, float, float | None]:
    """Write a weights file's model as ONNX (next to it by default); its path, checked difference and int8 agreement.

    The output defaults to the weights' path with the suffix .onnx (.int8.onnx with a
    calibration folder), and for the shipped model (no weights given) to fasseg.onnx
    (fasseg.int8.onnx) in the current folder: never into the installed package.

    Batch, height and width are dynamic, so one file serves any window size,
    batch size and --whole-image. The float32 model is run once against torch and
    refused if its logits differ by more than EXPORT_TOLERANCE. With a calibration
    folder the file written is the int8 model (NAME.int8.onnx by default), refused
    unless its class ids agree with float32 (the returned share) on the calibration photos.
    """
    suffix = ".int8.onnx" if calibration else ".onnx"
    if output is None:
        output = Path(weights).with_suffix(suffix) if weights else Path(default_weights_path().with_suffix(suffix).name)
    weights = Path(weights) if weights else default_weights_path()
    output = Path(output)
    if is_inside_package(output):
        raise C2FError(f"{output} lies inside the installed c2f package; pass --output with a path of your own, "
                       "e.g. --output model.onnx.")
    if output.suffix.lower() != ".onnx":
        raise C2FError(f"{output}: an ONNX model is written to a file ending in .onnx.")
    started = time.time()
    guard_outputs({"the weights": weights}, {"-o": output})
    check_new_file(output, overwrite)
    sweep_stale_temporaries([output.parent], started)
    model, labels, metadata = load_weights(weights)
    calibration_batches = None if calibration is None else calibration_set(calibration, labels, metadata,
                                                                           model.config.use_coarse, settings)
    model = model.cpu().eval()
    side = 2 * model.config.size_multiple  # any multiple of it traces the same graph
    example = torch.randn(2, model.config.in_channels, side, side)
    dynamic = {0: "batch", 2: "height", 3: "width"}
    # The TorchScript exporter: deprecated in favour of torch.export (dynamo=True, the default since
    # torch 2.9), but it needs no onnxscript, exports in under a second instead of ten or more, and
    # works across our whole torch range; torch 2.4 has no `dynamo` argument and uses it by default.
    legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the exporter's own deprecation notices
        # The encoder's asymmetric padding exports as a Pad whose pads are built with reversing Slices the exporter
        # cannot fold; ONNX Runtime folds them when it loads the model, so the notice says nothing to act on.
        warnings.filterwarnings("ignore", "Constant folding - Only steps=1", UserWarning)
        torch.onnx.export(model, (example,), buffer, opset_version=ONNX_OPSET, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], dynamic_axes={INPUT_NAME: dynamic, OUTPUT_NAME: dynamic},
                          **legacy)
    onnx_model = onnx.load_from_string(buffer.getvalue())
    carried = {**metadata, "model_config": dataclasses.asdict(model.config),
               "labels": labels.to_dict(), "source_weights": weights.name}
    for key, value in carried.items():
        onnx_model.metadata_props.add(key=key, value=json.dumps(value))
    onnx_model.metadata_props.add(key="precision", value=json.dumps("float32"))
    onnx_model.metadata_props.add(key="c2f_format", value=FORMAT_VERSION)
    onnx.checker.check_model(onnx_model)
    checked = []

    def write_checked(temporary: Path) -> None:
        # Checked before the rename: a file that fails leaves an existing output (--overwrite) untouched.
        if calibration_batches is None:
            temporary.write_bytes(onnx_model.SerializeToString())
            checked.append(check_export(model, temporary, output))
            return
        with tempfile.TemporaryDirectory() as folder:
            float_model = Path(folder) / "float32.onnx"
            float_model.write_bytes(onnx_model.SerializeToString())
            checked.append(check_export(model, float_model, output))
            checked.append(quantize_model(float_model, temporary, calibration_batches, settings))
    write_atomically(output, write_checked)
    return output, checked[0], checked[1] if len(checked) > 1 else None


CALIBRATION_COARSE_SEED = (0, 3)  # one fixed drawing per fine-only calibration photo


def calibration_set(folder: Path, labels: LabelSet, metadata: dict, uses_coarse: bool,
                    settings: QuantizeSettings) -> list[np.ndarray]:
    """Network inputs of up to settings.calibration_images photos of a dataset folder (as `c2f train` reads).

    When the weights name their training split, only its photos calibrate, so the faces held
    out to score the model never shape its int8 ranges. A model that reads coarse maps calibrates on
    photos with one; where the weights were trained with --coarsen, photos with fine maps only get a
    coarse map drawn from those ranges (one fixed drawing), as training gave them.
    """
    samples = find_samples(folder)
    train_config = metadata.get("train_config") or {}
    spec = train_config.get("coarsen") or "" if uses_coarse else ""
    if uses_coarse:
        samples = [sample for sample in samples if sample.coarse is not None or (spec and sample.fine is not None)]
        if not samples:
            raise C2FError(f"{folder} holds no photo with a coarse map to calibrate this model with; pass a folder "
                           "with coarse maps (coarse/, or FASSEG's V1/) as --calibration.")
    split = metadata.get("split")
    trained = set(split.get("train", [])) if isinstance(split, dict) else set()
    if trained:
        samples = [sample for sample in samples if sample.name in trained]
        if not samples:
            raise C2FError(f"{folder} holds none of the photos the weights were trained on; pass the training "
                           "data folder as --calibration.")
    step = max(1, len(samples) // settings.calibration_images)
    chosen = [load_sample(sample, labels) for sample in samples[::step][:settings.calibration_images]]
    if spec:
        chosen = draw_coarse_maps(chosen, parse_coarsen_spec(spec), labels.num_classes, CALIBRATION_COARSE_SEED,
                                  bool(train_config.get("coarsen_all")))  # as training drew them
    return list(calibration_inputs([(sample.photo, sample.coarse if uses_coarse else None) for sample in chosen],
                                   labels.num_classes))


def check_export(model: Network, path: Path, output: Path) -> float:
    """Largest |ONNX Runtime - torch| logit of the file at path on a random batch; refuse it above tolerance."""
    side = model.config.size_multiple
    inputs = np.random.default_rng(0).normal(size=(2, model.config.in_channels, 3 * side, 2 * side))
    inputs = inputs.astype(np.float32)
    predictor, _, _ = onnx_predictor(path, None, "cpu")
    with torch.inference_mode():
        expected = model(torch.from_numpy(inputs)).numpy()
    if not np.isfinite(expected).all():  # load_weights refuses NaN weights; a NaN here comes from the graph
        raise C2FError(f"the model of {output.name} produces NaN or infinite logits from finite inputs; "
                       "its weights cannot be right. Retrain it or use an earlier checkpoint.")
    difference = float(np.abs(predictor(inputs) - expected).max())
    if not difference <= EXPORT_TOLERANCE:
        raise C2FError(f"the exported {output.name} disagrees with torch by {difference:.2g} (above "
                       f"{EXPORT_TOLERANCE:g}); it was not written. Report this with your torch and onnx versions.")
    return difference
