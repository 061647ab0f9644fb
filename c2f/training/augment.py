"""Training batches: random crops of (photo, coarse, target) with scale, mirror and colour jitter."""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

from c2f.inference.network_input import fill_unannotated, network_input
from c2f.inference.tiling import pad_image
from c2f.training.coarsen import boundary_band
from c2f.training.samples import LoadedSample

# Width in px of the unannotated bands void_coarse_regions draws along class boundaries, and the side of its
# patches as a share of the crop's side: Cityscapes' coarse maps leave bands of a few to ten pixels.
VOID_BAND_WIDTH = (2.0, 12.0)
VOID_PATCH_SIDE = (0.05, 0.3)
VOID_PATCH_PROBABILITY = 0.5  # share of voided crops that also lose a patch

# Ranges of the colour jitter, as (low, high): contrast and per-channel gain multiply the normalised
# photo, brightness is added. Training's own; the semi-supervised step's strong copies use twice the spread.
TRAINING_JITTER = {"contrast": (0.8, 1.2), "brightness": (-0.2, 0.2), "gain": (0.9, 1.1)}
STRONG_JITTER = {"contrast": (0.6, 1.4), "brightness": (-0.4, 0.4), "gain": (0.8, 1.2)}


def jitter_factors(count: int, rng: np.random.Generator,
                   ranges: dict[str, tuple[float, float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """float64 contrast (N, 1, 1, 1), brightness (N, 1, 1, 1) and gain (N, 3, 1, 1) factors, drawn in that order."""
    contrast = rng.uniform(*ranges["contrast"], size=(count, 1, 1, 1))
    brightness = rng.uniform(*ranges["brightness"], size=(count, 1, 1, 1))
    gain = rng.uniform(*ranges["gain"], size=(count, 3, 1, 1))
    return contrast, brightness, gain


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


def void_coarse_regions(crop: tuple[np.ndarray, np.ndarray, np.ndarray], num_classes: int, probability: float,
                        rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """With the given probability, mark a band along the coarse crop's class boundaries (and sometimes a patch) as
    not annotated (value num_classes, which the network sees as no class), as in Cityscapes' coarse maps."""
    if probability <= 0 or rng.random() >= probability:
        return crop
    photo, coarse, target = crop
    coarse = coarse.copy()
    coarse[boundary_band(coarse, rng.uniform(*VOID_BAND_WIDTH))] = num_classes
    if rng.random() < VOID_PATCH_PROBABILITY:
        height, width = coarse.shape
        patch_height, patch_width = (max(1, int(side * rng.uniform(*VOID_PATCH_SIDE))) for side in (height, width))
        top, left = rng.integers(0, height - patch_height + 1), rng.integers(0, width - patch_width + 1)
        coarse[top:top + patch_height, left:left + patch_width] = num_classes
    return photo, coarse, target


def make_batch(crops: list, num_classes: int, use_coarse: bool,
               rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Network inputs (N, C, h, w) with colour jitter, and int64 targets (N, h, w).

    Unannotated coarse pixels take their nearest annotated class, as refine gives them to the network.
    """
    inputs = np.stack([network_input(photo, fill_unannotated(coarse, num_classes) if use_coarse else None,
                                     num_classes) for photo, coarse, _ in crops])
    # Lighting and camera differ between datasets: jitter contrast, brightness, and each channel's gain.
    contrast, brightness, gain = jitter_factors(len(crops), rng, TRAINING_JITTER)
    inputs[:, :3] = inputs[:, :3] * contrast * gain + brightness
    targets = np.stack([target for _, _, target in crops]).astype(np.int64)
    return torch.from_numpy(inputs), torch.from_numpy(targets)
