"""The shipped CamVid weights on a few val/ photos with drawn coarse maps (needs ../shared/data/CamVid)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from c2f.io.label_sets import load_label_set
from c2f.scoring import confusion_matrix, scores_from_confusion
from c2f.shipped import default_weights_path, refine_weights
from c2f.training.coarsen import coarsen, parse_coarsen_spec
from c2f.training.samples import find_validation_samples, load_sample

CAMVID_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "CamVid"

pytestmark = pytest.mark.camvid


@pytest.fixture(scope="module")
def camvid_weights() -> Path:
    if not CAMVID_ROOT.is_dir():
        pytest.skip(f"CamVid not found at {CAMVID_ROOT}")
    path = default_weights_path("camvid.safetensors")
    if not path.is_file():
        pytest.skip(f"shipped CamVid weights not found at {path}")
    return path


def test_labels_camvid_picks_the_shipped_camvid_model(camvid_weights):
    assert refine_weights(None, None, "camvid", "torch") == camvid_weights
    assert refine_weights(None, "camvid", None, "auto", "fp32") == camvid_weights.with_suffix(".onnx")


def test_shipped_camvid_model_refines_rough_coarse_maps_of_val_photos(camvid_weights):
    from c2f.inference.backends import load_predictor
    from c2f.inference.sliding_window import refine_map

    labels = load_label_set("camvid")
    predictor, _, _ = load_predictor(camvid_weights.with_suffix(".onnx"), labels)
    rough = parse_coarsen_spec("tolerance=24:48,min_area=400:1500,jitter=2:4")
    coarse_confusion = refined_confusion = 0
    for index, sample in enumerate(find_validation_samples(CAMVID_ROOT)[::25]):
        loaded = load_sample(sample, labels)
        drawn = coarsen(loaded.fine, rough, np.random.default_rng([0, index]), 11, (11,))
        coarse_confusion += confusion_matrix(drawn, loaded.fine, 11)
        refined_confusion += confusion_matrix(refine_map(predictor, loaded.photo, drawn, 11), loaded.fine, 11)
    coarse, refined = scores_from_confusion(coarse_confusion), scores_from_confusion(refined_confusion)
    assert refined.pixel_accuracy > coarse.pixel_accuracy + 0.01
    assert refined.mean_iou > coarse.mean_iou


def test_shipped_camvid_int8_export_gives_float32s_classes_on_val_photos(camvid_weights):
    from c2f.inference.backends import load_predictor
    from c2f.inference.sliding_window import refine_map

    labels = load_label_set("camvid")
    int8_path = camvid_weights.with_suffix(".int8.onnx")
    if not int8_path.is_file():
        pytest.skip(f"no shipped int8 export at {int8_path}")
    float32, _, _ = load_predictor(camvid_weights.with_suffix(".onnx"), labels)
    int8, _, _ = load_predictor(int8_path, labels)
    polygons = parse_coarsen_spec("tolerance=4:32,min_area=50:400,jitter=0:3")
    same = total = 0
    for index, sample in enumerate(find_validation_samples(CAMVID_ROOT)[::25]):
        loaded = load_sample(sample, labels)
        drawn = coarsen(loaded.fine, polygons, np.random.default_rng([1, index]), 11, (11,))
        expected, actual = (refine_map(predictor, loaded.photo, drawn, 11) for predictor in (float32, int8))
        same += int((expected == actual).sum())
        total += expected.size
    assert same / total > 0.98
