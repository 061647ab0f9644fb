"""Refining files: output encoding, window settings, and `--windows-dir` + stitch as one code path."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import coarse_echo_predictor, make_scene
from PIL import Image

from c2f.config import WindowSettings
from c2f.errors import C2FError
from c2f.inference.backends import load_predictor
from c2f.inference.postprocess import class_ids, smooth
from c2f.inference.sliding_window import refine_map, refine_probabilities
from c2f.inference.windows_folder import MANIFEST_NAME, stitch_folder
from c2f.io.label_maps import RASTER_ENCODINGS as ENCODINGS
from c2f.io.label_maps import read_label_map, write_label_map
from c2f.io.label_sets import FASSEG_LABELS
from c2f.refine import refine_file

NUM_CLASSES = FASSEG_LABELS.num_classes
SMALL_WINDOWS = WindowSettings(window=32, overlap=8, batch_size=4, whole_image_max_pixels=0, smoothing=0.0)


def write_inputs(folder, scene, encoding="color"):
    photo, coarse, _ = scene
    Image.fromarray(photo).save(folder / "photo.png")
    write_label_map(folder / "coarse.png", coarse, FASSEG_LABELS, encoding)
    return folder / "photo.png", folder / "coarse.png"


def near_tie_predictor(batch: np.ndarray) -> np.ndarray:
    """Logits where class 1 beats class 0 by less than float16 probabilities can tell apart.

    The windows folder stores float16, so only a stitch of the stored values can agree with it
    on such pixels.
    """
    logits = np.zeros((len(batch), NUM_CLASSES, *batch.shape[2:]), np.float32)
    logits[:, 1] = 1e-4 * (batch[:, 0] > 0)  # class 1 wins by a hair wherever the photo is bright
    return logits


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_refined_map_is_written_in_the_coarse_maps_encoding(tmp_path, scene, encoding):
    photo_path, coarse_path = write_inputs(tmp_path, scene, encoding)
    result = refine_file(coarse_echo_predictor(NUM_CLASSES), FASSEG_LABELS, True, photo_path, coarse_path,
                         tmp_path / "fine.png", SMALL_WINDOWS)
    written = read_label_map(tmp_path / "fine.png", FASSEG_LABELS)
    assert written.encoding == encoding
    np.testing.assert_array_equal(written.class_ids, scene[1])  # the echo predictor returns the coarse map
    assert result.output == tmp_path / "fine.png"
    assert result.changed_fraction == 0.0 and result.far_pixels == 0


@pytest.mark.parametrize("output_format", ["index", "palette"])
def test_an_explicit_format_overrides_the_coarse_maps_encoding(tmp_path, scene, output_format):
    photo_path, coarse_path = write_inputs(tmp_path, scene, "color")
    refine_file(coarse_echo_predictor(NUM_CLASSES), FASSEG_LABELS, True, photo_path, coarse_path,
                tmp_path / "fine.png", SMALL_WINDOWS, output_format=output_format)
    assert read_label_map(tmp_path / "fine.png", FASSEG_LABELS).encoding == output_format


def test_changed_fraction_compares_the_result_with_the_coarse_map(tmp_path, scene):
    photo_path, coarse_path = write_inputs(tmp_path, scene)

    def always_skin(batch):
        logits = np.zeros((len(batch), NUM_CLASSES, *batch.shape[2:]), np.float32)
        logits[:, 2] = 1
        return logits
    result = refine_file(always_skin, FASSEG_LABELS, True, photo_path, coarse_path, tmp_path / "fine.png",
                         SMALL_WINDOWS)
    assert result.changed_fraction == pytest.approx((scene[1] != 2).mean())


def test_rgb_only_models_are_not_given_the_coarse_map(tmp_path, scene):
    photo_path, coarse_path = write_inputs(tmp_path, scene)
    seen_channels = set()

    def rgb_only(batch):
        seen_channels.add(batch.shape[1])
        return np.zeros((len(batch), NUM_CLASSES, *batch.shape[2:]), np.float32)
    refine_file(rgb_only, FASSEG_LABELS, False, photo_path, coarse_path, tmp_path / "fine.png", SMALL_WINDOWS)
    assert seen_channels == {3}


def test_strict_mode_refuses_coarse_maps_with_foreign_colours(tmp_path, scene):
    photo_path, coarse_path = write_inputs(tmp_path, scene)
    rgb = np.asarray(Image.open(coarse_path)).copy()
    rgb[0, :5] = (255, 0, 255)
    Image.fromarray(rgb).save(coarse_path)
    predictor = coarse_echo_predictor(NUM_CLASSES)
    lenient = refine_file(predictor, FASSEG_LABELS, True, photo_path, coarse_path, tmp_path / "fine.png", SMALL_WINDOWS)
    assert lenient.far_pixels == 5
    with pytest.raises(C2FError, match="--strict"):
        refine_file(predictor, FASSEG_LABELS, True, photo_path, coarse_path, tmp_path / "strict.png",
                    SMALL_WINDOWS, strict=True)
    assert not (tmp_path / "strict.png").exists()


def test_a_coarse_map_of_another_size_is_refused(tmp_path, scene):
    photo_path, coarse_path = write_inputs(tmp_path, scene)
    write_label_map(coarse_path, scene[1][:, :-1], FASSEG_LABELS, "color")
    with pytest.raises(C2FError, match="is 51x40 but .*photo.png is 52x40; they must be the same size"):
        refine_file(coarse_echo_predictor(NUM_CLASSES), FASSEG_LABELS, True, photo_path, coarse_path,
                    tmp_path / "fine.png", SMALL_WINDOWS)


@pytest.mark.parametrize("settings", [SMALL_WINDOWS, WindowSettings(whole_image=True)], ids=["windows", "whole-image"])
def test_windows_dir_then_stitch_folder_gives_the_identical_map(tmp_path, scene, settings):
    photo_path, coarse_path = write_inputs(tmp_path, scene)
    refine_file(near_tie_predictor, FASSEG_LABELS, True, photo_path, coarse_path, tmp_path / "fine.png",
                settings, windows_dir=tmp_path / "windows")
    probabilities, manifest = stitch_folder(tmp_path / "windows")
    refined = read_label_map(tmp_path / "fine.png", FASSEG_LABELS).class_ids
    np.testing.assert_array_equal(class_ids(probabilities), refined)
    assert probabilities.shape == (NUM_CLASSES, *scene[1].shape)
    assert manifest["labels"]["classes"][0]["name"] == "background"
    assert len(manifest["windows"]) == len(list((tmp_path / "windows").glob("window_*.npy")))


def test_stitched_probabilities_match_refines_own(tmp_path, scene):
    photo, coarse, _ = scene
    predictor = coarse_echo_predictor(NUM_CLASSES, scale=2.0)
    direct = refine_probabilities(predictor, photo, coarse, NUM_CLASSES, SMALL_WINDOWS)
    refine_probabilities(predictor, photo, coarse, NUM_CLASSES, SMALL_WINDOWS, windows_dir=tmp_path / "windows",
                         labels=FASSEG_LABELS)
    stitched, _ = stitch_folder(tmp_path / "windows")
    np.testing.assert_allclose(stitched, direct, atol=1e-3)  # windows are stored as float16


def test_windows_folder_with_a_trained_model_stitches_to_the_same_map(tmp_path, scene, tiny_weights):
    predictor, labels, uses_coarse = load_predictor(tiny_weights, FASSEG_LABELS, device="cpu")
    photo_path, coarse_path = write_inputs(tmp_path, scene)
    refine_file(predictor, labels, uses_coarse, photo_path, coarse_path, tmp_path / "fine.png", SMALL_WINDOWS,
                windows_dir=tmp_path / "windows")
    probabilities, _ = stitch_folder(tmp_path / "windows")
    np.testing.assert_array_equal(class_ids(probabilities),
                                  read_label_map(tmp_path / "fine.png", FASSEG_LABELS).class_ids)


def test_a_windows_folder_without_manifest_is_refused(tmp_path):
    (tmp_path / "windows").mkdir()
    with pytest.raises(C2FError, match=MANIFEST_NAME):
        stitch_folder(tmp_path / "windows")


def test_an_interrupted_refine_into_a_reused_windows_folder_leaves_no_manifest(tmp_path, scene):
    photo, coarse, _ = scene
    refine_probabilities(coarse_echo_predictor(NUM_CLASSES), photo, coarse, NUM_CLASSES, SMALL_WINDOWS,
                         windows_dir=tmp_path / "windows", labels=FASSEG_LABELS)
    echo = coarse_echo_predictor(NUM_CLASSES)
    calls = []

    def stop_at_the_second_batch(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return echo(batch)
    with pytest.raises(KeyboardInterrupt):
        refine_probabilities(stop_at_the_second_batch, photo, coarse, NUM_CLASSES, SMALL_WINDOWS,
                             windows_dir=tmp_path / "windows", labels=FASSEG_LABELS)
    with pytest.raises(C2FError, match=MANIFEST_NAME):  # old and new windows are never stitched together
        stitch_folder(tmp_path / "windows")


def test_a_window_file_of_the_wrong_shape_is_refused(tmp_path, scene):
    photo, coarse, _ = scene
    refine_probabilities(coarse_echo_predictor(NUM_CLASSES), photo, coarse, NUM_CLASSES, SMALL_WINDOWS,
                         windows_dir=tmp_path / "windows", labels=FASSEG_LABELS)
    manifest = json.loads((tmp_path / "windows" / MANIFEST_NAME).read_text())
    np.save(tmp_path / "windows" / manifest["windows"][0]["file"], np.zeros((2, 3, 3), np.float16))
    with pytest.raises(C2FError, match="manifest expects"):
        stitch_folder(tmp_path / "windows")


def test_whole_image_and_windowed_refinement_agree_for_a_pixelwise_predictor(scene):
    photo, coarse, _ = scene
    predictor = coarse_echo_predictor(NUM_CLASSES)
    whole_image = WindowSettings(whole_image=True, smoothing=0.0)
    np.testing.assert_array_equal(refine_map(predictor, photo, coarse, NUM_CLASSES, whole_image),
                                  refine_map(predictor, photo, coarse, NUM_CLASSES, SMALL_WINDOWS))


@pytest.mark.parametrize("settings, message", [
    (WindowSettings(window=48), "multiple of 32"),
    (WindowSettings(window=0), "multiple of 32"),
    (WindowSettings(window=64, overlap=64), "below --window"),
    (WindowSettings(batch_size=0), "at least 1"),
    (WindowSettings(smoothing=-1.0), "--smooth must be 0"),
    (WindowSettings(smoothing=1e-200), "--smooth must be 0"),
    (WindowSettings(smoothing=100.0), "--smooth must be 0"),
])
def test_window_settings_are_checked(settings, message):
    with pytest.raises(C2FError, match=message):
        settings.check()


def test_make_scene_gives_a_coarse_map_that_differs_from_the_fine_one():
    _, coarse, fine = make_scene(40, 40)
    assert 0.05 < (coarse != fine).mean() < 0.5  # refining has something to do, but not everything



def test_smoothing_keeps_probabilities_summing_to_one_and_flat_maps_flat():
    probabilities = np.random.default_rng(0).random((4, 30, 41)).astype(np.float32)
    probabilities /= probabilities.sum(axis=0)
    smoothed = smooth(probabilities.copy(), 2.0)
    np.testing.assert_allclose(smoothed.sum(axis=0), 1.0, atol=1e-5)
    assert smoothed.std() < probabilities.std() / 2  # noise averages out
    flat = np.full((3, 5, 7), 1 / 3, dtype=np.float32)
    np.testing.assert_allclose(smooth(flat.copy(), 3.0), flat, atol=1e-6)
    np.testing.assert_array_equal(smooth(probabilities.copy(), 0.0), probabilities)


def reference_blur(plane: np.ndarray, sigma: float) -> np.ndarray:
    """A direct 2-D Gaussian sum over an edge-padded plane, for checking smooth()."""
    radius = int(np.ceil(2.5 * sigma))
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * sigma**2))
    weights /= weights.sum()
    padded = np.pad(plane.astype(np.float64), radius, mode="edge")
    height, width = plane.shape
    return sum(weights[dy, dx] * padded[dy:dy + height, dx:dx + width]
               for dy in range(2 * radius + 1) for dx in range(2 * radius + 1))


@pytest.mark.parametrize("height, width", [(1, 1), (1, 7), (7, 1), (5, 4), (12, 9)])
def test_smoothing_a_cropped_view_blurs_the_crop_alone_as_a_gaussian_would(height, width):
    whole = np.random.default_rng(height * 31 + width).random((3, 16, 16)).astype(np.float32)
    original = whole.copy()
    crop = whole[:, :height, :width]  # refine and stitch smooth such a view of the padded map
    smooth(crop, 1.5)
    for plane, before in zip(crop, original[:, :height, :width]):
        np.testing.assert_allclose(plane, reference_blur(before, 1.5), atol=1e-5)
    outside = np.ones(whole.shape, bool)
    outside[:, :height, :width] = False
    np.testing.assert_array_equal(whole[outside], original[outside])


def test_smoothing_drops_a_lone_pixel_but_keeps_a_region_and_its_straight_edge():
    ids = np.zeros((40, 40), dtype=np.uint8)
    ids[5, 5] = 1  # a one-pixel speck
    ids[:, 20:] = 2  # a half-plane with a straight border
    probabilities = np.eye(3, dtype=np.float32)[ids].transpose(2, 0, 1).copy()
    smoothed_ids = class_ids(smooth(probabilities, 2.0))
    expected = ids.copy()
    expected[5, 5] = 0
    np.testing.assert_array_equal(smoothed_ids, expected)


def test_stitch_smooths_as_the_refine_that_saved_the_windows_did(tmp_path, scene):
    photo, coarse, _ = scene
    settings = WindowSettings(window=32, overlap=8, batch_size=4, whole_image_max_pixels=0, smoothing=1.5)
    refined = refine_probabilities(coarse_echo_predictor(NUM_CLASSES, 3.0), photo, coarse, NUM_CLASSES, settings,
                                   windows_dir=tmp_path / "windows", labels=FASSEG_LABELS)
    stitched, manifest = stitch_folder(tmp_path / "windows")
    assert manifest["smoothing"] == 1.5
    np.testing.assert_array_equal(stitched, refined)
    unsmoothed = refine_probabilities(coarse_echo_predictor(NUM_CLASSES, 3.0), photo, coarse, NUM_CLASSES,
                                      SMALL_WINDOWS)
    assert not np.allclose(stitched, unsmoothed)


@pytest.mark.parametrize("smoothing", ["2", -1, True, 1000, 1e-200])
def test_a_manifest_with_a_bad_smoothing_is_refused(tmp_path, scene, smoothing):
    photo, coarse, _ = scene
    refine_probabilities(coarse_echo_predictor(NUM_CLASSES), photo, coarse, NUM_CLASSES, SMALL_WINDOWS,
                         windows_dir=tmp_path / "windows", labels=FASSEG_LABELS)
    manifest_path = tmp_path / "windows" / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text())
    manifest["smoothing"] = smoothing
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(C2FError, match="smoothing"):
        stitch_folder(tmp_path / "windows")


def test_a_manifest_from_before_smoothing_stitches_unsmoothed(tmp_path, scene):
    photo, coarse, _ = scene
    predictor = coarse_echo_predictor(NUM_CLASSES, 3.0)
    settings = WindowSettings(window=32, overlap=8, batch_size=4, whole_image_max_pixels=0)  # default smoothing
    refine_probabilities(predictor, photo, coarse, NUM_CLASSES, settings, windows_dir=tmp_path / "windows",
                         labels=FASSEG_LABELS)
    manifest_path = tmp_path / "windows" / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text())
    del manifest["smoothing"]
    manifest_path.write_text(json.dumps(manifest))
    stitched, _ = stitch_folder(tmp_path / "windows")
    unsmoothed = refine_probabilities(predictor, photo, coarse, NUM_CLASSES, SMALL_WINDOWS,
                                      windows_dir=tmp_path / "raw", labels=FASSEG_LABELS)  # same float16 windows
    np.testing.assert_array_equal(stitched, unsmoothed)


def test_changed_fraction_counted_in_bands_is_the_share_of_changed_pixels(monkeypatch):
    import c2f.io.photos
    from c2f.refine import changed_fraction

    monkeypatch.setattr(c2f.io.photos, "BAND_PIXELS", 40)
    _, coarse, fine = make_scene(37, 29)
    assert changed_fraction(fine, coarse) == float((fine != coarse).mean()) > 0
