"""The side-by-side check image: photo, coarse, refined, and the changed pixels highlighted."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_scene
from PIL import Image
from typer.testing import CliRunner

from c2f.cli import app
from c2f.config import ModelConfig
from c2f.errors import C2FError
from c2f.io.label_maps import read_label_map, write_label_map
from c2f.io.label_sets import FASSEG_LABELS, LabelSet
from c2f.io.overlay import (
    CAPTION_HEIGHT,
    GAP,
    HIGHLIGHT_CANDIDATES,
    MAX_PANEL_SIDE,
    highlight_color,
    overlay_panels,
    shrink_mask,
    write_overlay,
)
from c2f.model import UNet
from c2f.weights import save_weights


def panels_of(path, height: int, width: int) -> list[np.ndarray]:
    """Cut a written overlay back into its four (height, width, 3) panels."""
    canvas = np.asarray(Image.open(path).convert("RGB"))
    assert canvas.shape == (CAPTION_HEIGHT + height, 4 * width + 3 * GAP, 3)
    return [canvas[CAPTION_HEIGHT:, index * (width + GAP):index * (width + GAP) + width] for index in range(4)]


def test_panels_show_the_photo_both_maps_and_exactly_the_changed_pixels(tmp_path, scene):
    photo, coarse, fine = scene
    write_overlay(tmp_path / "check.png", photo, coarse, fine, FASSEG_LABELS)
    shown_photo, shown_coarse, shown_fine, changes = panels_of(tmp_path / "check.png", *coarse.shape)
    np.testing.assert_array_equal(shown_photo, photo)
    np.testing.assert_array_equal(shown_coarse, FASSEG_LABELS.palette()[coarse])
    np.testing.assert_array_equal(shown_fine, FASSEG_LABELS.palette()[fine])
    highlighted = np.all(changes == highlight_color(FASSEG_LABELS), axis=2)
    assert (coarse != fine).any()
    np.testing.assert_array_equal(highlighted, coarse != fine)


def test_unchanged_pixels_show_the_photo_in_grey(tmp_path, scene):
    photo, coarse, fine = scene
    write_overlay(tmp_path / "check.png", photo, coarse, fine, FASSEG_LABELS)
    changes = panels_of(tmp_path / "check.png", *coarse.shape)[3]
    unchanged = changes[coarse == fine]
    assert np.all(unchanged[:, 0] == unchanged[:, 1]) and np.all(unchanged[:, 1] == unchanged[:, 2])
    brighter = photo.astype(int).sum(axis=2) > photo.astype(int).sum(axis=2).mean()
    assert changes[(coarse == fine) & brighter, 0].mean() > changes[(coarse == fine) & ~brighter, 0].mean()


def test_the_highlight_colour_is_no_class_colour():
    assert tuple(highlight_color(FASSEG_LABELS)) not in FASSEG_LABELS.colors
    magenta_class = LabelSet(("a", "b"), ((255, 0, 255), (250, 5, 250)))
    chosen = tuple(int(value) for value in highlight_color(magenta_class))
    assert chosen != (255, 0, 255) and chosen in HIGHLIGHT_CANDIDATES


def test_large_images_are_shrunk_but_a_single_changed_pixel_stays_visible(tmp_path):
    height, width = MAX_PANEL_SIDE * 2 + 10, 300  # two times too tall and a bit: shrunk by 3
    photo = np.zeros((height, width, 3), np.uint8)
    coarse = np.zeros((height, width), np.uint8)
    fine = coarse.copy()
    fine[1500, 123] = 2
    panels = overlay_panels(photo, coarse, fine, FASSEG_LABELS)
    assert all(panel.shape == (-(-height // 3), 100, 3) for panel in panels)
    highlighted = np.all(panels[3] == highlight_color(FASSEG_LABELS), axis=2)
    assert highlighted.sum() == 1 and highlighted[500, 41]


def test_shrink_mask_keeps_any_set_pixel_in_its_block():
    mask = np.zeros((7, 5), bool)
    mask[6, 4] = True
    np.testing.assert_array_equal(shrink_mask(mask, 3), [[False, False], [False, False], [False, True]])


def test_maps_of_another_size_are_refused(scene):
    photo, coarse, fine = scene
    with pytest.raises(C2FError, match="differ in size"):
        overlay_panels(photo, coarse, fine[:-1], FASSEG_LABELS)


def test_the_overlay_is_written_atomically(tmp_path, scene, monkeypatch):
    def broken_save(image, target, *args, **kwargs):
        open(target, "wb").write(b"half")
        raise OSError("disk full")
    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError):
        write_overlay(tmp_path / "check.png", *scene, FASSEG_LABELS)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("overlay_weights") / "random.safetensors"
    torch.manual_seed(0)
    save_weights(path, UNet(ModelConfig(width=4, depth=2)), FASSEG_LABELS)
    return path


def test_refine_overlay_shows_the_refined_map_it_wrote(tmp_path, scene, random_weights):
    photo, coarse, _ = scene
    Image.fromarray(photo).save(tmp_path / "photo.png")
    write_label_map(tmp_path / "coarse.png", coarse, FASSEG_LABELS, "color")
    result = CliRunner().invoke(app, ["refine", str(tmp_path / "photo.png"), str(tmp_path / "coarse.png"),
                                      "-o", str(tmp_path / "fine.png"), "--overlay", str(tmp_path / "check.png"),
                                      "--weights", str(random_weights), "--whole-image"])
    assert result.exit_code == 0, result.output
    fine = read_label_map(tmp_path / "fine.png", FASSEG_LABELS).class_ids
    panels = panels_of(tmp_path / "check.png", *coarse.shape)
    np.testing.assert_array_equal(panels[2], FASSEG_LABELS.palette()[fine])
    np.testing.assert_array_equal(np.all(panels[3] == highlight_color(FASSEG_LABELS), axis=2), fine != coarse)


def test_folder_mode_writes_one_overlay_per_pair(tmp_path, random_weights):
    for folder in ("photos", "maps"):
        (tmp_path / folder).mkdir()
    for index, stem in enumerate(("alice", "bob")):
        photo, coarse, _ = make_scene(36, 44, seed=index)
        Image.fromarray(photo).save(tmp_path / "photos" / f"{stem}.png")
        write_label_map(tmp_path / "maps" / f"{stem}.png", coarse, FASSEG_LABELS, "color")
    result = CliRunner().invoke(app, ["refine", str(tmp_path / "photos"), str(tmp_path / "maps"),
                                      "-o", str(tmp_path / "fine"), "--overlay", str(tmp_path / "checks"),
                                      "--weights", str(random_weights), "--whole-image"])
    assert result.exit_code == 0, result.output
    assert sorted(path.name for path in (tmp_path / "checks").iterdir()) == ["alice.png", "bob.png"]
    assert Image.open(tmp_path / "checks" / "bob.png").size == (4 * 44 + 3 * GAP, CAPTION_HEIGHT + 36)
