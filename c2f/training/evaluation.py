"""Scoring a model on fine-labelled samples, as training's validation does."""

from __future__ import annotations

import numpy as np

from c2f.config import WindowSettings
from c2f.inference.predictor import Predictor
from c2f.inference.sliding_window import refine_map
from c2f.inference.torch_backend import torch_predictor
from c2f.model import Network
from c2f.scoring import Scores, confusion_matrix, scores_from_confusion
from c2f.training.samples import LoadedSample


def score_refinement(predictor: Predictor, samples: list[LoadedSample], num_classes: int, uses_coarse: bool,
                     settings: WindowSettings = WindowSettings()) -> Scores:
    """Pooled scores of refining fine-labelled samples against their fine maps."""
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    for sample in samples:
        predicted = refine_map(predictor, sample.photo, sample.coarse if uses_coarse else None, num_classes, settings)
        confusion += confusion_matrix(predicted, sample.fine, num_classes)
    return scores_from_confusion(confusion)


def evaluate(model: Network, samples: list[LoadedSample], class_names: tuple[str, ...]) -> dict[str, float]:
    """Pooled pixel accuracy, mean IoU and IoU per class (val_iou_<name>) of whole-image predictions."""
    model.eval()
    # The network's own output, unsmoothed, so validation figures compare across c2f versions.
    device = next(model.parameters()).device  # where training runs: moving the model would strand its optimiser
    scores = score_refinement(torch_predictor(model, device), samples, len(class_names), model.config.use_coarse,
                              WindowSettings(whole_image=True, smoothing=0.0))
    return {"val_accuracy": scores.pixel_accuracy, "val_miou": scores.mean_iou,
            **{f"val_iou_{name}": iou for name, iou in zip(class_names, scores.class_iou)}}
