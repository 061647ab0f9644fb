"""Refining coarse maps with unannotated bands along class boundaries, against the same maps without them.

Run from the repository root:

    python benchmarks/void_bands.py
    python benchmarks/void_bands.py --weights runs/void/model.safetensors --band 4:8 --seed 0

Cityscapes' coarse maps leave a band along every boundary unannotated. This takes the FASSEG V1 coarse maps of
the faces the weights held out (split.validation in their metadata), sets a band of a random width (4 to 8 px per
face by default) along every class boundary to "not annotated", refines both versions with `c2f refine`'s
defaults, and prints pooled pixel accuracy and mean IoU of each and their difference.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from c2f.inference.backends import load_predictor
from c2f.inference.sliding_window import refine_map
from c2f.scoring import confusion_matrix, scores_from_confusion
from c2f.shipped import default_weights_path
from c2f.training.coarsen import boundary_band
from c2f.training.samples import find_samples, load_sample
from c2f.weights import load_tensors

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "FASSEG"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, help="a .safetensors file (default: the shipped weights)")
    parser.add_argument("--band", default="4:8", help="LOW:HIGH px width of the void bands (default 4:8)")
    parser.add_argument("--seed", type=int, default=0, help="fixes each face's band width")
    arguments = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"skipped: {DATA} is absent")
    low, high = (float(value) for value in arguments.band.split(":"))
    _, metadata = load_tensors(arguments.weights or default_weights_path())
    held_out = set((metadata.get("split") or {}).get("validation") or [])
    if not held_out:
        sys.exit(f"{arguments.weights}: its metadata names no held-out faces (split.validation).")
    predictor, labels, _ = load_predictor(arguments.weights, None)
    num_classes = labels.num_classes
    samples = [load_sample(sample, labels) for sample in find_samples(DATA) if sample.name in held_out]
    rng = np.random.default_rng(arguments.seed)
    totals = {"coarse map as drawn": 0, "coarse map with void bands": 0}
    void_share = []
    for sample in samples:
        voided = sample.coarse.copy()
        band = boundary_band(sample.coarse, rng.uniform(low, high))
        voided[band] = num_classes  # the "not annotated" value inside c2f
        void_share.append(band.mean())
        for name, coarse in zip(totals, (sample.coarse, voided)):
            totals[name] = totals[name] + confusion_matrix(refine_map(predictor, sample.photo, coarse, num_classes),
                                                           sample.fine, num_classes)
    print(f"{len(samples)} held-out FASSEG faces; bands {low:g}-{high:g} px leave {np.mean(void_share):.1%} of "
          f"pixels unannotated\n")
    print("| refined from | pixel accuracy (pooled) | mean IoU |\n| --- | ---: | ---: |")
    scores = {name: scores_from_confusion(confusion) for name, confusion in totals.items()}
    for name, value in scores.items():
        print(f"| {name} | {value.pixel_accuracy:.2%} | {value.mean_iou:.3f} |")
    drawn, voided = scores.values()
    print(f"| difference | {100 * (voided.pixel_accuracy - drawn.pixel_accuracy):+.2f} points | "
          f"{voided.mean_iou - drawn.mean_iou:+.3f} |")


if __name__ == "__main__":
    main()
