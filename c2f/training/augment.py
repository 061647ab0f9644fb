"""Training batches: random crops of (photo, coarse, target) with scale, mirror and colour jitter.

A crop's target is a class-id map, or a ClassBlend (soft targets of a colour fine map's anti-aliased edges), which
make_batch turns into per-class shares.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
from PIL import Image

from c2f.inference.network_input import fill_unannotated, network_input
from c2f.inference.tiling import pad_image
from c2f.io.label_maps import ClassBlend
from c2f.training.coarsen import boundary_band
from c2f.training.samples import LoadedSample

# Width in px of the unannotated bands void_coarse_regions draws along class boundaries, and the side of its
# patches as a share of the crop's side: Cityscapes' coarse maps leave bands of a few to ten pixels.
VOID_BAND_WIDTH = (2.0, 12.0)
VOID_PATCH_SIDE = (0.05, 0.3)
VOID_PATCH_PROBABILITY = 0.5  # share of voided crops that also lose a patch

# relabel_coarse_regions gives one to this many regions of a chosen crop another class; a region must cover this
# share of the crop, since the coarse maps' wrong regions are whole parts (a sweater marked as hair), not specks.
MAX_RELABELED_REGIONS = 3
MIN_RELABELED_AREA = 0.005
FOUR_NEIGHBOURS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))  # a region's border: pixels 4-adjacent to it

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


def random_crop(sample: LoadedSample, target: np.ndarray, crop_size: int, rng: np.random.Generator,
                blend: ClassBlend | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | ClassBlend]:
    """An augmented (photo, coarse, target) crop: random scale (half of the time), position and mirror.

    With a blend (the target's soft version), the crop's target is that blend, cut and resampled exactly as the
    map would be; the draws are the same either way.
    """
    # Resampling a label map with NEAREST moves its boundaries by up to half a pixel, and most
    # errors sit within two pixels of a boundary: half of the crops keep the native scale.
    scale = math.exp(rng.uniform(math.log(0.75), math.log(1.33))) if rng.random() < 0.5 else 1.0
    source_size = int(round(crop_size / scale))
    height, width = sample.photo.shape[:2]
    maps = [sample.coarse, target] if blend is None else [sample.coarse, blend.first, blend.second, blend.share]
    arrays = [pad_image(array, max(height, source_size), max(width, source_size)) for array in (sample.photo, *maps)]
    top = rng.integers(0, arrays[0].shape[0] - source_size + 1)
    left = rng.integers(0, arrays[0].shape[1] - source_size + 1)
    crops = [array[top:top + source_size, left:left + source_size] for array in arrays]
    if rng.random() < 0.5:
        crops = [crop[:, ::-1] for crop in crops]
    photo = Image.fromarray(np.ascontiguousarray(crops[0])).resize((crop_size, crop_size), Image.BILINEAR)
    # NEAREST picks the same source pixel in every map whatever its dtype, so a blend's shares stay with its classes
    maps = [np.asarray(Image.fromarray(np.ascontiguousarray(crop)).resize((crop_size, crop_size), Image.NEAREST))
            for crop in crops[1:]]
    return np.asarray(photo), maps[0], maps[1] if blend is None else ClassBlend(*maps[1:])


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


def relabel_coarse_regions(crop: tuple, num_classes: int, probability: float,
                           rng: np.random.Generator) -> tuple:
    """With the given probability, give one to MAX_RELABELED_REGIONS connected regions of the coarse crop another
    class (one bordering the region, else one present in the crop, else any), leaving the target as it is, so the
    network learns to overrule whole regions a coarse map got wrong."""
    if probability <= 0 or rng.random() >= probability:
        return crop
    photo, coarse, target = crop
    regions = coarse_regions(coarse, num_classes, max(1, int(MIN_RELABELED_AREA * coarse.size)))
    count = int(rng.integers(1, MAX_RELABELED_REGIONS + 1))
    if not regions:
        return crop
    relabeled = coarse.copy()
    for pick in rng.choice(len(regions), size=min(count, len(regions)), replace=False):
        class_id, mask = regions[pick]
        # Neighbours are read from the crop as drawn, so one region's new class does not steer the next one's.
        border = cv2.dilate(mask.view(np.uint8), FOUR_NEIGHBOURS).view(bool) & ~mask
        candidates = [np.unique(coarse[border]), np.unique(coarse), np.arange(num_classes)]
        for classes in candidates:
            classes = classes[(classes != class_id) & (classes < num_classes)]
            if len(classes):
                relabeled[mask] = classes[rng.integers(len(classes))]
                break
    return photo, relabeled, target


def coarse_regions(coarse: np.ndarray, num_classes: int, min_area: int) -> list[tuple[int, np.ndarray]]:
    """(class id, bool mask (h, w)) of each 4-connected region of one annotated class covering at least min_area
    pixels, by class, then in OpenCV's labelling order."""
    regions = []
    for class_id in np.unique(coarse):
        if class_id >= num_classes:  # not annotated: no class to overrule
            continue
        count, components, statistics, _ = cv2.connectedComponentsWithStats(
            (coarse == class_id).view(np.uint8), connectivity=4)
        regions += [(int(class_id), components == index) for index in range(1, count)
                    if statistics[index, cv2.CC_STAT_AREA] >= min_area]
    return regions


def target_shares(target: np.ndarray | ClassBlend, num_classes: int) -> np.ndarray:
    """float32 (K, h, w) per-class shares of a crop's target: a blend's two classes by their shares, a map's class
    alone; ignored pixels (class K) take none, so the loss leaves them out."""
    blend = target if isinstance(target, ClassBlend) else ClassBlend(target, target, np.ones(target.shape, np.float32))
    shares = np.zeros((num_classes + 1, *blend.first.shape), dtype=np.float32)
    rows, columns = np.indices(blend.first.shape)
    shares[blend.first, rows, columns] = blend.share
    shares[blend.second, rows, columns] += 1 - blend.share  # 0 where the pixel is pure (second == first)
    return shares[:num_classes]


def make_batch(crops: list, num_classes: int, use_coarse: bool,
               rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Network inputs (N, C, h, w) with colour jitter, and int64 targets (N, h, w); float32 per-class shares
    (N, K, h, w) instead when a crop's target is a ClassBlend.

    Unannotated coarse pixels take their nearest annotated class, as refine gives them to the network.
    """
    inputs = np.stack([network_input(photo, fill_unannotated(coarse, num_classes) if use_coarse else None,
                                     num_classes) for photo, coarse, _ in crops])
    # Lighting and camera differ between datasets: jitter contrast, brightness, and each channel's gain.
    contrast, brightness, gain = jitter_factors(len(crops), rng, TRAINING_JITTER)
    inputs[:, :3] = inputs[:, :3] * contrast * gain + brightness
    if any(isinstance(target, ClassBlend) for _, _, target in crops):
        targets = np.stack([target_shares(target, num_classes) for _, _, target in crops])
    else:
        targets = np.stack([target for _, _, target in crops]).astype(np.int64)
    return torch.from_numpy(inputs), torch.from_numpy(targets)
