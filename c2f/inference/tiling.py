"""Window grid, padding, blend weights and stitching: pure numpy geometry.

One tiling and one stitching path serve every backend and every worker: refine,
`c2f stitch` and anything computing windows elsewhere blend them with Stitcher,
which takes windows in row-major order and hands back finished, smoothed row
bands, so a photo's (K, H, W) probabilities never need to exist whole.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from c2f.inference.postprocess import blur_lines, class_ids, edge_padded, gaussian_kernel, is_smoothed


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


def padding_mode(size: tuple[int, ...], extra: list[tuple[int, int]]) -> str:
    """np.pad's mode for pad_image: reflection, or for tiny images a repetition that reaches far enough."""
    # Reflection needs a source at least as long as the padding; repeat for tiny images.
    mode = "reflect" if all(after < length for (_, after), length in zip(extra, size)) else "symmetric"
    if mode == "symmetric" and any(after > 2 * length for (_, after), length in zip(extra, size)):
        mode = "wrap"
    return mode


def pad_image(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Pad (H, W, ...) at the bottom and right to (height, width) by reflection."""
    extra = [(0, height - array.shape[0]), (0, width - array.shape[1])] + [(0, 0)] * (array.ndim - 2)
    if not any(after for _, after in extra):
        return array
    return np.pad(array, extra, mode=padding_mode(array.shape, extra))


class PaddedImage:
    """An (H, W, ...) image padded like pad_image to (height, width) without a padded copy: windows are cut on demand.

    Indexing with a (rows, columns) pair of slices gives what pad_image(array, height, width)[rows, columns]
    gives; windows inside the image are views, windows reaching into the padding are small copies.
    """

    def __init__(self, array: np.ndarray, height: int, width: int):
        self.array = array
        self.shape = (height, width, *array.shape[2:])
        extra = [(0, height - array.shape[0]), (0, width - array.shape[1])]
        mode = padding_mode(array.shape[:2], extra)
        # np.pad pads each axis independently, so padding the indices pads the image the same way.
        self.rows = np.pad(np.arange(array.shape[0]), extra[0], mode=mode)
        self.columns = np.pad(np.arange(array.shape[1]), extra[1], mode=mode)

    def __getitem__(self, index: tuple[slice, slice]) -> np.ndarray:
        rows, columns = index
        if rows.stop <= self.array.shape[0] and columns.stop <= self.array.shape[1]:
            return self.array[rows, columns]
        # two takes, one axis each: quicker than one np.ix_ index, the same pixels
        return self.array.take(self.rows[rows], axis=0).take(self.columns[columns], axis=1)


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
    """Blends windows arriving in row-major order into smoothed float32 (K, rows, W) bands of the image.

    Rows are finished (divided by their blend weights, cropped to the image) as soon as no
    later window can reach them, and blurred once the smoothing has their context on both
    sides, so memory holds a window's height of open rows and a band of finished ones, not
    the whole image. Every value equals what stitching the whole (K, H, W) array, cropping
    it and postprocess.smooth give: the same float operations on the same values, in the same order.
    """

    def __init__(self, num_classes: int, padded: tuple[int, int], size: tuple[int, int], overlap: int,
                 smoothing: float = 0.0):
        self.num_classes, self.padded_width = num_classes, padded[1]
        self.height, self.width = size
        self.overlap = overlap
        self.sums = np.zeros((num_classes, 0, padded[1]), np.float32)  # open rows; grows to the tallest window
        self.weights = np.zeros((0, padded[1]), np.float32)
        self.open_top = 0  # image row held in sums[:, 0]
        self.kernel = gaussian_kernel(smoothing) if is_smoothed(smoothing) else np.ones(1, np.float32)
        self.radius = len(self.kernel) - 1
        self.pending = np.empty((num_classes, 0, self.width), np.float32)  # finished rows awaiting blur context
        self.pending_top = 0  # image row held in pending[:, 0]
        self.emitted = 0  # rows [0, emitted) have been handed out
        self.uncovered = False  # whether some pixel of the image got no window (its probabilities are NaN)
        self._weight_cache: dict[tuple[int, int], np.ndarray] = {}

    def add(self, box: Box, probabilities: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """Blend in (K, h, w) probabilities of one window; return the (first row, band) pairs it completed."""
        if box.top < self.open_top:
            raise ValueError(f"windows must come in row-major order; a window at row {box.top} came after "
                             f"row {self.open_top} was finished")
        bands = self._finish_rows(box.top) if box.top > self.open_top else []
        if box.height > len(self.weights):  # the first window, or a taller one than before
            grow = box.height - len(self.weights)
            self.sums = np.concatenate([self.sums, np.zeros((self.num_classes, grow, self.padded_width),
                                                            np.float32)], axis=1)
            self.weights = np.concatenate([self.weights, np.zeros((grow, self.padded_width), np.float32)])
        size = (box.height, box.width)
        if size not in self._weight_cache:
            self._weight_cache[size] = blend_weight(*size, self.overlap)
        weight = self._weight_cache[size]
        rows, columns = slice(0, box.height), slice(box.left, box.left + box.width)
        self.sums[:, rows, columns] += probabilities * weight
        self.weights[rows, columns] += weight
        return bands

    def finish(self) -> list[tuple[int, np.ndarray]]:
        """The remaining bands, after the last window."""
        return self._finish_rows(max(self.open_top + len(self.weights), self.height))

    def _finish_rows(self, new_top: int) -> list[tuple[int, np.ndarray]]:
        """Rows [open_top, new_top) get no more windows: divide them, queue them, slide the open rows up."""
        count, held = new_top - self.open_top, min(new_top - self.open_top, len(self.weights))
        image_rows = max(0, min(count, self.height - self.open_top))  # rows below the image are padding
        if image_rows:
            # The finished rows are divided straight into the queue, grown by them: no copy of them on the way.
            queued = self.pending.shape[1]
            # NaN stays in the rows no window held.
            pending = np.full((self.num_classes, queued + image_rows, self.width), np.nan, np.float32)
            pending[:, :queued] = self.pending
            from_buffer = min(held, image_rows)
            with np.errstate(invalid="ignore", divide="ignore"):
                np.divide(self.sums[:, :from_buffer, :self.width], self.weights[:from_buffer, :self.width],
                          out=pending[:, queued:queued + from_buffer])
            self.uncovered |= from_buffer < image_rows or not self.weights[:from_buffer, :self.width].all()
            self.pending = pending
        remaining = len(self.weights) - held
        self.sums[:, :remaining] = self.sums[:, held:]
        self.weights[:remaining] = self.weights[held:]
        self.sums[:, remaining:] = 0
        self.weights[remaining:] = 0
        self.open_top = new_top
        return self._emit()

    def _emit(self) -> list[tuple[int, np.ndarray]]:
        """Blur every queued row whose blur context is complete; keep radius rows above the next band."""
        available = self.pending_top + self.pending.shape[1]  # rows [0, available) are finished
        end = self.height if available >= self.height else available - self.radius
        if end <= self.emitted:
            return []
        start, radius = self.emitted, self.radius
        band = self.pending[:, start - self.pending_top:end - self.pending_top].copy()
        if radius:
            # Rows start - radius .. end + radius - 1, clamped to the image: its edge rows repeated, as smooth pads.
            context = np.clip(np.arange(start - radius, end + radius), 0, self.height - 1) - self.pending_top
            for plane, source in zip(band, self.pending):
                plane[...] = blur_lines(plane, source[context], self.kernel)  # down the columns
                columns = plane.T  # then along the rows
                columns[...] = blur_lines(columns, edge_padded(columns, radius), self.kernel)
        self.emitted = end
        drop = max(0, end - radius - self.pending_top)
        self.pending = self.pending[:, drop:].copy()
        self.pending_top += drop
        return [(start, band)]


def stitched_bands(windows: Iterable[tuple[Box, np.ndarray]], stitcher: Stitcher) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, float32 (K, rows, W) probabilities) bands of the image, top to bottom, as windows complete them."""
    for box, probabilities in windows:
        yield from stitcher.add(box, probabilities)
    yield from stitcher.finish()


def stitch_class_ids(windows: Iterable[tuple[Box, np.ndarray]], stitcher: Stitcher) -> np.ndarray:
    """(H, W) class ids (uint8 up to 256 classes) of row-major windows: no (K, H, W) array is ever held."""
    ids = np.zeros((stitcher.height, stitcher.width), np.uint8 if stitcher.num_classes <= 256 else np.uint16)
    for top, band in stitched_bands(windows, stitcher):
        ids[top:top + band.shape[1]] = class_ids(band)
    return ids


def stitch_probabilities(windows: Iterable[tuple[Box, np.ndarray]], stitcher: Stitcher) -> np.ndarray:
    """float32 (K, H, W) smoothed probabilities of row-major windows (NaN where no window reached, before smoothing)."""
    probabilities = np.empty((stitcher.num_classes, stitcher.height, stitcher.width), np.float32)
    for top, band in stitched_bands(windows, stitcher):
        probabilities[:, top:top + band.shape[1]] = band
    return probabilities


def stitch_windows(windows: Iterable[tuple[Box, np.ndarray]], num_classes: int,
                   height: int, width: int, overlap: int) -> np.ndarray:
    """Blend row-major (box, (K, h, w) probabilities) pairs into float32 (K, height, width), unsmoothed."""
    return stitch_probabilities(windows, Stitcher(num_classes, (height, width), (height, width), overlap))


def batched(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]
