"""An epoch's batches: in-process from one random stream (CPU), or from DataLoader workers (GPU).

On the CPU every crop, jitter and semi-supervised draw of an epoch comes from one
generator seeded by (seed, epoch), in order, so a resumed run repeats an
uninterrupted one bit for bit. A GPU would wait on that single process, so there
DataLoader workers prepare the batches while the GPU trains; each batch then draws
from its own generator seeded by (seed, epoch, step), which makes the crops a
function of the seed and epoch alone, whatever the number of workers or their
timing. The two paths draw different (equally random) crops.
"""

from __future__ import annotations

import os
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from c2f.training.augment import (
    make_batch,
    random_crop,
    relabel_coarse_regions,
    void_coarse_regions,
)
from c2f.training.samples import LoadedSample

Batch = tuple[torch.Tensor, torch.Tensor, np.random.Generator]  # inputs, targets, generator for the step's own draws
MAX_WORKERS = 8  # enough to keep one GPU busy with 256-pixel crops; more only costs memory


def batch_indices(order: np.ndarray, batch_size: int, step: int) -> np.ndarray:
    """The samples of batch `step` of an epoch's shuffled order."""
    return order[step * batch_size:(step + 1) * batch_size]


def augmented_crop(sample: LoadedSample, crop_size: int, num_classes: int, void_probability: float,
                   relabel_probability: float, rng: np.random.Generator) -> tuple:
    """One training crop of a sample: cut (with the fine map's blends when loaded), coarse regions relabelled, then
    voided; an option at 0 draws nothing, so runs without it repeat as before it existed."""
    crop = random_crop(sample, sample.fine, crop_size, rng, sample.fine_blend)
    crop = relabel_coarse_regions(crop, num_classes, relabel_probability, rng)
    return void_coarse_regions(crop, num_classes, void_probability, rng)


def in_process_batches(samples: list[LoadedSample], order: np.ndarray, batch_size: int, crop_size: int,
                       num_classes: int, use_coarse: bool, rng: np.random.Generator,
                       void_probability: float = 0.0, relabel_probability: float = 0.0) -> Iterator[Batch]:
    """Batches drawn lazily from the epoch's one generator, which the step then draws from too (CPU path)."""
    steps = -(-len(order) // batch_size)
    for step in range(steps):
        chosen = batch_indices(order, batch_size, step)
        crops = [augmented_crop(samples[index], crop_size, num_classes, void_probability, relabel_probability, rng)
                 for index in chosen]
        inputs, targets = make_batch(crops, num_classes, use_coarse, rng)
        yield inputs, targets, rng


class SeededBatches(Dataset):
    """Batch `step` of an epoch, drawn from a generator seeded by (seed, epoch, step): the same in any worker."""

    def __init__(self, samples: list[LoadedSample], order: np.ndarray, batch_size: int, crop_size: int,
                 num_classes: int, use_coarse: bool, seed: int, epoch: int, void_probability: float = 0.0,
                 relabel_probability: float = 0.0):
        self.samples, self.order, self.batch_size, self.crop_size = samples, order, batch_size, crop_size
        self.num_classes, self.use_coarse, self.seed, self.epoch = num_classes, use_coarse, seed, epoch
        self.void_probability, self.relabel_probability = void_probability, relabel_probability

    def __len__(self) -> int:
        return -(-len(self.order) // self.batch_size)

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, step])
        crops = [augmented_crop(self.samples[index], self.crop_size, self.num_classes, self.void_probability,
                                self.relabel_probability, rng)
                 for index in batch_indices(self.order, self.batch_size, step)]
        return make_batch(crops, self.num_classes, self.use_coarse, rng)


def worker_count() -> int:
    """DataLoader workers: the cores this process may use, less one for the training loop, at most MAX_WORKERS."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(0, min(MAX_WORKERS, cores - 1))


def worker_batches(dataset: SeededBatches, workers: int, pin_memory: bool) -> Iterator[Batch]:
    """The dataset's batches in step order, prepared by `workers` processes (0: in this process)."""
    loader = DataLoader(dataset, batch_size=None, shuffle=False, num_workers=workers, pin_memory=pin_memory,
                        prefetch_factor=4 if workers else None)
    for step, (inputs, targets) in enumerate(loader):
        # The step's own draws (the semi-supervised step's crops and noise) get a stream of their own too.
        yield inputs, targets, np.random.default_rng([dataset.seed, dataset.epoch, step, 1])
