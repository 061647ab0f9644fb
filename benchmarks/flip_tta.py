"""Test-time mirroring on the shipped face model: does averaging a face and its mirror image help?

Run from the repository root:

    python benchmarks/flip_tta.py [--weights FILE]

Refines each held-out FASSEG face (the split in the weights' metadata) as it is and mirrored,
averages the two probability maps, and prints pooled pixel accuracy and mIoU of the plain
and the averaged maps. The averaged map costs two network passes per face.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from c2f.inference.backends import load_predictor
from c2f.inference.postprocess import class_ids
from c2f.inference.sliding_window import refine_probabilities
from c2f.scoring import confusion_matrix, scores_from_confusion
from c2f.shipped import default_onnx_path, default_weights_path
from c2f.training.samples import find_samples, load_sample
from c2f.weights import load_tensors

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "FASSEG"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, help="a .safetensors or .onnx file (default: the shipped float32 ONNX)")
    arguments = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"skipped: {DATA} is absent")
    weights = arguments.weights or default_onnx_path()
    metadata_source = weights if weights.suffix == ".safetensors" else default_weights_path()
    held_out = set(load_tensors(metadata_source)[1]["split"]["validation"])
    predictor, labels, _ = load_predictor(weights, None)
    samples = [load_sample(sample, labels) for sample in find_samples(DATA) if sample.name in held_out]
    count = labels.num_classes
    plain, averaged = np.zeros((count, count), np.int64), np.zeros((count, count), np.int64)
    for sample in samples:
        probabilities = refine_probabilities(predictor, sample.photo, sample.coarse, count)
        mirrored = refine_probabilities(predictor, np.ascontiguousarray(sample.photo[:, ::-1]),
                                        np.ascontiguousarray(sample.coarse[:, ::-1]), count)[:, :, ::-1]
        plain += confusion_matrix(class_ids(probabilities), sample.fine, count)
        averaged += confusion_matrix(class_ids((probabilities + mirrored) / 2), sample.fine, count)
    print(f"{len(samples)} held-out FASSEG faces, {weights.name}\n\n| maps | pixel accuracy | mIoU |\n| --- | ---: | ---: |")
    for name, confusion in (("one pass", plain), ("mean of the face and its mirror image", averaged)):
        scores = scores_from_confusion(confusion)
        print(f"| {name} | {scores.pixel_accuracy:.2%} | {scores.mean_iou:.3f} |")


if __name__ == "__main__":
    main()
