"""From logits to class ids: softmax, Gaussian smoothing of probabilities, argmax. Pure numpy."""

from __future__ import annotations

import math

import numpy as np

from c2f.config import MIN_SMOOTHING


def softmax(logits: np.ndarray, axis: int = 1) -> np.ndarray:
    """Numerically stable softmax over the class axis, in place on float32 logits."""
    logits -= logits.max(axis=axis, keepdims=True)
    np.exp(logits, out=logits)
    logits /= logits.sum(axis=axis, keepdims=True)
    return logits


def class_ids(probabilities: np.ndarray) -> np.ndarray:
    """(H, W) class ids of float32 (K, H, W) probabilities; ties go to the lower class, as with argmax."""
    # A loop over classes instead of argmax(axis=0), which copies a cropped (K, H, W)
    # view whole (0.6 GB for a 6000 x 4000 photo) and is slower even for a small face.
    ids = np.zeros(probabilities.shape[1:], dtype=np.uint8 if len(probabilities) <= 256 else np.uint16)
    best = probabilities[0].copy()
    for class_id in range(1, len(probabilities)):
        np.copyto(ids, class_id, where=probabilities[class_id] > best)
        np.maximum(best, probabilities[class_id], out=best)
    return ids


def gaussian_kernel(sigma: float) -> np.ndarray:
    """Half of a normalised float32 Gaussian, centre first: weights for offsets 0..radius (radius = ceil(2.5 sigma))."""
    radius = math.ceil(2.5 * sigma)  # the tails beyond hold 1 % of the weight
    kernel = np.exp(-np.arange(radius + 1) ** 2 / (2 * sigma**2)).astype(np.float32)
    kernel /= 2 * kernel.sum() - kernel[0]
    return kernel


def blur_lines(lines: np.ndarray, padded: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Blur float32 lines (n, ...) along axis 0; padded (n + 2 radius, ...) holds them with radius lines each side."""
    radius, length = len(kernel) - 1, lines.shape[0]
    blurred = kernel[0] * lines
    pair = np.empty_like(lines)
    for offset in range(1, radius + 1):  # the kernel is symmetric: add each pair, then weigh it once
        before, after = radius - offset, radius + offset
        np.add(padded[before:before + length], padded[after:after + length], out=pair)
        pair *= kernel[offset]
        blurred += pair
    return blurred


def edge_padded(lines: np.ndarray, radius: int) -> np.ndarray:
    """lines (n, ...) with its first and last line repeated radius times before and after."""
    return np.concatenate([lines[:1].repeat(radius, axis=0), lines, lines[-1:].repeat(radius, axis=0)])


def smooth(probabilities: np.ndarray, sigma: float) -> np.ndarray:
    """Blur each class plane of float32 (K, H, W) probabilities in place by a Gaussian (edges repeated)."""
    # scipy.ndimage.gaussian_filter does the same, but importing scipy would add more to refine's
    # start-up than this blur costs a face; c2f does not depend on scipy otherwise.
    if not is_smoothed(sigma):
        return probabilities
    kernel = gaussian_kernel(sigma)
    radius = len(kernel) - 1
    for plane in probabilities:  # one class at a time, so a huge photo needs only a few planes of memory
        for lines in (plane, plane.T):  # blur along axis 0 of each: down the columns, then along the rows
            lines[...] = blur_lines(lines, edge_padded(lines, radius), kernel)
    return probabilities


def is_smoothed(sigma: float) -> bool:
    """Whether a smoothing sigma blurs at all: 0 (off), and NaN, leave probabilities alone."""
    return sigma >= MIN_SMOOTHING
