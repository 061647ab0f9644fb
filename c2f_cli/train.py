"""Training: random crops, class-weighted cross-entropy, Adam, checkpoints every epoch.

Every epoch draws its randomness from (seed, epoch) alone, and a checkpoint
holds the model and optimiser state after a complete epoch, so a run killed at
any moment and resumed reaches exactly the result of an uninterrupted one.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch import nn

from c2f_cli.backends import torch_predictor
from c2f_cli.config import ModelConfig, TrainConfig, WindowSettings
from c2f_cli.data import LoadedSample
from c2f_cli.errors import C2FError
from c2f_cli.labels import LabelSet, write_atomically
from c2f_cli.model import UNet
from c2f_cli.refine import score_refinement
from c2f_cli.tiling import network_input, pad_image
from c2f_cli.weights import load_tensors, model_metadata, save_tensors, save_weights

CHECKPOINT_NAME = "checkpoint.safetensors"
WEIGHTS_NAME = "model.safetensors"


def split_samples(samples: list[LoadedSample], fraction: float, seed: int) -> tuple[list, list]:
    """Deterministic (train, validation) split of the samples."""
    order = np.random.default_rng(seed).permutation(len(samples))
    count = int(round(len(samples) * fraction)) if len(samples) > 1 else 0
    count = min(count, len(samples) - 1)  # a few faces and a large fraction must still leave one to train on
    validation = [samples[index] for index in sorted(order[:count])]
    train = [samples[index] for index in sorted(order[count:])]
    if not train:
        raise C2FError("no face with a fine map is left for training; add faces or lower --validation-fraction.")
    return train, validation


def class_weights(maps: list[np.ndarray], num_classes: int, power: float) -> np.ndarray:
    """float32 (K,) loss weights = frequency ** -power, scaled so frequent pixels weigh ~1 on average."""
    counts = sum(np.bincount(m.ravel(), minlength=num_classes) for m in maps).astype(np.float64)
    frequency = np.maximum(counts / counts.sum(), 1e-6)
    weights = frequency ** -power
    return (weights / (weights * frequency).sum()).astype(np.float32)


def random_crop(sample: LoadedSample, target: np.ndarray, crop_size: int,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An augmented (photo, coarse, target) crop: random scale (half of the time), position and mirror."""
    # Resampling a label map with NEAREST moves its boundaries by up to half a pixel, and most
    # errors sit within two pixels of a boundary: half of the crops keep the native scale.
    scale = math.exp(rng.uniform(math.log(0.75), math.log(1.33))) if rng.random() < 0.5 else 1.0
    source_size = int(round(crop_size / scale))
    height, width = sample.photo.shape[:2]
    arrays = [pad_image(array, max(height, source_size), max(width, source_size))
              for array in (sample.photo, sample.coarse, target)]
    top = rng.integers(0, arrays[0].shape[0] - source_size + 1)
    left = rng.integers(0, arrays[0].shape[1] - source_size + 1)
    crops = [array[top:top + source_size, left:left + source_size] for array in arrays]
    if rng.random() < 0.5:
        crops = [crop[:, ::-1] for crop in crops]
    photo = Image.fromarray(np.ascontiguousarray(crops[0])).resize((crop_size, crop_size), Image.BILINEAR)
    maps = [Image.fromarray(np.ascontiguousarray(crop)).resize((crop_size, crop_size), Image.NEAREST)
            for crop in crops[1:]]
    return np.asarray(photo), np.asarray(maps[0]), np.asarray(maps[1])


def make_batch(crops: list, num_classes: int, use_coarse: bool,
               rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Network inputs (N, C, h, w) with colour jitter, and int64 targets (N, h, w)."""
    inputs = np.stack([network_input(photo, coarse if use_coarse else None, num_classes)
                       for photo, coarse, _ in crops])
    # Lighting and camera differ between datasets: jitter contrast, brightness, and each channel's gain.
    contrast = rng.uniform(0.8, 1.2, size=(len(crops), 1, 1, 1))
    brightness = rng.uniform(-0.2, 0.2, size=(len(crops), 1, 1, 1))
    gain = rng.uniform(0.9, 1.1, size=(len(crops), 3, 1, 1))
    inputs[:, :3] = inputs[:, :3] * contrast * gain + brightness
    targets = np.stack([target for _, _, target in crops]).astype(np.int64)
    return torch.from_numpy(inputs), torch.from_numpy(targets)


def evaluate(model: UNet, samples: list[LoadedSample], num_classes: int) -> dict[str, float]:
    """Pooled pixel accuracy and mean IoU of whole-image predictions on fine-labelled samples."""
    model.eval()
    # The network's own output, unsmoothed, so validation figures compare across c2f versions.
    scores = score_refinement(torch_predictor(model), samples, num_classes, model.config.use_coarse,
                              WindowSettings(whole_image=True, smoothing=0.0))
    return {"val_accuracy": scores.pixel_accuracy, "val_miou": scores.mean_iou,
            **{f"val_iou_{index}": iou for index, iou in enumerate(scores.class_iou)}}


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


def write_log(out_dir: Path, history: list[dict]) -> None:
    """Rewrite the per-epoch CSV and the curves PNG from the full history."""
    if not history:
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    write_atomically(out_dir / "log.csv", lambda temporary: temporary.write_text(buffer.getvalue()))
    plot_curves(out_dir / "curves.png", history)


def plot_curves(path: Path, history: list[dict]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot

    epochs = [row["epoch"] for row in history]
    figure, (loss_axis, score_axis) = pyplot.subplots(1, 2, figsize=(10, 4))
    for key in [key for key in history[0] if key.endswith("loss")]:
        loss_axis.plot(epochs, [row[key] for row in history], label=key)
    loss_axis.set(xlabel="epoch", ylabel="loss", yscale="log")
    loss_axis.legend()
    for key in ("val_accuracy", "val_miou"):
        if key in history[0]:
            score_axis.plot(epochs, [row[key] for row in history], label=key)
    score_axis.set(xlabel="epoch", ylabel="validation")
    if "val_accuracy" in history[0]:  # without held-out faces there is nothing to label (and matplotlib warns)
        score_axis.legend()
    figure.tight_layout()
    write_atomically(path, lambda temporary: figure.savefig(temporary, format="png", dpi=80))
    pyplot.close(figure)


@dataclass
class Run:
    """Mutable state of a training run; what a checkpoint stores."""

    model: UNet
    optimizer: torch.optim.Optimizer
    history: list[dict]
    loss_weights: np.ndarray
    discriminator: nn.Module | None = None  # gan mode only
    discriminator_optimizer: torch.optim.Optimizer | None = None


def save_checkpoint(out_dir: Path, run: Run, labels: LabelSet, config: TrainConfig, split: dict) -> None:
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
              labels: LabelSet | None = None) -> Run:
    torch.manual_seed(config.seed)
    model = UNet(model_config)
    if config.init_weights:
        model.load_state_dict(initial_weights(Path(config.init_weights), model_config, labels).state_dict())
    model.log_loss_weights.copy_(torch.from_numpy(np.log(loss_weights)))
    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    run = Run(model, optimizer, [], loss_weights)
    if config.mode == "gan":
        from c2f_cli.gan import Discriminator

        run.discriminator = Discriminator(model_config.num_classes, config.discriminator)
        run.discriminator_optimizer = torch.optim.Adam(run.discriminator.parameters(), lr=config.learning_rate,
                                                       betas=(0.5, 0.999))  # the usual GAN setting
    return run


def initial_weights(path: Path, model_config: ModelConfig, labels: LabelSet | None) -> UNet:
    """The model in `path`, refused unless it has this run's architecture and label set."""
    from c2f_cli.weights import load_weights

    model, _, _ = load_weights(path, labels)
    if model.config != model_config:
        raise C2FError(f"--init {path} holds a model with {model.config}, but this run builds {model_config}; "
                       "pass the same --width, --depth and a --mode with the same inputs.")
    return model


def resume_run(out_dir: Path, model_config: ModelConfig, config: TrainConfig, split: dict) -> Run:
    """Rebuild a run from out_dir's last complete checkpoint, refusing a different setup."""
    path = out_dir / CHECKPOINT_NAME
    if not path.is_file():
        raise C2FError(f"nothing to resume: {path} does not exist; run without --resume to start.")
    tensors, metadata = load_tensors(path)
    # A setting newer than the checkpoint was, in effect, at its default when the checkpoint was written
    # (fine_fraction: 1.0, all faces fine, before the field existed).
    defaults = {**dataclasses.asdict(ModelConfig()), **dataclasses.asdict(TrainConfig().resolved())}
    stored = {**defaults, **(metadata.get("model_config") or {}), **(metadata.get("train_config") or {})}
    current = {**dataclasses.asdict(model_config), **dataclasses.asdict(config)}
    differences = [f"{key} {stored.get(key)!r} there, {value!r} now" for key, value in current.items()
                   if stored.get(key) != value]
    if {"coarse_only": [], **(metadata.get("split") or {})} != split:
        differences.append("other training faces")
    if differences:
        raise C2FError(f"{path} was written with other settings or data ({'; '.join(differences)}); resume with "
                       "the same options, or choose another --out.")
    # The checkpoint holds the weights: the --init file is not read again, and may be gone.
    run = start_run(model_config, dataclasses.replace(config, init_weights=""),
                    np.array(metadata["loss_weights"], dtype=np.float32))
    try:
        run.model.load_state_dict({name.removeprefix("model."): tensor for name, tensor in tensors.items()
                                   if name.startswith("model.")})
        restore_optimizer(run.optimizer, tensors, metadata["optimizer"])
        if run.discriminator is not None:
            run.discriminator.load_state_dict({name.removeprefix("discriminator."): tensor for name, tensor
                                               in tensors.items() if name.startswith("discriminator.")})
            restore_optimizer(run.discriminator_optimizer, tensors, metadata["discriminator_optimizer"],
                              "discriminator_optimizer")
    except (RuntimeError, KeyError, ValueError) as error:
        raise C2FError(f"{path} does not fit this version of c2f's model ({str(error).splitlines()[0]}); "
                       "start a new run in another --out.") from None
    run.history = metadata["history"]
    return run


def set_learning_rate(optimizer: torch.optim.Optimizer, config: TrainConfig, epoch: int) -> None:
    """Cosine decay from the configured rate to zero; a function of the epoch alone, so resumes match."""
    for group in optimizer.param_groups:
        group["lr"] = config.learning_rate * 0.5 * (1 + math.cos(math.pi * epoch / config.epochs))


def split_fine_and_coarse_only(samples: list[LoadedSample], fine_fraction: float,
                               seed: int) -> tuple[list[LoadedSample], list[LoadedSample]]:
    """Keep the fine maps of a seeded share of the faces; the rest become coarse-only."""
    if fine_fraction >= 1:
        return samples, []
    order = np.random.default_rng([seed, 1]).permutation(len(samples))
    keep = max(1, int(round(len(samples) * fine_fraction)))
    fine = [samples[index] for index in sorted(order[:keep])]
    coarse_only = [dataclasses.replace(samples[index], fine=None) for index in sorted(order[keep:])]
    return fine, coarse_only


def train_epoch(run: Run, samples: list[LoadedSample], config: TrainConfig, epoch: int,
                on_step: Callable[[int, int, float], None] | None) -> float:
    """One pass of random crops; returns the mean training loss."""
    rng = np.random.default_rng([config.seed, epoch])
    torch.manual_seed(config.seed * 100_003 + epoch)
    set_learning_rate(run.optimizer, config, epoch)
    criterion = nn.CrossEntropyLoss(weight=torch.from_numpy(run.loss_weights))
    order = np.repeat(np.arange(len(samples)), config.crops_per_image)
    rng.shuffle(order)
    steps = math.ceil(len(order) / config.batch_size)
    total_loss = 0.0
    run.model.train()
    for step in range(steps):
        chosen = order[step * config.batch_size:(step + 1) * config.batch_size]
        crops = [random_crop(samples[index], samples[index].fine, config.crop_size, rng) for index in chosen]
        inputs, targets = make_batch(crops, run.model.config.num_classes, run.model.config.use_coarse, rng)
        loss = criterion(run.model(inputs), targets)
        run.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        run.optimizer.step()
        total_loss += loss.item()
        if on_step:
            on_step(step + 1, steps, loss.item())
    return total_loss / steps


def train_model(samples: list[LoadedSample], labels: LabelSet, model_config: ModelConfig, config: TrainConfig,
                out_dir: Path, resume: bool = False, command: str = "",
                on_step: Callable[[int, int, float], None] | None = None,
                on_epoch: Callable[[dict], None] | None = None) -> Path:
    """Train a model on fine-labelled samples, checkpointing every epoch; returns the weights path."""
    config = config.resolved()  # checkpoints store, and --resume compares, the fine_fraction actually used
    labelled = [sample for sample in samples if sample.fine is not None]
    if len(labelled) < 1:
        raise C2FError("training needs at least one sample with a fine map.")
    train_samples, validation_samples = split_samples(labelled, config.validation_fraction, config.seed)
    # Faces beyond fine_fraction lose their fine maps: gan mode learns from them, the others ignore them.
    train_samples, coarse_only = split_fine_and_coarse_only(train_samples, config.fine_fraction, config.seed)
    coarse_only += [sample for sample in samples if sample.fine is None]
    split = {"train": [s.name for s in train_samples], "validation": [s.name for s in validation_samples],
             "coarse_only": [s.name for s in coarse_only]}
    out_dir = Path(out_dir)
    # Killed before its first checkpoint, a run has nothing to resume: --resume then starts it afresh.
    if resume and (out_dir / CHECKPOINT_NAME).exists():
        run = resume_run(out_dir, model_config, config, split)
    else:
        if not resume and (out_dir / CHECKPOINT_NAME).exists():
            raise C2FError(f"{out_dir} already holds a training run; pass --resume to continue it "
                           "or choose another --out.")
        weights = class_weights([s.fine for s in train_samples], model_config.num_classes, config.class_weight_power)
        run = start_run(model_config, config, weights, labels)
    for epoch in range(len(run.history), config.epochs):
        started = time.perf_counter()
        if config.mode == "gan":
            from c2f_cli.gan import train_gan_epoch

            row = {"epoch": epoch + 1, **train_gan_epoch(run, train_samples, coarse_only, config, epoch, on_step)}
        else:
            row = {"epoch": epoch + 1, "train_loss": train_epoch(run, train_samples, config, epoch, on_step)}
        if validation_samples:
            row.update(evaluate(run.model, validation_samples, model_config.num_classes))
        row["seconds"] = time.perf_counter() - started
        run.history.append(row)
        save_checkpoint(out_dir, run, labels, config, split)
        write_log(out_dir, run.history)
        if on_epoch:
            on_epoch(row)
    weights_path = out_dir / WEIGHTS_NAME
    final = run.history[-1] if run.history else {}
    save_weights(weights_path, run.model, labels, {
        "training_command": command, "train_config": dataclasses.asdict(config), "split": split,
        "validation": {key: value for key, value in final.items() if key.startswith("val_")},
    })
    return weights_path
