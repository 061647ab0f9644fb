"""Reading and writing label maps: colour-coded, palette and single-channel index images, and polygon JSON
(labelme, Cityscapes, COCO).

Maps leaving this module are uint8 (uint16 above 255 classes) (H, W) class indices in [0, K], where K (the class
count) marks pixels that are not annotated (coarse maps) or ignored (fine maps): the label table's ignore entries,
255 in palette and index maps of a table with ignore entries, and pixels no polygon covers.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Callable

import numpy as np
from PIL import Image

from c2f.config import POLYGON_TOLERANCE
from c2f.errors import C2FError
from c2f.io.files import save_image, write_atomically
from c2f.io.label_sets import LabelSet
from c2f.io.photos import image_rows, open_image, row_bands

RASTER_ENCODINGS = ("color", "palette", "index")
POLYGON_ENCODINGS = ("labelme", "coco")  # the polygon formats c2f writes; it also reads Cityscapes' JSON
ENCODINGS = RASTER_ENCODINGS + POLYGON_ENCODINGS
POLYGON_SUFFIX = ".json"

# A pixel counts as "far" from the palette when it is more than this many RGB
# units from every blend of two palette colours: anti-aliased edges are blends
# and stay quiet, genuinely foreign colours are counted.
FAR_COLOR_DISTANCE = 60.0


@dataclass(frozen=True)
class LabelMap:
    """A decoded label map and how it was stored."""

    class_ids: np.ndarray  # (H, W) uint8/uint16 in [0, K]; K = not annotated / ignored
    encoding: str  # one of ENCODINGS, or "cityscapes"
    far_pixels: int  # colour pixels far from every palette blend (0 for ids)

    def ignored_pixels(self, labels: LabelSet) -> int:
        """How many pixels are not annotated / ignored."""
        return int(np.count_nonzero(self.class_ids == labels.ignore_index))


def id_dtype(num_classes: int) -> np.dtype:
    """The dtype of c2f's maps: room for the classes and the ignore value K."""
    return np.dtype(np.uint8) if num_classes < 256 else np.dtype(np.uint16)


# Bound on the elements of one temporary distance array (int32 or float32): 64 MB.
DISTANCE_CHUNK = 2**24


def palette_spans(palette: np.ndarray) -> np.ndarray:
    """float64 (K,): a bound on each palette colour's distance to every other one (its longest blend).

    |p - q| <= |p - m| + |q - m| for the palette's mean m: linear in K, where the exact spans are quadratic.
    """
    palette = palette.astype(np.float64)
    from_mean = np.sqrt(((palette - palette.mean(axis=0)) ** 2).sum(axis=1))
    return from_mean + from_mean.max()


# Palettes of up to this many pairs of colours (K * K) measure every blend of every colour at once: exact, and on
# a small palette far quicker than the pruned per-colour loop, whose Python steps outweigh the arithmetic they
# save there (most of the time of reading a FASSEG coarse map went to that loop).
DENSE_BLEND_PAIRS = 1024


def far_from_every_blend(colors: np.ndarray, palette: np.ndarray, limit: float) -> np.ndarray:
    """far_from_palette_blends by measuring every segment of two palette colours, in chunks of colours."""
    directions = palette[None, :, :] - palette[:, None, :]  # (K, K, 3): q - p
    lengths = (directions * directions).sum(axis=2)
    lengths[lengths == 0] = 1  # p to itself: t is 0 either way
    far = np.empty(len(colors), dtype=bool)
    rows = max(1, DISTANCE_CHUNK // (6 * directions.size))  # float64 temporaries: the same 64 MB bound
    for start in range(0, len(colors), rows):
        offsets = colors[start:start + rows, None, :] - palette[None, :, :]  # (n, K, 3): c - p
        t = np.clip(np.einsum("npd,pqd->npq", offsets, directions) / lengths, 0, 1)
        residuals = offsets[:, :, None, :] - t[..., None] * directions[None]  # (n, K, K, 3)
        far[start:start + rows] = (residuals * residuals).sum(axis=3).min(axis=(1, 2)) > limit * limit
    return far


def far_from_palette_blends(colors: np.ndarray, palette: np.ndarray, limit: float) -> np.ndarray:
    """For (N, 3) colours each more than `limit` from every palette colour: True where they are also more
    than `limit` from every blend (segment) of two palette colours.

    A small palette measures every blend (far_from_every_blend). For a large one, a blend of p and q passes
    within `limit` of a colour c only if |c-p| + |c-q| <= |p-q| + 2 limit (triangle inequality), and |p-q| is
    at most p's span (palette_spans); so each colour measures exactly only the pairs these bounds leave, which
    for a colour far from the palette are few or none.
    """
    palette = palette.astype(np.float64)
    if len(palette) ** 2 <= DENSE_BLEND_PAIRS:
        return far_from_every_blend(colors.astype(np.float64), palette, limit)
    spans = palette_spans(palette)
    far = np.ones(len(colors), dtype=bool)
    for index, color in enumerate(colors.astype(np.float64)):
        distances = np.sqrt(((palette - color) ** 2).sum(axis=1))
        order = np.argsort(distances)
        sorted_distances = distances[order]
        # p can start a near blend only if some q has |c-q| <= span(p) + 2 limit - |c-p|.
        budgets = spans + 2 * limit - distances
        for first in np.flatnonzero(budgets >= sorted_distances[0]):
            seconds = order[:np.searchsorted(sorted_distances, budgets[first], side="right")]
            directions = palette[seconds] - palette[first]
            lengths = (directions * directions).sum(axis=1)
            lengths[lengths == 0] = 1  # p itself: t is 0 either way
            offset = color - palette[first]
            t = np.clip(directions @ offset / lengths, 0, 1)
            residual = offset - t[:, None] * directions
            if (residual * residual).sum(axis=1).min() <= limit * limit:
                far[index] = False
                break
    return far


def nearest_palette_colors(colors: np.ndarray, palette: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For int32 (N, 3) colours, the index of the nearest of K palette colours and its squared distance.

    Computed in chunks of colours, so memory stays bounded whatever N and K; ties take the lower index.
    """
    indices = np.empty(len(colors), dtype=np.int64)
    squared = np.empty(len(colors), dtype=np.int64)
    rows = max(1, DISTANCE_CHUNK // (3 * len(palette)))
    for start in range(0, len(colors), rows):
        distances = ((colors[start:start + rows, None, :] - palette[None, :, :]) ** 2).sum(axis=2)
        indices[start:start + rows] = distances.argmin(axis=1)
        squared[start:start + rows] = distances.min(axis=1)
    return indices, squared


def pack_colors(rgb: np.ndarray) -> np.ndarray:
    """uint8/int (..., 3) colours as int32 0xRRGGBB, built in place: one int32 array, not four."""
    packed = rgb[..., 0].astype(np.int32)
    packed <<= 8
    packed |= rgb[..., 1]
    packed <<= 8
    packed |= rgb[..., 2]
    return packed


class ColorDecoder:
    """Decodes colour-coded maps band by band: each pixel takes its nearest table colour's value (an ignore entry's
    colour reads as K), and pixels far from every palette blend are counted.

    Near-linear in the class count K: exact palette colours (the usual case) are found by binary
    search, only the distinct other colours are compared with all K, and only those far from every
    palette colour take the blend test. Each distinct colour is matched once, whichever band it first
    appears in, so the bands of one map decode as the whole map would.
    """

    def __init__(self, labels: LabelSet):
        palette, self.values = labels.color_table()  # class colours, then ignore entries' colours (which read as K)
        self.palette = palette.astype(np.int32)
        self.dtype = id_dtype(labels.num_classes)
        self.colors = np.empty(0, np.int32)  # packed colours met so far, sorted
        self.ids = np.empty(0, self.dtype)  # the value each of them decodes to
        self.far = np.empty(0, bool)  # whether each is far from every palette blend
        self.far_pixels = 0  # far pixels in the bands decoded so far

    def decode(self, rgb: np.ndarray) -> np.ndarray:
        """(h, W) class ids of uint8 (h, W, 3) colours; far pixels are added to far_pixels."""
        packed = pack_colors(rgb)
        # Sort only to find the few distinct colours, then look every pixel up by binary search:
        # np.unique(return_inverse=True) costs 9x the time and 1 GB on a 6000 x 4000 map.
        unique = np.unique(packed)
        new = unique[~np.isin(unique, self.colors, assume_unique=True)]
        if len(new):
            self.learn(new)
        positions = np.searchsorted(self.colors, packed)
        if self.far.any():
            self.far_pixels += int(np.count_nonzero(self.far[positions]))
        return self.ids[positions]

    def learn(self, colors: np.ndarray) -> None:
        """Match sorted packed colours not met before to their nearest table colour, and test those far from it."""
        palette_keys = pack_colors(self.palette)
        order = np.argsort(palette_keys)
        slots = np.minimum(np.searchsorted(palette_keys[order], colors), len(order) - 1)
        exact = palette_keys[order][slots] == colors
        nearest = np.empty(len(colors), dtype=np.int64)
        nearest[exact] = order[slots[exact]]
        far = np.zeros(len(colors), dtype=bool)
        if not exact.all():
            others = colors[~exact]
            other_rgb = np.stack([(others >> 16) & 255, (others >> 8) & 255, others & 255], axis=1)
            nearest[~exact], squared = nearest_palette_colors(other_rgb, self.palette)
            # A colour near a palette colour is never far (a colour is a blend of itself), so only the rest
            # need the blend test.
            candidates = squared > FAR_COLOR_DISTANCE**2
            if candidates.any():
                far[np.flatnonzero(~exact)[candidates]] = far_from_palette_blends(
                    other_rgb[candidates], self.palette, FAR_COLOR_DISTANCE)
        colors = np.concatenate([self.colors, colors])
        order = np.argsort(colors)
        self.colors = colors[order]
        self.ids = np.concatenate([self.ids, self.values[nearest].astype(self.dtype)])[order]
        self.far = np.concatenate([self.far, far])[order]


def decode_colors(height: int, width: int, band: Callable[[slice], np.ndarray],
                  labels: LabelSet) -> tuple[np.ndarray, int]:
    """(H, W) class ids and far pixels of a colour map given in row bands: band(rows) is uint8 (rows, W, 3)."""
    decoder = ColorDecoder(labels)
    ids = np.empty((height, width), decoder.dtype)
    for rows in row_bands(height, width):  # temporaries stay the size of a band
        ids[rows] = decoder.decode(band(rows))
    return ids, decoder.far_pixels


def colors_to_ids(rgb: np.ndarray, labels: LabelSet) -> tuple[np.ndarray, int]:
    """Map each pixel of uint8 (H, W, 3) to its nearest table colour (an ignore entry's colour reads as K); also
    count far pixels (ColorDecoder)."""
    return decode_colors(*rgb.shape[:2], lambda rows: rgb[rows], labels)


# Blends are sought between every pair of the this many palette colours nearest a colour (all pairs for up to
# this many classes); a blend of two opposite colours (eyes' blue and skin's yellow) lies nearest a third.
BLEND_CANDIDATES = 8


@dataclass(frozen=True)
class ClassBlend:
    """Per pixel of a colour map, the two classes its colour blends and the share of the first: an anti-aliased
    edge pixel halfway between skin and hair is (skin, hair, 0.5), a pure palette colour (class, class, 1.0)."""

    first: np.ndarray  # (H, W) uint8/uint16 class ids in [0, K] (K: ignored), the class of the larger share
    second: np.ndarray  # (H, W) like first: the other class, equal to first where the pixel is pure
    share: np.ndarray  # float32 (H, W) in [0.5, 1]: first's share of the pixel


def blend_pairs(colors: np.ndarray, palette: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For int32 (N, 3) colours, the palette pair (p, q) whose segment passes closest, the share of p when the
    colour is projected onto it, and the squared distance to the segment; pairs among the BLEND_CANDIDATES nearest
    palette colours, in chunks so memory stays bounded."""
    count = min(len(palette), BLEND_CANDIDATES)
    pairs = np.array([(p, q) for p in range(count) for q in range(p + 1, count)] or [(0, 0)])
    first, second = (np.empty(len(colors), dtype=np.int64) for _ in range(2))
    share, squared = np.empty(len(colors), dtype=np.float64), np.empty(len(colors), dtype=np.float64)
    rows = max(1, DISTANCE_CHUNK // (3 * len(palette) + 3 * len(pairs)))
    palette = palette.astype(np.float64)
    for start in range(0, len(colors), rows):
        chunk = colors[start:start + rows].astype(np.float64)
        distances = ((chunk[:, None, :] - palette[None, :, :]) ** 2).sum(axis=2)
        nearest = np.argsort(distances, axis=1, kind="stable")[:, :count]  # ties: the lower index first
        starts, ends = nearest[:, pairs[:, 0]], nearest[:, pairs[:, 1]]  # (n, pairs)
        directions = palette[ends] - palette[starts]  # (n, pairs, 3)
        offsets = chunk[:, None, :] - palette[starts]
        lengths = np.maximum((directions * directions).sum(axis=2), 1e-12)
        along = np.clip((directions * offsets).sum(axis=2) / lengths, 0, 1)  # 0 at the start, 1 at the end
        residuals = ((offsets - along[..., None] * directions) ** 2).sum(axis=2)
        best = residuals.argmin(axis=1)  # the first of equal fits: for a pure colour, a pair that holds it
        chosen = np.arange(len(chunk))
        start_share = 1 - along[chosen, best]
        starts, ends = starts[chosen, best], ends[chosen, best]
        flip = start_share < 0.5
        first[start:start + rows] = np.where(flip, ends, starts)
        second[start:start + rows] = np.where(flip, starts, ends)
        share[start:start + rows] = np.where(flip, 1 - start_share, start_share)
        squared[start:start + rows] = residuals[chosen, best]
    return first, second, share, squared


def color_blends(rgb: np.ndarray, labels: LabelSet) -> ClassBlend:
    """The two classes each pixel of uint8 (H, W, 3) blends and the first's share (soft training targets).

    Colours further than FAR_COLOR_DISTANCE from every blend, and blends touching an ignore colour on their
    larger side, count as pure: their pixel keeps its nearest colour's class alone, as colors_to_ids gives it.
    """
    packed = pack_colors(rgb)
    unique = np.unique(packed)
    colors = np.stack([(unique >> 16) & 255, (unique >> 8) & 255, unique & 255], axis=1)
    palette, values = labels.color_table()
    first, second, share, squared = blend_pairs(colors, palette.astype(np.int32))
    first, second = values[first], values[second]
    nearest = values[nearest_palette_colors(colors, palette.astype(np.int32))[0]]
    pure = (squared > FAR_COLOR_DISTANCE**2) | (first == labels.ignore_index) | (first == second) | (share >= 1)
    first[pure], second[pure], share[pure] = nearest[pure], nearest[pure], 1.0
    positions = np.searchsorted(unique, packed)
    dtype = id_dtype(labels.num_classes)
    return ClassBlend(first.astype(dtype)[positions], second.astype(dtype)[positions],
                      share.astype(np.float32)[positions])


INDEX_MODES = ("L", "I;16", "I;16B", "I;16L", "I")  # Pillow modes of single-channel maps, read as class ids


def read_label_map(path: Path, labels: LabelSet, image_name: str | None = None) -> LabelMap:
    """Read a colour, palette or index map, or a labelme / Cityscapes / COCO JSON (COCO: the entry of image_name)."""
    if Path(path).suffix.lower() == POLYGON_SUFFIX:
        return read_polygon_map(Path(path), labels, image_name)
    image = open_image(path)  # as stored: a map drawn on the upright view is saved upright
    if image.mode == "P":  # palette files hold class ids, whatever colours their palette shows them in
        return LabelMap(image_classes(image, labels, path), "palette", 0)
    if image.mode in INDEX_MODES:
        return LabelMap(image_classes(image, labels, path), "index", 0)
    # Converted to RGB a band at a time: no whole RGB copy beside Pillow's image.
    ids, far_pixels = decode_colors(image.height, image.width, lambda rows: image_rows(image, rows, "RGB"), labels)
    return LabelMap(ids, "color", far_pixels)


def read_class_blend(path: Path, labels: LabelSet) -> ClassBlend | None:
    """The blends of a colour map's pixels (color_blends); None for palette, index and polygon maps, which hold
    one class per pixel."""
    if Path(path).suffix.lower() == POLYGON_SUFFIX:
        return None
    image = open_image(path)
    if image.mode == "P" or image.mode in INDEX_MODES:
        return None
    return color_blends(np.asarray(image.convert("RGB")), labels)


def read_polygon_map(path: Path, labels: LabelSet, image_name: str | None) -> LabelMap:
    """Rasterise a labelme, Cityscapes or COCO JSON in the order its format draws; uncovered pixels are K."""
    from c2f.io import polygons  # here: it imports OpenCV and pycocotools, which refines of image maps need not load
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as error:
        raise C2FError(f"{path}: not valid JSON ({error})") from None
    try:
        kind = polygons.detect_format(document)
    except C2FError as error:
        raise C2FError(f"{path}: {error}") from None
    source = str(path)
    if kind == "labelme":
        height, width, shapes = polygons.read_labelme(document, source)
    elif kind == "cityscapes":
        height, width, shapes = polygons.read_cityscapes(document, source, labels.name_lookup())
        # cityscapesScripts' json2labelImg skips labels of id < 0 (the license plate): the car stays beneath
        unmapped = {entry.name for entry in labels.ignore if entry.id < 0}
        shapes = [shape for shape in shapes if shape.label not in unmapped]
    else:
        height, width, shapes = polygons.read_coco(document, coco_image_name(document, image_name, path), source)
    ids = polygons.rasterize(shapes, height, width, labels.name_lookup(), fill=labels.ignore_index,
                             dtype=id_dtype(labels.num_classes), source=source)
    return LabelMap(ids, kind, 0)


def coco_image_name(document: dict, image_name: str | None, path: Path) -> str:
    """The file_name of the COCO image meant: the photo's name, else one of the same stem, else the only image."""
    names = [str(image.get("file_name")) for image in document.get("images", []) if isinstance(image, dict)]
    if image_name is not None:
        for matches in (lambda name: PurePath(name).name == PurePath(image_name).name,
                        lambda name: PurePath(name).stem == PurePath(image_name).stem):
            found = [name for name in names if matches(name)]
            if found:
                return found[0]
    if len(names) == 1:
        return names[0]
    raise C2FError(f"{path}: none of its {len(names)} COCO images is named {image_name!r}; "
                   "name the photo as its file_name says")


def image_classes(image: Image.Image, labels: LabelSet, path: Path) -> np.ndarray:
    """An index or palette image's table ids as class indices (K for ignore), translated in row bands."""
    classes = np.empty((image.height, image.width), id_dtype(labels.num_classes))
    try:
        for rows in row_bands(image.height, image.width):
            classes[rows] = ids_to_classes(image_rows(image, rows), labels, path)
        return classes
    except C2FError:
        del classes  # a band holds ids the table does not name: the error below counts them over the whole map
    return ids_to_classes(np.asarray(image), labels, path)


def ids_to_classes(ids: np.ndarray, labels: LabelSet, path: Path) -> np.ndarray:
    """Translate an index or palette map's table ids into class indices (K for ignore); unknown ids are an error."""
    if int(ids.min(initial=0)) < 0:  # only 32-bit TIFFs can hold these
        raise C2FError(f"{path}: {int((ids < 0).sum())} pixels hold negative class ids; "
                       "class ids run from 0 to the number of classes - 1.")
    lookup = labels.index_lookup()
    largest = int(ids.max(initial=0))
    if largest >= len(lookup):
        raise C2FError(f"{path}: pixels hold ids up to {largest}, beyond what a label table can name")
    classes = lookup[ids]
    unknown = classes < 0
    if unknown.any():
        values = np.unique(ids[unknown])
        shown = ", ".join(str(value) for value in values[:10]) + (" ..." if len(values) > 10 else "")
        hint = ("255 marks void in VOC-style maps: add an ignore entry, e.g. {name = \"void\", id = 255, "
                "ignore = true}" if 255 in values and not labels.ignore else "pass the right --labels file")
        raise C2FError(f"{path}: {int(unknown.sum())} pixels hold ids ({shown}) that the label table does not "
                       f"name (it names {describe_ids(labels)}); {hint}.")
    return classes.astype(id_dtype(labels.num_classes))


def check_ids(ids: np.ndarray, labels: LabelSet, path: Path) -> None:
    """Refuse an array of class indices outside 0..K (K: not annotated / ignored), as arrays passed by code hold."""
    if int(ids.min(initial=0)) < 0 or int(ids.max(initial=0)) > labels.ignore_index:
        outside = int(((ids < 0) | (ids > labels.ignore_index)).sum())
        raise C2FError(f"{path}: {outside} pixels hold class ids up to {int(ids.max(initial=0))} (lowest "
                       f"{int(ids.min(initial=0))}), but they run 0..{labels.num_classes - 1}, and "
                       f"{labels.ignore_index} for not annotated; pass the right labels.")


def describe_ids(labels: LabelSet) -> str:
    """The ids a table names, shortly: "0..5" or a list."""
    known = sorted(set(labels.ids) | {entry.id for entry in labels.ignore if entry.id >= 0})
    if known == list(range(known[0], known[-1] + 1)):
        return f"{known[0]}..{known[-1]}"
    return ", ".join(str(value) for value in known[:20]) + (" ..." if len(known) > 20 else "")


def check_same_size(label_map: np.ndarray, map_path: Path, reference: np.ndarray, reference_path: Path) -> None:
    """Refuse an (H, W) label map whose size differs from its photo's or reference map's (H, W, ...)."""
    if label_map.shape[:2] != reference.shape[:2]:
        raise C2FError(f"{map_path} is {label_map.shape[1]}x{label_map.shape[0]} but {reference_path} is "
                       f"{reference.shape[1]}x{reference.shape[0]}; they must be the same size.")


def written_ids(class_ids: np.ndarray, labels: LabelSet, path: Path | None = None) -> np.ndarray:
    """Class indices (K for ignore) -> the table's ids, as index and palette maps store them."""
    ignore_id = labels.ignore_id()
    if ignore_id is None and int(class_ids.max(initial=0)) >= labels.ignore_index:
        ignored = int(np.count_nonzero(class_ids == labels.ignore_index))
        if ignored:
            raise C2FError(f"{path or 'the map'}: {ignored} pixels are not annotated, but the label table has no "
                           "ignore entry to write them as; add one, e.g. {name = \"void\", id = 255, ignore = true}")
    table = np.array(list(labels.ids) + [ignore_id or 0], dtype=np.int64)
    return table.astype(np.uint8 if int(table.max()) < 256 else np.uint16)[class_ids]  # the stored type at once


def color_image(class_ids: np.ndarray, colors: np.ndarray) -> Image.Image:
    """An RGB image of (H, W) class indices through uint8 (K + 1, 3) colours, filled in row bands (no whole
    (H, W, 3) array beside it)."""
    height, width = class_ids.shape
    image = Image.new("RGB", (width, height))
    for rows in row_bands(height, width):
        image.paste(Image.fromarray(colors[class_ids[rows]]), (0, rows.start))
    return image


def label_map_image(class_ids: np.ndarray, labels: LabelSet, encoding: str, path: Path | None = None) -> Image.Image:
    """Encode (H, W) class indices (K: ignore) as a PIL image in one of RASTER_ENCODINGS."""
    if encoding == "color":
        return color_image(class_ids, labels.display_palette())
    if encoding == "palette":
        ids = written_ids(class_ids, labels, path)
        if ids.dtype != np.uint8:
            raise C2FError("a palette PNG holds at most 256 ids (0..255); use --format color or index.")
        image = Image.fromarray(ids, mode="P")
        image.putpalette(palette_of(labels).ravel().tolist())
        return image
    if encoding == "index":
        ids = written_ids(class_ids, labels, path)
        return Image.fromarray(ids, mode="L") if ids.dtype == np.uint8 else Image.fromarray(ids)
    raise C2FError(f"unknown map format {encoding!r}; choose one of {', '.join(ENCODINGS)}.")


def palette_of(labels: LabelSet) -> np.ndarray:
    """uint8 (N, 3) palette placing each class's and ignore entry's colour at its id (N = the largest id + 1)."""
    written = [(entry.id, entry.color) for entry in labels.ignore if entry.id >= 0]
    ignore_id = labels.ignore_id()
    if ignore_id is not None and ignore_id not in dict(written):
        written.append((ignore_id, labels.ignore_color()))
    written += list(zip(labels.ids, labels.colors))  # classes last: their colours win
    palette = np.zeros((max(value for value, _ in written) + 1, 3), dtype=np.uint8)
    for value, color in written:
        if value < 256:
            palette[value] = color
    return palette[:256]


def polygon_document(class_ids: np.ndarray, labels: LabelSet, encoding: str, path: Path,
                     image_path: Path | None, tolerance: float = POLYGON_TOLERANCE) -> dict:
    """(H, W) class indices as a labelme or COCO document of traced polygons; ignored pixels are left uncovered."""
    from c2f.io import polygons  # here, as in read_polygon_map
    height, width = class_ids.shape
    photo = Path(image_path) if image_path is not None else Path(path).with_suffix(".png")
    if encoding == "labelme":  # labelme finds the photo relative to the JSON file
        # labelme polygons have no holes: ignored regions inside others are drawn as shapes of the ignore entry
        names = labels.names + labels.ignore_names()[:1]
        shapes = polygons.trace_regions(class_ids, names, tolerance, skip_ids={len(names)})
        return polygons.labelme_document(shapes, height, width,
                                         Path(os.path.relpath(photo, Path(path).parent)).as_posix())
    # COCO keeps holes (as RLE), so ignored pixels stay uncovered
    shapes = polygons.trace_regions(class_ids, labels.names, tolerance, skip_ids={labels.ignore_index})
    return polygons.coco_document(shapes, height, width, photo.name, labels.names)


def write_label_map(path: Path, class_ids: np.ndarray, labels: LabelSet, encoding: str,
                    image_path: Path | None = None) -> None:
    """Write (H, W) class indices atomically in the given encoding; polygon formats name image_path's photo."""
    if encoding in POLYGON_ENCODINGS:
        document = polygon_document(class_ids, labels, encoding, path, image_path)
        text = json.dumps(document)
        write_atomically(Path(path), lambda temporary: temporary.write_text(text, encoding="utf-8"))
        return
    save_image(label_map_image(class_ids, labels, encoding, path), path)


def output_encoding(requested: str | None, input_encoding: str, path: Path) -> str:
    """The encoding to write: the requested one, else the input's (Cityscapes JSON: labelme); a .json output takes a
    polygon format (labelme unless the input was COCO), any other suffix a raster one (colour for polygon input)."""
    wants_polygons = Path(path).suffix.lower() == POLYGON_SUFFIX
    if requested is not None:
        if (requested in POLYGON_ENCODINGS) != wants_polygons:
            raise C2FError(f"{path}: --format {requested} writes "
                           + ("a .json file" if requested in POLYGON_ENCODINGS else "an image, not .json")
                           + "; change the output's suffix or the format.")
        return requested
    if wants_polygons:
        return input_encoding if input_encoding in POLYGON_ENCODINGS else "labelme"
    return input_encoding if input_encoding in RASTER_ENCODINGS else "color"
