"""Score the shipped weights on the FASSEG faces they held out, beside the coarse maps.

Run from the repository root:

    python benchmarks/score_shipped.py
    python benchmarks/score_shipped.py --weights runs/mine/model.safetensors --training-faces
    python benchmarks/score_shipped.py --precision int8   # the int8 model against float32's
    python benchmarks/score_shipped.py --precision bf16   # torch in bfloat16 against float32 (CPUs with bf16)

The metadata, and so the held-out faces, come from the shipped safetensors unless
--weights names a .safetensors file. With --precision int8 or bf16 (or --onnx FILE) the float32
ONNX model is scored too and the differences (points of pooled accuracy, mIoU) and the
share of pixels both give the same class are printed.

The held-out faces are the ones named in the weights' metadata (split.validation);
refinement uses `c2f refine`'s defaults (backend auto: the shipped ONNX file for the
shipped weights, PyTorch for a .safetensors file of your own; one pass per face). Prints a
markdown table of pooled pixel accuracy, mean IoU and per-class IoU. --training-faces adds
a column for the faces the weights trained on: a model that scores them no better than
its held-out faces is not overfitting. --per-face adds each held-out face's pixel accuracy
and mIoU, beside its coarse map's, and its most frequent confusion (true class taken for
another), to show whether a few faces hold the pooled figure down, and how.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from c2f.inference.backends import load_predictor, model_file, run_precision
from c2f.training.samples import find_samples, load_sample
from c2f.inference.sliding_window import refine_map
from c2f.training.evaluation import score_refinement
from c2f.scoring import confusion_matrix, scores_from_confusion
from c2f.shipped import default_onnx_path, default_weights_path
from c2f.weights import load_tensors

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "FASSEG"


def compare_with_float32(predictor, samples, num_classes: int, chosen: str, float32: Path) -> None:
    """Print the chosen model's pooled accuracy and mIoU beside a float32 ONNX model's, and their agreement."""
    reference, _, _ = load_predictor(float32, None)
    maps = {name: [refine_map(model, sample.photo, sample.coarse, num_classes) for sample in samples]
            for name, model in (("float32", reference), ("chosen", predictor))}
    scores = {name: scores_from_confusion(sum(confusion_matrix(predicted, sample.fine, num_classes)
                                              for predicted, sample in zip(maps[name], samples))) for name in maps}
    same = sum(int((a == b).sum()) for a, b in zip(maps["float32"], maps["chosen"]))
    total = sum(a.size for a in maps["float32"])
    reference_scores, ours = scores["float32"], scores["chosen"]
    print(f"{chosen} vs {float32.name} on {len(samples)} held-out faces: pixel accuracy "
          f"{ours.pixel_accuracy:.4%} vs {reference_scores.pixel_accuracy:.4%} "
          f"({100 * (ours.pixel_accuracy - reference_scores.pixel_accuracy):+.4f} points), mIoU {ours.mean_iou:.4f} vs "
          f"{reference_scores.mean_iou:.4f} ({ours.mean_iou - reference_scores.mean_iou:+.4f}); same class on {same / total:.3%} "
          "of pixels\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, help="a .safetensors file (default: the shipped weights)")
    parser.add_argument("--training-faces", action="store_true", help="also score the faces it trained on")
    parser.add_argument("--per-face", action="store_true", help="also score each held-out face on its own")
    parser.add_argument("--precision", choices=["auto", "fp32", "int8", "bf16"], default="auto",
                        help="which shipped model (as `c2f refine --precision`)")
    parser.add_argument("--onnx", type=Path, help="an .onnx file to score against the float32 ONNX model "
                        "(NAME.onnx beside --weights, else the shipped one)")
    arguments = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"skipped: {DATA} is absent")
    _, metadata = load_tensors(arguments.weights or default_weights_path())
    split = metadata.get("split") or {}
    if not split.get("validation"):
        sys.exit(f"{arguments.weights}: its metadata names no held-out faces (split.validation); "
                 "use weights that `c2f train` wrote with a validation split.")
    held_out, trained_on = set(split["validation"]), set(split.get("train", []))
    chosen = arguments.onnx or model_file(arguments.weights, "auto", arguments.precision)
    predictor, labels, uses_coarse = load_predictor(chosen, None, precision=run_precision(arguments.precision))
    found = find_samples(DATA)
    samples = [load_sample(sample, labels) for sample in found if sample.name in held_out]
    if arguments.onnx or arguments.precision in ("int8", "bf16"):
        # Against the float32 ONNX file of --weights (NAME.onnx beside it) where there is one, else the shipped one's.
        beside = arguments.weights.with_suffix(".onnx") if arguments.weights else None
        float32 = beside if beside is not None and beside.is_file() else default_onnx_path()
        compare_with_float32(predictor, samples, labels.num_classes,
                             f"{chosen.name} ({arguments.precision})", float32)
    started = time.perf_counter()
    # One refinement per face serves both the pooled table and --per-face.
    refined_maps = [refine_map(predictor, sample.photo, sample.coarse if uses_coarse else None, labels.num_classes)
                    for sample in samples]
    seconds = (time.perf_counter() - started) / len(samples)
    confusions = [confusion_matrix(predicted, sample.fine, labels.num_classes)
                  for predicted, sample in zip(refined_maps, samples)]
    ours = scores_from_confusion(sum(confusions))
    coarse_confusions = [confusion_matrix(sample.coarse, sample.fine, labels.num_classes) for sample in samples]
    reference = scores_from_confusion(sum(coarse_confusions))
    columns = [reference, ours]
    header = f"| figure | coarse map | c2f ({arguments.weights or 'shipped weights'}) |"
    if arguments.training_faces:
        training = [load_sample(sample, labels) for sample in found if sample.name in trained_on]
        columns.append(score_refinement(predictor, training, labels.num_classes, uses_coarse))
        header += f" same, its {len(training)} training faces |"
    print(f"{len(samples)} held-out FASSEG faces ({', '.join(sorted(held_out))}); {seconds:.3f} s/face\n")
    print(header + "\n| --- |" + " ---: |" * len(columns))
    print("| pixel accuracy (pooled) |" + "".join(f" {scores.pixel_accuracy:.2%} |" for scores in columns))
    print("| mean IoU |" + "".join(f" {scores.mean_iou:.3f} |" for scores in columns))
    for index, name in enumerate(labels.names):
        print(f"| IoU {name} |" + "".join(f" {scores.class_iou[index]:.3f} |" for scores in columns))
    if arguments.per_face:
        print("\n| held-out face | coarse pixel acc. | c2f pixel acc. | coarse mIoU | c2f mIoU | c2f's largest error |\n"
              "| --- | ---: | ---: | ---: | ---: | --- |")
        for sample, confusion, coarse_confusion in zip(samples, confusions, coarse_confusions):
            coarse = scores_from_confusion(coarse_confusion)
            refined = scores_from_confusion(confusion)
            errors = confusion.copy()  # rows: true class, columns: the class it was taken for
            np.fill_diagonal(errors, 0)
            truth, taken_for = np.unravel_index(errors.argmax(), errors.shape)
            print(f"| {sample.name} | {coarse.pixel_accuracy:.2%} | {refined.pixel_accuracy:.2%} | "
                  f"{coarse.mean_iou:.3f} | {refined.mean_iou:.3f} | {labels.names[truth]} taken for "
                  f"{labels.names[taken_for]}: {errors.max() / sample.fine.size:.2%} of pixels |")


if __name__ == "__main__":
    main()
