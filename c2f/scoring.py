"""Scoring predicted label maps against fine ground truth: pure numpy."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from c2f.errors import C2FError
from c2f.io.label_maps import check_same_size, read_label_map
from c2f.io.pairing import MAP_SUFFIXES, images_by_stem

if TYPE_CHECKING:
    from c2f.io.label_sets import LabelSet


def confusion_matrix(predicted: np.ndarray, truth: np.ndarray, num_classes: int) -> np.ndarray:
    """int64 (K, K) counts; rows are true classes, columns predicted ones. Pixels holding K (ignored in the truth,
    not annotated in the prediction) are left out."""
    if predicted.shape != truth.shape:
        raise ValueError(f"shapes differ: {predicted.shape} vs {truth.shape}")
    truth, predicted = truth.astype(np.int64).ravel(), predicted.astype(np.int64).ravel()
    kept = (truth < num_classes) & (predicted < num_classes)
    if not kept.all():
        truth, predicted = truth[kept], predicted[kept]
    pairs = truth * num_classes + predicted
    return np.bincount(pairs, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


@dataclass(frozen=True)
class Scores:
    """Figures derived from one confusion matrix."""

    pixel_accuracy: float
    class_iou: tuple[float, ...]  # NaN for a class absent from both maps
    mean_iou: float  # over the classes that occur
    confusion: np.ndarray

    def as_dict(self, names: tuple[str, ...]) -> dict:
        return {
            "pixel_accuracy": self.pixel_accuracy,
            "mean_iou": self.mean_iou,
            "class_iou": {name: (None if np.isnan(iou) else iou) for name, iou in zip(names, self.class_iou)},
            "confusion": self.confusion.tolist(),
        }


def scores_from_confusion(confusion: np.ndarray) -> Scores:
    """Pixel accuracy, per-class IoU and mean IoU of a confusion matrix."""
    total = confusion.sum()
    correct = np.diag(confusion)
    union = confusion.sum(axis=0) + confusion.sum(axis=1) - correct
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, correct / union, np.nan)
    accuracy = float(correct.sum() / total) if total else float("nan")
    mean_iou = float(np.nanmean(iou)) if np.any(union > 0) else float("nan")
    return Scores(accuracy, tuple(float(value) for value in iou), mean_iou, confusion)


def find_score_triplets(predicted: Path, fine: Path,
                        coarse: Path | None) -> list[tuple[str, Path, Path, Path | None]]:
    """(name, predicted, fine, coarse-or-None) for three files, or three folders paired by stem."""
    paths = [path for path in (predicted, fine, coarse) if path is not None]
    for path in paths:
        if not path.exists():
            raise C2FError(f"not found: {path}")
    if len({path.is_dir() for path in paths}) > 1:
        raise C2FError("give all files or all folders.")
    if not predicted.is_dir():
        return [(predicted.stem, predicted, fine, coarse)]
    predictions, truths = images_by_stem(predicted, MAP_SUFFIXES), images_by_stem(fine, MAP_SUFFIXES)
    coarse_maps = images_by_stem(coarse, MAP_SUFFIXES) if coarse else {}
    missing = sorted(stem for stem in predictions if stem not in truths or (coarse and stem not in coarse_maps))
    if missing:
        raise C2FError(f"{len(missing)} predictions have no fine (or coarse) map of the same name: "
                       f"{', '.join(missing[:10])}")
    if not predictions:
        raise C2FError(f"{predicted} holds no images.")
    return [(stem, path, truths[stem], coarse_maps.get(stem)) for stem, path in predictions.items()]


@dataclass(frozen=True)
class ScoreReport:
    """Pooled scores of predictions (and optionally coarse maps) against fine maps."""

    predicted: Scores
    per_image_accuracy: dict[str, float]
    coarse: Scores | None
    coarse_per_image_accuracy: dict[str, float] | None
    ignored_pixels: int = 0  # fine-map pixels of the table's ignore entries, left out of every figure
    unannotated_pixels: dict[str, int] = field(default_factory=dict)  # per column: pixels of no class, left out

    def mean_image_accuracy(self, coarse: bool = False) -> float:
        values = (self.coarse_per_image_accuracy if coarse else self.per_image_accuracy) or {}
        return float(np.mean(list(values.values()))) if values else float("nan")


def score_files(triplets: list[tuple[str, Path, Path, Path | None]], labels: LabelSet) -> ScoreReport:
    """Score (name, predicted, fine, coarse-or-None) map files; sizes must agree. Ignored fine pixels, and pixels a
    map leaves unannotated, are counted and left out."""
    num_classes = labels.num_classes
    totals = {"predicted": np.zeros((num_classes, num_classes), np.int64),
              "coarse": np.zeros((num_classes, num_classes), np.int64)}
    per_image: dict[str, dict[str, float]] = {"predicted": {}, "coarse": {}}
    ignored, unannotated = 0, {"predicted": 0, "coarse": 0}
    for name, predicted_path, fine_path, coarse_path in triplets:
        fine = read_label_map(fine_path, labels, name).class_ids
        ignored += int(np.count_nonzero(fine == num_classes))
        for kind, path in (("predicted", predicted_path), ("coarse", coarse_path)):
            if path is None:
                continue
            label_map = read_label_map(path, labels, name).class_ids
            check_same_size(label_map, path, fine, fine_path)
            unannotated[kind] += int(np.count_nonzero((label_map == num_classes) & (fine != num_classes)))
            confusion = confusion_matrix(label_map, fine, num_classes)
            totals[kind] += confusion
            per_image[kind][name] = scores_from_confusion(confusion).pixel_accuracy
    has_coarse = any(coarse is not None for *_, coarse in triplets)
    return ScoreReport(scores_from_confusion(totals["predicted"]), per_image["predicted"],
                       scores_from_confusion(totals["coarse"]) if has_coarse else None,
                       per_image["coarse"] if has_coarse else None, ignored,
                       {kind: count for kind, count in unannotated.items() if count})
