import numpy as np
import pytest

from c2f.errors import C2FError
from c2f.training.coarsen import (
    CoarsenSettings,
    coarsen,
    draw_coarse_maps,
    parse_coarsen_spec,
)
from c2f.training.samples import LoadedSample


def fine_map() -> np.ndarray:
    """A 96 x 128 map: three bands of classes, a big disc, a 5 x 5 speck and a void strip (id 9)."""
    rows, columns = np.mgrid[0:96, 0:128]
    fine = np.zeros((96, 128), dtype=np.uint8)
    fine[rows > 40 + 8 * np.sin(columns / 10)] = 1
    fine[rows > 75] = 2
    fine[(rows - 30) ** 2 + (columns - 90) ** 2 < 300] = 3
    fine[10:15, 20:25] = 4  # 25 px
    fine[:, 60:63] = 9
    return fine


def test_coarsen_is_deterministic_for_a_seed_and_keeps_shape_and_dtype():
    settings = parse_coarsen_spec("tolerance=2:8,min_area=10:40,jitter=0:2")
    first = coarsen(fine_map(), settings, np.random.default_rng(3), ignore_value=255, skip_values=(9,))
    second = coarsen(fine_map(), settings, np.random.default_rng(3), ignore_value=255, skip_values=(9,))
    np.testing.assert_array_equal(first, second)
    assert first.shape == (96, 128) and first.dtype == np.uint8
    assert (first[:, 60:63] == 255).all()
    assert (first == fine_map())[fine_map() != 9].mean() > 0.9


def test_void_keeps_its_value_without_an_ignore_value():
    coarse = coarsen(fine_map(), CoarsenSettings(), np.random.default_rng(0), skip_values=(9,))
    assert (coarse[:, 60:63] == 9).all()


def test_regions_below_min_area_vanish_into_their_surroundings():
    fixed = parse_coarsen_spec("tolerance=1,min_area=30,jitter=0")
    coarse = coarsen(fine_map(), fixed, np.random.default_rng(0))
    assert not (coarse == 4).any() and (coarse[10:15, 20:25] == 0).all()
    assert (coarse == 3).sum() > 250
    kept = coarsen(fine_map(), parse_coarsen_spec("tolerance=1,min_area=20,jitter=0"), np.random.default_rng(0))
    assert (kept == 4).sum() > 15


def test_bands_are_ignore_value_near_class_boundaries():
    fine = fine_map()
    settings = parse_coarsen_spec("tolerance=1,min_area=0,jitter=0,band=6")
    coarse = coarsen(fine, settings, np.random.default_rng(0), ignore_value=255)
    band = coarse == 255
    assert band.sum() > 0
    # every band pixel lies within a few pixels of a class change in the fine map
    for row, column in zip(*np.nonzero(band)):
        window = fine[max(row - 5, 0): row + 6, max(column - 5, 0): column + 6]
        assert len(np.unique(window)) > 1
    no_band = coarsen(fine, settings, np.random.default_rng(0))  # bands need an ignore value
    assert (np.isin(no_band, [0, 1, 2, 3, 4, 9])).all()


def test_parse_coarsen_spec_reads_ranges_and_fixed_values():
    settings = parse_coarsen_spec("tolerance=4:32, min_area=50:400,jitter=0:3,band=2")
    assert settings == CoarsenSettings(tolerance=(4.0, 32.0), min_area=(50.0, 400.0), jitter=(0.0, 3.0),
                                       band=(2.0, 2.0))
    assert parse_coarsen_spec("") == CoarsenSettings()


@pytest.mark.parametrize("text, message", [
    ("smoothness=3", "smoothness"),
    ("tolerance=8:4", "LOW <= HIGH"),
    ("jitter=-1", "LOW <= HIGH"),
    ("band=wide", "number"),
    ("tolerance", "KEY=LOW:HIGH"),
    ("min_area=1:2:3", "number"),
])
def test_parse_coarsen_spec_rejects_bad_input(text, message):
    with pytest.raises(C2FError, match=message):
        parse_coarsen_spec(text)


def test_coarsen_rejects_a_map_that_is_not_a_class_map():
    with pytest.raises(C2FError, match="integer"):
        coarsen(np.zeros((4, 4), dtype=np.float32), CoarsenSettings(), np.random.default_rng(0))


def fine_only_samples(count: int) -> list[LoadedSample]:
    return [LoadedSample(f"s{index}", np.zeros((96, 128, 3), np.uint8), None, fine_map()) for index in range(count)]


def test_draw_coarse_maps_fills_missing_maps_deterministically_per_seed():
    settings = parse_coarsen_spec("tolerance=4:16,min_area=50:200,jitter=0:2,band=0:6")
    first = draw_coarse_maps(fine_only_samples(2), settings, 9, (0, 1))
    again = draw_coarse_maps(fine_only_samples(2), settings, 9, (0, 1))
    other = draw_coarse_maps(fine_only_samples(2), settings, 9, (0, 2))
    for sample, repeat in zip(first, again):
        np.testing.assert_array_equal(sample.coarse, repeat.coarse)
        assert sample.coarse.shape == sample.fine.shape
    assert not np.array_equal(first[0].coarse, other[0].coarse)
    assert not np.array_equal(first[0].coarse, first[1].coarse)  # each sample its own drawing


def test_draw_coarse_maps_keeps_existing_coarse_maps_unless_asked_to_redraw_all():
    own = np.full((96, 128), 2, np.uint8)
    samples = [LoadedSample("own", np.zeros((96, 128, 3), np.uint8), own, fine_map())] + fine_only_samples(1)
    settings = CoarsenSettings()
    kept = draw_coarse_maps(samples, settings, 9, (0,))
    assert kept[0].coarse is own and kept[1].coarse is not None
    redrawn = draw_coarse_maps(samples, settings, 9, (0,), redraw_all=True)
    assert not np.array_equal(redrawn[0].coarse, own)
    coarse_only = LoadedSample("c", np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8), None)
    assert draw_coarse_maps([coarse_only], settings, 9, (0,), redraw_all=True)[0] is coarse_only


def test_a_region_that_simplifies_to_a_sliver_is_left_out():
    fine = np.zeros((80, 80), np.uint8)
    fine[30:34, 10:70] = 1  # 240 px, 4 px thick: a 6 px tolerance leaves a line
    coarse = coarsen(fine, parse_coarsen_spec("tolerance=6,min_area=100,jitter=0"), np.random.default_rng(0))
    assert not (coarse == 1).any()
