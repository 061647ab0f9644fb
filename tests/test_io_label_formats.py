"""Label tables with ids and ignore entries, and every map format round-tripping through them on small synthetic maps."""

import json

import numpy as np
import pytest
from PIL import Image

from c2f.errors import C2FError
from c2f.io.label_maps import palette_of, read_label_map, write_label_map
from c2f.io.label_sets import (
    FASSEG_LABELS,
    SHIPPED_TABLES,
    IgnoreEntry,
    LabelSet,
    load_label_set,
)

VOC = load_label_set("voc")
CITYSCAPES = load_label_set("cityscapes")
CAMVID = load_label_set("camvid")


def synthetic_map(labels: LabelSet, height: int = 36, width: int = 48, with_void: bool = True) -> np.ndarray:
    """Blocks of a few classes with holes, and (optionally) a band of K, the ignore value, between two of them."""
    class_ids = np.zeros((height, width), dtype=np.uint8)
    class_ids[4:20, 4:24] = 1
    class_ids[8:14, 10:16] = 0  # a hole
    class_ids[22:32, 26:44] = labels.num_classes - 1
    class_ids[2:6, 30:40] = 2
    if with_void:
        class_ids[20:22, :] = labels.ignore_index
        class_ids[10:12, 34:38] = labels.ignore_index
    return class_ids


@pytest.mark.parametrize("name", SHIPPED_TABLES)
def test_shipped_tables_load_by_name_and_round_trip_through_their_dict(name):
    labels = load_label_set(name)
    assert LabelSet.from_dict(json.loads(labels.to_json()), name) == labels


def test_cityscapes_table_gives_19_train_classes_and_its_ignored_ids():
    assert CITYSCAPES.num_classes == 19
    assert CITYSCAPES.names[0] == "road" and CITYSCAPES.ids[0] == 7 and CITYSCAPES.names[-1] == "bicycle"
    lookup = CITYSCAPES.index_lookup()
    assert [lookup[value] for value in (0, 6, 7, 26, 33, 255)] == [19, 19, 0, 13, 18, 19]
    assert len(CITYSCAPES.ignore) == 16 and CITYSCAPES.ignore_id() == 0


def test_fasseg_table_is_the_default_and_old_metadata_still_loads():
    assert load_label_set("fasseg") == FASSEG_LABELS
    old = {"classes": [{"name": name, "color": list(color)} for name, color in
                       zip(FASSEG_LABELS.names, FASSEG_LABELS.colors)]}
    assert LabelSet.from_dict(old, "old weights") == FASSEG_LABELS
    assert FASSEG_LABELS.to_dict() == old  # weights written for FASSEG keep their metadata


@pytest.mark.parametrize("entries, message", [
    ([{"name": "a", "color": [1, 2, 3]}, {"name": "b", "color": [1, 2, 3]}], "entry 1 \\('b'\\) has the same color"),
    ([{"name": "a", "color": [1, 2, 3]}, {"name": "b", "color": [4, 5, 6], "id": "x"}], "entry 1 \\('b'\\): id"),
    ([{"name": "a", "color": [1, 2, 3]}, {"name": "b", "color": [4, 5, 6], "ignore": True}], "at least two"),
    ([{"name": "a", "color": [1, 2, 3]}, {"name": "b", "color": [4, 5, 6], "ignore": "yes"}],
     "entry 1 \\('b'\\): ignore"),
    ([{"name": "a", "id": 0, "trainId": 0, "color": [1, 2, 3]}, {"name": "b", "id": 1, "trainId": 2,
                                                                   "color": [4, 5, 6]}], "trainIds"),
])
def test_bad_tables_are_refused_naming_the_entry(entries, message):
    with pytest.raises(C2FError, match=message):
        LabelSet.from_dict({"classes": entries}, "table.toml")


def test_a_model_accepts_its_classes_plus_ignore_entries_in_any_order():
    requested = LabelSet(FASSEG_LABELS.names[::-1], FASSEG_LABELS.colors[::-1],
                         ignore=(IgnoreEntry("void", 255, (9, 9, 9)),))
    matched = requested.matched_to(FASSEG_LABELS, "weights")
    assert matched.names == FASSEG_LABELS.names and matched.ids == (5, 4, 3, 2, 1, 0) and matched.ignore
    with pytest.raises(C2FError, match="was trained for classes"):
        LabelSet(("a", "b"), ((1, 1, 1), (2, 2, 2))).matched_to(FASSEG_LABELS, "weights")


@pytest.mark.parametrize("labels", [VOC, CITYSCAPES, CAMVID], ids=["voc", "cityscapes", "camvid"])
@pytest.mark.parametrize("encoding, suffix", [("color", ".png"), ("palette", ".png"), ("index", ".png"),
                                              ("labelme", ".json"), ("coco", ".json")])
def test_every_format_round_trips_classes_and_void(tmp_path, labels, encoding, suffix):
    class_ids = synthetic_map(labels)
    path = tmp_path / f"map{suffix}"
    write_label_map(path, class_ids, labels, encoding, image_path=tmp_path / "photo.jpg")
    label_map = read_label_map(path, labels, "photo.jpg")
    np.testing.assert_array_equal(label_map.class_ids, class_ids)
    assert label_map.ignored_pixels(labels) == int((class_ids == labels.ignore_index).sum())


def test_voc_palette_png_reads_by_index_and_255_as_void(tmp_path):
    values = np.zeros((8, 8), np.uint8)
    values[2:6, 2:6], values[1, :] = 15, 255  # person, and a void border
    image = Image.fromarray(values, mode="P")
    image.putpalette(palette_of(VOC).ravel().tolist())
    image.save(tmp_path / "2007_000032.png")
    class_ids = read_label_map(tmp_path / "2007_000032.png", VOC).class_ids
    assert class_ids[3, 3] == 15 and class_ids[0, 0] == 0 and (class_ids[1] == VOC.ignore_index).all()
    assert np.asarray(Image.open(tmp_path / "2007_000032.png").getpalette()[15 * 3: 16 * 3]).tolist() == [192, 128, 128]


def test_255_without_an_ignore_entry_is_an_error_that_says_so(tmp_path):
    image = Image.fromarray(np.full((4, 4), 255, np.uint8), mode="P")
    image.putpalette(palette_of(VOC).ravel().tolist())
    image.save(tmp_path / "void.png")
    with pytest.raises(C2FError, match="255 marks void.*ignore = true"):
        read_label_map(tmp_path / "void.png", FASSEG_LABELS)


def test_palette_output_uses_the_table_colours_and_ids(tmp_path):
    class_ids = synthetic_map(CITYSCAPES)
    write_label_map(tmp_path / "map.png", class_ids, CITYSCAPES, "palette")
    image = Image.open(tmp_path / "map.png")
    values = np.asarray(image)
    assert values[5, 5] == CITYSCAPES.ids[1] == 8  # sidewalk's id, not its train id
    assert image.getpalette()[8 * 3: 9 * 3] == [244, 35, 232]
    assert values[20, 0] == 0  # ignored pixels as Cityscapes' "unlabeled"


def test_camvid_index_map_reads_unlabelled_as_ignored(tmp_path):
    values = np.array([[0, 11], [3, 10]], np.uint8)
    Image.fromarray(values, mode="L").save(tmp_path / "0001TP_006690.png")
    class_ids = read_label_map(tmp_path / "0001TP_006690.png", CAMVID).class_ids
    assert class_ids.tolist() == [[0, CAMVID.ignore_index], [3, 10]]


def test_colour_map_reads_an_ignore_colour_as_ignored_but_a_shared_colour_as_the_class(tmp_path):
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[0, 0] = (153, 153, 153)  # pole, and polegroup (ignored) shares it: the class wins
    rgb[0, 1] = (111, 74, 0)  # "dynamic", ignored
    Image.fromarray(rgb).save(tmp_path / "color.png")
    class_ids = read_label_map(tmp_path / "color.png", CITYSCAPES).class_ids
    assert class_ids[0, 0] == CITYSCAPES.names.index("pole") and class_ids[0, 1] == CITYSCAPES.ignore_index


def test_cityscapes_polygons_draw_in_file_order_with_unlabeled_background(tmp_path):
    document = {"imgHeight": 20, "imgWidth": 30, "objects": [
        {"label": "road", "polygon": [[0, 10], [29, 10], [29, 19], [0, 19]]},
        {"label": "cargroup", "polygon": [[5, 12], [12, 12], [12, 17], [5, 17]]},
        {"label": "out of roi", "polygon": [[25, 0], [29, 0], [29, 4], [25, 4]]},
        {"label": "car", "deleted": 1, "polygon": [[0, 0], [29, 0], [29, 19], [0, 19]]},
        {"label": "license plate", "polygon": [[6, 14], [8, 14], [8, 15], [6, 15]]},
    ]}
    (tmp_path / "a_gtCoarse_polygons.json").write_text(json.dumps(document))
    class_ids = read_label_map(tmp_path / "a_gtCoarse_polygons.json", CITYSCAPES).class_ids
    assert class_ids[15, 2] == 0 and class_ids[14, 7] == CITYSCAPES.names.index("car")  # under the plate
    assert class_ids[2, 2] == CITYSCAPES.ignore_index and class_ids[2, 27] == CITYSCAPES.ignore_index


def test_coco_file_finds_its_image_by_file_name(tmp_path):
    class_ids = synthetic_map(VOC, with_void=False)
    write_label_map(tmp_path / "one.json", class_ids, VOC, "coco", image_path=tmp_path / "b.jpg")
    document = json.loads((tmp_path / "one.json").read_text())
    other = {"id": 2, "file_name": "images/a.jpg", "height": 36, "width": 48}
    document["images"].insert(0, other)
    (tmp_path / "many.json").write_text(json.dumps(document))
    np.testing.assert_array_equal(read_label_map(tmp_path / "many.json", VOC, "b.jpg").class_ids, class_ids)
    assert (read_label_map(tmp_path / "many.json", VOC, "a.jpg").class_ids == VOC.ignore_index).all()
    with pytest.raises(C2FError, match="none of its 2 COCO images"):
        read_label_map(tmp_path / "many.json", VOC, "c.jpg")


def test_labelme_unknown_label_is_refused_naming_it(tmp_path):
    document = {"imageHeight": 4, "imageWidth": 4, "shapes": [
        {"label": "cat", "shape_type": "polygon", "points": [[0, 0], [3, 0], [3, 3]]}]}
    (tmp_path / "x.json").write_text(json.dumps(document))
    with pytest.raises(C2FError, match="'cat' is not in the label table"):
        read_label_map(tmp_path / "x.json", FASSEG_LABELS)
