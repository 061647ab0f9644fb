"""Label sets and the three label-map encodings: colour RGB, palette PNG, class-id PNG."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import run_cli_without_loading

from c2f.errors import C2FError
from c2f.io.files import write_atomically
from c2f.io.label_maps import RASTER_ENCODINGS as ENCODINGS
from c2f.io.label_maps import (
    color_blends,
    colors_to_ids,
    read_class_blend,
    read_label_map,
    write_label_map,
)
from c2f.io.label_sets import FASSEG_LABELS, IgnoreEntry, LabelSet, load_label_set
from c2f.io.photos import read_photo

# Cityscapes' 19 evaluation classes: a realistic label set well beyond FASSEG's six.
CITYSCAPES_CLASSES = [
    ("road", [128, 64, 128]), ("sidewalk", [244, 35, 232]), ("building", [70, 70, 70]),
    ("wall", [102, 102, 156]), ("fence", [190, 153, 153]), ("pole", [153, 153, 153]),
    ("traffic light", [250, 170, 30]), ("traffic sign", [220, 220, 0]), ("vegetation", [107, 142, 35]),
    ("terrain", [152, 251, 152]), ("sky", [70, 130, 180]), ("person", [220, 20, 60]),
    ("rider", [255, 0, 0]), ("car", [0, 0, 142]), ("truck", [0, 0, 70]), ("bus", [0, 60, 100]),
    ("train", [0, 80, 100]), ("motorcycle", [0, 0, 230]), ("bicycle", [119, 11, 32]),
]


def random_ids(num_classes: int, height: int = 23, width: int = 31, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, num_classes, size=(height, width))


def many_class_labels(count: int) -> LabelSet:
    """`count` classes with distinct colours spread over the RGB cube."""
    colors = [(index // 64 * 40, index // 8 % 8 * 32, index % 8 * 32) for index in range(count)]
    assert len(set(colors)) == count
    return LabelSet(tuple(f"class {index}" for index in range(count)), tuple(colors))


def write_toml_label_file(path: Path, classes: list[tuple[str, list[int]]]) -> Path:
    lines = ["classes = ["] + [f'  {{ name = "{name}", color = {color} }},' for name, color in classes] + ["]"]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_label_map_round_trips_in_every_encoding(tmp_path, encoding):
    ids = random_ids(FASSEG_LABELS.num_classes)
    path = tmp_path / f"map_{encoding}.png"
    write_label_map(path, ids, FASSEG_LABELS, encoding)
    label_map = read_label_map(path, FASSEG_LABELS)
    assert label_map.encoding == encoding
    assert label_map.class_ids.dtype == np.uint8
    np.testing.assert_array_equal(label_map.class_ids, ids)
    assert label_map.far_pixels == 0


def test_colour_map_is_written_with_the_palette_colours(tmp_path):
    ids = random_ids(FASSEG_LABELS.num_classes)
    write_label_map(tmp_path / "map.png", ids, FASSEG_LABELS, "color")
    rgb = np.asarray(Image.open(tmp_path / "map.png").convert("RGB"))
    np.testing.assert_array_equal(rgb, FASSEG_LABELS.palette()[ids])


def test_colour_map_round_trips_losslessly_as_bmp(tmp_path):
    ids = random_ids(FASSEG_LABELS.num_classes)
    write_label_map(tmp_path / "map.bmp", ids, FASSEG_LABELS, "color")
    np.testing.assert_array_equal(read_label_map(tmp_path / "map.bmp", FASSEG_LABELS).class_ids, ids)


def test_noisy_colours_map_to_the_nearest_palette_colour(tmp_path):
    ids = random_ids(FASSEG_LABELS.num_classes)
    noise = np.random.default_rng(1).integers(-25, 26, size=(*ids.shape, 3))
    noisy = np.clip(FASSEG_LABELS.palette()[ids].astype(int) + noise, 0, 255).astype(np.uint8)
    Image.fromarray(noisy).save(tmp_path / "noisy.png")
    label_map = read_label_map(tmp_path / "noisy.png", FASSEG_LABELS)
    np.testing.assert_array_equal(label_map.class_ids, ids)
    assert label_map.far_pixels == 0  # small noise is not "far" from the palette


def test_anti_aliased_edge_goes_to_the_nearer_class_and_is_not_counted_as_far(tmp_path):
    palette = FASSEG_LABELS.palette().astype(float)
    background, skin = palette[0], palette[2]
    # One row fading from background to skin, as an anti-aliased edge between the two.
    fractions = np.array([0.0, 0.1, 0.3, 0.45, 0.55, 0.7, 0.9, 1.0])
    row = np.round(background + fractions[:, None] * (skin - background)).astype(np.uint8)[None]
    Image.fromarray(row).save(tmp_path / "edge.png")
    label_map = read_label_map(tmp_path / "edge.png", FASSEG_LABELS)
    np.testing.assert_array_equal(label_map.class_ids[0], np.where(fractions < 0.5, 0, 2))
    assert label_map.far_pixels == 0


def test_foreign_colours_are_mapped_but_counted_as_far(tmp_path):
    rgb = FASSEG_LABELS.palette()[random_ids(FASSEG_LABELS.num_classes)].copy()
    rgb[:3, :4] = (255, 0, 255)  # magenta: far from every palette colour and every blend of two
    Image.fromarray(rgb).save(tmp_path / "stray.png")
    label_map = read_label_map(tmp_path / "stray.png", FASSEG_LABELS)
    assert label_map.far_pixels == 12
    assert label_map.class_ids.max() < FASSEG_LABELS.num_classes


def test_palette_png_is_read_by_index_whatever_its_colours(tmp_path):
    ids = random_ids(FASSEG_LABELS.num_classes)
    # Palette files store class ids (as VOC's do); their palette only shows them.
    image = Image.fromarray(ids.astype(np.uint8), mode="P")
    image.putpalette(np.random.default_rng(1).integers(0, 256, (6, 3)).ravel().tolist())
    image.save(tmp_path / "other_colours.png")
    label_map = read_label_map(tmp_path / "other_colours.png", FASSEG_LABELS)
    assert label_map.encoding == "palette"
    np.testing.assert_array_equal(label_map.class_ids, ids)


def test_index_map_with_ids_beyond_the_label_set_is_refused(tmp_path):
    Image.fromarray(np.full((4, 4), 9, np.uint8), mode="L").save(tmp_path / "ids.png")
    with pytest.raises(C2FError, match=r"ids \(9\) that the label table does not name \(it names 0\.\.5\)"):
        read_label_map(tmp_path / "ids.png", FASSEG_LABELS)


def test_label_set_loads_from_toml_and_json_alike(tmp_path):
    toml_path = write_toml_label_file(tmp_path / "city.toml", CITYSCAPES_CLASSES)
    json_path = tmp_path / "city.json"
    json_path.write_text(json.dumps({"classes": [{"name": name, "color": color}
                                                 for name, color in CITYSCAPES_CLASSES]}))
    from_toml, from_json = load_label_set(toml_path), load_label_set(json_path)
    assert from_toml == from_json
    assert from_toml.num_classes == 19
    assert from_toml.names[6] == "traffic light"
    assert from_toml.colors[10] == (70, 130, 180)


def test_label_set_survives_its_own_json(tmp_path):
    labels = load_label_set(write_toml_label_file(tmp_path / "city.toml", CITYSCAPES_CLASSES))
    assert LabelSet.from_json(labels.to_json()) == labels


def test_no_label_file_means_fasseg():
    assert load_label_set(None) == FASSEG_LABELS
    assert FASSEG_LABELS.names == ("background", "hair", "skin", "eyes", "nose", "mouth")


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_nineteen_class_maps_round_trip(tmp_path, encoding):
    labels = load_label_set(write_toml_label_file(tmp_path / "city.toml", CITYSCAPES_CLASSES))
    ids = random_ids(19, seed=2)
    write_label_map(tmp_path / "map.png", ids, labels, encoding)
    label_map = read_label_map(tmp_path / "map.png", labels)
    assert label_map.encoding == encoding
    np.testing.assert_array_equal(label_map.class_ids, ids)


@pytest.mark.parametrize("text", [
    'classes = [{ name = "only", color = [1, 2, 3] }]',  # a single class
    'classes = [{ name = "a", color = [1, 2, 3] }, { name = "b", color = [1, 2, 3] }]',  # same colour twice
    'classes = [{ name = "a", color = [1, 2, 300] }, { name = "b", color = [4, 5, 6] }]',  # not a byte
    'classes = [{ name = "a" }, { name = "b", color = [4, 5, 6] }]',  # no colour
    "classes = [",  # not TOML
])
def test_malformed_label_files_raise_c2f_error(tmp_path, text):
    path = tmp_path / "labels.toml"
    path.write_text(text)
    with pytest.raises(C2FError, match="labels.toml"):
        load_label_set(path)


def test_more_than_256_classes_write_uint16_index_maps(tmp_path):
    labels = many_class_labels(300)
    ids = random_ids(300, seed=4)
    assert ids.max() > 255
    write_label_map(tmp_path / "ids.png", ids, labels, "index")
    assert np.asarray(Image.open(tmp_path / "ids.png")).max() == ids.max()
    label_map = read_label_map(tmp_path / "ids.png", labels)
    assert label_map.encoding == "index"
    assert label_map.class_ids.dtype == np.uint16
    np.testing.assert_array_equal(label_map.class_ids, ids)


def test_more_than_256_classes_round_trip_as_colour(tmp_path):
    labels = many_class_labels(300)
    ids = random_ids(300, seed=5)
    write_label_map(tmp_path / "map.png", ids, labels, "color")
    np.testing.assert_array_equal(read_label_map(tmp_path / "map.png", labels).class_ids, ids)


def test_more_than_256_classes_cannot_be_a_palette_png(tmp_path):
    with pytest.raises(C2FError, match="256"):
        write_label_map(tmp_path / "map.png", random_ids(300), many_class_labels(300), "palette")


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "I;16"])
def test_photos_of_any_common_mode_read_as_uint8_rgb(tmp_path, mode):
    rgb = np.random.default_rng(6).integers(0, 256, size=(9, 7, 3), dtype=np.uint8)
    if mode == "I;16":
        image = Image.fromarray((rgb[..., 0].astype(np.uint16) * 257))
    else:
        image = Image.fromarray(rgb).convert(mode)
    image.save(tmp_path / "photo.png")
    photo = read_photo(tmp_path / "photo.png")
    assert photo.shape == (9, 7, 3) and photo.dtype == np.uint8
    if mode in ("RGBA", "I;16"):
        expected = rgb if mode == "RGBA" else np.repeat(rgb[..., :1], 3, axis=2)
        np.testing.assert_array_equal(photo, expected)


def test_failed_atomic_write_leaves_neither_target_nor_partial_file(tmp_path):
    def broken_writer(temporary: Path) -> None:
        temporary.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomically(tmp_path / "out.png", broken_writer)
    assert list(tmp_path.iterdir()) == []


def size_mismatch_message(job: str, folder: Path) -> str:
    """The error of one of the three jobs that pair a map with a photo or another map, given a map 1 pixel narrower."""
    from c2f.refine import read_inputs
    from c2f.scoring import score_files
    from c2f.training.samples import find_samples, load_sample

    for name in ("images", "coarse", "fine"):
        (folder / name).mkdir()
    Image.fromarray(np.zeros((20, 24, 3), np.uint8)).save(folder / "images" / "face.png")
    write_label_map(folder / "coarse" / "face.png", np.zeros((20, 23), np.uint8), FASSEG_LABELS, "color")
    write_label_map(folder / "fine" / "face.png", np.zeros((20, 24), np.uint8), FASSEG_LABELS, "color")
    photo, coarse, fine = (folder / name / "face.png" for name in ("images", "coarse", "fine"))
    jobs = {"refine": lambda: read_inputs(photo, coarse, FASSEG_LABELS),
            "train": lambda: load_sample(find_samples(folder)[0], FASSEG_LABELS),
            "score": lambda: score_files([("face", coarse, fine, None)], FASSEG_LABELS)}
    with pytest.raises(C2FError) as error:
        jobs[job]()
    return str(error.value)


@pytest.mark.parametrize("job", ["refine", "train", "score"])
def test_every_job_words_a_size_mismatch_the_same_way(tmp_path, job):
    message = size_mismatch_message(job, tmp_path)
    reference = tmp_path / ("fine" if job == "score" else "images") / "face.png"
    assert message == (f"{tmp_path / 'coarse' / 'face.png'} is 23x20 but {reference} is 24x20; "
                       "they must be the same size.")


@pytest.mark.parametrize("dense_pairs, classes, chunk", [(1024, (2, 12), 2**24), (1024, (2, 12), 5000),
                                                           (0, (2, 12), 2**24), (1024, (33, 60), 2**24)])
def test_far_from_palette_blends_agrees_with_measuring_every_blend(dense_pairs, classes, chunk, monkeypatch):
    """The far test, all pairs at once (also in many small chunks of colours) or pruned (a large palette, or
    DENSE_BLEND_PAIRS 0), gives the answer of measuring every segment between two palette colours one by one."""
    import c2f.io.label_maps as label_maps
    from c2f.io.label_maps import FAR_COLOR_DISTANCE, far_from_palette_blends

    monkeypatch.setattr(label_maps, "DENSE_BLEND_PAIRS", dense_pairs)
    monkeypatch.setattr(label_maps, "DISTANCE_CHUNK", chunk)
    rng = np.random.default_rng(1)
    for _ in range(10):
        palette = rng.integers(0, 256, size=(int(rng.integers(*classes)), 3)).astype(np.float64)
        colors = rng.integers(0, 256, size=(200, 3)).astype(np.float64)
        colors = colors[np.sqrt(((colors[:, None] - palette[None]) ** 2).sum(axis=2)).min(axis=1) > FAR_COLOR_DISTANCE]
        nearest_blend = np.full(len(colors), np.inf)
        for first in range(len(palette)):
            for second in range(first + 1, len(palette)):
                direction = palette[second] - palette[first]
                t = np.clip((colors - palette[first]) @ direction / (direction @ direction), 0, 1)
                points = palette[first] + t[:, None] * direction
                nearest_blend = np.minimum(nearest_blend, np.linalg.norm(colors - points, axis=1))
        expected = nearest_blend > FAR_COLOR_DISTANCE
        assert np.array_equal(far_from_palette_blends(colors, palette, FAR_COLOR_DISTANCE), expected)


def test_blends_give_each_edge_pixel_its_two_classes_and_the_share_of_the_first(tmp_path):
    palette = FASSEG_LABELS.palette().astype(float)
    background, skin = palette[0], palette[2]
    fractions = np.array([0.0, 0.25, 0.5, 0.75, 1.0])  # skin's share, from pure background to pure skin
    row = np.round(background + fractions[:, None] * (skin - background)).astype(np.uint8)[None]
    Image.fromarray(row).save(tmp_path / "edge.png")
    blend = read_class_blend(tmp_path / "edge.png", FASSEG_LABELS)
    np.testing.assert_array_equal(blend.first[0], [0, 0, 2, 2, 2])  # 128/255 of skin: skin, just
    np.testing.assert_array_equal(blend.second[0], [0, 2, 0, 0, 2])  # pure pixels: their own class again
    np.testing.assert_allclose(blend.share[0], [1, 191 / 255, 128 / 255, 191 / 255, 1], atol=1e-6)
    assert blend.share.dtype == np.float32


def test_a_blend_of_opposite_colours_keeps_its_two_classes_and_a_foreign_colour_stays_hard():
    eyes, skin = FASSEG_LABELS.palette()[[3, 2]].astype(float)
    grey = np.round((eyes + skin) / 2).astype(np.uint8)  # nearest palette colour: hair's dark red
    rgb = np.array([[grey, (255, 0, 255)]], dtype=np.uint8)  # magenta: far from every blend
    blend = color_blends(rgb, FASSEG_LABELS)
    assert {int(blend.first[0, 0]), int(blend.second[0, 0])} == {2, 3}
    assert blend.share[0, 0] == pytest.approx(0.5, abs=0.01)
    hard, _ = colors_to_ids(rgb, FASSEG_LABELS)
    assert blend.first[0, 1] == blend.second[0, 1] == hard[0, 1] and blend.share[0, 1] == 1


def test_blends_among_many_classes_and_none_for_maps_of_class_ids(tmp_path):
    # More classes than blends are sought among: twelve greens close together, then blue and pink far from them.
    colors = [(index * 10, 250, 0) for index in range(12)] + [(0, 0, 255), (255, 0, 128)]
    labels = LabelSet(tuple(f"class {index}" for index in range(len(colors))), tuple(colors))
    first, second = labels.palette()[[12, 13]].astype(float)
    rgb = np.round(first + np.array([0.0, 0.3, 1.0])[:, None] * (second - first)).astype(np.uint8)[None]
    blend = color_blends(rgb, labels)
    np.testing.assert_array_equal(blend.first[0], [12, 12, 13])
    np.testing.assert_array_equal(blend.second[0], [12, 13, 13])
    assert blend.share[0, 1] == pytest.approx(0.7, abs=0.01)
    write_label_map(tmp_path / "ids.png", random_ids(6), FASSEG_LABELS, "palette")
    write_label_map(tmp_path / "index.png", random_ids(6), FASSEG_LABELS, "index")
    assert read_class_blend(tmp_path / "ids.png", FASSEG_LABELS) is None
    assert read_class_blend(tmp_path / "index.png", FASSEG_LABELS) is None

@pytest.fixture
def small_bands(monkeypatch):
    """Bands of 40 pixels, so small maps are decoded and encoded a row or two at a time."""
    import c2f.io.photos

    monkeypatch.setattr(c2f.io.photos, "BAND_PIXELS", 40)


# FASSEG with a white void entry: white pixels of a colour map are not annotated.
VOIDED_FASSEG = LabelSet(FASSEG_LABELS.names, FASSEG_LABELS.colors, ignore=(IgnoreEntry("void", 255, (255, 255, 255)),))


def colour_map_with_every_kind_of_pixel(labels: LabelSet) -> np.ndarray:
    """uint8 (23, 31, 3): palette colours, noise, blends of two classes, an ignore colour and foreign colours,
    each kind first met in a different band."""
    ids = random_ids(labels.num_classes)
    rgb = labels.palette()[ids].astype(int)
    rgb[5:9] += np.random.default_rng(2).integers(-25, 26, size=(4, 31, 3))  # noise, from the sixth row on
    rgb[12, :8] = np.round(np.linspace(rgb[12, 0], labels.palette()[2], 8))  # an anti-aliased edge
    rgb[15, 3:6] = labels.ignore_color()  # not annotated
    rgb[20:, 25:] = (255, 0, 255)  # foreign: far from every blend, met last
    rgb[1, 1] = (255, 0, 255)  # ... and once in the first band
    return np.clip(rgb, 0, 255).astype(np.uint8)


def test_colour_maps_decode_in_bands_as_whole(small_bands, monkeypatch, tmp_path):
    import c2f.io.photos

    labels = VOIDED_FASSEG
    rgb = colour_map_with_every_kind_of_pixel(labels)
    Image.fromarray(rgb).save(tmp_path / "map.png")
    banded = read_label_map(tmp_path / "map.png", labels)
    monkeypatch.setattr(c2f.io.photos, "BAND_PIXELS", 2**30)  # the whole map in one band
    whole = read_label_map(tmp_path / "map.png", labels)
    np.testing.assert_array_equal(banded.class_ids, whole.class_ids)
    assert banded.far_pixels == whole.far_pixels == 3 * 6 + 1
    assert (banded.class_ids == labels.ignore_index).sum() == 3
    ids, far = colors_to_ids(rgb, labels)  # arrays passed by code take the same bands
    np.testing.assert_array_equal(ids, whole.class_ids)
    assert far == 3 * 6 + 1


def save_ids(ids: np.ndarray, mode: str, path: Path) -> None:
    """Save uint8 ids as an index ("L") or palette ("P", with a grey palette) PNG."""
    image = Image.fromarray(ids, mode=mode)
    if mode == "P":
        image.putpalette(np.repeat(np.arange(256, dtype=np.uint8), 3).tolist())
    image.save(path)


@pytest.mark.parametrize("mode", ["L", "P"])
def test_unknown_ids_in_a_later_band_are_counted_over_the_whole_map(small_bands, tmp_path, mode):
    ids = random_ids(FASSEG_LABELS.num_classes).astype(np.uint8)
    ids[0, 0] = 9  # first band
    ids[-2:, -4:] = 7  # last bands
    save_ids(ids, mode, tmp_path / "ids.png")
    with pytest.raises(C2FError, match=r": 9 pixels hold ids \(7, 9\) that the label table does not name"):
        read_label_map(tmp_path / "ids.png", FASSEG_LABELS)
    ids[0, 0], ids[-2:, -4:] = 0, 5
    save_ids(ids, mode, tmp_path / "ids.png")
    np.testing.assert_array_equal(read_label_map(tmp_path / "ids.png", FASSEG_LABELS).class_ids, ids)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_maps_written_in_bands_round_trip(small_bands, tmp_path, encoding):
    labels = VOIDED_FASSEG
    ids = random_ids(labels.num_classes + 1)  # the last value is K: not annotated
    write_label_map(tmp_path / "map.png", ids, labels, encoding)
    np.testing.assert_array_equal(read_label_map(tmp_path / "map.png", labels).class_ids, ids)
    if encoding == "color":
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "map.png")), labels.display_palette()[ids])


def test_not_annotated_pixels_without_an_ignore_entry_are_refused_with_their_count(tmp_path):
    ids = random_ids(FASSEG_LABELS.num_classes)
    ids[:2, :3] = FASSEG_LABELS.ignore_index
    with pytest.raises(C2FError, match="6 pixels are not annotated"):
        write_label_map(tmp_path / "map.png", ids, FASSEG_LABELS, "index")


@pytest.mark.parametrize("polygon_library", ["cv2", "pycocotools"])
def test_refining_image_maps_never_loads_the_polygon_libraries(tmp_path, polygon_library):
    examples = Path(__file__).resolve().parent.parent / "examples"
    run_cli_without_loading(polygon_library, "refine", examples / "astronaut.png", examples / "astronaut_coarse.png",
                            "-o", tmp_path / "fine.png")
    assert (tmp_path / "fine.png").is_file()
