"""Polygon annotations in and out: labelme, Cityscapes and COCO documents, drawn into label maps and traced from them.

Everything here speaks label NAMES and plain arrays; the caller maps names to ids with its label table.
Coordinates are (x, y) pixel positions with pixel centres on integers, as labelme and Cityscapes use them
and as PIL's ImageDraw draws them.
"""

from __future__ import annotations

import base64
import io
import math
import warnings
from dataclasses import dataclass, field
from pathlib import PurePath
from collections.abc import Collection, Mapping, Sequence

import cv2
import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as coco_mask

from c2f.config import MAX_PIXELS, POLYGON_TOLERANCE
from c2f.errors import C2FError

# Tracing real maps and drawing the polygons back agrees with the original pixels (mean / worst map, measured
# with benchmarks/coarsen_settings.py): at 0.5 px, FASSEG V2's 50 test maps 99.87 % / 99.83 % and CamVid's 101
# val maps 99.74 % / 99.66 %; at 0.75 px 99.70 / 99.65 and 99.41 / 99.26; at 0 px every map is identical.

LABELME_VERSION = "5.5.0"  # the labelme JSON layout written by labelme_document
LABELME_LINE_WIDTH = 10  # px, labelme's width for "line" and "linestrip" shapes
LABELME_POINT_RADIUS = 5  # px, labelme's radius for "point" shapes


@dataclass
class Shape:
    """One labelled region: rings (float (N, 2) x, y; ring 0 the outline, the rest holes) or a boolean (H, W) mask."""

    label: str
    rings: list[np.ndarray] = field(default_factory=list)
    mask: np.ndarray | None = None  # when set it defines the pixels and rings only describe them


def _draw_ring(draw: ImageDraw.ImageDraw, ring: np.ndarray, value: int) -> None:
    """Draw one ring filled with PIL, as labelme and Cityscapes do; rings under 3 points become a point or a line."""
    points = [(float(x), float(y)) for x, y in ring]
    if len(points) >= 3:
        draw.polygon(points, fill=value)
    elif len(points) == 2:
        draw.line(points, fill=value)  # PIL's polygon leaves gaps in a two-point line
    elif len(points) == 1:
        draw.point(points, fill=value)


def rasterize(shapes: Sequence[Shape], height: int, width: int, label_ids: Mapping[str, int],
              fill: int = 0, dtype=np.int32, source: str = "the annotation") -> np.ndarray:
    """Draw shapes in list order (later on top) into an (height, width) label map of dtype; holes keep what was beneath."""
    canvas = Image.new("I", (width, height), fill)
    draw = ImageDraw.Draw(canvas)
    for shape in shapes:
        if shape.label not in label_ids:
            raise C2FError(f"{source}: label {shape.label!r} is not in the label table; "
                           f"add it or rename the shape (known: {', '.join(sorted(label_ids))})")
        value = int(label_ids[shape.label])
        if shape.mask is not None:
            canvas.paste(value, (0, 0, width, height), Image.fromarray(shape.mask.astype(np.uint8) * 255))
        elif len(shape.rings) == 1:
            _draw_ring(draw, shape.rings[0], value)
        elif shape.rings:
            # the outline minus its holes becomes a mask over the outline's box, pasted at whole-pixel offsets
            left = max(math.floor(shape.rings[0][:, 0].min()) - 1, 0)
            top = max(math.floor(shape.rings[0][:, 1].min()) - 1, 0)
            right = min(math.ceil(shape.rings[0][:, 0].max()) + 2, width)
            bottom = min(math.ceil(shape.rings[0][:, 1].max()) + 2, height)
            if right <= left or bottom <= top:
                continue
            stencil = Image.new("L", (right - left, bottom - top), 0)
            stencil_draw = ImageDraw.Draw(stencil)
            offset = np.array([left, top], dtype=np.float64)
            for index, ring in enumerate(shape.rings):
                _draw_ring(stencil_draw, ring - offset, 255 if index == 0 else 0)
            canvas.paste(value, (left, top, right, bottom), stencil)
    return np.asarray(canvas).astype(dtype)


def _points(item: Mapping, key: str, source: str) -> np.ndarray:
    """Read a list of [x, y] pairs as a float (N, 2) array."""
    try:
        points = np.asarray(item[key], dtype=np.float64).reshape(-1, 2)
    except (KeyError, TypeError, ValueError) as error:
        raise C2FError(f"{source}: a shape has no valid {key!r} list of [x, y] pairs ({error})") from None
    return points


def _labelme_mask(shape_type: str, points: np.ndarray, item: Mapping, height: int, width: int,
                  source: str) -> np.ndarray:
    """Draw a labelme non-polygon shape into a boolean mask with labelme's own PIL primitives and sizes."""
    image = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(image)
    xy = [tuple(point) for point in points.tolist()]
    needed = {"circle": 2, "rectangle": 2, "line": 2, "point": 1, "mask": 2}.get(shape_type)
    if needed is not None and len(xy) != needed:
        raise C2FError(f"{source}: a labelme {shape_type} needs {needed} points, not {len(xy)}")
    if shape_type == "circle":
        (centre_x, centre_y), (edge_x, edge_y) = xy
        radius = math.hypot(centre_x - edge_x, centre_y - edge_y)
        draw.ellipse([centre_x - radius, centre_y - radius, centre_x + radius, centre_y + radius], fill=1)
    elif shape_type == "rectangle":
        (x0, y0), (x1, y1) = xy
        draw.rectangle([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], fill=1)
    elif shape_type in ("line", "linestrip"):
        draw.line(xy, fill=1, width=LABELME_LINE_WIDTH)
    elif shape_type == "point":
        (centre_x, centre_y), = xy
        radius = LABELME_POINT_RADIUS
        draw.ellipse([centre_x - radius, centre_y - radius, centre_x + radius, centre_y + radius], fill=1)
    elif shape_type == "mask":
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(base64.b64decode(item["mask"])), formats=("PNG",)) as mask_image:
                    if mask_image.width * mask_image.height > MAX_PIXELS:  # checked before decoding
                        raise ValueError(f"{mask_image.width}x{mask_image.height} pixels, over c2f's limit")
                    patch = np.asarray(mask_image).astype(bool)
        except Exception as error:  # any undecodable payload is the file's fault, reported as such
            raise C2FError(f"{source}: a labelme mask shape has no readable base64 PNG 'mask' ({error})") from None
        canvas = np.zeros((height, width), dtype=bool)
        (x0, y0), _ = np.asarray(points).astype(int)
        patch = (patch if patch.ndim == 2 else patch[..., 0])[: height - y0, : width - x0]
        canvas[y0: y0 + patch.shape[0], x0: x0 + patch.shape[1]] = patch
        return canvas
    else:
        raise C2FError(f"{source}: labelme shape_type {shape_type!r} is not one of polygon, rectangle, circle, "
                       "line, linestrip, point, mask")
    return np.asarray(image).astype(bool)


def _size(document: Mapping, height_key: str, width_key: str, source: str) -> tuple[int, int]:
    """Read the image size a document states."""
    try:
        return int(document[height_key]), int(document[width_key])
    except (KeyError, TypeError, ValueError):
        raise C2FError(f"{source}: the document needs integer {height_key!r} and {width_key!r}") from None


def read_labelme(document: Mapping, source: str) -> tuple[int, int, list[Shape]]:
    """Read a labelme JSON document as (height, width, shapes); polygons stay rings, other shape types become masks."""
    height, width = _size(document, "imageHeight", "imageWidth", source)
    shapes = []
    for item in document.get("shapes", []):
        shape_type = item.get("shape_type") or "polygon"
        points = _points(item, "points", source)
        if shape_type == "polygon":
            if len(points) < 3:
                raise C2FError(f"{source}: a labelme polygon needs more than 2 points, not {len(points)}")
            shapes.append(Shape(str(item.get("label")), [points]))
        else:
            shapes.append(Shape(str(item.get("label")), mask=_labelme_mask(shape_type, points, item, height,
                                                                           width, source)))
    return height, width, shapes


def read_cityscapes(document: Mapping, source: str,
                    known_labels: Collection[str] | None = None) -> tuple[int, int, list[Shape]]:
    """Read a Cityscapes polygons JSON as (height, width, shapes), skipping deleted objects; "cargroup" reads as "car"
    unless known_labels holds "cargroup" itself."""
    height, width = _size(document, "imgHeight", "imgWidth", source)
    shapes = []
    for item in document.get("objects", []):
        if item.get("deleted"):
            continue
        label = str(item.get("label"))
        if label.endswith("group") and (known_labels is None or label not in known_labels):
            label = label[: -len("group")]
        shapes.append(Shape(label, [_points(item, "polygon", source)]))
    return height, width, shapes


def read_coco(document: Mapping, image_name: str, source: str) -> tuple[int, int, list[Shape]]:
    """Read one image's annotations from a COCO JSON as (height, width, shapes), each with its pycocotools mask."""
    wanted = PurePath(image_name).name
    images = [image for image in document.get("images", []) if PurePath(str(image.get("file_name"))).name == wanted]
    if not images:
        raise C2FError(f"{source}: no entry in 'images' has file_name {wanted!r}; check the image name")
    image = images[0]
    height, width = _size(image, "height", "width", source)
    categories = {category["id"]: str(category["name"]) for category in document.get("categories", [])}
    shapes = []
    for annotation in document.get("annotations", []):
        if annotation.get("image_id") != image.get("id"):
            continue
        if annotation.get("category_id") not in categories:
            raise C2FError(f"{source}: annotation {annotation.get('id')} has category_id "
                           f"{annotation.get('category_id')} that 'categories' does not list")
        segmentation = annotation.get("segmentation")
        rings = []
        if isinstance(segmentation, list):
            # COCO puts pixel edges on integers; the rings here put pixel centres there, like the other formats
            rings = [np.asarray(polygon, dtype=np.float64).reshape(-1, 2) - 0.5 for polygon in segmentation]
            encoded = coco_mask.merge(coco_mask.frPyObjects(segmentation, height, width))
        elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
            encoded = coco_mask.frPyObjects(segmentation, height, width)
        elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), (str, bytes)):
            encoded = dict(segmentation)
        else:
            raise C2FError(f"{source}: annotation {annotation.get('id')} has no polygon list or RLE segmentation")
        mask = coco_mask.decode(encoded).astype(bool)
        shapes.append(Shape(categories[annotation["category_id"]], rings, mask))
    return height, width, shapes


def detect_format(document: Mapping) -> str:
    """Name a polygon JSON document's format: "labelme", "cityscapes" or "coco"."""
    if isinstance(document, Mapping):
        if "shapes" in document and "imageHeight" in document:
            return "labelme"
        if "objects" in document and "imgHeight" in document:
            return "cityscapes"
        if "images" in document and "annotations" in document:
            return "coco"
    raise C2FError("not a known polygon document: expected labelme (shapes, imageHeight, imageWidth), "
                   "Cityscapes (objects, imgHeight, imgWidth) or COCO (images, annotations, categories)")


def _simplify(contour: np.ndarray, tolerance: float, offset: tuple[int, int]) -> np.ndarray:
    """Simplify an OpenCV contour within tolerance px and return it as float (N, 2) image coordinates."""
    if tolerance > 0 and len(contour) > 2:
        contour = cv2.approxPolyDP(contour, tolerance, True)
    return contour.reshape(-1, 2).astype(np.float64) + offset


def trace_regions(class_ids: np.ndarray, names: Sequence[str], tolerance: float = POLYGON_TOLERANCE,
                  skip_ids: Collection[int] = (), min_area: int = 0) -> list[Shape]:
    """Trace each 4-connected region of an (H, W) integer map into a Shape with holes, outer regions first."""
    regions = []  # (filled outline area, shape)
    for value in np.unique(class_ids):
        if value in skip_ids:
            continue
        if not 0 <= value < len(names):
            raise C2FError(f"class id {value} has no name; the label table names ids 0 to {len(names) - 1}")
        count, components, stats, _ = cv2.connectedComponentsWithStats(
            (class_ids == value).astype(np.uint8), connectivity=4)
        for index in range(1, count):
            left, top, box_width, box_height, area = stats[index]
            if area < min_area:
                continue
            # one pixel of margin so the contours never touch the crop's edge
            region = np.pad(components[top: top + box_height, left: left + box_width] == index, 1).astype(np.uint8)
            offset = (left - 1, top - 1)
            outline = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0][0]
            filled = np.zeros_like(region)
            cv2.drawContours(filled, [outline], 0, 1, cv2.FILLED)
            # a 4-connected region's holes are 8-connected, which is how OpenCV traces them as outlines of their own
            holes = filled & (1 - region)
            contours = [outline]
            if holes.any():
                contours += list(cv2.findContours(holes, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0])
            rings = [_simplify(contour, tolerance, offset) for contour in contours]
            regions.append((int(filled.sum()), Shape(str(names[value]), rings)))
    # a region inside another's outline always covers less, so largest first draws containers before contents
    regions.sort(key=lambda item: -item[0])
    return [shape for _, shape in regions]


def _shape_mask(shape: Shape, height: int, width: int) -> np.ndarray:
    """The boolean (height, width) pixels a shape covers when drawn alone."""
    if shape.mask is not None:
        return shape.mask.astype(bool)
    return rasterize([shape], height, width, {shape.label: 1}, fill=0, dtype=np.uint8).astype(bool)


def labelme_document(shapes: Sequence[Shape], height: int, width: int, image_path: str) -> dict:
    """A labelme JSON document of shapes in draw order; labelme polygons have no holes, so each outline is written
    alone and the regions inside its holes, which follow it, are drawn over it again; masks become "mask" shapes."""
    items = []
    for shape in shapes:
        item = {"label": shape.label, "group_id": None, "description": "", "flags": {}, "mask": None}
        if shape.mask is None and len(shape.rings[0]) >= 3:
            item.update(points=shape.rings[0].tolist(), shape_type="polygon")
        else:  # a mask, or a ring too thin to be a labelme polygon
            mask = _shape_mask(shape, height, width)
            rows, columns = np.nonzero(mask)
            if len(rows) == 0:
                continue
            x0, y0, x1, y1 = int(columns.min()), int(rows.min()), int(columns.max()), int(rows.max())
            buffer = io.BytesIO()
            Image.fromarray(mask[y0: y1 + 1, x0: x1 + 1]).save(buffer, format="PNG")
            item.update(points=[[float(x0), float(y0)], [float(x1), float(y1)]], shape_type="mask",
                        mask=base64.b64encode(buffer.getvalue()).decode("ascii"))
        items.append(item)
    return {"version": LABELME_VERSION, "flags": {}, "shapes": items, "imagePath": image_path,
            "imageData": None, "imageHeight": int(height), "imageWidth": int(width)}


def _pixel_edge_polygons(mask: np.ndarray) -> list[list[float]] | None:
    """COCO polygons (flat x, y lists, pixel edges on integers) that pycocotools draws back as exactly mask, or None
    when the mask has holes."""
    # tracing at twice the size puts each outline a quarter pixel inside the pixel edges, where COCO's own
    # rasteriser keeps exactly the traced pixels
    doubled = np.kron(mask.astype(np.uint8), np.ones((2, 2), dtype=np.uint8))
    contours, hierarchy = cv2.findContours(doubled, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    if not contours or (hierarchy[0][:, 3] >= 0).any():
        return None
    return [(contour.reshape(-1, 2) / 2 + 0.25).ravel().tolist() for contour in contours]


def coco_document(shapes: Sequence[Shape], height: int, width: int, image_name: str,
                  category_names: Sequence[str]) -> dict:
    """A one-image COCO JSON document, one annotation per shape (category id = index in category_names + 1).

    Each shape is written as the pixels rasterize draws for it alone. COCO unions an annotation's polygons, so a
    shape with holes is written as compressed RLE (with iscrowd 0); any other becomes polygons along its pixels'
    edges, which pycocotools draws back pixel for pixel. Area and bbox are pycocotools' own."""
    category_ids = {name: index + 1 for index, name in enumerate(category_names)}
    annotations = []
    for shape in shapes:
        if shape.label not in category_ids:
            raise C2FError(f"{image_name}: label {shape.label!r} is not among the COCO category names")
        mask = _shape_mask(shape, height, width)
        if not mask.any():
            continue
        segmentation = _pixel_edge_polygons(mask)
        if segmentation is not None:
            encoded = coco_mask.merge(coco_mask.frPyObjects(segmentation, height, width))
        else:
            encoded = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
            segmentation = {"size": [int(height), int(width)], "counts": encoded["counts"].decode("ascii")}
        annotations.append({"id": len(annotations) + 1, "image_id": 1, "category_id": category_ids[shape.label],
                            "segmentation": segmentation, "area": float(coco_mask.area(encoded)),
                            "bbox": [float(value) for value in coco_mask.toBbox(encoded)], "iscrowd": 0})
    return {"images": [{"id": 1, "file_name": image_name, "height": int(height), "width": int(width)}],
            "categories": [{"id": index, "name": name} for name, index in category_ids.items()],
            "annotations": annotations}
