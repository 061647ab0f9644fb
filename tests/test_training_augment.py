"""Training crops and batches: soft targets that follow their crop, and coarse regions relabelled."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_scene

from c2f.io.label_maps import ClassBlend
from c2f.training.augment import (
    coarse_regions,
    make_batch,
    random_crop,
    relabel_coarse_regions,
    target_shares,
)
from c2f.training.samples import LoadedSample

NUM_CLASSES = 6


def scene_sample(height: int = 40, width: int = 50, seed: int = 0) -> LoadedSample:
    photo, coarse, fine = make_scene(height, width, seed=seed)
    return LoadedSample("face", photo, coarse, fine)


@pytest.mark.parametrize("seed", range(8))  # scaled or not, mirrored or not, anywhere in the padded face
def test_a_blend_is_cut_and_resampled_exactly_as_its_map(seed):
    sample = scene_sample(30, 50)
    height, width = sample.fine.shape
    positions = np.arange(height * width, dtype=np.uint16).reshape(height, width)
    second = (sample.fine + 1) % NUM_CLASSES
    share = (0.5 + positions / (2 * positions.size)).astype(np.float32)  # tells every pixel apart
    blend = ClassBlend(sample.fine, second.astype(np.uint8), share)
    photo, coarse, where = random_crop(sample, positions, 32, np.random.default_rng(seed))
    soft_photo, soft_coarse, soft = random_crop(sample, sample.fine, 32, np.random.default_rng(seed), blend)
    np.testing.assert_array_equal(soft_photo, photo)
    np.testing.assert_array_equal(soft_coarse, coarse)
    np.testing.assert_array_equal(soft.first, sample.fine.ravel()[where])
    np.testing.assert_array_equal(soft.second, second.ravel()[where])
    np.testing.assert_array_equal(soft.share, share.ravel()[where])
    _, _, hard = random_crop(sample, sample.fine, 32, np.random.default_rng(seed))
    np.testing.assert_array_equal(soft.first, hard)


def test_shares_of_a_half_blend_a_pure_pixel_and_an_ignored_one():
    first = np.array([[2, 1, 6, 4]], np.uint8)
    second = np.array([[0, 1, 6, 6]], np.uint8)  # the last: a class blended with ignored colour
    shares = target_shares(ClassBlend(first, second, np.array([[0.5, 1, 1, 0.75]], np.float32)), NUM_CLASSES)
    assert shares.shape == (NUM_CLASSES, 1, 4) and shares.dtype == np.float32
    np.testing.assert_array_equal(shares[:, 0, 0], [0.5, 0, 0.5, 0, 0, 0])
    np.testing.assert_array_equal(shares[:, 0, 1], [0, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(shares[:, 0, 2], np.zeros(NUM_CLASSES))  # ignored: out of the loss
    np.testing.assert_array_equal(shares[:, 0, 3], [0, 0, 0, 0, 0.75, 0])
    np.testing.assert_array_equal(target_shares(first, NUM_CLASSES)[:, 0, 0], [0, 0, 1, 0, 0, 0])


def test_batches_hold_class_ids_unless_a_crop_has_a_blend():
    sample = scene_sample()
    hard = [random_crop(sample, sample.fine, 32, np.random.default_rng(seed)) for seed in range(2)]
    _, targets = make_batch(hard, NUM_CLASSES, True, np.random.default_rng(0))
    assert targets.dtype == torch.int64 and targets.shape == (2, 32, 32)
    photo, coarse, target = hard[1]
    soft = ClassBlend(target, target, np.ones(target.shape, np.float32))
    _, shares = make_batch([hard[0], (photo, coarse, soft)], NUM_CLASSES, True, np.random.default_rng(0))
    assert shares.dtype == torch.float32 and shares.shape == (2, NUM_CLASSES, 32, 32)
    np.testing.assert_array_equal(shares.argmax(dim=1).numpy(), targets.numpy())


def test_relabelling_gives_whole_coarse_regions_another_class_and_leaves_the_rest():
    photo, coarse, fine = make_scene(64, 64, seed=2)
    changed_any = False
    for seed in range(10):
        new_photo, relabeled, target = relabel_coarse_regions((photo, coarse, fine), NUM_CLASSES, 1.0,
                                                              np.random.default_rng(seed))
        assert new_photo is photo and target is fine  # the photo and the fine target stay as they are
        changed = relabeled != coarse
        changed_any |= changed.any()
        for class_id, mask in coarse_regions(coarse, NUM_CLASSES, 1):
            if changed[mask].any():  # a relabelled region changes whole, to one other class
                assert changed[mask].all() and len(np.unique(relabeled[mask])) == 1
                assert relabeled[mask][0] != class_id and relabeled[mask][0] < NUM_CLASSES
    assert changed_any


def test_relabelling_repeats_for_a_seed_and_draws_nothing_when_off():
    photo, coarse, fine = make_scene(64, 64, seed=2)
    draws = [relabel_coarse_regions((photo, coarse, fine), NUM_CLASSES, 0.5, np.random.default_rng(seed))[1]
             for seed in (3, 3, *range(4, 12))]
    np.testing.assert_array_equal(draws[0], draws[1])
    assert any(not np.array_equal(draws[0], other) for other in draws[2:])
    rng = np.random.default_rng(0)
    crop = (photo, coarse, fine)
    assert relabel_coarse_regions(crop, NUM_CLASSES, 0.0, rng) is crop
    assert rng.random() == np.random.default_rng(0).random()  # the default recipe's draws are untouched


def test_regions_are_connected_single_class_and_large_enough():
    coarse = np.zeros((10, 10), np.uint8)
    coarse[:, 5:] = 6  # not annotated: never a region
    coarse[1:3, 1:3] = 2
    coarse[6, 0] = 2  # a speck below the minimum area
    regions = coarse_regions(coarse, NUM_CLASSES, 2)
    assert [class_id for class_id, _ in regions] == [0, 2]
    assert regions[1][1].sum() == 4 and regions[0][1].sum() == 50 - 5
