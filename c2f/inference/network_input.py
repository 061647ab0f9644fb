"""What the network sees: a normalised photo and the one-hot coarse map, as float32 (C, h, w)."""

from __future__ import annotations

import numpy as np

from c2f.config import input_channels

# Photos are scaled to roughly zero mean and unit spread so the network sees
# the same range whatever the camera.
PHOTO_MEAN = 127.5
PHOTO_SPREAD = 64.0


def network_input(photo: np.ndarray, coarse: np.ndarray | None, num_classes: int,
                  out: np.ndarray | None = None) -> np.ndarray:
    """float32 (C, h, w) input: normalised RGB, then the one-hot coarse map if given; written into out if given
    (a batch's slot, so that no stacking copies it again).

    photo is uint8 (h, w, 3); coarse is (h, w) class ids or None for RGB-only models.
    """
    shape = (input_channels(num_classes, coarse is not None), *photo.shape[:2])
    if out is not None and (out.shape != shape or out.dtype != np.float32):
        raise ValueError(f"network_input needs a float32 {shape} out, not {out.dtype} {out.shape}")
    result = np.empty(shape, dtype=np.float32) if out is None else out
    np.subtract(photo.transpose(2, 0, 1), PHOTO_MEAN, out=result[:3], dtype=np.float32)
    result[:3] /= PHOTO_SPREAD
    if coarse is not None:
        for class_id in range(num_classes):
            np.equal(coarse, class_id, out=result[3 + class_id], casting="unsafe")
    return result


def fill_unannotated(coarse: np.ndarray, num_classes: int) -> np.ndarray:
    """(H, W) class ids with every "not annotated" pixel (id num_classes) given its nearest annotated pixel's class.

    Chosen by measurement over showing the network no class there (an all-zero one-hot), which it
    handles far worse; benchmarks/void_bands.py measures what void bands cost with the filling. A map
    without such pixels, or with nothing annotated at all, is returned as it is.
    """
    unannotated = coarse >= num_classes
    if not unannotated.any() or unannotated.all():
        return coarse
    import cv2  # here, not at the top: most maps have no such pixels, and OpenCV adds to refine's start-up

    # OpenCV labels every annotated (zero) pixel and gives each other pixel the label of its nearest one.
    _, nearest = cv2.distanceTransformWithLabels(unannotated.astype(np.uint8), cv2.DIST_L2, 5,
                                                 labelType=cv2.DIST_LABEL_PIXEL)
    class_of_label = np.zeros(int(nearest.max()) + 1, dtype=coarse.dtype)
    class_of_label[nearest[~unannotated]] = coarse[~unannotated]
    return class_of_label[nearest]
