"""The shipped FASSEG weights on their own held-out validation faces (needs ../shared/data/FASSEG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from c2f.io.label_sets import FASSEG_LABELS
from c2f.scoring import confusion_matrix, scores_from_confusion
from c2f.shipped import default_weights_path
from c2f.training.samples import find_samples, load_sample

FASSEG_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "FASSEG"

pytestmark = pytest.mark.fasseg


@pytest.fixture(scope="module")
def shipped_model():
    """The shipped weights and their metadata; skips when either the data or the weights are absent."""
    if not FASSEG_ROOT.is_dir():
        pytest.skip(f"FASSEG not found at {FASSEG_ROOT}")
    weights_path = default_weights_path()
    if not weights_path.is_file():
        pytest.skip(f"shipped weights not found at {weights_path} (weights/fasseg.safetensors in a checkout)")
    from c2f.weights import load_weights

    return load_weights(weights_path, FASSEG_LABELS)


def test_shipped_weights_refine_their_validation_faces_better_than_the_coarse_maps(shipped_model):
    from c2f.inference.sliding_window import refine_map
    from c2f.inference.torch_backend import torch_predictor

    model, labels, metadata = shipped_model
    validation_names = metadata["split"]["validation"]
    assert validation_names, "the shipped weights name no validation faces"
    samples = {sample.name: sample for sample in find_samples(FASSEG_ROOT)}
    missing = [name for name in validation_names if name not in samples]
    assert not missing, f"validation faces not in {FASSEG_ROOT}: {missing}"

    predictor = torch_predictor(model, "cpu")
    refined_confusion = np.zeros((labels.num_classes,) * 2, np.int64)
    coarse_confusion = np.zeros_like(refined_confusion)
    for name in validation_names:
        sample = load_sample(samples[name], labels)
        coarse = sample.coarse if model.config.use_coarse else None
        refined = refine_map(predictor, sample.photo, coarse, labels.num_classes)  # default window settings
        refined_confusion += confusion_matrix(refined, sample.fine, labels.num_classes)
        coarse_confusion += confusion_matrix(sample.coarse, sample.fine, labels.num_classes)

    refined_accuracy = scores_from_confusion(refined_confusion).pixel_accuracy
    coarse_accuracy = scores_from_confusion(coarse_confusion).pixel_accuracy
    print(f"{len(validation_names)} validation faces: refined {refined_accuracy:.2%}, coarse {coarse_accuracy:.2%}")
    assert refined_accuracy >= 0.95
    assert refined_accuracy > coarse_accuracy
