"""Where the shipped weights still go wrong on their held-out FASSEG faces, and what cheap fixes buy.

Run from the repository root:

    python benchmarks/error_analysis.py [--weights runs/NAME/model.safetensors]

Prints, for the faces named in the weights' metadata (split.validation), refined in
one pass through PyTorch:
- pixel accuracy and mIoU for logit adjustments of strength 0, 0.5, 1 (the shipped
  default), 1.25 and 1.5, with and without mirrored test-time augmentation;
- pixel accuracy and mIoU for smoothings (`refine --smooth`) of sigma 0 to 4 pixels, and
  for an edge-aware alternative, a guided filter of the probabilities with the photo's
  grey level as the guide (He et al. 2010), which moves class borders onto photo edges;
- pixel accuracy with the predicted map shifted by up to 2 pixels (a misaligned
  model or label would peak away from 0, 0);
- the share of pixels and of errors by (chessboard) distance to the nearest fine-map
  boundary;
- the error rate by height in the photo, in tenths of its rows (clothes and shoulders
  fill the bottom tenth).
All but the smoothing and guided-filter tables look at the network's own map, unsmoothed (--smooth 0).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from c2f.inference.torch_backend import torch_predictor
from c2f.config import WindowSettings
from c2f.training.samples import find_samples, load_sample
from c2f.inference.postprocess import class_ids, smooth
from c2f.inference.sliding_window import refine_probabilities
from c2f.training.evaluation import score_refinement
from c2f.scoring import confusion_matrix, scores_from_confusion
from c2f.shipped import default_weights_path
from c2f.weights import load_weights

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "FASSEG"
ONE_PASS = WindowSettings(whole_image=True, smoothing=0.0)


def mirrored(predict):
    """A predictor that averages the logits of the batch and of its mirror image."""
    def predict_both(batch: np.ndarray) -> np.ndarray:
        return (predict(batch) + predict(np.ascontiguousarray(batch[..., ::-1]))[..., ::-1]) / 2
    return predict_both


def box_mean(plane: np.ndarray, radius: int) -> np.ndarray:
    """Mean over each pixel's (2 radius + 1)^2 square, edges repeated, by summed-area table."""
    size = 2 * radius + 1
    table = np.pad(plane, ((radius + 1, radius), (radius + 1, radius)), mode="edge").cumsum(0).cumsum(1)
    return (table[size:, size:] - table[:-size, size:] - table[size:, :-size] + table[:-size, :-size]) / size**2


def guided_filter(plane: np.ndarray, guide: np.ndarray, radius: int, epsilon: float) -> np.ndarray:
    """He et al.'s guided filter: plane made locally linear in the guide, so it keeps the guide's edges."""
    guide_mean, plane_mean = box_mean(guide, radius), box_mean(plane, radius)
    slope = (box_mean(guide * plane, radius) - guide_mean * plane_mean) / (
        box_mean(guide * guide, radius) - guide_mean**2 + epsilon)
    return box_mean(slope, radius) * guide + box_mean(plane_mean - slope * guide_mean, radius)


def boundary_distance(fine: np.ndarray, limit: int) -> np.ndarray:
    """Chessboard distance (capped at limit) from each pixel to the nearest pixel whose right or
    lower neighbour has another class: 0 on a boundary, 1 next to it, and so on."""
    reached = np.zeros(fine.shape, bool)
    reached[:-1] |= fine[:-1] != fine[1:]
    reached[:, :-1] |= fine[:, :-1] != fine[:, 1:]
    distance = np.full(fine.shape, limit)
    for step in range(limit):
        distance[reached & (distance == limit)] = step
        grown = np.pad(reached, 1)
        reached = np.zeros_like(reached)
        for down in range(3):  # one 3x3 dilation
            for right in range(3):
                reached |= grown[down:down + fine.shape[0], right:right + fine.shape[1]]
    return distance


def main() -> None:
    if not DATA.is_dir():
        sys.exit(f"skipped: {DATA} is absent")
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", type=Path, default=default_weights_path(),
                        help="a .safetensors file whose metadata names its held-out faces (default: the shipped one)")
    model, labels, metadata = load_weights(parser.parse_args().weights)
    held_out = set(metadata["split"]["validation"])
    samples = [load_sample(sample, labels) for sample in find_samples(DATA) if sample.name in held_out]
    num_classes, shipped_adjustment = labels.num_classes, model.log_loss_weights.clone()
    predict = torch_predictor(model)
    print(f"{len(samples)} held-out faces, one pass, PyTorch\n")
    print("| logit adjustment | mirror TTA | pixel accuracy | mIoU |\n| ---: | --- | ---: | ---: |")
    for strength in (0.0, 0.5, 1.0, 1.25, 1.5):
        model.log_loss_weights.copy_(shipped_adjustment * strength)
        for predictor, tta in ((predict, "no"), (mirrored(predict), "yes")):
            scores = score_refinement(predictor, samples, num_classes, True, ONE_PASS)
            print(f"| {strength} | {tta} | {scores.pixel_accuracy:.2%} | {scores.mean_iou:.3f} |")
    model.log_loss_weights.copy_(shipped_adjustment)

    # The network's own probabilities, computed once: every filter below works on copies of them.
    raw = [refine_probabilities(predict, s.photo, s.coarse, num_classes, ONE_PASS) for s in samples]

    def pooled(filtered: list[np.ndarray]) -> str:
        """Pooled pixel accuracy and mIoU of the maps that filtered probabilities give, as table cells."""
        scores = scores_from_confusion(sum(confusion_matrix(class_ids(probabilities), s.fine, num_classes)
                                           for probabilities, s in zip(filtered, samples)))
        return f"{scores.pixel_accuracy:.2%} | {scores.mean_iou:.3f}"

    print("\n| smoothing sigma (pixels) | pixel accuracy | mIoU |\n| ---: | ---: | ---: |")
    for sigma in (0.0, 1.0, 1.5, 2.0, 3.0, 4.0):
        default = " (default)" if sigma == WindowSettings.smoothing else ""
        print(f"| {sigma:g}{default} | {pooled([smooth(p.copy(), sigma) for p in raw])} |")
    greys = [s.photo.mean(axis=2) / 255 for s in samples]
    print("\n| guided filter radius | epsilon | pixel accuracy | mIoU |\n| ---: | ---: | ---: | ---: |")
    for radius in (2, 4, 8):
        for epsilon in (1e-3, 1e-2, 1e-1):
            filtered = [np.stack([guided_filter(plane.astype(np.float64), grey, radius, epsilon) for plane in p])
                        for p, grey in zip(raw, greys)]
            print(f"| {radius} | {epsilon:g} | {pooled(filtered)} |")
    maps = [class_ids(probabilities) for probabilities in raw]  # the network's own maps

    print("\nPixel accuracy with the prediction shifted (rows: down, columns: right; 4-pixel border left out)\n")
    shifts = (-2, -1, 0, 1, 2)
    print("| shift | " + " | ".join(map(str, shifts)) + " |\n| ---: |" + " ---: |" * len(shifts))
    for down in shifts:
        cells = []
        for right in shifts:
            hits = sum((np.roll(m, (down, right), (0, 1))[4:-4, 4:-4] == s.fine[4:-4, 4:-4]).sum()
                       for m, s in zip(maps, samples))
            cells.append(f"{hits / sum(s.fine[4:-4, 4:-4].size for s in samples):.2%}")
        print(f"| {down} | " + " | ".join(cells) + " |")

    bins = 8  # distances 0 .. 6 and 7 or more
    pixels, errors = np.zeros(bins), np.zeros(bins)
    for m, s in zip(maps, samples):
        distance = boundary_distance(s.fine, bins - 1).ravel()
        pixels += np.bincount(distance, minlength=bins)
        errors += np.bincount(distance, weights=(m != s.fine).ravel(), minlength=bins)
    print("\nBy distance to the nearest fine-map boundary (pixels)\n")
    print("| distance | share of pixels | error rate | share of errors |\n| ---: | ---: | ---: | ---: |")
    for distance in range(bins):
        label = f"{distance}" if distance < bins - 1 else f">= {distance}"
        print(f"| {label} | {pixels[distance] / pixels.sum():.1%} | {errors[distance] / pixels[distance]:.1%} | "
              f"{errors[distance] / errors.sum():.1%} |")

    bands = 10
    pixels, errors = np.zeros(bands), np.zeros(bands)
    for m, s in zip(maps, samples):
        band = np.arange(s.fine.shape[0]) * bands // s.fine.shape[0]  # each row's tenth of the photo
        pixels += np.bincount(band, minlength=bands) * s.fine.shape[1]
        errors += np.bincount(band, weights=(m != s.fine).sum(axis=1), minlength=bands)
    print("\nBy height in the photo (tenths of its rows, top to bottom)\n")
    print("| tenth | error rate | share of errors |\n| ---: | ---: | ---: |")
    for band in range(bands):
        print(f"| {band + 1} | {errors[band] / pixels[band]:.2%} | {errors[band] / errors.sum():.1%} |")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
