"""Reading and writing label maps: colour-coded, palette and single-channel class-id images.

Maps leaving this module are uint8 (uint16 above 256 classes) (H, W) class ids in [0, K).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from c2f.errors import C2FError
from c2f.io.files import save_image
from c2f.io.label_sets import LabelSet
from c2f.io.photos import open_image

ENCODINGS = ("color", "palette", "index")

# A pixel counts as "far" from the palette when it is more than this many RGB
# units from every blend of two palette colours: anti-aliased edges are blends
# and stay quiet, genuinely foreign colours are counted.
FAR_COLOR_DISTANCE = 60.0


@dataclass(frozen=True)
class LabelMap:
    """A decoded label map and how it was stored."""

    class_ids: np.ndarray  # (H, W) uint8/uint16 in [0, K)
    encoding: str  # one of ENCODINGS
    far_pixels: int  # colour pixels far from every palette blend (0 for ids)


def id_dtype(num_classes: int) -> np.dtype:
    return np.dtype(np.uint8) if num_classes <= 256 else np.dtype(np.uint16)


# Bound on the elements of one temporary distance array (int32 or float32): 64 MB.
DISTANCE_CHUNK = 2**24


def palette_spans(palette: np.ndarray) -> np.ndarray:
    """float64 (K,): a bound on each palette colour's distance to every other one (its longest blend).

    |p - q| <= |p - m| + |q - m| for the palette's mean m: linear in K, where the exact spans are quadratic.
    """
    palette = palette.astype(np.float64)
    from_mean = np.sqrt(((palette - palette.mean(axis=0)) ** 2).sum(axis=1))
    return from_mean + from_mean.max()


def far_from_palette_blends(colors: np.ndarray, palette: np.ndarray, limit: float) -> np.ndarray:
    """For (N, 3) colours each more than `limit` from every palette colour: True where they are also more
    than `limit` from every blend (segment) of two palette colours.

    A blend of p and q passes within `limit` of a colour c only if |c-p| + |c-q| <= |p-q| + 2 limit
    (triangle inequality), and |p-q| is at most p's span (palette_spans); so each colour measures exactly only
    the pairs these bounds leave, which for a colour far from the palette are few or none.
    """
    palette = palette.astype(np.float64)
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


def colors_to_ids(rgb: np.ndarray, labels: LabelSet) -> tuple[np.ndarray, int]:
    """Map each pixel of uint8 (H, W, 3) to its nearest palette colour; also count far pixels.

    Near-linear in the class count K: exact palette colours (the usual case) are found by binary
    search, only the distinct other colours are compared with all K, and only those far from every
    palette colour take the blend test.
    """
    packed = pack_colors(rgb)
    # Sort only to find the few distinct colours, then look every pixel up by binary search:
    # np.unique(return_inverse=True) costs 9x the time and 1 GB on a 6000 x 4000 map.
    unique = np.unique(packed)
    palette = labels.palette().astype(np.int32)
    palette_keys = pack_colors(palette)
    order = np.argsort(palette_keys)
    slots = np.minimum(np.searchsorted(palette_keys[order], unique), len(order) - 1)
    exact = palette_keys[order][slots] == unique
    nearest = np.empty(len(unique), dtype=np.int64)
    nearest[exact] = order[slots[exact]]
    far_colors = np.zeros(len(unique), dtype=bool)
    if not exact.all():
        others = unique[~exact]
        other_rgb = np.stack([(others >> 16) & 255, (others >> 8) & 255, others & 255], axis=1)
        nearest[~exact], squared = nearest_palette_colors(other_rgb, palette)
        # A colour near a palette colour is never far (a colour is a blend of itself), so only the rest
        # need the blend test.
        candidates = squared > FAR_COLOR_DISTANCE**2
        if candidates.any():
            far = far_from_palette_blends(other_rgb[candidates], palette, FAR_COLOR_DISTANCE)
            far_colors[np.flatnonzero(~exact)[candidates]] = far
    positions = np.searchsorted(unique, packed)
    far_pixels = int(np.count_nonzero(far_colors[positions])) if far_colors.any() else 0
    return nearest.astype(id_dtype(labels.num_classes))[positions], far_pixels


def read_label_map(path: Path, labels: LabelSet) -> LabelMap:
    """Read a colour-coded, palette or single-channel class-id map."""
    image = open_image(path)  # as stored: a map drawn on the upright view is saved upright
    if image.mode == "P":
        palette = np.array(image.getpalette() or [], dtype=np.uint8).reshape(-1, 3)
        if palette[: labels.num_classes].tobytes() == labels.palette().tobytes():
            ids = np.asarray(image)
            check_ids(ids, labels, path)
            return LabelMap(ids.astype(id_dtype(labels.num_classes)), "palette", 0)
        image = image.convert("RGB")  # a palette of other colours: decode by colour
    if image.mode in ("L", "I;16", "I;16B", "I;16L", "I"):
        ids = np.asarray(image)
        check_ids(ids, labels, path)
        return LabelMap(ids.astype(id_dtype(labels.num_classes)), "index", 0)
    if image.mode not in ("RGB", "RGBA", "LA"):
        image = image.convert("RGB")
    ids, far_pixels = colors_to_ids(np.asarray(image.convert("RGB")), labels)
    return LabelMap(ids, "color", far_pixels)


def check_same_size(label_map: np.ndarray, map_path: Path, reference: np.ndarray, reference_path: Path) -> None:
    """Refuse an (H, W) label map whose size differs from its photo's or reference map's (H, W, ...)."""
    if label_map.shape[:2] != reference.shape[:2]:
        raise C2FError(f"{map_path} is {label_map.shape[1]}x{label_map.shape[0]} but {reference_path} is "
                       f"{reference.shape[1]}x{reference.shape[0]}; they must be the same size.")


def check_ids(ids: np.ndarray, labels: LabelSet, path: Path) -> None:
    if int(ids.min(initial=0)) < 0:  # only 32-bit TIFFs can hold these
        raise C2FError(f"{path}: {int((ids < 0).sum())} pixels hold negative class ids; "
                       "class ids run from 0 to the number of classes - 1.")
    largest = int(ids.max(initial=0))
    if largest >= labels.num_classes:
        count = int((ids >= labels.num_classes).sum())
        raise C2FError(
            f"{path}: {count} pixels hold class ids up to {largest}, but the label set has only "
            f"{labels.num_classes} classes (0..{labels.num_classes - 1}); pass the right --labels file."
        )


def label_map_image(class_ids: np.ndarray, labels: LabelSet, encoding: str) -> Image.Image:
    """Encode (H, W) class ids as a PIL image in one of ENCODINGS."""
    if encoding == "color":
        return Image.fromarray(labels.palette()[class_ids])
    if encoding == "palette":
        if labels.num_classes > 256:
            raise C2FError("a palette PNG holds at most 256 classes; use --format color or index.")
        image = Image.fromarray(class_ids.astype(np.uint8), mode="P")
        image.putpalette(labels.palette().ravel().tolist())
        return image
    if encoding == "index":
        if labels.num_classes > 256:
            return Image.fromarray(class_ids.astype(np.uint16))
        return Image.fromarray(class_ids.astype(np.uint8), mode="L")
    raise C2FError(f"unknown map format {encoding!r}; choose one of {', '.join(ENCODINGS)}.")


def write_label_map(path: Path, class_ids: np.ndarray, labels: LabelSet, encoding: str) -> None:
    """Write (H, W) class ids atomically in the given encoding."""
    save_image(label_map_image(class_ids, labels, encoding), path)
