"""Coarse label maps made from fine ones the way people draw them: few-vertex polygons, small regions left out,
shaky vertices and, in Cityscapes' coarse style, unannotated bands along class boundaries."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from collections.abc import Collection, Sequence

import cv2
import numpy as np

from c2f.errors import C2FError
from c2f.io.polygons import Shape, rasterize, trace_regions
from c2f.training.samples import LoadedSample


@dataclass(frozen=True)
class CoarsenSettings:
    """Ranges, each (low, high), from which every coarse map draws its own settings."""

    tolerance: tuple[float, float] = (4.0, 32.0)  # px a simplified outline may stray from the true one
    min_area: tuple[float, float] = (50.0, 400.0)  # px below which a region is left out and filled by its surroundings
    jitter: tuple[float, float] = (0.0, 3.0)  # px standard deviation of each vertex's shake
    band: tuple[float, float] = (0.0, 0.0)  # px width of unannotated bands along class boundaries (needs an ignore value)


def parse_coarsen_spec(text: str) -> CoarsenSettings:
    """Read settings like "tolerance=4:32,min_area=50:400,jitter=0:3,band=0:8"; a single number fixes a setting."""
    known = {setting.name for setting in fields(CoarsenSettings)}
    changes = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        key, equals, value = (part.strip() for part in item.partition("="))
        if key not in known or not equals:
            raise C2FError(f"coarsen setting {item!r} is not KEY=LOW:HIGH with KEY one of {', '.join(sorted(known))}")
        bounds = value.split(":")
        try:
            low, high = (float(bounds[0]), float(bounds[-1])) if len(bounds) <= 2 else (None, None)
        except ValueError:
            low = high = None
        if low is None or not np.isfinite([low, high]).all():
            raise C2FError(f"coarsen setting {key}={value!r} needs a number or LOW:HIGH, e.g. {key}=2:8")
        if low < 0 or low > high:
            raise C2FError(f"coarsen setting {key}={value!r} needs 0 <= LOW <= HIGH")
        changes[key] = (low, high)
    return replace(CoarsenSettings(), **changes)


def nearest_fill(values: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """Give each missing pixel of an int32 (H, W) map the value of its nearest present pixel."""
    if not missing.any() or missing.all():
        return values
    # DIST_LABEL_PIXEL numbers the present (zero) pixels 1, 2, ... in row-major order
    _, nearest = cv2.distanceTransformWithLabels(missing.astype(np.uint8), cv2.DIST_L2, 3,
                                                 labelType=cv2.DIST_LABEL_PIXEL)
    present_values = values[~missing]
    return present_values[nearest - 1]


def without_slivers(shapes: list[Shape], min_area: float) -> list[Shape]:
    """The shapes whose simplified outline still covers half of min_area px, with the holes that do: simplifying a
    thin region within a large tolerance leaves a line, which nobody draws."""
    # half: a ring runs through its border pixels' centres, so a small square's ring encloses well under its pixels
    least = min_area / 2
    kept = []
    for shape in shapes:
        areas = [cv2.contourArea(ring.astype(np.float32)) for ring in shape.rings]
        if areas and areas[0] >= least:
            shape.rings = [shape.rings[0]] + [ring for ring, area in zip(shape.rings[1:], areas[1:]) if area >= least]
            kept.append(shape)
    return kept


def boundary_band(values: np.ndarray, width: float) -> np.ndarray:
    """Boolean (H, W) pixels within width / 2 px of a boundary between different values."""
    boundary = np.zeros(values.shape, dtype=bool)
    horizontal = values[:, 1:] != values[:, :-1]
    vertical = values[1:, :] != values[:-1, :]
    boundary[:, 1:] |= horizontal
    boundary[:, :-1] |= horizontal
    boundary[1:, :] |= vertical
    boundary[:-1, :] |= vertical
    distance = cv2.distanceTransform((~boundary).astype(np.uint8), cv2.DIST_L2, 3)
    return distance < width / 2


def coarsen(fine: np.ndarray, settings: CoarsenSettings, rng: np.random.Generator, ignore_value: int | None = None,
            skip_values: Collection[int] = ()) -> np.ndarray:
    """A coarse version of an (H, W) integer class map, same shape and dtype; skip_values pixels become ignore_value
    (or keep their value when ignore_value is None)."""
    if fine.ndim != 2 or fine.size == 0 or not np.issubdtype(fine.dtype, np.integer):
        raise C2FError(f"coarsen needs a non-empty (H, W) integer class map, not {fine.dtype} {fine.shape}")
    if fine.min() < 0:
        raise C2FError("coarsen needs class ids >= 0")
    tolerance, min_area, jitter, band = (rng.uniform(*getattr(settings, setting.name))
                                         for setting in fields(CoarsenSettings))
    names = [str(value) for value in range(int(fine.max()) + 1)]
    label_ids = {name: value for value, name in enumerate(names)}
    skip = set(int(value) for value in skip_values)
    shapes = trace_regions(fine, names, tolerance, skip_ids=skip, min_area=int(min_area))
    if not shapes:  # every region was small: keep the largest rather than annotate nothing
        shapes = trace_regions(fine, names, tolerance, skip_ids=skip)[:1]
    shapes = without_slivers(shapes, min_area) or shapes[:1]
    for shape in shapes:
        shape.rings = [ring + rng.normal(0.0, jitter, ring.shape) for ring in shape.rings] if jitter > 0 else shape.rings
    missing_value = -1
    coarse = rasterize(shapes, *fine.shape, label_ids, fill=missing_value, dtype=np.int32)
    coarse = nearest_fill(coarse, coarse == missing_value)
    if ignore_value is not None and band > 0:
        coarse[boundary_band(coarse, band)] = ignore_value
    void = np.isin(fine, list(skip))
    coarse[void] = ignore_value if ignore_value is not None else fine[void]
    return coarse.astype(fine.dtype)


def draw_coarse_maps(samples: list[LoadedSample], settings: CoarsenSettings, num_classes: int, seed: Sequence[int],
                     redraw_all: bool = False) -> list[LoadedSample]:
    """The samples with coarse maps drawn from their fine ones (those without a coarse map, or all when redraw_all),
    sample i's from a generator seeded by (*seed, i), so the same seed draws the same maps."""
    drawn = []
    for index, sample in enumerate(samples):
        if sample.fine is None or (sample.coarse is not None and not redraw_all):
            drawn.append(sample)
            continue
        rng = np.random.default_rng([*seed, index])
        # value num_classes: ignored in the fine map, not annotated in the coarse one (and its bands)
        coarse = coarsen(sample.fine, settings, rng, ignore_value=num_classes, skip_values=(num_classes,))
        drawn.append(replace(sample, coarse=coarse))
    return drawn
