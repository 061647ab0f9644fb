"""The ONNX Runtime backend: one session per model file, its metadata, and its predictor.

Running needs onnxruntime alone (no torch); the file's metadata_props carry the
label set and model config that `c2f export` wrote.
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import Callable

import numpy as np

from c2f.config import FORMAT_VERSION, ModelConfig
from c2f.errors import C2FError, ModelError
from c2f.inference.devices import check_device
from c2f.inference.predictor import Predictor
from c2f.io.documents import parse_json
from c2f.io.label_sets import LabelSet, check_labels
from c2f.shipped import default_onnx_path

INPUT_NAME = "inputs"  # float32 (batch, C, height, width), height and width multiples of 2**depth
OUTPUT_NAME = "logits"  # float32 (batch, K, height, width)


CUDA_PROVIDER = "CUDAExecutionProvider"
# What to do when ONNX Runtime cannot run on the GPU: pip installs onnxruntime-gpu beside onnxruntime
# and, depending on the order, either may own the shared `onnxruntime` folder.
CUDA_HINT = ('for the GPU: pip uninstall -y onnxruntime onnxruntime-gpu && pip install "c2f[gpu]", '
             "with CUDA and cuDNN as onnxruntime-gpu requires")


def choose_providers(device: str) -> list[str]:
    """ONNX Runtime providers: CUDA first when it is listed and not refused (--device cpu), then the CPU."""
    import onnxruntime

    check_device(device)
    if device != "cpu" and CUDA_PROVIDER in onnxruntime.get_available_providers():
        return [CUDA_PROVIDER, "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def cuda_note(device: str, providers: list[str], session_providers: list[str]) -> str | None:
    """One line when the GPU was wanted but the session runs on the CPU, else None (auto on a CPU-only install)."""
    if CUDA_PROVIDER in session_providers or device == "cpu":
        return None
    if CUDA_PROVIDER in providers:  # listed, but it failed to load: missing CUDA or cuDNN libraries
        return f"ONNX Runtime's CUDA provider could not load, so this runs on the CPU; {CUDA_HINT}."
    if device == "cuda":
        return f"this ONNX Runtime has no CUDA provider, so this runs on the CPU; {CUDA_HINT}."
    return None


def thread_count() -> int:
    """Intra-op threads: OMP_NUM_THREADS when set (as torch honours it), else the cores this process may use."""
    requested = os.environ.get("OMP_NUM_THREADS", "")
    if requested.isdigit() and int(requested) > 0:
        return int(requested)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def open_session(path: Path, device: str, on_note: Callable[[str], None] | None = None):
    """One InferenceSession for the file, with clear errors for missing or broken files.

    When the GPU was asked for but cannot be used, the session runs on the CPU and on_note hears why.
    """
    import onnxruntime
    from onnxruntime.capi import onnxruntime_pybind11_state as runtime_errors

    providers = choose_providers(device)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = thread_count()
    options.log_severity_level = 3  # errors only: no warnings about unused initialisers and such
    try:
        # When CUDA fails to load, ONNX Runtime retries on the CPU after printing a banner to stdout, which
        # would mix into the output; cuda_note says the same in one line.
        with contextlib.redirect_stdout(io.StringIO()):
            session = onnxruntime.InferenceSession(str(path), options, providers=providers)
    except (runtime_errors.InvalidProtobuf, runtime_errors.InvalidGraph, runtime_errors.Fail,
            runtime_errors.NoSuchFile, runtime_errors.RuntimeException, runtime_errors.InvalidArgument,
            ValueError) as error:  # ValueError: a damaged file's names are not even UTF-8
        raise C2FError(f"{path} is not a readable ONNX model ({str(error).strip()}); it may be truncated. "
                       "Re-create it with `c2f export`.") from None
    note = cuda_note(device, providers, session.get_providers())
    if note and on_note:
        on_note(note)
    return session


def read_metadata(session, path: Path) -> tuple[LabelSet, ModelConfig]:
    """The label set and model config an exported file carries."""
    raw = session.get_modelmeta().custom_metadata_map
    if raw.get("c2f_format") != FORMAT_VERSION:
        raise C2FError(f"{path} is an ONNX model but not one written by `c2f export`; it names no label set.")
    hint = "; re-create it with `c2f export`"
    try:
        labels = LabelSet.from_dict(parse_json(raw["labels"], f"{path} metadata 'labels'", hint), str(path))
        config = ModelConfig(**parse_json(raw["model_config"], f"{path} metadata 'model_config'", hint))
    except (KeyError, TypeError) as error:
        raise C2FError(f"{path}: its metadata is damaged ({error}){hint}.") from None
    if config.num_classes != labels.num_classes:
        raise C2FError(f"{path}: its model predicts {config.num_classes} classes but its label set has "
                       f"{labels.num_classes}{hint}.")
    (model_input,) = session.get_inputs()
    if model_input.shape[1] != config.in_channels:
        raise C2FError(f"{path}: its network takes {model_input.shape[1]} channels, but its metadata "
                       f"describes {config.in_channels}{hint}.")
    output_shape = session.get_outputs()[0].shape
    channels = output_shape[1] if len(output_shape) == 4 else None
    if len(output_shape) != 4 or (isinstance(channels, int) and channels != labels.num_classes):
        raise C2FError(f"{path}: its network outputs shape {output_shape}, but its metadata names "
                       f"{labels.num_classes} classes (batch, {labels.num_classes}, height, width){hint}.")
    return labels, config


def checked_logits(logits: np.ndarray, batch: np.ndarray, num_classes: int, path: Path) -> np.ndarray:
    """The session's logits, refused (ModelError) unless (N, K, h, w) for an (N, C, h, w) batch and all finite."""
    expected = (batch.shape[0], num_classes, *batch.shape[2:])
    if logits.shape != expected:
        raise ModelError(f"{path}: its network returned logits of shape {logits.shape} where {expected} was "
                         "expected; re-create it with `c2f export`.")
    if not np.isfinite(logits).all():
        raise ModelError(f"{path}: its network produced NaN or infinite logits; its weights are damaged. "
                         "Re-create it with `c2f export` from sound weights.")
    return logits


def onnx_predictor(weights: Path | None, labels: LabelSet | None, device: str = "auto",
                   on_note: Callable[[str], None] | None = None) -> tuple[Predictor, LabelSet, bool]:
    """An ONNX Runtime predictor for an exported file, its label set, and whether it reads the coarse map."""
    path = Path(weights) if weights else default_onnx_path()
    if path.suffix.lower() == ".safetensors":
        raise C2FError(f"{path} holds torch weights; --backend onnx needs an .onnx file. Run "
                       f"`c2f export --weights {path}` and pass the .onnx it writes.")
    if not path.is_file():
        hint = "run `c2f export` to create it" if weights is None else "export one with `c2f export --weights ...`"
        raise C2FError(f"ONNX model not found: {path}; {hint}, or use --backend torch.")
    session = open_session(path, device, on_note)
    stored_labels, config = read_metadata(session, path)
    labels = check_labels(stored_labels, labels, path)
    output_names = [OUTPUT_NAME]

    def predict(batch: np.ndarray) -> np.ndarray:
        # Checked on every call (a fraction of a millisecond): a bad file must not yield a plausible map.
        return checked_logits(session.run(output_names, {INPUT_NAME: batch})[0], batch, stored_labels.num_classes,
                              path)
    return predict, labels, config.use_coarse
