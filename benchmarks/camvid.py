"""CamVid val/: coarse maps, dense CRF and c2f on the same drawn coarse maps, in one table.

Run from the repository root (CamVid in ../shared/data/CamVid; its README gives the source):

    python benchmarks/camvid.py
    python benchmarks/camvid.py --model Lite0=weights/camvid.onnx --model U-Net=runs/unet/model.onnx
    python benchmarks/camvid.py --model mine=runs/camvid/model.safetensors --limit 20
    python benchmarks/camvid.py --model fp32=weights/camvid.onnx --model bf16=weights/camvid.safetensors --precision bf16

The 101 val photos' fine maps are coarsened in three fixed styles (each map its own settings, drawn from the
style's ranges with --seed): "polygons" (c2f coarsen's default ranges), "rough" (looser polygons that leave out
more small objects) and "bands" (polygons with unannotated bands along class boundaries covering about a fifth of
the pixels, as in Cityscapes' coarse maps). Each coarse map is then scored as it is (its unannotated pixels take
their nearest annotated class), refined by a dense CRF (pydensecrf, unary from the coarse labels, unannotated
pixels unsure, settings in CRF_SETTINGS) and by each c2f model given with --model (`c2f refine`'s defaults;
default: the shipped camvid model, in the precision `c2f refine` picks). Void (id 11) is left out of every
score. Columns: pooled pixel accuracy, mean IoU over the 11 classes, the mean IoU of the four small classes
(Pole, SignSymbol, Pedestrian, Bicyclist), training minutes (the sum of the `seconds` column of the run's
log.csv beside the weights, or of weights/NAME_training_log.csv for a shipped model), median seconds per photo,
IoU per class.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

from c2f.inference.backends import load_predictor
from c2f.inference.sliding_window import refine_map
from c2f.io.label_sets import load_label_set
from c2f.scoring import confusion_matrix, scores_from_confusion
from c2f.shipped import refine_weights
from c2f.training.coarsen import coarsen, nearest_fill, parse_coarsen_spec
from c2f.training.samples import find_validation_samples, load_sample

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "CamVid"
STYLES = {
    "polygons": "tolerance=4:32,min_area=50:400,jitter=0:3",
    "rough": "tolerance=24:48,min_area=400:1500,jitter=2:4",
    "bands": "tolerance=8:24,min_area=100:400,jitter=0:2,band=10:14",
}
SMALL_CLASSES = ("Pole", "SignSymbol", "Pedestrian", "Bicyclist")


# The dense CRF's settings: the best of five tried on every 12th val photo in the rough and bands styles
# ((gt_prob, bilateral sxy, srgb, compat) = (0.7, 80, 13, 10), (0.9, 80, 13, 10), (0.9, 50, 13, 5),
# (0.95, 80, 13, 5), (0.8, 40, 10, 5)); the first is the face benchmark's.
CRF_SETTINGS = {"gt_prob": 0.8, "sxy": 40, "srgb": 10, "compat": 5}


def dense_crf(photo: np.ndarray, coarse: np.ndarray, num_classes: int, iterations: int) -> np.ndarray:
    """A dense CRF's labels from the coarse map's (unannotated pixels unsure) and the photo's colours."""
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import unary_from_labels

    height, width = coarse.shape
    # zero_unsure: label 0 means unsure, so the classes move up by one and "not annotated" (K) becomes 0
    shifted = np.where(coarse >= num_classes, 0, coarse.astype(np.int32) + 1)
    crf = dcrf.DenseCRF2D(width, height, num_classes)
    crf.setUnaryEnergy(np.ascontiguousarray(unary_from_labels(shifted, num_classes, gt_prob=CRF_SETTINGS["gt_prob"],
                                                              zero_unsure=True)))
    crf.addPairwiseGaussian(sxy=3, compat=3)
    crf.addPairwiseBilateral(sxy=CRF_SETTINGS["sxy"], srgb=CRF_SETTINGS["srgb"],
                             rgbim=np.array(photo, order="C", copy=True), compat=CRF_SETTINGS["compat"])
    return np.argmax(crf.inference(iterations), axis=0).reshape(height, width)


def training_minutes(weights: Path) -> float:
    """Minutes of training in the log.csv beside a run's weights (or NAME_training_log.csv), NaN without one."""
    stem = weights.name.split(".")[0]
    for log in (weights.parent / "log.csv", weights.parent / f"{stem}_training_log.csv"):
        if log.is_file():
            with open(log) as handle:
                return sum(float(row["seconds"]) for row in csv.DictReader(handle)) / 60
    return float("nan")


def named_model(text: str) -> tuple[str, Path]:
    """--model NAME=PATH."""
    name, separator, path = text.partition("=")
    if not separator or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, Path(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=named_model, action="append", default=[],
                        help="NAME=PATH of a .safetensors or .onnx file, repeatable (default: the shipped camvid "
                             "model as c2f)")
    parser.add_argument("--data", type=Path, default=DATA, help="CamVid in SegNet's layout")
    parser.add_argument("--seed", type=int, default=0, help="fixes every coarse map's drawing")
    parser.add_argument("--limit", type=int, default=0, help="only the first N val photos (0: all 101)")
    parser.add_argument("--crf-iterations", type=int, default=5)
    parser.add_argument("--precision", choices=["auto", "bf16"], default="auto",
                        help="bf16: run the .safetensors models in bfloat16 (the torch backend, on CPUs with "
                             "AVX512-BF16 or AMX); .onnx models run in their own precision either way")
    arguments = parser.parse_args()
    if not arguments.data.is_dir():
        sys.exit(f"skipped: {arguments.data} is absent")
    labels = load_label_set("camvid")
    num_classes = labels.num_classes
    models = dict(arguments.model) or {"c2f": refine_weights(None, None, "camvid")}
    predictors = {name: load_predictor(path, labels, precision="auto" if path.suffix == ".onnx"
                                       else arguments.precision)[0] for name, path in models.items()}
    samples = [load_sample(sample, labels) for sample in find_validation_samples(arguments.data)]
    samples = samples[:arguments.limit] if arguments.limit else samples
    minutes = {"coarse map": 0.0, "densecrf": 0.0} | {name: training_minutes(path) for name, path in models.items()}
    try:
        import pydensecrf  # noqa: F401
    except ImportError:
        print("(densecrf skipped: pydensecrf is not installed; pip install pydensecrf2 provides it)")
        del minutes["densecrf"]
    small = [labels.names.index(name) for name in SMALL_CLASSES]
    print("models: " + ", ".join(f"{name} = {path}" for name, path in models.items()))
    header = (f"{'coarse maps':<9} {'method':<10} {'pixel acc':>9} {'mIoU':>6} {'small4':>6} {'train min':>9} "
              f"{'s/photo':>7} " + " ".join(f"{name[:6]:>6}" for name in labels.names))
    print(f"CamVid val: {len(samples)} photos, void left out, coarse maps drawn with seed {arguments.seed}")
    print(header)
    for style_index, (style, spec) in enumerate(STYLES.items()):
        style_settings = parse_coarsen_spec(spec)
        confusions = {name: np.zeros((num_classes, num_classes), np.int64) for name in minutes}
        seconds: dict[str, list[float]] = {name: [] for name in minutes}
        unannotated = []
        for index, sample in enumerate(samples):
            rng = np.random.default_rng([arguments.seed, style_index, index])
            drawn = coarsen(sample.fine, style_settings, rng, ignore_value=num_classes, skip_values=(num_classes,))
            unannotated.append(np.mean(drawn == num_classes))
            for name in minutes:
                started = time.perf_counter()
                if name == "coarse map":
                    predicted = nearest_fill(drawn.astype(np.int32), drawn == num_classes)
                elif name == "densecrf":
                    predicted = dense_crf(sample.photo, drawn, num_classes, arguments.crf_iterations)
                else:  # `c2f refine`'s defaults
                    predicted = refine_map(predictors[name], sample.photo, drawn, num_classes)
                seconds[name].append(time.perf_counter() - started)
                confusions[name] += confusion_matrix(predicted, sample.fine, num_classes)
        for name, confusion in confusions.items():
            scores = scores_from_confusion(confusion)
            small_iou = float(np.nanmean([scores.class_iou[index] for index in small]))
            print(f"{style:<9} {name:<10} {scores.pixel_accuracy:>9.2%} {scores.mean_iou:>6.3f} {small_iou:>6.3f} "
                  f"{minutes[name]:>9.1f} {np.median(seconds[name]):>7.3f} "
                  + " ".join(f"{iou:>6.3f}" for iou in scores.class_iou), flush=True)
        print(f"{style:<9} ({spec}; {np.mean(unannotated):.1%} of pixels not annotated)", flush=True)


if __name__ == "__main__":
    main()
