"""The one path from a photo and its coarse map to stitched, smoothed class probabilities.

Small images go through the network in one pass, larger ones in overlapping
windows, cut on demand from the reflection-padded photo; either way the windows
are blended and smoothed in row bands by tiling.Stitcher, whatever the predictor,
so a big photo's memory holds its windows' rows, not its (K, H, W) probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from c2f.config import SIZE_MULTIPLE, WindowSettings, input_channels
from c2f.inference.network_input import fill_unannotated, network_input
from c2f.inference.postprocess import softmax
from c2f.inference.predictor import Predictor
from c2f.inference.tiling import (
    Box,
    PaddedImage,
    Stitcher,
    batched,
    padded_size,
    plan_windows,
    stitch_class_ids,
    stitch_probabilities,
)
from c2f.inference.windows_folder import new_manifest, save_windows
from c2f.io.label_sets import LabelSet


def predict_boxes(predictor: Predictor, photo: np.ndarray, coarse: np.ndarray | None, num_classes: int,
                  boxes: list[Box], batch_size: int,
                  on_batch: Callable[[int, int], None] | None = None) -> Iterator[tuple[Box, np.ndarray]]:
    """Yield (box, (K, h, w) probabilities) for the given windows of an already padded image, in their order."""
    done = 0
    channels = input_channels(num_classes, coarse is not None)
    for batch in batched(boxes, batch_size):
        # The batch is filled in place, one slot per window (same size: windows of one padded image)
        inputs = np.empty((len(batch), channels, batch[0].height, batch[0].width), np.float32)
        for slot, box in zip(inputs, batch):
            network_input(photo[box.slices()], None if coarse is None else coarse[box.slices()], num_classes, slot)
        probabilities = softmax(np.asarray(predictor(inputs), dtype=np.float32))
        for box, window_probabilities in zip(batch, probabilities):
            yield box, window_probabilities
        done += len(batch)
        if on_batch:
            on_batch(done, len(boxes))


def predict_windows(predictor: Predictor, photo: np.ndarray, coarse: np.ndarray | None, num_classes: int,
                    window: int, overlap: int, batch_size: int,
                    on_batch: Callable[[int, int], None] | None = None) -> Iterator[tuple[Box, np.ndarray]]:
    """Yield (box, (K, h, w) probabilities) for every window of an already padded image."""
    boxes = plan_windows(photo.shape[0], photo.shape[1], window, overlap)
    return predict_boxes(predictor, photo, coarse, num_classes, boxes, batch_size, on_batch)


def goes_whole(height: int, width: int, settings: WindowSettings) -> bool:
    """Whether an image of this size goes through the network in one pass rather than in windows."""
    padded_height, padded_width = padded_size(height, width, 1, SIZE_MULTIPLE)
    return settings.whole_image or padded_height * padded_width <= settings.whole_image_max_pixels


@dataclass(frozen=True)
class WindowLayout:
    """How an image of a given size is cut: its padded size, window side, overlap and windows per call."""

    padded: tuple[int, int]
    window: int
    overlap: int
    batch_size: int

    def boxes(self) -> list[Box]:
        """Every window, in the order refine computes and stitches them."""
        return plan_windows(*self.padded, self.window, self.overlap)


def window_layout(height: int, width: int, settings: WindowSettings) -> WindowLayout:
    """The layout of an image: one pass over the whole (padded) image when it is small, else overlapping windows."""
    if goes_whole(height, width, settings):
        padded = padded_size(height, width, 1, SIZE_MULTIPLE)
        return WindowLayout(padded, max(padded), 0, 1)
    padded = padded_size(height, width, settings.window, SIZE_MULTIPLE)
    return WindowLayout(padded, settings.window, settings.overlap, settings.batch_size)


def padded_inputs(photo: np.ndarray, coarse: np.ndarray | None, layout: WindowLayout,
                  num_classes: int) -> tuple[PaddedImage, PaddedImage | None]:
    """The photo and coarse ids padded by reflection to the layout's size, as views cutting windows on demand;
    unannotated coarse pixels take their nearest annotated class first (network_input.fill_unannotated)."""
    return (PaddedImage(photo, *layout.padded),
            None if coarse is None else PaddedImage(fill_unannotated(coarse, num_classes), *layout.padded))


def refine_windows(predictor: Predictor, photo: np.ndarray, coarse: np.ndarray | None, num_classes: int,
                   settings: WindowSettings, on_batch: Callable[[int, int], None] | None = None
                   ) -> tuple[Iterator[tuple[Box, np.ndarray]], tuple[int, int], int]:
    """Windows' probabilities for a photo, the padded size they tile, and their overlap.

    photo is uint8 (H, W, 3); coarse is (H, W) class ids, or None for RGB-only models.
    """
    layout = window_layout(*photo.shape[:2], settings)
    windows = predict_boxes(predictor, *padded_inputs(photo, coarse, layout, num_classes), num_classes, layout.boxes(),
                            layout.batch_size, on_batch)
    return windows, layout.padded, layout.overlap


def refined_windows(predictor: Predictor, photo: np.ndarray, coarse: np.ndarray | None, num_classes: int,
                    settings: WindowSettings, on_batch: Callable[[int, int], None] | None = None,
                    windows_dir: Path | None = None, labels: LabelSet | None = None
                    ) -> tuple[Iterator[tuple[Box, np.ndarray]], Stitcher]:
    """A photo's windows in row-major order (saved as they pass when windows_dir is given) and their Stitcher."""
    windows, padded, overlap = refine_windows(predictor, photo, coarse, num_classes, settings, on_batch)
    if windows_dir is not None:
        manifest = new_manifest(photo.shape[:2], padded, overlap, num_classes, settings.smoothing, labels)
        windows = save_windows(windows, Path(windows_dir), manifest)
    return windows, Stitcher(num_classes, padded, photo.shape[:2], overlap, settings.smoothing)


def refine_probabilities(predictor: Predictor, photo: np.ndarray, coarse: np.ndarray | None, num_classes: int,
                         settings: WindowSettings = WindowSettings(),
                         on_batch: Callable[[int, int], None] | None = None,
                         windows_dir: Path | None = None, labels: LabelSet | None = None) -> np.ndarray:
    """float32 (K, H, W) stitched and smoothed probabilities; windows are also saved when windows_dir is given."""
    return stitch_probabilities(*refined_windows(predictor, photo, coarse, num_classes, settings, on_batch,
                                                 windows_dir, labels))


def refine_map(predictor: Predictor, photo: np.ndarray, coarse: np.ndarray | None, num_classes: int,
               settings: WindowSettings = WindowSettings(), on_batch: Callable[[int, int], None] | None = None,
               windows_dir: Path | None = None, labels: LabelSet | None = None) -> np.ndarray:
    """Fine class ids (H, W) for one photo and its coarse map, stitched in row bands (no (K, H, W) array)."""
    return stitch_class_ids(*refined_windows(predictor, photo, coarse, num_classes, settings, on_batch,
                                             windows_dir, labels))
