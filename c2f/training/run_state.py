"""A training run's state and its checkpoint: model, optimisers, history, loss weights.

A checkpoint is one safetensors file holding the state after a complete epoch;
resuming refuses a run whose settings or data differ from the checkpoint's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from c2f.config import ModelConfig, TrainConfig
from c2f.errors import C2FError
from c2f.io.label_sets import LabelSet
from c2f.model import Network, build_model
from c2f.training.gan import Discriminator
from c2f.weights import (
    clean_state_dict,
    legacy_upsampling,
    load_tensors,
    load_weights,
    model_metadata,
    save_tensors,
)

CHECKPOINT_NAME = "checkpoint.safetensors"


def optimizer_tensors(optimizer: torch.optim.Optimizer, prefix: str = "optimizer") -> tuple[dict[str, torch.Tensor], dict]:
    """Flatten Adam's state into named tensors plus JSON-able parameter groups."""
    state = optimizer.state_dict()
    tensors = {f"{prefix}.{index}.{key}": value for index, entry in state["state"].items()
               for key, value in entry.items()}
    return tensors, {"param_groups": state["param_groups"]}


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], groups: dict,
                      prefix: str = "optimizer") -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, tensor in tensors.items():
        if name.startswith(f"{prefix}."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = tensor
    optimizer.load_state_dict({"state": state, "param_groups": groups["param_groups"]})


@dataclass
class Run:
    """Mutable state of a training run; what a checkpoint stores."""

    model: Network
    optimizer: torch.optim.Optimizer
    history: list[dict]
    loss_weights: np.ndarray
    discriminator: nn.Module | None = None  # gan mode only
    discriminator_optimizer: torch.optim.Optimizer | None = None


def save_checkpoint(out_dir: Path, run: Run, labels: LabelSet, config: TrainConfig, split: dict) -> None:
    """Write the run's complete state after an epoch, atomically, to out_dir/checkpoint.safetensors."""
    tensors, groups = optimizer_tensors(run.optimizer)
    tensors.update({f"model.{name}": value for name, value in run.model.state_dict().items()})
    metadata = {**model_metadata(run.model.config, labels), "train_config": dataclasses.asdict(config),
                "history": run.history, "split": split, "optimizer": groups,
                "loss_weights": run.loss_weights.tolist()}
    if run.discriminator is not None:
        discriminator_tensors, metadata["discriminator_optimizer"] = optimizer_tensors(
            run.discriminator_optimizer, "discriminator_optimizer")
        tensors.update(discriminator_tensors)
        tensors.update({f"discriminator.{name}": value for name, value in run.discriminator.state_dict().items()})
    save_tensors(out_dir / CHECKPOINT_NAME, tensors, metadata)


def start_run(model_config: ModelConfig, config: TrainConfig, loss_weights: np.ndarray,
              labels: LabelSet | None = None, pretrained: bool = True) -> Run:
    """A new run: seeded initialisation (an encoder's ImageNet weights unless `pretrained` is False, or --init
    weights), Adam, and the discriminator in gan mode."""
    torch.manual_seed(config.seed)
    model = build_model(model_config, pretrained=pretrained and not config.init_weights)
    if config.init_weights:
        model.load_state_dict(initial_weights(Path(config.init_weights), model_config, labels).state_dict())
    model.log_loss_weights.copy_(torch.from_numpy(np.log(loss_weights)))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    run = Run(model, optimizer, [], loss_weights)
    if config.mode == "gan":
        run.discriminator = Discriminator(model_config.num_classes, config.discriminator)
        run.discriminator_optimizer = torch.optim.Adam(run.discriminator.parameters(), lr=config.learning_rate,
                                                       betas=(0.5, 0.999))  # the usual GAN setting
    return run


def move_run(run: Run, device: torch.device) -> None:
    """Move the networks and their optimisers' state to a device (a no-op on the CPU, where runs start)."""
    if device.type == "cpu":
        return
    pairs = [(run.model, run.optimizer), (run.discriminator, run.discriminator_optimizer)]
    for network, optimizer in pairs:
        if network is None:
            continue
        network.to(device)
        # Reloading its own state casts Adam's moments to the parameters' device (and keeps its step on the CPU).
        optimizer.load_state_dict(optimizer.state_dict())


def initial_weights(path: Path, model_config: ModelConfig, labels: LabelSet | None) -> Network:
    """The model in `path`, refused unless it has this run's architecture and label set."""
    model, _, _ = load_weights(path, labels)
    if model.config != model_config:
        raise C2FError(f"--init {path} holds a model with {model.config}, but this run builds {model_config}; "
                       "pass the same --encoder, --width, --depth, --upsampling and a --mode with the same inputs.")
    return model


def resume_run(out_dir: Path, model_config: ModelConfig, config: TrainConfig, split: dict) -> Run:
    """Rebuild a run from out_dir's last complete checkpoint, refusing a different setup."""
    path = out_dir / CHECKPOINT_NAME
    if not path.is_file():
        raise C2FError(f"nothing to resume: {path} does not exist; run without --resume to start.")
    tensors, metadata = load_tensors(path)
    # A setting newer than the checkpoint was, in effect, at its default when the checkpoint was written
    # (fine_fraction: 1.0, all faces fine, before the field existed; up-sampling: weights.legacy_upsampling).
    model_config_stored = metadata.get("model_config") or {}
    defaults = {**dataclasses.asdict(ModelConfig()), "upsampling": legacy_upsampling(model_config_stored),
                **dataclasses.asdict(TrainConfig().resolved())}
    stored = {**defaults, **model_config_stored, **(metadata.get("train_config") or {})}
    current = {**dataclasses.asdict(model_config), **dataclasses.asdict(config)}
    differences = [f"{key} {stored.get(key)!r} there, {value!r} now" for key, value in current.items()
                   if stored.get(key) != value]
    if {"coarse_only": [], **(metadata.get("split") or {})} != {"coarse_only": [], **split}:
        differences.append("other training faces")
    if differences:
        raise C2FError(f"{path} was written with other settings or data ({'; '.join(differences)}); resume with "
                       "the same options, or choose another --out.")
    # The checkpoint holds the weights: the --init file is not read again, and may be gone.
    run = start_run(model_config, dataclasses.replace(config, init_weights=""),
                    np.array(metadata["loss_weights"], dtype=np.float32), pretrained=False)
    try:
        run.model.load_state_dict(clean_state_dict(tensors, "model"))
        restore_optimizer(run.optimizer, tensors, metadata["optimizer"])
        if run.discriminator is not None:
            run.discriminator.load_state_dict(clean_state_dict(tensors, "discriminator"))
            restore_optimizer(run.discriminator_optimizer, tensors, metadata["discriminator_optimizer"],
                              "discriminator_optimizer")
    except (RuntimeError, KeyError, ValueError) as error:
        raise C2FError(f"{path} does not fit this version of c2f's model ({str(error).splitlines()[0]}); "
                       "start a new run in another --out.") from None
    run.history = metadata["history"]
    return run
