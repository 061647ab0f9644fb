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
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from c2f.config import FORMAT_VERSION
from c2f.errors import C2FError
from c2f.inference.onnx_session import INPUT_NAME, OUTPUT_NAME, onnx_predictor
from c2f.io.files import check_new_file, guard_outputs, sweep_stale_temporaries, write_atomically
from c2f.model import UNet
from c2f.shipped import default_weights_path, is_inside_package
from c2f.weights import load_weights

# Every operator of the U-Net exists since opset 11; 17 loads in every ONNX Runtime we allow (>= 1.17).
ONNX_OPSET = 17
# Largest |ONNX - torch| logit difference export accepts when it checks its own file.
EXPORT_TOLERANCE = 1e-3


def export_onnx(weights: Path | None = None, output: Path | None = None,
                overwrite: bool = True) -> tuple[Path, float]:
    """Write a weights file's model as ONNX; return its path and checked difference.

    The output defaults to the weights' path with the suffix .onnx, and for the shipped model
    (no weights given) to fasseg.onnx in the current folder: never into the installed package.

    Batch, height and width are dynamic, so one file serves any window size,
    batch size and --whole-image. The new file is run once against torch and
    refused if its logits differ by more than EXPORT_TOLERANCE.
    """
    if output is None:
        output = Path(weights).with_suffix(".onnx") if weights else Path(default_weights_path().with_suffix(".onnx").name)
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
    model = model.cpu().eval()
    side = 2 * 2 ** model.config.depth  # any multiple of 2**depth traces the same graph
    example = torch.randn(2, model.config.in_channels, side, side)
    dynamic = {0: "batch", 2: "height", 3: "width"}
    # The TorchScript exporter: deprecated in favour of torch.export (dynamo=True, the default since
    # torch 2.9), but it needs no onnxscript, exports in under a second instead of ten or more, and
    # works across our whole torch range; torch 2.4 has no `dynamo` argument and uses it by default.
    legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the exporter's own deprecation notices
        torch.onnx.export(model, (example,), buffer, opset_version=ONNX_OPSET, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], dynamic_axes={INPUT_NAME: dynamic, OUTPUT_NAME: dynamic},
                          **legacy)
    onnx_model = onnx.load_from_string(buffer.getvalue())
    carried = {**metadata, "model_config": dataclasses.asdict(model.config),
               "labels": labels.to_dict(), "source_weights": weights.name}
    for key, value in carried.items():
        onnx_model.metadata_props.add(key=key, value=json.dumps(value))
    onnx_model.metadata_props.add(key="c2f_format", value=FORMAT_VERSION)
    onnx.checker.check_model(onnx_model)
    checked = []

    def write_checked(temporary: Path) -> None:
        # Checked before the rename: a file that fails leaves an existing output (--overwrite) untouched.
        temporary.write_bytes(onnx_model.SerializeToString())
        checked.append(check_export(model, temporary, output))
    write_atomically(output, write_checked)
    return output, checked[0]


def check_export(model: UNet, path: Path, output: Path) -> float:
    """Largest |ONNX Runtime - torch| logit of the file at path on a random batch; refuse it above tolerance."""
    side = 2 ** model.config.depth
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
