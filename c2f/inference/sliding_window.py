"""The one path from a photo and its coarse map to stitched, smoothed class probabilities.

Small images go through the network in one pass, larger ones in overlapping
windows; either way the windows are blended by tiling.Stitcher and smoothed by
postprocess.smooth, whatever the predictor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from c2f.config import SIZE_MULTIPLE, WindowSettings
from c2f.inference.network_input import network_input
from c2f.inference.postprocess import class_ids, smooth, softmax
from c2f.inference.predictor import Predictor
from c2f.inference.tiling import (
    Box,
    batched,
    pad_image,
    padded_size,
    plan_windows,
    stitch_windows,
)
from c2f.inference.windows_folder import new_manifest, save_windows
from c2f.io.label_sets import LabelSet


def predict_windows(predictor: Predictor, photo: np.ndarray, coarse: np.ndarray | None, num_classes: int,
                    window: int, overlap: int, batch_size: int,
                    on_batch: Callable[[int, int], None] | None = None) -> Iterator[tuple[Box, np.ndarray]]:
    """Yield (box, (K, h, w) probabilities) for every window of an already padded image."""
    boxes = plan_windows(photo.shape[0], photo.shape[1], window, overlap)
    done = 0
    for batch in batched(boxes, batch_size):
        inputs = np.stack([
            network_input(photo[box.slices()], None if coarse is None else coarse[box.slices()], num_classes)
            for box in batch
        ])
        probabilities = softmax(np.asarray(predictor(inputs), dtype=np.float32))
        for box, window_probabilities in zip(batch, probabilities):
            yield box, window_probabilities
        done += len(batch)
        if on_batch:
            on_batch(done, len(boxes))


def goes_whole(height: int, width: int, settings: WindowSettings) -> bool:
    """Whether an image of this size goes through the network in one pass rather than in windows."""
    padded_height, padded_width = padded_size(height, width, 1, SIZE_MULTIPLE)
    return settings.whole_image or padded_height * padded_width <= settings.whole_image_max_pixels


def refine_windows(predictor: Predictor, photo: np.ndarray, coarse: np.ndarray | None, num_classes: int,
                   settings: WindowSettings, on_batch: Callable[[int, int], None] | None = None
                   ) -> tuple[Iterator[tuple[Box, np.ndarray]], tuple[int, int], int]:
    """Windows' probabilities for a photo, the padded size they tile, and their overlap.

    photo is uint8 (H, W, 3); coarse is (H, W) class ids, or None for RGB-only models.
    """
    height, width = photo.shape[:2]
    if goes_whole(height, width, settings):
        padded = padded_size(height, width, 1, SIZE_MULTIPLE)
        window, overlap, batch_size = max(padded), 0, 1
    else:
        padded = padded_size(height, width, settings.window, SIZE_MULTIPLE)
        window, overlap, batch_size = settings.window, settings.overlap, settings.batch_size
    padded_photo = pad_image(photo, *padded)
    padded_coarse = None if coarse is None else pad_image(coarse, *padded)
    windows = predict_windows(predictor, padded_photo, padded_coarse, num_classes, window, overlap,
                              batch_size, on_batch)
    return windows, padded, overlap


def refine_probabilities(predictor: Predictor, photo: np.ndarray, coarse: np.ndarray | None, num_classes: int,
                         settings: WindowSettings = WindowSettings(),
                         on_batch: Callable[[int, int], None] | None = None,
                         windows_dir: Path | None = None, labels: LabelSet | None = None) -> np.ndarray:
    """float32 (K, H, W) stitched and smoothed probabilities; windows are also saved when windows_dir is given."""
    windows, padded, overlap = refine_windows(predictor, photo, coarse, num_classes, settings, on_batch)
    if windows_dir is not None:
        manifest = new_manifest(photo.shape[:2], padded, overlap, num_classes, settings.smoothing, labels)
        windows = save_windows(windows, Path(windows_dir), manifest)
    probabilities = stitch_windows(windows, num_classes, *padded, overlap)
    return smooth(probabilities[:, :photo.shape[0], :photo.shape[1]], settings.smoothing)


def refine_map(predictor: Predictor, photo: np.ndarray, coarse: np.ndarray | None, num_classes: int,
               settings: WindowSettings = WindowSettings()) -> np.ndarray:
    """Fine class ids (H, W) for one photo and its coarse map."""
    return class_ids(refine_probabilities(predictor, photo, coarse, num_classes, settings))
