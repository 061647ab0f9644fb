"""Scores on hand-made maps whose answers are worked out by hand in the comments."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from c2f.errors import C2FError
from c2f.io.label_maps import write_label_map
from c2f.io.label_sets import FASSEG_LABELS
from c2f.scoring import confusion_matrix, score_files, scores_from_confusion

TRUTH = np.array([[0, 0, 1, 1],
                  [0, 0, 1, 1]])
PREDICTED = np.array([[0, 1, 1, 1],
                      [0, 0, 1, 2]])
# Class 0: 3 right, truth 4, predicted 3 -> IoU 3 / 4.
# Class 1: 3 right, truth 4, predicted 4 -> IoU 3 / (4 + 4 - 3) = 3 / 5.
# Class 2: predicted once, never true -> IoU 0.  Class 3: in neither map -> NaN.


def test_confusion_matrix_counts_truth_rows_against_predicted_columns():
    confusion = confusion_matrix(PREDICTED, TRUTH, 4)
    expected = np.zeros((4, 4), int)
    expected[0, 0], expected[0, 1] = 3, 1
    expected[1, 1], expected[1, 2] = 3, 1
    np.testing.assert_array_equal(confusion, expected)
    assert confusion.dtype == np.int64


def test_pixel_accuracy_is_the_share_of_right_pixels():
    assert scores_from_confusion(confusion_matrix(PREDICTED, TRUTH, 4)).pixel_accuracy == 6 / 8


def test_class_iou_and_nan_for_a_class_in_neither_map():
    scores = scores_from_confusion(confusion_matrix(PREDICTED, TRUTH, 4))
    assert scores.class_iou[:3] == pytest.approx((3 / 4, 3 / 5, 0.0))
    assert math.isnan(scores.class_iou[3])


def test_mean_iou_skips_absent_classes_but_counts_false_positives():
    scores = scores_from_confusion(confusion_matrix(PREDICTED, TRUTH, 4))
    assert scores.mean_iou == pytest.approx((3 / 4 + 3 / 5 + 0) / 3)


def test_perfect_prediction_scores_one():
    scores = scores_from_confusion(confusion_matrix(TRUTH, TRUTH, 2))
    assert scores.pixel_accuracy == 1.0
    assert scores.class_iou == (1.0, 1.0)
    assert scores.mean_iou == 1.0


def test_empty_confusion_gives_nan_not_an_error():
    scores = scores_from_confusion(np.zeros((3, 3), np.int64))
    assert math.isnan(scores.pixel_accuracy) and math.isnan(scores.mean_iou)


def test_confusion_matrix_refuses_maps_of_different_shapes():
    with pytest.raises(ValueError):
        confusion_matrix(PREDICTED, TRUTH[:, :3], 4)


def test_scores_as_dict_is_json_with_null_for_absent_classes():
    scores = scores_from_confusion(confusion_matrix(PREDICTED, TRUTH, 4))
    names = ("a", "b", "c", "d")
    data = json.loads(json.dumps(scores.as_dict(names)))
    assert data["class_iou"] == {"a": 0.75, "b": 0.6, "c": 0.0, "d": None}
    assert data["confusion"][1] == [0, 3, 1, 0]


@pytest.fixture
def two_scored_images(tmp_path):
    """Image "small": 4 pixels, all right. Image "large": 12 pixels, 6 right; its coarse map 3 right."""
    truths = {"small": np.array([[2, 2], [3, 3]]), "large": np.zeros((3, 4), int)}
    predictions = {"small": truths["small"], "large": np.array([[0] * 4, [0, 0, 2, 2], [2] * 4])}
    coarse = {"small": np.full((2, 2), 2), "large": np.array([[0, 0, 0, 2], [2] * 4, [2] * 4])}
    triplets = []
    for name in truths:
        paths = [tmp_path / kind / f"{name}.png" for kind in ("predicted", "fine", "coarse")]
        for path, ids in zip(paths, (predictions[name], truths[name], coarse[name])):
            write_label_map(path, ids, FASSEG_LABELS, "color")
        triplets.append((name, *paths))
    return triplets


def test_score_files_pools_pixels_but_also_reports_mean_per_image(two_scored_images):
    report = score_files(two_scored_images, FASSEG_LABELS)
    assert report.per_image_accuracy == {"small": 1.0, "large": 0.5}
    assert report.predicted.pixel_accuracy == pytest.approx((4 + 6) / 16)  # pooled
    assert report.mean_image_accuracy() == pytest.approx((1.0 + 0.5) / 2)  # each image weighs the same


def test_score_files_scores_the_coarse_maps_alongside(two_scored_images):
    report = score_files(two_scored_images, FASSEG_LABELS)
    assert report.coarse_per_image_accuracy == {"small": 0.5, "large": 0.25}
    assert report.coarse.pixel_accuracy == pytest.approx((2 + 3) / 16)
    assert report.mean_image_accuracy(coarse=True) == pytest.approx(0.375)


def test_score_files_without_coarse_maps_has_no_coarse_column(two_scored_images):
    report = score_files([(name, predicted, fine, None) for name, predicted, fine, _ in two_scored_images],
                         FASSEG_LABELS)
    assert report.coarse is None and report.coarse_per_image_accuracy is None
    assert report.predicted.pixel_accuracy == pytest.approx(10 / 16)


def test_score_files_refuses_maps_of_different_sizes(tmp_path):
    write_label_map(tmp_path / "predicted.png", np.zeros((4, 4), int), FASSEG_LABELS, "color")
    write_label_map(tmp_path / "fine.png", np.zeros((4, 5), int), FASSEG_LABELS, "color")
    with pytest.raises(C2FError, match="same size"):
        score_files([("face", tmp_path / "predicted.png", tmp_path / "fine.png", None)], FASSEG_LABELS)
