"""The training loop: class-weighted cross-entropy, Adam on a cosine schedule, a checkpoint every epoch.

Every epoch draws its randomness from (seed, epoch) alone, and a checkpoint
holds the model and optimiser state after a complete epoch, so a run killed at
any moment and resumed reaches exactly the result of an uninterrupted one.
One epoch skeleton (train_epoch) serves every mode; a mode only decides what one
optimiser step does with a batch.

On a CUDA GPU the same loop runs in mixed precision (bfloat16 where the GPU has
it) with batches from DataLoader workers (batches.py); checkpoints are the same
files, but GPU kernels are not bit-for-bit repeatable, so there a resumed run
matches an uninterrupted one only closely, not exactly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from c2f.config import Encoder, ModelConfig, TrainConfig
from c2f.encoders import PRETRAINED_PACKAGE
from c2f.errors import C2FError
from c2f.extras import require
from c2f.inference.devices import choose_torch_device
from c2f.io.files import guard_output_folders, guard_outputs, sweep_stale_temporaries
from c2f.io.label_sets import LabelSet, check_labels
from c2f.shipped import SHIPPED_MODELS, resolve_weights
from c2f.training import gan
from c2f.training.batches import (
    SeededBatches,
    in_process_batches,
    worker_batches,
    worker_count,
)
from c2f.training.coarsen import draw_coarse_maps, parse_coarsen_spec
from c2f.training.curves import write_log
from c2f.training.evaluation import evaluate
from c2f.training.pseudo_labels import pseudo_labelled
from c2f.training.run_state import (
    CHECKPOINT_NAME,
    Run,
    move_run,
    resume_run,
    save_checkpoint,
    start_run,
)
from c2f.training.samples import (
    LoadedSample,
    find_samples,
    find_validation_samples,
    load_sample,
    split_fine_and_coarse_only,
    split_samples,
)
from c2f.weights import check_model_config, load_tensors, load_weights, save_weights

WEIGHTS_NAME = "model.safetensors"
# Streams of drawn coarse maps, after the seed: training's are drawn anew each epoch (seed, epoch, stream, sample),
# validation's and coarse-only samples' once (seed, stream, sample), so epochs compare and resumes repeat.
TRAINING_COARSE_STREAM, VALIDATION_COARSE_STREAM, COARSE_ONLY_STREAM = 7, 8, 9


def model_config_for(labels: LabelSet, mode: str, width: int | None, depth: int | None,
                     init: Path | None, encoder: str | None = None, upsampling: str | None = None) -> ModelConfig:
    """The architecture a run builds: --encoder/--width/--depth/--upsampling as given, else the --init model's,
    else the defaults; a pretrained encoder has a fixed size and decoder, so the U-Net's options are refused with
    one."""
    inherited = None  # the --init model's up-sampling, kept by a run of the same architecture
    if init is not None:
        start = check_model_config(load_tensors(init)[1].get("model_config"), init)
        encoder = encoder or start.encoder
        if encoder == start.encoder:
            inherited = start.upsampling
        if encoder == start.encoder == Encoder.unet.value:
            width, depth = width or start.width, depth or start.depth
    encoder = encoder or ModelConfig.encoder
    if encoder != Encoder.unet.value and (width is not None or depth is not None):
        raise C2FError(f"--width and --depth size the U-Net; --encoder {encoder} has a fixed size, so drop them.")
    if encoder != Encoder.unet.value and upsampling is not None:
        raise C2FError(f"--upsampling shapes the U-Net's decoder; --encoder {encoder}'s decoder up-samples "
                       "bilinearly, so drop it.")
    return ModelConfig(num_classes=labels.num_classes, use_coarse=mode != "segment",
                       width=width or ModelConfig.width, depth=depth or ModelConfig.depth, encoder=encoder,
                       upsampling=upsampling or inherited or ModelConfig.upsampling)


def class_weights(maps: list[np.ndarray], num_classes: int, power: float) -> np.ndarray:
    """float32 (K,) loss weights = frequency ** -power, scaled so frequent pixels weigh ~1 on average."""
    # value num_classes marks ignored pixels, which the loss leaves out
    counts = sum(np.bincount(m.ravel(), minlength=num_classes + 1)[:num_classes] for m in maps).astype(np.float64)
    frequency = np.maximum(counts / counts.sum(), 1e-6)
    weights = frequency ** -power
    return (weights / (weights * frequency).sum()).astype(np.float32)


def set_learning_rate(optimizer: torch.optim.Optimizer, config: TrainConfig, epoch: int) -> None:
    """Cosine decay from the configured rate to zero; a function of the epoch alone, so resumes match."""
    for group in optimizer.param_groups:
        group["lr"] = config.learning_rate * 0.5 * (1 + math.cos(math.pi * epoch / config.epochs))


@dataclass(frozen=True)
class DataParallel:
    """This process's part in data-parallel training: its rank among world processes, and how they cooperate."""

    rank: int
    world: int
    wrap: Callable[[nn.Module], nn.Module]  # e.g. DistributedDataParallel, which all-reduces the gradients
    average: Callable[[dict[str, float]], dict[str, float]]  # each figure's mean over the processes


def epoch_share(order: np.ndarray, parallel: DataParallel | None) -> np.ndarray:
    """This process's crops of an epoch's order: every world-th from its rank, padded so all take equal steps."""
    if parallel is None or parallel.world == 1:
        return order
    padded = np.resize(order, -(-len(order) // parallel.world) * parallel.world)  # repeats its start, as
    return padded[parallel.rank::parallel.world]  # torch's DistributedSampler does


def supervised_step(run: Run, network: nn.Module, criterion: nn.Module, inputs: torch.Tensor,
                    targets: torch.Tensor, rng: np.random.Generator) -> dict[str, float]:
    """One optimiser step of the weighted cross-entropy on a batch (modes conditional and segment)."""
    loss = criterion(network(inputs), targets)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    return {"train_loss": loss.item()}


def weighted_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Class-weighted mean cross-entropy of logits (N, K, h, w) against int64 class ids (N, h, w; K ignored) or
    float per-class shares (N, K, h, w; rows of zeros ignored).

    Shares s give a pixel the loss sum_k s_k w_k CE(k) and the weight sum_k s_k w_k in the mean, so one-hot
    shares give exactly what the ids give: two-class blends (--soft-boundaries) weigh as pure pixels do.
    """
    if not targets.is_floating_point():
        return functional.cross_entropy(logits, targets, weight=weights, ignore_index=logits.shape[1])
    weighted = targets * weights.view(1, -1, 1, 1)
    total = -(weighted * functional.log_softmax(logits.float(), dim=1)).sum()
    return total / weighted.sum().clamp_min(torch.finfo(torch.float32).tiny)


def mixed_precision(device: torch.device) -> contextlib.AbstractContextManager:
    """bfloat16 autocast on a CUDA GPU that has it (no loss scaling needed); full precision elsewhere."""
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        # The whole step runs inside: backward ops take the dtypes their forward ops were given anyway.
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_epoch(run: Run, samples: list[LoadedSample], coarse_only: list[LoadedSample], config: TrainConfig,
                epoch: int, on_step: Callable[[int, int, float], None] | None,
                parallel: DataParallel | None = None, network: nn.Module | None = None,
                device: torch.device = torch.device("cpu"), workers: int = 0,
                crop_counts: list[int] | None = None) -> dict[str, float]:
    """One pass of random crops of the fine-labelled samples; returns the epoch's mean losses.

    Each sample gives config.crops_per_image crops, or crop_counts[i] for sample i when given.

    Data-parallel, each process trains its share of the epoch's order (epoch_share) through
    network (run.model wrapped by parallel.wrap) and the losses are averaged over the processes.
    On a GPU, DataLoader workers prepare the batches (training/batches.py).
    """
    rng = np.random.default_rng([config.seed, epoch])
    torch.manual_seed(config.seed * 100_003 + epoch)
    if config.coarsen:  # a new coarse drawing of each map every epoch, so no one drawing is learnt by heart
        samples = draw_coarse_maps(samples, parse_coarsen_spec(config.coarsen), run.model.config.num_classes,
                                   (config.seed, epoch, TRAINING_COARSE_STREAM), config.coarsen_all)
    set_learning_rate(run.optimizer, config, epoch)
    if run.discriminator_optimizer is not None:
        set_learning_rate(run.discriminator_optimizer, config, epoch)
    loss_weights = torch.from_numpy(run.loss_weights).to(device)
    if config.mode == "gan":
        second_step = gan.in_second_step(config, epoch, bool(coarse_only))
        step_function = partial(gan.gan_step, run.model, run.optimizer, run.discriminator,
                                run.discriminator_optimizer, loss_weights, coarse_only, config.crop_size, second_step)
    elif config.soft_boundaries:
        criterion = partial(weighted_cross_entropy, weights=loss_weights)
        step_function = partial(supervised_step, run, network or run.model, criterion)
    else:
        criterion = nn.CrossEntropyLoss(weight=loss_weights, ignore_index=run.model.config.num_classes)
        step_function = partial(supervised_step, run, network or run.model, criterion)
    order = np.repeat(np.arange(len(samples)), config.crops_per_image if crop_counts is None else crop_counts)
    rng.shuffle(order)
    order = epoch_share(order, parallel)
    if parallel is not None and parallel.world > 1:  # each process its own crops and jitter, still from (seed, epoch)
        rng = np.random.default_rng([config.seed, epoch, parallel.rank])
    steps = math.ceil(len(order) / config.batch_size)
    shape = (config.batch_size, config.crop_size, run.model.config.num_classes, run.model.config.use_coarse)
    if device.type == "cpu":
        batches = in_process_batches(samples, order, *shape, rng, config.void_probability, config.relabel_probability)
    else:
        batches = worker_batches(SeededBatches(samples, order, *shape, config.seed, epoch, config.void_probability,
                                               config.relabel_probability), workers, pin_memory=True)
    totals: dict[str, float] = {}
    run.model.train()
    for step, (inputs, targets, step_rng) in enumerate(batches):
        with mixed_precision(device):
            losses = step_function(inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True),
                                   step_rng)
        for key, value in losses.items():
            totals[key] = totals.get(key, 0.0) + value
        if on_step:
            on_step(step + 1, steps, losses["train_loss"])
    means = {key: value / steps for key, value in totals.items()}
    means = parallel.average(means) if parallel is not None else means
    return means | {"gan_step": 2 if second_step else 1} if config.mode == "gan" else means


def train_model(samples: list[LoadedSample], labels: LabelSet, model_config: ModelConfig, config: TrainConfig,
                out_dir: Path, resume: bool = False, command: str = "",
                on_step: Callable[[int, int, float], None] | None = None,
                on_epoch: Callable[[dict], None] | None = None, parallel: DataParallel | None = None,
                until_epoch: int | None = None, device: str = "cpu",
                validation: list[LoadedSample] | None = None,
                on_teacher: Callable[[int, int], None] | None = None) -> Path:
    """Train a model on fine-labelled samples, checkpointing every epoch; returns the weights path.

    validation: samples to validate on instead of a --validation-fraction share of `samples`. With
    config.coarsen, samples without a coarse map get drawn ones (training's anew every epoch); without
    it they are left out. With config.soft_boundaries, samples whose fine_blend was loaded
    (load_sample(..., soft_targets=True)) train on soft targets, the others on their class ids.

    Data-parallel (parallel given), every process runs this with its rank and only rank 0 writes;
    until_epoch stops after that epoch, for a later --resume to continue. device: cpu, cuda, or auto
    (CUDA when torch sees a GPU); only the CPU repeats runs bit for bit. With config.teacher, the
    coarse-only samples train on its refinements (on_teacher(done, total) reports that pass).
    """
    target = choose_torch_device(device)
    config = config.resolved()  # checkpoints store, and --resume compares, the fine_fraction actually used
    if parallel is not None and config.mode == "gan":
        raise C2FError("--workers trains the conditional and segment modes; train --mode gan in one process.")
    check_option_pairs(config)
    writes = parallel is None or parallel.rank == 0
    samples, validation = with_coarse_maps(samples, config), with_coarse_maps(validation, config)
    labelled = [sample for sample in samples if sample.fine is not None]
    if len(labelled) < 1:
        raise C2FError("training needs at least one sample with a fine map.")
    if validation is None:
        train_samples, validation_samples = split_paired_first(labelled, config.validation_fraction, config.split_by)
    else:
        train_samples, validation_samples = labelled, [sample for sample in validation if sample.fine is not None]
        if not validation_samples:
            raise C2FError("the validation folder holds no sample with a fine map (and a coarse map, or --coarsen).")
    num_classes = model_config.num_classes
    if config.coarsen:  # fixed drawings, so every epoch is scored on the same coarse maps
        validation_samples = draw_coarse_maps(validation_samples, parse_coarsen_spec(config.coarsen), num_classes,
                                              (config.split_by, VALIDATION_COARSE_STREAM), config.coarsen_all)
    # Faces beyond fine_fraction lose their fine maps: gan mode learns from them, the others ignore them.
    kept, coarse_only = split_fine_and_coarse_only(train_samples, config.fine_fraction, config.split_by)
    if config.coarsen and coarse_only:  # their coarse maps are drawn once, from the fine maps they then lose
        originals = {sample.name: sample for sample in train_samples}
        coarse_only = [dataclasses.replace(sample, fine=None, fine_blend=None) for sample in draw_coarse_maps(
            [originals[sample.name] for sample in coarse_only], parse_coarsen_spec(config.coarsen), num_classes,
            (config.split_by, COARSE_ONLY_STREAM), config.coarsen_all)]
    train_samples = kept
    coarse_only += [sample for sample in samples if sample.fine is None]
    split = {"train": [s.name for s in train_samples], "validation": [s.name for s in validation_samples],
             "coarse_only": [s.name for s in coarse_only]}
    if config.teacher:  # the coarse-only samples train on the teacher's refinements, as fine-labelled ones do
        if not coarse_only:
            raise C2FError("--teacher refines coarse-only photos and this run has none: pass --fine-fraction "
                           "below 1, or add photos that have a coarse map but no fine one.")
        train_samples = kept + pseudo_labelled(coarse_only, Path(config.teacher), labels, target, on_teacher)
        split["pseudo_labelled"] = split.pop("coarse_only")
        coarse_only = []
    crop_counts = None  # config.crops_per_image from every sample
    if config.coarse_targets:  # the coarse map becomes the target; without a coarse map, --coarsen draws one per epoch
        if not coarse_only:
            raise C2FError("--coarse-targets trains on coarse-only photos and this run has none: pass "
                           "--fine-fraction below 1, or add photos that have a coarse map but no fine one.")
        blind = config.coarse_target_input == "none"  # every pixel not annotated, so --coarsen draws nothing
        train_samples = kept + [dataclasses.replace(sample, fine=sample.coarse, fine_blend=None,
                                                    coarse=np.full_like(sample.coarse, num_classes) if blind else None)
                                for sample in coarse_only]
        split["coarse_targets"] = split.pop("coarse_only")
        crop_counts = ([config.crops_per_image] * len(kept)
                       + [config.coarse_target_crops or config.crops_per_image] * len(coarse_only))
        coarse_only = []
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
    move_run(run, target)
    workers = worker_count() if target.type != "cpu" else 0
    if target.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed crop sizes: let cuDNN pick its fastest kernels once
    network = parallel.wrap(run.model) if parallel is not None else run.model
    for epoch in range(len(run.history), min(config.epochs, until_epoch or config.epochs)):
        started = time.perf_counter()
        row = {"epoch": epoch + 1, **train_epoch(run, train_samples, coarse_only, config, epoch, on_step,
                                                 parallel, network, target, workers, crop_counts)}
        if validation_samples and writes:
            row.update(evaluate(run.model, validation_samples, labels.names))
        row["seconds"] = time.perf_counter() - started
        run.history.append(row)
        if writes:
            save_checkpoint(out_dir, run, labels, config, split)
            write_log(out_dir, run.history)
        if on_epoch:
            on_epoch(row)
    weights_path = out_dir / WEIGHTS_NAME
    if not writes or len(run.history) < config.epochs:
        return weights_path
    final = run.history[-1] if run.history else {}
    save_weights(weights_path, run.model, labels, {
        "training_command": command, "train_config": dataclasses.asdict(config), "split": split,
        "validation": {key: value for key, value in final.items() if key.startswith("val_")},
    })
    return weights_path


def check_option_pairs(config: TrainConfig) -> None:
    """Refuse options that no mode trains together, before any data is read."""
    if config.soft_boundaries and config.mode == "gan":
        raise C2FError("--soft-boundaries trains the conditional and segment modes; leave it out with --mode gan.")
    if config.teacher and config.mode == "gan":
        raise C2FError("--teacher and --mode gan are two ways to learn from coarse-only photos; choose one.")
    if config.coarse_targets and (config.teacher or config.mode == "gan"):
        raise C2FError("--coarse-targets, --teacher and --mode gan are ways to learn from coarse-only photos; "
                       "choose one.")
    if config.coarse_target_crops and not config.coarse_targets:
        raise C2FError("--coarse-target-crops sets the crops of coarse-target photos; it needs --coarse-targets.")
    if config.coarse_target_input != "drawn" and not config.coarse_targets:
        raise C2FError("--coarse-target-input sets what coarse targets show the network; it needs --coarse-targets.")
    if config.coarse_target_input == "none" and config.coarsen_all:
        raise C2FError("--coarse-target-input none shows coarse-target photos no coarse map, and --coarsen-all "
                       "would draw them one; choose one.")
    if config.coarse_targets and not config.coarsen:
        raise C2FError("--coarse-targets draws coarser inputs from the coarse maps: pass --coarsen with the "
                       "ranges, e.g. --coarsen 'tolerance=4:32,min_area=50:400,jitter=0:3'.")


def split_paired_first(labelled: list[LoadedSample], fraction: float,
                       seed: int) -> tuple[list[LoadedSample], list[LoadedSample]]:
    """(train, validation): held out from the samples with a real coarse map when there are any.

    Fine-only samples (coarse maps drawn by --coarsen) then always train, so adding them to a
    dataset leaves the held-out (photo, coarse, fine) triplets, and so the figures, as they were.
    """
    paired = [sample for sample in labelled if sample.coarse is not None]
    if not paired or len(paired) == len(labelled):
        return split_samples(labelled, fraction, seed)
    _, validation = split_samples(paired, fraction, seed)
    held_out = {sample.name for sample in validation}
    return [sample for sample in labelled if sample.name not in held_out], validation


def with_coarse_maps(samples: list[LoadedSample] | None, config: TrainConfig) -> list[LoadedSample] | None:
    """The samples that can train: all with --coarsen (it draws the missing coarse maps), else those with one."""
    if samples is None or config.coarsen:
        return samples
    kept = [sample for sample in samples if sample.coarse is not None]
    if samples and not kept:
        raise C2FError("these samples have fine maps only (no coarse/ folder); pass --coarsen, e.g. --coarsen "
                       "'tolerance=4:32,min_area=50:400,jitter=0:3', to draw coarse maps from them while training.")
    return kept


def train_from_folder(data: Path, out_dir: Path, labels: LabelSet, config: TrainConfig, width: int | None = None,
                      depth: int | None = None, resume: bool = False, command: str = "",
                      on_step: Callable[[int, int, float], None] | None = None,
                      on_epoch: Callable[[dict], None] | None = None, parallel: DataParallel | None = None,
                      until_epoch: int | None = None, device: str = "auto",
                      validation_data: Path | None = None, encoder: str | None = None,
                      on_teacher: Callable[[int, int], None] | None = None, upsampling: str | None = None) -> Path:
    """`c2f train`: check the settings, read a dataset folder (and validation_data's), train on `device`, and return
    the weights path."""
    started = time.time()
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise C2FError(f"{out_dir} is a file, but --out names a run folder.")
    choose_torch_device(device)  # refuse --device cuda without a GPU before reading the dataset
    init = resolve_weights(Path(config.init_weights)) if config.init_weights else None
    if init is not None:
        config = dataclasses.replace(config, init_weights=str(init))
    teacher = resolve_weights(Path(config.teacher)) if config.teacher else None
    if teacher is not None:
        config = dataclasses.replace(config, teacher=str(teacher))
    for option, path in (("--init", init), ("--teacher", teacher)):
        if path is not None and not path.is_file():
            raise C2FError(f"{option} {path}: no such weights file; give a .safetensors file written by "
                           f"`c2f train`, or a shipped model's name ({', '.join(SHIPPED_MODELS)}).")
    check_option_pairs(config)
    if config.coarsen:
        parse_coarsen_spec(config.coarsen)  # a mistyped --coarsen fails before the dataset is read
    elif config.coarsen_all:
        raise C2FError("--coarsen-all needs --coarsen with the ranges to draw coarse maps from.")
    guard_output_folders({"the dataset folder --data": data, "the validation folder --val-data": validation_data},
                         {"--out": out_dir})
    guard_outputs({"the --init weights": init, "the --teacher weights": teacher},
                  {f"the run's {name}": out_dir / name for name in (WEIGHTS_NAME, CHECKPOINT_NAME, "log.csv", "curves.png")})
    if init is not None:  # read maps in the --init model's class order; the table may add ignore entries
        labels = check_labels(LabelSet.from_dict(load_tensors(init)[1].get("labels", {}), str(init)), labels, init)
    if teacher is not None:  # a missing teacher, or one with other classes, fails before the dataset is read
        load_weights(teacher, labels)
    model_config = model_config_for(labels, config.mode, width, depth, init, encoder, upsampling)
    if config.crop_size % model_config.size_multiple:
        raise C2FError(f"--crop-size must be a multiple of {model_config.size_multiple}, the factor the network "
                       f"shrinks its input by, got {config.crop_size}.")
    # Its ImageNet weights start a new run (not a resumed or --init one): checked before the data is read.
    if model_config.encoder != Encoder.unet.value and init is None and not resume:
        require(f"c2f train --encoder {model_config.encoder}", PRETRAINED_PACKAGE)
    samples = [load_sample(sample, labels, config.soft_boundaries) for sample in find_samples(data)]
    validation = ([load_sample(sample, labels) for sample in find_validation_samples(validation_data)]
                  if validation_data is not None else None)
    sweep_stale_temporaries([out_dir], started)
    return train_model(samples, labels, model_config, config, out_dir, resume, command, on_step, on_epoch,
                       parallel, until_epoch, device, validation, on_teacher)
