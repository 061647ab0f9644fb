"""How far averaging models goes: each face model alone and the mean of their probabilities, on the held-out faces.

Run from the repository root with two or more .safetensors files trained on the same split:

    python benchmarks/ensemble_faces.py runs/a/model.safetensors runs/b/model.safetensors [...]

Every model refines each of the shipped model's held-out faces with `c2f refine`'s defaults
(PyTorch, one pass, --smooth 2). Each model alone, then every combination of two or more, takes
the class of the mean of its models' probabilities; pooled pixel accuracy and mIoU are printed for each.
An ensemble of n models costs n times the time per face; this measures what it would buy.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

from c2f.inference.backends import load_predictor
from c2f.inference.sliding_window import refine_probabilities
from c2f.scoring import confusion_matrix, scores_from_confusion
from c2f.shipped import default_weights_path
from c2f.training.samples import find_samples, load_sample
from c2f.weights import load_tensors

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "FASSEG"


def pooled(probabilities: list[np.ndarray], fine_maps: list[np.ndarray], num_classes: int) -> str:
    """Pooled pixel accuracy and mIoU of the arg-max of (K, H, W) probabilities against the fine maps."""
    scores = scores_from_confusion(sum(confusion_matrix(p.argmax(axis=0), fine, num_classes)
                                       for p, fine in zip(probabilities, fine_maps)))
    return f"{scores.pixel_accuracy:.2%} | {scores.mean_iou:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", type=Path, nargs="+", help=".safetensors files trained on the same split")
    arguments = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"skipped: {DATA} is absent")
    _, metadata = load_tensors(default_weights_path())
    held_out = set(metadata["split"]["validation"])
    probabilities = {}
    samples = None
    for path in arguments.weights:
        predictor, labels, uses_coarse = load_predictor(path, None, backend="torch")
        if samples is None:
            samples = [load_sample(sample, labels) for sample in find_samples(DATA) if sample.name in held_out]
        probabilities[str(path)] = [refine_probabilities(predictor, sample.photo,
                                                         sample.coarse if uses_coarse else None, labels.num_classes)
                                    for sample in samples]
    fine_maps = [sample.fine for sample in samples]
    print(f"{len(samples)} held-out FASSEG faces\n\n| models | pixel accuracy (pooled) | mIoU |\n| --- | ---: | ---: |")
    for size in range(1, len(probabilities) + 1):
        for combination in itertools.combinations(probabilities, size):
            mean = [sum(face) / size for face in zip(*(probabilities[name] for name in combination))]
            print(f"| {' + '.join(combination)} | {pooled(mean, fine_maps, labels.num_classes)} |", flush=True)


if __name__ == "__main__":
    main()
