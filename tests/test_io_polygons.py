import base64
import io
import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from c2f.errors import C2FError
from c2f.io.polygons import (
    Shape,
    coco_document,
    detect_format,
    labelme_document,
    rasterize,
    read_cityscapes,
    read_coco,
    read_labelme,
    trace_regions,
)

NAMES = ["background", "wall", "door", "void"]
IDS = {name: index for index, name in enumerate(NAMES)}


def synthetic_map(with_void: bool = True) -> np.ndarray:
    """A 64 x 80 map: a wall ring with a door inside its hole, a thin line, a diagonal pair, blobs and a void pocket."""
    rows, columns = np.mgrid[0:64, 0:80]
    class_ids = np.zeros((64, 80), dtype=np.uint8)
    class_ids[8:40, 8:40] = 1
    class_ids[16:32, 16:32] = 0
    class_ids[20:28, 20:28] = 2  # a door inside the wall's hole
    class_ids[(rows - 45) ** 2 / 100 + (columns - 60) ** 2 / 300 < 1] = 2
    class_ids[50, 5:40] = 1  # a one-pixel line
    class_ids[55, 55] = 1  # two pixels touching only diagonally
    class_ids[56, 56] = 1
    if with_void:
        class_ids[(rows - 15) ** 2 + (columns - 65) ** 2 < 30] = 1
        class_ids[13:17, 63:67] = 3  # void inside the blob's hole
    return class_ids


def round_trip(document: dict) -> dict:
    return json.loads(json.dumps(document))


def test_trace_then_rasterize_is_exact_at_zero_tolerance():
    class_ids = synthetic_map()
    shapes = trace_regions(class_ids, NAMES, tolerance=0, skip_ids=(3,))
    drawn = rasterize(shapes, 64, 80, IDS, fill=3, dtype=np.uint8)
    assert drawn.dtype == np.uint8
    np.testing.assert_array_equal(drawn, class_ids)


def test_trace_then_rasterize_is_close_at_default_tolerance():
    rows, columns = np.mgrid[0:120, 0:160]
    class_ids = np.zeros((120, 160), dtype=np.int32)
    class_ids[(rows - 60) ** 2 / 2500 + (columns - 70) ** 2 / 3600 < 1] = 1
    class_ids[(rows - 50) ** 2 + (columns - 60) ** 2 < 150] = 2
    class_ids[rows > 100 + 10 * np.sin(columns / 9)] = 3
    drawn = rasterize(trace_regions(class_ids, NAMES), 120, 160, IDS)
    assert (drawn == class_ids).mean() >= 0.995


def test_trace_orders_containers_before_contents_and_keeps_holes():
    shapes = trace_regions(synthetic_map(), NAMES, tolerance=0, skip_ids=(3,))
    labels = [shape.label for shape in shapes]
    assert labels[0] == "background"
    wall = next(shape for shape in shapes if shape.label == "wall")
    assert len(wall.rings) == 2  # the outline and the hole holding the door
    assert labels.index("wall") < labels.index("door")


def test_rasterize_draws_later_shapes_on_top_and_holes_keep_what_was_beneath():
    square = np.array([[2, 2], [17, 2], [17, 17], [2, 17]], dtype=float)
    hole = np.array([[6, 6], [13, 6], [13, 13], [6, 13]], dtype=float)
    below = Shape("door", [square])
    above = Shape("wall", [square, hole])
    drawn = rasterize([below, above], 20, 20, IDS, fill=0)
    assert drawn[9, 9] == IDS["door"] and drawn[3, 3] == IDS["wall"] and drawn[0, 0] == 0
    assert rasterize([above, below], 20, 20, IDS)[3, 3] == IDS["door"]


def test_rasterize_names_an_unknown_label_and_its_file():
    with pytest.raises(C2FError) as error:
        rasterize([Shape("window", [np.zeros((3, 2))])], 4, 4, IDS, source="a.json")
    assert "window" in str(error.value) and "a.json" in str(error.value)


def test_labelme_round_trip_reproduces_a_map_without_void():
    class_ids = synthetic_map(with_void=False)
    shapes = trace_regions(class_ids, NAMES, tolerance=0)
    document = round_trip(labelme_document(shapes, 64, 80, "room.png"))
    assert detect_format(document) == "labelme"
    assert {"version", "flags", "shapes", "imagePath", "imageData", "imageHeight", "imageWidth"} <= set(document)
    assert {"label", "points", "group_id", "shape_type", "flags"} <= set(document["shapes"][0])
    height, width, read = read_labelme(document, "room.json")
    np.testing.assert_array_equal(rasterize(read, height, width, IDS, dtype=np.uint8), class_ids)


def test_labelme_shape_types_follow_labelme():
    patch = np.zeros((3, 4), dtype=bool)
    patch[1, 2] = True
    buffer = io.BytesIO()
    Image.fromarray(patch).save(buffer, format="PNG")
    shapes = [
        {"label": "wall", "points": [[9, 1], [2, 4]], "shape_type": "rectangle"},
        {"label": "door", "points": [[20, 20], [23, 24]], "shape_type": "circle"},
        {"label": "door", "points": [[5, 30]], "shape_type": "point"},
        {"label": "wall", "points": [[30, 2], [30, 20], [35, 20]], "shape_type": "linestrip"},
        {"label": "door", "points": [[40, 40], [43, 42]], "shape_type": "mask",
         "mask": base64.b64encode(buffer.getvalue()).decode()},
    ]
    document = {"shapes": shapes, "imageHeight": 50, "imageWidth": 50}
    drawn = rasterize(read_labelme(document, "types.json")[2], 50, 50, IDS)
    assert (drawn[1:5, 2:10] == IDS["wall"]).all() and drawn[0, 2] == 0
    assert drawn[20, 15] == IDS["door"] and drawn[20, 14] == 0  # radius 5
    assert drawn[30, 10] == IDS["door"] and drawn[30, 11] == 0  # labelme's point radius 5
    assert drawn[10, 26] == IDS["wall"] and drawn[10, 34] == IDS["wall"] and drawn[10, 36] == 0  # width 10
    assert drawn[41, 42] == IDS["door"] and np.count_nonzero(drawn[38:46, 38:46]) == 1


def test_cityscapes_skips_deleted_objects_and_reads_group_labels():
    square = [[1, 1], [8, 1], [8, 8], [1, 8]]
    document = {"imgHeight": 10, "imgWidth": 12, "objects": [
        {"label": "wall", "polygon": square},
        {"label": "doorgroup", "polygon": [[4, 4], [11, 4], [11, 9], [4, 9]]},
        {"label": "wall", "polygon": [[0, 0], [11, 0], [11, 9]], "deleted": 1},
    ]}
    assert detect_format(document) == "cityscapes"
    height, width, shapes = read_cityscapes(document, "city.json")
    assert (height, width) == (10, 12) and [shape.label for shape in shapes] == ["wall", "door"]
    drawn = rasterize(shapes, height, width, IDS)
    assert drawn[2, 2] == IDS["wall"] and drawn[5, 5] == IDS["door"] and drawn[0, 11] == 0
    kept = read_cityscapes(document, "city.json", known_labels={"doorgroup"})[2]
    assert kept[1].label == "doorgroup"


def test_coco_round_trip_is_exact_with_polygons_and_rle_for_holes():
    class_ids = synthetic_map(with_void=False)
    shapes = trace_regions(class_ids, NAMES, tolerance=0)
    document = round_trip(coco_document(shapes, 64, 80, "room.png", NAMES[:3]))
    assert detect_format(document) == "coco"
    kinds = {type(annotation["segmentation"]).__name__ for annotation in document["annotations"]}
    assert kinds == {"list", "dict"}  # the wall with a hole is RLE
    height, width, read = read_coco(document, "photos/room.png", "room.json")
    np.testing.assert_array_equal(rasterize(read, height, width, IDS, dtype=np.uint8), class_ids)
    with pytest.raises(C2FError, match="lobby.png"):
        read_coco(document, "lobby.png", "room.json")


def test_coco_reads_compressed_and_uncompressed_rle():
    mask = np.zeros((6, 5), dtype=np.uint8)
    mask[1:4, 2:4] = 1
    compressed = coco_mask.encode(np.asfortranarray(mask))
    flat = mask.ravel(order="F")
    changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    uncompressed = {"size": [6, 5], "counts": np.diff(np.concatenate([[0], changes])).tolist()}
    document = {"images": [{"id": 7, "file_name": "a/b.png", "height": 6, "width": 5}],
                "categories": [{"id": 3, "name": "door"}, {"id": 4, "name": "wall"}],
                "annotations": [
                    {"id": 1, "image_id": 7, "category_id": 3,
                     "segmentation": {"size": [6, 5], "counts": compressed["counts"].decode()}},
                    {"id": 2, "image_id": 8, "category_id": 4, "segmentation": uncompressed},
                    {"id": 3, "image_id": 7, "category_id": 4, "segmentation": uncompressed},
                ]}
    height, width, shapes = read_coco(round_trip(document), "b.png", "coco.json")
    assert [shape.label for shape in shapes] == ["door", "wall"]
    np.testing.assert_array_equal(shapes[0].mask, mask.astype(bool))
    np.testing.assert_array_equal(shapes[1].mask, mask.astype(bool))


def test_detect_format_says_what_it_expects():
    with pytest.raises(C2FError, match="labelme.*Cityscapes.*COCO"):
        detect_format({"type": "FeatureCollection"})
