"""Window grid, blend weights and stitching: a known map must come back exactly."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from conftest import coarse_echo_predictor, make_scene

from c2f.config import WindowSettings
from c2f.inference.network_input import PHOTO_MEAN, PHOTO_SPREAD, network_input
from c2f.inference.postprocess import class_ids, smooth
from c2f.inference.sliding_window import (
    predict_windows,
    refine_map,
    refine_probabilities,
)
from c2f.inference.tiling import (
    Box,
    PaddedImage,
    Stitcher,
    blend_weight,
    pad_image,
    padded_size,
    plan_windows,
    stitch_class_ids,
    stitch_probabilities,
    stitch_windows,
    window_starts,
)

NUM_CLASSES = 6

# Smaller than a window, odd, prime, exact multiples of the window, and long and thin.
IMAGE_SIZES = [(5, 7), (20, 31), (32, 32), (33, 47), (64, 64), (65, 97), (96, 32), (101, 13), (128, 160)]


@pytest.mark.parametrize("length, window, stride", [(10, 32, 16), (32, 32, 16), (33, 32, 16), (100, 32, 24),
                                                    (128, 32, 32), (129, 64, 1)])
def test_window_starts_cover_the_length_with_the_last_window_flush(length, window, stride):
    starts = window_starts(length, window, stride)
    assert starts[0] == 0
    assert starts[-1] == max(length - window, 0)
    assert all(0 < later - earlier <= stride for earlier, later in zip(starts, starts[1:]))


@pytest.mark.parametrize("height, width", [(64, 64), (65, 97), (160, 96)])
@pytest.mark.parametrize("overlap", [0, 8, 31])
def test_planned_windows_cover_every_pixel_and_stay_inside(height, width, overlap):
    covered = np.zeros((height, width), int)
    for box in plan_windows(height, width, 32, overlap):
        assert box.top + box.height <= height and box.left + box.width <= width
        covered[box.slices()] += 1
    assert covered.min() >= 1


def test_plan_windows_refuses_an_overlap_as_large_as_the_window():
    with pytest.raises(ValueError):
        plan_windows(64, 64, 32, 32)


@pytest.mark.parametrize("height, width, overlap", [(32, 32, 8), (64, 48, 16), (256, 256, 64), (7, 90, 3)])
def test_blend_weight_is_positive_at_most_one_and_symmetric(height, width, overlap):
    weight = blend_weight(height, width, overlap)
    assert weight.shape == (height, width) and weight.dtype == np.float32
    assert weight.min() > 0
    assert weight.max() <= 1
    np.testing.assert_allclose(weight, weight[::-1, ::-1])


def test_blend_weight_ramps_smoothly_to_one_in_the_interior():
    overlap = 16
    weight = blend_weight(64, 64, overlap)
    ramp = weight[32, :]
    np.testing.assert_array_equal(weight[overlap:-overlap, overlap:-overlap], 1)
    assert np.all(np.diff(ramp[:32]) >= 0)  # rises monotonically from the edge
    # The steepest step of a sin^2 ramp over `overlap` pixels is about pi / (2 * overlap): no hard edge.
    assert np.abs(np.diff(ramp)).max() <= np.pi / (2 * overlap) + 1e-6


def test_blend_weight_without_overlap_is_flat():
    np.testing.assert_array_equal(blend_weight(10, 12, 0), 1)


def test_network_input_is_normalised_rgb_then_one_hot_coarse(scene):
    photo, coarse, _ = scene
    inputs = network_input(photo, coarse, NUM_CLASSES)
    assert inputs.shape == (3 + NUM_CLASSES, *coarse.shape) and inputs.dtype == np.float32
    np.testing.assert_allclose(inputs[:3], (photo.transpose(2, 0, 1) - PHOTO_MEAN) / PHOTO_SPREAD, rtol=1e-6)
    np.testing.assert_array_equal(inputs[3:].argmax(axis=0), coarse)
    np.testing.assert_array_equal(inputs[3:].sum(axis=0), 1)


def test_network_input_fills_a_given_batch_slot_with_what_it_would_return(scene):
    photo, coarse, _ = scene
    batch = np.full((2, 3 + NUM_CLASSES, *coarse.shape), np.nan, np.float32)
    assert np.shares_memory(network_input(photo, coarse, NUM_CLASSES, batch[1]), batch)
    np.testing.assert_array_equal(batch[1], network_input(photo, coarse, NUM_CLASSES))
    assert np.isnan(batch[0]).all()  # the other slot untouched
    with pytest.raises(ValueError, match="float32"):
        network_input(photo, None, NUM_CLASSES, batch[0])  # 3 channels, not 3 + K


def test_network_input_without_coarse_map_is_rgb_only(scene):
    photo, _, _ = scene
    assert network_input(photo, None, NUM_CLASSES).shape == (3, *photo.shape[:2])


@pytest.mark.parametrize("height, width", [(3, 2), (5, 7), (40, 33)])
def test_padding_keeps_the_image_at_the_top_left(height, width):
    array = np.random.default_rng(0).integers(0, 255, size=(height, width, 3))
    padded = pad_image(array, 64, 96)
    assert padded.shape == (64, 96, 3)
    np.testing.assert_array_equal(padded[:height, :width], array)


@pytest.mark.parametrize("height, width", IMAGE_SIZES)
@pytest.mark.parametrize("settings", [
    WindowSettings(window=32, overlap=8, batch_size=3, whole_image_max_pixels=0, smoothing=0.0),
    WindowSettings(window=64, overlap=24, batch_size=8, whole_image_max_pixels=0, smoothing=0.0),
    WindowSettings(window=32, overlap=0, batch_size=1, whole_image_max_pixels=0, smoothing=0.0),
    WindowSettings(whole_image=True, smoothing=0.0),
], ids=["window32-overlap8", "window64-overlap24", "window32-no-overlap", "whole-image"])
def test_stitching_reproduces_a_known_map_exactly(height, width, settings):
    photo, coarse, _ = make_scene(height, width, seed=height * 1000 + width)
    refined = refine_map(coarse_echo_predictor(NUM_CLASSES), photo, coarse, NUM_CLASSES, settings)
    assert refined.shape == coarse.shape
    np.testing.assert_array_equal(refined, coarse)


@pytest.mark.parametrize("settings", [WindowSettings(window=32, overlap=16, smoothing=0.0),
                                      WindowSettings(whole_image=True, smoothing=0.0)], ids=["windows", "whole-image"])
def test_stitched_probabilities_equal_each_windows_probabilities_where_they_agree(settings):
    photo, coarse, _ = make_scene(70, 45, seed=1)
    scale = 3.0
    probabilities = refine_probabilities(coarse_echo_predictor(NUM_CLASSES, scale), photo, coarse,
                                         NUM_CLASSES, settings)
    assert probabilities.shape == (NUM_CLASSES, 70, 45)
    one_hot = np.eye(NUM_CLASSES, dtype=np.float64)[coarse].transpose(2, 0, 1)
    expected = np.exp(scale * one_hot) / np.exp(scale * one_hot).sum(axis=0)
    np.testing.assert_allclose(probabilities, expected, rtol=1e-5)


def test_a_pixel_seen_by_one_window_keeps_that_windows_prediction():
    first = np.zeros((2, 32, 32), np.float32)
    first[0] = 1
    second = np.zeros((2, 32, 32), np.float32)
    second[1] = 1
    stitched = stitch_windows([(Box(0, 0, 32, 32), first), (Box(0, 16, 32, 32), second)], 2, 32, 48, overlap=16)
    np.testing.assert_array_equal(stitched[0, :, :16], 1)  # only the first window reaches here
    np.testing.assert_array_equal(stitched[1, :, 32:], 1)  # only the second one here
    shared = stitched[0, 0, 16:32]
    assert np.all(np.diff(shared) < 0)  # the overlap fades from one window to the other, no hard seam
    np.testing.assert_allclose(stitched.sum(axis=0), 1, rtol=1e-6)


def test_predict_windows_reports_progress_per_batch(scene):
    photo, coarse, _ = scene
    padded = [pad_image(array, 64, 64) for array in (photo, coarse)]
    reports = []
    windows = list(predict_windows(coarse_echo_predictor(NUM_CLASSES), *padded, NUM_CLASSES, window=32,
                                   overlap=8, batch_size=2, on_batch=lambda done, total: reports.append((done, total))))
    assert len(windows) == 9  # starts 0, 24, 32 on each axis
    assert reports == [(2, 9), (4, 9), (6, 9), (8, 9), (9, 9)]
    for box, probabilities in windows:
        assert probabilities.shape == (NUM_CLASSES, box.height, box.width)


def whole_array_class_ids(windows, num_classes, padded, size, overlap, sigma):
    """The reference the band stitcher must equal: stitch the whole padded (K, H, W) array, crop, smooth, argmax."""
    sums = np.zeros((num_classes, *padded), np.float32)
    weights = np.zeros(padded, np.float32)
    for box, probabilities in windows:
        weight = blend_weight(box.height, box.width, overlap)
        sums[(slice(None), *box.slices())] += probabilities * weight
        weights[box.slices()] += weight
    probabilities = (sums / weights)[:, :size[0], :size[1]].copy()
    return class_ids(smooth(probabilities.copy(), sigma)), probabilities


@pytest.mark.parametrize("seed", range(12))
def test_band_stitching_equals_the_whole_array_path_byte_for_byte(seed):
    random = np.random.default_rng(seed)
    num_classes = int(random.integers(2, 7))
    height, width = int(random.integers(5, 150)), int(random.integers(5, 150))
    window = int(random.choice([32, 64]))
    overlap = int(random.integers(0, window // 2))
    sigma = float(random.choice([0.0, 0.5, 1.0, 2.0, 3.5, 7.0]))
    padded = padded_size(height, width, window, 32)
    boxes = plan_windows(*padded, window, overlap)
    windows = [(box, random.random((num_classes, box.height, box.width), dtype=np.float32)) for box in boxes]
    expected_ids, unsmoothed = whole_array_class_ids(windows, num_classes, padded, (height, width), overlap, sigma)
    stitcher = Stitcher(num_classes, padded, (height, width), overlap, sigma)
    np.testing.assert_array_equal(stitch_class_ids(iter(windows), stitcher), expected_ids)
    assert not stitcher.uncovered
    smoothed = stitch_probabilities(iter(windows), Stitcher(num_classes, padded, (height, width), overlap, sigma))
    assert smoothed.tobytes() == smooth(unsmoothed, sigma).tobytes()


@pytest.mark.parametrize("height, width", [(5, 7), (33, 47), (101, 13), (70, 200)])
@pytest.mark.parametrize("window", [32, 64])
def test_cutting_windows_on_demand_equals_padding_the_whole_photo(height, width, window):
    photo = np.random.default_rng(height).integers(0, 256, (height, width, 3), dtype=np.uint8)
    padded = padded_size(height, width, window, 32)
    whole, lazy = pad_image(photo, *padded), PaddedImage(photo, *padded)
    assert lazy.shape == whole.shape
    for box in plan_windows(*padded, window, 8):
        np.testing.assert_array_equal(lazy[box.slices()], whole[box.slices()])


def test_a_window_out_of_row_order_is_refused():
    stitcher = Stitcher(2, (64, 32), (64, 32), 0)
    stitcher.add(Box(32, 0, 32, 32), np.ones((2, 32, 32), np.float32))
    with pytest.raises(ValueError, match="row-major"):
        stitcher.add(Box(0, 0, 32, 32), np.ones((2, 32, 32), np.float32))


def test_rows_no_window_reached_are_marked_uncovered():
    stitcher = Stitcher(2, (96, 32), (96, 32), 0)
    probabilities = stitch_probabilities([(Box(0, 0, 32, 32), np.ones((2, 32, 32), np.float32)),
                                          (Box(64, 0, 32, 32), np.ones((2, 32, 32), np.float32))], stitcher)
    assert stitcher.uncovered and np.isnan(probabilities[:, 32:64]).all() and not np.isnan(probabilities[:, 64:]).any()


def test_refining_a_tall_photo_never_holds_its_class_probabilities_whole():
    # Not a timing: the largest single allocation tracemalloc sees must stay far below one float32 plane set.
    height, width = 6144, 192
    photo, coarse, _ = make_scene(height, width, seed=3)
    settings = WindowSettings(window=64, overlap=16, batch_size=4, whole_image_max_pixels=0, smoothing=2.0)
    whole_probabilities = NUM_CLASSES * height * width * 4
    tracemalloc.start()
    try:
        refined = refine_map(coarse_echo_predictor(NUM_CLASSES), photo, coarse, NUM_CLASSES, settings)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(refined, class_ids(refine_probabilities(
        coarse_echo_predictor(NUM_CLASSES), photo, coarse, NUM_CLASSES, settings)))
    # The photo and its maps are inputs and outputs; what refining adds is a few bands of rows.
    assert peak < whole_probabilities / 5, f"peak {peak / 2**20:.1f} MiB"


def test_unannotated_pixels_take_their_nearest_annotated_class():
    from c2f.inference.network_input import fill_unannotated

    coarse = np.array([[0, 0, 6, 6, 1, 1],
                       [0, 6, 6, 6, 6, 1],
                       [2, 2, 6, 6, 1, 1]], dtype=np.uint8)  # 6 = not annotated for a 6-class map
    filled = fill_unannotated(coarse, 6)
    assert filled.dtype == coarse.dtype and (filled < 6).all()
    np.testing.assert_array_equal(filled[coarse < 6], coarse[coarse < 6])  # annotated pixels keep their class
    assert filled[0, 2] == 0 and filled[0, 3] == 1 and filled[1, 1] == 0 and filled[1, 4] == 1


def test_maps_without_unannotated_pixels_or_with_nothing_annotated_are_left_alone():
    from c2f.inference.network_input import fill_unannotated

    complete = np.arange(12, dtype=np.uint8).reshape(3, 4) % 6
    assert fill_unannotated(complete, 6) is complete
    empty = np.full((3, 4), 6, dtype=np.uint8)
    assert fill_unannotated(empty, 6) is empty
