"""What the network sees: a normalised photo and the one-hot coarse map, as float32 (C, h, w)."""

from __future__ import annotations

import numpy as np

# Photos are scaled to roughly zero mean and unit spread so the network sees
# the same range whatever the camera.
PHOTO_MEAN = 127.5
PHOTO_SPREAD = 64.0


def network_input(photo: np.ndarray, coarse: np.ndarray | None, num_classes: int) -> np.ndarray:
    """float32 (C, h, w) input: normalised RGB, then the one-hot coarse map if given.

    photo is uint8 (h, w, 3); coarse is (h, w) class ids or None for RGB-only models.
    """
    channels = 3 + (num_classes if coarse is not None else 0)
    result = np.empty((channels, *photo.shape[:2]), dtype=np.float32)
    np.subtract(photo.transpose(2, 0, 1), PHOTO_MEAN, out=result[:3], dtype=np.float32)
    result[:3] /= PHOTO_SPREAD
    if coarse is not None:
        for class_id in range(num_classes):
            np.equal(coarse, class_id, out=result[3 + class_id], casting="unsafe")
    return result
