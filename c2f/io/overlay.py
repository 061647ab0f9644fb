"""A check image for people: photo, coarse map, refined map and what changed, side by side.

Pure numpy and PIL. Panels left to right: the photo; the coarse map; the refined
map; the photo dimmed to grey with every pixel whose class changed painted in a
colour that no class uses. Large images are shrunk so the strip stays easy to
open, keeping every changed pixel visible.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from c2f.errors import C2FError
from c2f.io.files import save_image
from c2f.io.label_sets import LabelSet

MAX_PANEL_SIDE = 1024  # panels larger than this are shrunk by a whole factor
GAP = 4  # white pixels between panels
CAPTION_HEIGHT = 16  # pixels of caption strip above the panels
# Highlight candidates, most striking first; the one farthest from every class colour wins.
HIGHLIGHT_CANDIDATES = ((255, 0, 255), (255, 255, 255), (255, 128, 0), (0, 0, 0), (128, 0, 255), (0, 128, 128))


def highlight_color(labels: LabelSet) -> np.ndarray:
    """uint8 (3,) colour for changed pixels, as far as possible from every class colour."""
    candidates = np.array(HIGHLIGHT_CANDIDATES, dtype=np.float32)
    palette = labels.palette().astype(np.float32)
    distances = np.linalg.norm(candidates[:, None, :] - palette[None, :, :], axis=2).min(axis=1)
    # Ties keep the earlier (more striking) candidate because argmax returns the first maximum.
    return np.array(HIGHLIGHT_CANDIDATES[int(distances.argmax())], dtype=np.uint8)


def shrink_factor(height: int, width: int, max_side: int = MAX_PANEL_SIDE) -> int:
    """Smallest whole factor that brings the larger side down to max_side or below."""
    return max(1, -(-max(height, width) // max_side))


def shrink_mask(mask: np.ndarray, factor: int) -> np.ndarray:
    """bool (ceil(H/f), ceil(W/f)): a block is set when any of its pixels is, so thin changes stay visible."""
    if factor == 1:
        return mask
    height, width = mask.shape
    padded = np.zeros((-(-height // factor) * factor, -(-width // factor) * factor), dtype=bool)
    padded[:height, :width] = mask
    return padded.reshape(padded.shape[0] // factor, factor, padded.shape[1] // factor, factor).any(axis=(1, 3))


def overlay_panels(photo: np.ndarray, coarse_ids: np.ndarray, fine_ids: np.ndarray,
                   labels: LabelSet) -> list[np.ndarray]:
    """The four uint8 (h, w, 3) panels: photo, coarse colours, fine colours, changed pixels over grey photo.

    photo is uint8 (H, W, 3); coarse_ids and fine_ids are (H, W) class ids in [0, K).
    """
    if not (photo.shape[:2] == coarse_ids.shape == fine_ids.shape):
        raise C2FError(f"overlay: photo {photo.shape[:2]}, coarse {coarse_ids.shape} and refined "
                       f"{fine_ids.shape} maps differ in size.")
    factor = shrink_factor(*coarse_ids.shape)
    changed = shrink_mask(coarse_ids != fine_ids, factor)
    size = changed.shape[::-1]  # PIL wants (width, height)
    small_photo = np.asarray(Image.fromarray(photo).resize(size, Image.BOX)) if factor > 1 else photo
    palette = labels.display_palette()  # coarse maps may hold K, 'not annotated'
    coarse_colors = palette[coarse_ids[::factor, ::factor]]
    fine_colors = palette[fine_ids[::factor, ::factor]]
    grey = small_photo.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    dimmed = np.repeat((grey * 0.5 + 64).astype(np.uint8)[:, :, None], 3, axis=2)
    dimmed[changed] = highlight_color(labels)
    return [small_photo, coarse_colors, fine_colors, dimmed]


def overlay_image(photo: np.ndarray, coarse_ids: np.ndarray, fine_ids: np.ndarray, labels: LabelSet) -> Image.Image:
    """The side-by-side check image as an RGB PIL image with a caption above each panel."""
    panels = overlay_panels(photo, coarse_ids, fine_ids, labels)
    height, width = panels[0].shape[:2]
    canvas = np.full((CAPTION_HEIGHT + height, len(panels) * width + (len(panels) - 1) * GAP, 3), 255, np.uint8)
    for index, panel in enumerate(panels):
        left = index * (width + GAP)
        canvas[CAPTION_HEIGHT:, left:left + width] = panel
    image = Image.fromarray(canvas)
    changed_share = float((coarse_ids != fine_ids).mean()) if coarse_ids.size else 0.0
    captions = ("photo", "coarse", "refined", f"changed {changed_share:.1%}")
    draw = ImageDraw.Draw(image)
    for index, caption in enumerate(captions):
        draw.text((index * (width + GAP) + 2, 2), caption, fill=(0, 0, 0))
    return image


def write_overlay(path: Path, photo: np.ndarray, coarse_ids: np.ndarray, fine_ids: np.ndarray,
                  labels: LabelSet) -> None:
    """Write the check image atomically (PNG unless the suffix names another format)."""
    save_image(overlay_image(photo, coarse_ids, fine_ids, labels), Path(path))
