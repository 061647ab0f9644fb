"""ONNX export of a trained U-Net, and the ONNX Runtime predictor.

An exported file carries what its safetensors source carries: the label set
and model config (and any other metadata) as JSON strings in the ONNX model's
metadata_props, so an .onnx file rebuilds its predictor on its own. Running
uses onnxruntime alone; torch and the onnx package are imported here only to export.
"""

from __future__ import annotations

import dataclasses
import inspect
import io
import json
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from c2f_cli.backends import check_device
from c2f_cli.config import ModelConfig
from c2f_cli.errors import C2FError
from c2f_cli.labels import LabelSet, check_labels, write_atomically
from c2f_cli.paths import DEFAULT_WEIGHTS_NAME, FORMAT_VERSION, default_weights_path
from c2f_cli.tiling import Predictor

if TYPE_CHECKING:
    from c2f_cli.model import UNet

DEFAULT_ONNX_NAME = Path(DEFAULT_WEIGHTS_NAME).with_suffix(".onnx").name
INPUT_NAME = "inputs"  # float32 (batch, C, height, width), height and width multiples of 2**depth
OUTPUT_NAME = "logits"  # float32 (batch, K, height, width)
# Every operator of the U-Net exists since opset 11; 17 loads in every ONNX Runtime we allow (>= 1.17).
ONNX_OPSET = 17
# Largest |ONNX - torch| logit difference export accepts when it checks its own file.
EXPORT_TOLERANCE = 1e-3


def default_onnx_path() -> Path:
    """The shipped FASSEG model as ONNX: weights/fasseg.onnx beside the shipped safetensors."""
    return default_weights_path(DEFAULT_ONNX_NAME)


def export_onnx(weights: Path | None = None, output: Path | None = None) -> tuple[Path, float]:
    """Write a weights file's model as ONNX (next to it by default); return its path and checked difference.

    Batch, height and width are dynamic, so one file serves any window size,
    batch size and --whole-image. The new file is run once against torch and
    refused if its logits differ by more than EXPORT_TOLERANCE.
    """
    import onnx
    import torch

    from c2f_cli.weights import load_weights

    weights = Path(weights) if weights else default_weights_path()
    output = Path(output) if output else weights.with_suffix(".onnx")
    if output.suffix.lower() != ".onnx":
        raise C2FError(f"{output}: an ONNX model is written to a file ending in .onnx.")
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
               "labels": json.loads(labels.to_json()), "source_weights": weights.name}
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
    import torch

    side = 2 ** model.config.depth
    inputs = np.random.default_rng(0).normal(size=(2, model.config.in_channels, 3 * side, 2 * side))
    inputs = inputs.astype(np.float32)
    predictor, _, _ = onnx_predictor(path, None, "cpu")
    with torch.inference_mode():
        expected = model(torch.from_numpy(inputs)).numpy()
    difference = float(np.abs(predictor(inputs) - expected).max())
    if not difference <= EXPORT_TOLERANCE:
        raise C2FError(f"the exported {output.name} disagrees with torch by {difference:.2g} (above "
                       f"{EXPORT_TOLERANCE:g}); it was not written. Report this with your torch and onnx versions.")
    return difference


def choose_providers(device: str) -> list[str]:
    """ONNX Runtime providers: CUDA first when available and allowed, then the CPU."""
    import onnxruntime

    check_device(device)
    has_cuda = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    if device == "cuda" and not has_cuda:
        raise C2FError("--device cuda was asked for, but this ONNX Runtime has no CUDA provider; "
                       "install onnxruntime-gpu, or use --device auto or cpu.")
    if device != "cpu" and has_cuda:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def thread_count() -> int:
    """Intra-op threads: OMP_NUM_THREADS when set (as torch honours it), else the cores this process may use."""
    requested = os.environ.get("OMP_NUM_THREADS", "")
    if requested.isdigit() and int(requested) > 0:
        return int(requested)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def open_session(path: Path, device: str):
    """One InferenceSession for the file, with clear errors for missing or broken files."""
    import onnxruntime
    from onnxruntime.capi import onnxruntime_pybind11_state as runtime_errors

    providers = choose_providers(device)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = thread_count()
    options.log_severity_level = 3  # errors only: no warnings about unused initialisers and such
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=providers)
    except (runtime_errors.InvalidProtobuf, runtime_errors.InvalidGraph, runtime_errors.Fail,
            runtime_errors.NoSuchFile, runtime_errors.RuntimeException, runtime_errors.InvalidArgument,
            ValueError) as error:  # ValueError: a damaged file's names are not even UTF-8
        raise C2FError(f"{path} is not a readable ONNX model ({str(error).strip()}); it may be truncated. "
                       "Re-create it with `c2f export`.") from None


def read_metadata(session, path: Path) -> tuple[LabelSet, ModelConfig]:
    """The label set and model config an exported file carries."""
    raw = session.get_modelmeta().custom_metadata_map
    if raw.get("c2f_format") != FORMAT_VERSION:
        raise C2FError(f"{path} is an ONNX model but not one written by `c2f export`; it names no label set.")
    try:
        labels = LabelSet.from_dict(json.loads(raw["labels"]), str(path))
        config = ModelConfig(**json.loads(raw["model_config"]))
    except (KeyError, TypeError, json.JSONDecodeError) as error:
        raise C2FError(f"{path}: its metadata is damaged ({error}); re-create it with `c2f export`.") from None
    (model_input,) = session.get_inputs()
    if model_input.shape[1] != config.in_channels:
        raise C2FError(f"{path}: its network takes {model_input.shape[1]} channels, but its metadata "
                       f"describes {config.in_channels}; re-create it with `c2f export`.")
    return labels, config


def onnx_predictor(weights: Path | None, labels: LabelSet | None,
                   device: str = "auto") -> tuple[Predictor, LabelSet, bool]:
    """An ONNX Runtime predictor for an exported file, its label set, and whether it reads the coarse map."""
    path = Path(weights) if weights else default_onnx_path()
    if path.suffix.lower() == ".safetensors":
        raise C2FError(f"{path} holds torch weights; --backend onnx needs an .onnx file. Run "
                       f"`c2f export --weights {path}` and pass the .onnx it writes.")
    if not path.is_file():
        hint = "run `c2f export` to create it" if weights is None else "export one with `c2f export --weights ...`"
        raise C2FError(f"ONNX model not found: {path}; {hint}, or use --backend torch.")
    session = open_session(path, device)
    stored_labels, config = read_metadata(session, path)
    check_labels(stored_labels, labels, path)
    output_names = [OUTPUT_NAME]

    def predict(batch: np.ndarray) -> np.ndarray:
        return session.run(output_names, {INPUT_NAME: batch})[0]
    return predict, stored_labels, config.use_coarse
