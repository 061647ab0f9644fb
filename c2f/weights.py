"""Saving and loading weights and training checkpoints as safetensors.

Nothing is ever unpickled: tensors go into safetensors, everything else
(model config, label set, training command, validation figures) into its
string metadata as JSON, so a weights file rebuilds its own model.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from c2f.config import FORMAT_VERSION, SIZE_MULTIPLE, Encoder, ModelConfig, Upsampling
from c2f.errors import C2FError
from c2f.io.documents import parse_json
from c2f.io.files import write_atomically
from c2f.io.label_sets import LabelSet, check_labels
from c2f.model import Network, build_model
from c2f.shipped import default_weights_path


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, object]) -> None:
    """Write tensors plus JSON-encoded metadata atomically."""
    text_metadata = {key: json.dumps(value) for key, value in metadata.items()}
    text_metadata["c2f_format"] = FORMAT_VERSION
    contiguous = {name: tensor.detach().contiguous().cpu() for name, tensor in tensors.items()}
    write_atomically(path, lambda temporary: save_file(contiguous, str(temporary), metadata=text_metadata))


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, object]]:
    """Read tensors and decoded metadata, with a clear error for missing or broken files."""
    path = Path(path)
    if not path.is_file():
        raise C2FError(f"weights file not found: {path}; give the path of a .safetensors file written by "
                       "`c2f train`.")
    try:
        tensors = load_file(str(path))
        with safe_open(str(path), framework="pt") as handle:
            raw_metadata = handle.metadata() or {}
    except (SafetensorError, OSError, ValueError) as error:
        raise C2FError(f"{path} is not a readable safetensors file ({error}); it may be truncated.") from None
    if raw_metadata.get("c2f_format") != FORMAT_VERSION:
        raise C2FError(f"{path} is a safetensors file but not one written by c2f.")
    metadata = {key: parse_json(value, f"{path} metadata {key!r}", "; the file is damaged")
                for key, value in raw_metadata.items() if key != "c2f_format"}
    check_tensors(tensors, path)
    return tensors, metadata


# Integer tensors a model or checkpoint may rightly hold: batch-norm counters.
COUNTER_SUFFIXES = ("num_batches_tracked",)


def check_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Refuse weights that cannot be right: integer where floats belong, or NaN and infinite values."""
    for name, tensor in tensors.items():
        if name.endswith(COUNTER_SUFFIXES):
            continue
        if not tensor.is_floating_point():
            raise C2FError(f"{path} holds {str(tensor.dtype).removeprefix('torch.')} tensors ({name}); weights "
                           "are floating point. Use the model.safetensors that `c2f train` wrote.")
        if not bool(torch.isfinite(tensor).all()):
            raise C2FError(f"{path} holds NaN or infinite values (in {name}); the training that wrote it diverged. "
                           "Use an earlier checkpoint or retrain with a lower --lr.")


def model_metadata(config: ModelConfig, labels: LabelSet) -> dict[str, object]:
    return {"model_config": dataclasses.asdict(config), "labels": labels.to_dict()}


def save_weights(path: Path, model: Network, labels: LabelSet, extra: dict[str, object] | None = None) -> None:
    """Save a model's state with its config, label set and any extra metadata."""
    metadata = {**model_metadata(model.config, labels), **(extra or {})}
    save_tensors(path, model.state_dict(), metadata)


# refine pads inputs to multiples of SIZE_MULTIPLE (32), so a U-Net may halve them at most 5 times.
MAX_DEPTH = SIZE_MULTIPLE.bit_length() - 1
# Sane bounds for a stored config: a damaged file must not make us build a model of many gigabytes.
MODEL_CONFIG_BOUNDS = {"num_classes": (2, 65536), "width": (1, 256), "depth": (0, MAX_DEPTH)}
MODEL_CONFIG_CHOICES = {"encoder": {encoder.value for encoder in Encoder},
                        "upsampling": {upsampling.value for upsampling in Upsampling}}
MAX_BOTTLENECK_CHANNELS = 2048  # width * 2**depth; the shipped model has 256


def legacy_upsampling(stored: dict) -> str:
    """The up-sampling of a model config stored before it was a choice: the U-Net's transposed convolutions; an
    encoder model's decoder never used the field, so it takes today's default like any new encoder run."""
    return Upsampling.transposed.value if stored.get("encoder", Encoder.unet.value) == Encoder.unet.value else (
        ModelConfig.upsampling)


def check_model_config(stored: object, path: Path) -> ModelConfig:
    """A ModelConfig from stored metadata, refusing unknown fields, wrong types and absurd sizes."""
    defaults = dataclasses.asdict(ModelConfig())
    if isinstance(stored, dict) and "upsampling" not in stored:  # written before up-sampling was a choice
        stored = {**stored, "upsampling": legacy_upsampling(stored)}
    depth = stored.get("depth") if isinstance(stored, dict) else None
    if type(depth) is int and depth > MAX_DEPTH:
        raise C2FError(f"{path}: its model halves its input {depth} times, but c2f pads inputs to multiples of "
                       f"{SIZE_MULTIPLE} and so runs a depth of at most {MAX_DEPTH}; retrain with --depth "
                       f"{MAX_DEPTH} or less.")

    def fits(key: str, value: object) -> bool:
        expected = type(defaults[key])
        if expected is float and type(value) is int:
            value = float(value)  # JSON writes 1.0 as 1
        low, high = MODEL_CONFIG_BOUNDS.get(key, (None, None))
        choices = MODEL_CONFIG_CHOICES.get(key)
        return (type(value) is expected and (low is None or low <= value <= high)
                and (choices is None or value in choices))
    valid = isinstance(stored, dict) and all(key in defaults and fits(key, value) for key, value in stored.items())
    config = ModelConfig(**stored) if valid else None
    if config is None or config.width * 2**config.depth > MAX_BOTTLENECK_CHANNELS:
        raise C2FError(f"{path}: its stored model config {stored!r} is damaged; use another --weights file.")
    return config


def model_from_tensors(tensors: dict[str, torch.Tensor], metadata: dict[str, object], path: Path) -> Network:
    """Rebuild a model from its stored config and load its state."""
    config = check_model_config(metadata.get("model_config"), path)
    try:
        model = build_model(config)
        model.load_state_dict(clean_state_dict(tensors))
    except (KeyError, TypeError, RuntimeError, ValueError) as error:
        raise C2FError(f"{path}: its tensors do not match its stored model config ({state_dict_problem(error)}); "
                       "use the file `c2f train` wrote.") from None
    return model.eval()


def state_dict_problem(error: Exception) -> str:
    """load_state_dict's many-line complaint as one line: what kind of mismatch, and its first tensor."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[1] if len(lines) > 1 else " ".join(lines))[:300]  # line 0 only says "Error(s) in loading"


def clean_state_dict(tensors: dict[str, torch.Tensor], part: str = "model") -> dict[str, torch.Tensor]:
    """The tensors of one part of a file ("model", or a checkpoint's "discriminator"), without wrappers' prefixes.

    A training checkpoint names each tensor after its part ("model.", "discriminator.", "optimizer.");
    a weights file holds the model alone. DataParallel ("module.") and torch.compile ("_orig_mod.")
    prefixes are taken off too.
    """
    prefix = f"{part}."
    if part != "model" or any(name.startswith(prefix) for name in tensors):
        tensors = {name.removeprefix(prefix): tensor for name, tensor in tensors.items() if name.startswith(prefix)}
    cleaned = {}
    for name, tensor in tensors.items():
        if name.startswith("optimizer."):
            continue
        for wrapper in ("module.", "_orig_mod."):
            name = name.removeprefix(wrapper)
        cleaned[name] = tensor
    return cleaned


def load_weights(path: Path | None = None,
                 labels: LabelSet | None = None) -> tuple[Network, LabelSet, dict[str, object]]:
    """Load a model, its label set (`labels` in the model's class order when given) and metadata; refuse a `labels`
    whose classes differ from the model's."""
    path = Path(path) if path else default_weights_path()
    tensors, metadata = load_tensors(path)
    stored_labels = LabelSet.from_dict(metadata.get("labels", {}), str(path))
    labels = check_labels(stored_labels, labels, path)
    stored_classes = check_model_config(metadata.get("model_config"), path).num_classes
    if stored_classes != stored_labels.num_classes:
        raise C2FError(f"{path}: its model predicts {stored_classes} classes but its label set has "
                       f"{stored_labels.num_classes}; the file is damaged.")
    return model_from_tensors(tensors, metadata, path), labels, metadata
