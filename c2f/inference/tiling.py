"""Window grid, padding, blend weights and stitching: pure numpy geometry.

One tiling and one stitching path serve every backend and every worker: refine,
`c2f stitch` and anything computing windows elsewhere blend them with Stitcher.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np


@dataclass(frozen=True)
class Box:
    """A window: top-left corner and size, in pixels of the (padded) image."""

    top: int
    left: int
    height: int
    width: int

    def slices(self) -> tuple[slice, slice]:
        return slice(self.top, self.top + self.height), slice(self.left, self.left + self.width)


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Window starts covering [0, length): evenly strided, the last flush with the end."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window, stride))
    return starts + [length - window]


def plan_windows(height: int, width: int, window: int, overlap: int) -> list[Box]:
    """All windows covering an image of at least window x window pixels."""
    if not 0 <= overlap < window:
        raise ValueError(f"overlap must be in [0, {window}), got {overlap}")
    stride = window - overlap
    return [
        Box(top, left, min(window, height), min(window, width))
        for top in window_starts(height, window, stride)
        for left in window_starts(width, window, stride)
    ]


def padded_size(height: int, width: int, window: int, multiple: int) -> tuple[int, int]:
    """Smallest size >= the image that fits a window and is a multiple of `multiple`."""
    def round_up(value: int) -> int:
        return -(-max(value, window) // multiple) * multiple
    return round_up(height), round_up(width)


def pad_image(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pad (H, W, ...) at the bottom and right to (height, width) by reflection."""
    extra = [(0, height - array.shape[0]), (0, width - array.shape[1])] + [(0, 0)] * (array.ndim - 2)
    if not any(after for _, after in extra):
        return array
    # Reflection needs a source at least as long as the padding; repeat for tiny images.
    mode = "reflect" if all(after < size for (_, after), size in zip(extra, array.shape)) else "symmetric"
    if mode == "symmetric" and any(after > 2 * size for (_, after), size in zip(extra, array.shape)):
        mode = "wrap"
    return np.pad(array, extra, mode=mode)


def blend_weight(height: int, width: int, overlap: int) -> np.ndarray:
    """float32 (h, w) weight: 1 inside, ramping smoothly down over `overlap` pixels at the edges.

    Neighbouring windows fade into each other instead of meeting at a hard line, so
    the stitched map shows no seams or "crosses". The ramp never reaches zero, so a
    pixel covered by one window alone keeps that window's prediction exactly.
    """
    def ramp(length: int) -> np.ndarray:
        distance_to_edge = np.minimum(np.arange(length), np.arange(length)[::-1]) + 0.5
        if overlap == 0:
            return np.ones(length, np.float32)
        fraction = np.clip(distance_to_edge / overlap, 0, 1)
        return (0.01 + 0.99 * np.sin(fraction * np.pi / 2) ** 2).astype(np.float32)
    return np.outer(ramp(height), ramp(width))


class Stitcher:
    """Accumulates weighted window probabilities into one (K, H, W) map."""

    def __init__(self, num_classes: int, height: int, width: int, overlap: int):
        self.overlap = overlap
        self.sums = np.zeros((num_classes, height, width), dtype=np.float32)
        self.weights = np.zeros((height, width), dtype=np.float32)
        self._weight_cache: dict[tuple[int, int], np.ndarray] = {}

    def add(self, box: Box, probabilities: np.ndarray) -> None:
        """Blend in (K, h, w) probabilities of one window."""
        size = (box.height, box.width)
        if size not in self._weight_cache:
            self._weight_cache[size] = blend_weight(*size, self.overlap)
        weight = self._weight_cache[size]
        rows, columns = box.slices()
        self.sums[:, rows, columns] += probabilities * weight
        self.weights[rows, columns] += weight

    def probabilities(self) -> np.ndarray:
        """The blended float32 (K, H, W) probabilities (NaN where no window reached); call once, after the last add.

        The sums are divided in place: for a 6000 x 4000 photo a second (K, H, W)
        array would add 0.6 GB to the peak memory.
        """
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.divide(self.sums, self.weights, out=self.sums)


def stitch_windows(windows: Iterable[tuple[Box, np.ndarray]], num_classes: int,
                   height: int, width: int, overlap: int) -> np.ndarray:
    """Blend (box, (K, h, w) probabilities) pairs into float32 (K, height, width)."""
    stitcher = Stitcher(num_classes, height, width, overlap)
    for box, probabilities in windows:
        stitcher.add(box, probabilities)
    return stitcher.probabilities()


def batched(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
