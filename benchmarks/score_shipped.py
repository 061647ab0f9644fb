"""Score the shipped weights on the FASSEG faces they held out, beside the coarse maps.

Run from the repository root:

    python benchmarks/score_shipped.py

The held-out faces are the ones named in the weights' metadata (split.validation);
refinement uses `c2f refine`'s defaults (backend auto, one pass per face). Prints a
markdown table of pooled pixel accuracy, mean IoU and per-class IoU.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from c2f_cli.backends import load_predictor
from c2f_cli.data import find_samples, load_sample
from c2f_cli.refine import score_refinement
from c2f_cli.score import confusion_matrix, scores_from_confusion
from c2f_cli.weights import default_weights_path, load_tensors

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "FASSEG"


def main() -> None:
    if not DATA.is_dir():
        sys.exit(f"skipped: {DATA} is absent")
    _, metadata = load_tensors(default_weights_path())
    held_out = set(metadata["split"]["validation"])
    predictor, labels, uses_coarse = load_predictor(None, None)
    samples = [load_sample(sample, labels) for sample in find_samples(DATA) if sample.name in held_out]
    started = time.perf_counter()
    ours = score_refinement(predictor, samples, labels.num_classes, uses_coarse)
    seconds = (time.perf_counter() - started) / len(samples)
    reference = scores_from_confusion(sum(confusion_matrix(sample.coarse, sample.fine, labels.num_classes)
                                          for sample in samples))
    print(f"{len(samples)} held-out FASSEG faces ({', '.join(sorted(held_out))}); {seconds:.3f} s/face\n")
    print("| figure | coarse map | c2f (shipped weights) |\n| --- | ---: | ---: |")
    print(f"| pixel accuracy (pooled) | {reference.pixel_accuracy:.2%} | {ours.pixel_accuracy:.2%} |")
    print(f"| mean IoU | {reference.mean_iou:.3f} | {ours.mean_iou:.3f} |")
    for name, coarse_iou, our_iou in zip(labels.names, reference.class_iou, ours.class_iou):
        print(f"| IoU {name} | {coarse_iou:.3f} | {our_iou:.3f} |")


if __name__ == "__main__":
    main()
