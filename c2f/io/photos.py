"""Reading photos: any 8- or 16-bit raster Pillow decodes, as uint8 (H, W, 3) RGB."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from c2f.errors import C2FError


def open_image(path: Path) -> Image.Image:
    """Open and fully decode an image, turning every failure into a C2FError."""
    path = Path(path)
    if not path.is_file():
        raise C2FError(f"file not found: {path}")
    try:
        with Image.open(path) as image:
            image.load()
            return image
    except UnidentifiedImageError:
        raise C2FError(f"{path} is not an image c2f can read (PNG, BMP, JPEG, TIFF...).") from None
    except (OSError, ValueError, SyntaxError) as error:
        raise C2FError(f"{path} is truncated or corrupt ({error}); re-export it.") from None
    except Image.DecompressionBombError as error:
        raise C2FError(f"{path} is too large to decode safely ({error}).") from None


# What read_photo does to photos that are not 8-bit RGB, in words for the user.
PHOTO_CONVERSIONS = {
    "1": "black-and-white; read as grey RGB", "L": "greyscale; read as grey RGB",
    "LA": "greyscale with transparency; transparency dropped", "P": "a palette image; converted to RGB",
    "PA": "a palette image with transparency; converted to RGB", "RGBA": "RGBA; transparency dropped",
    "I;16": "16-bit greyscale; scaled to 8-bit grey RGB", "I": "32-bit greyscale; scaled to 8-bit grey RGB",
    "CMYK": "CMYK; converted to RGB", "YCbCr": "YCbCr; converted to RGB",
}


def read_photo(path: Path) -> np.ndarray:
    """Read a photo as uint8 (H, W, 3) RGB; grey, RGBA, palette, CMYK and 16-bit are converted, float refused."""
    image = open_image(path)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        values = np.asarray(image, dtype=np.int64)
        scale = 257 if values.max(initial=0) > 255 else 1  # 16-bit range to 8-bit
        grey = np.clip(values // scale, 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if image.mode == "F":
        raise C2FError(f"{path} holds floating-point pixels, which c2f cannot read as a photo; "
                       "save it as an 8- or 16-bit image.")
    try:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (ValueError, OSError) as error:
        raise C2FError(f"{path} uses colour mode {image.mode}, which c2f cannot convert to RGB ({error}); "
                       "save it as an 8-bit RGB image.") from None


def photo_note(path: Path) -> str | None:
    """How read_photo converts this photo, in words for the user; None for 8-bit RGB (reads the header only)."""
    try:
        with Image.open(path) as image:
            mode = {"I;16B": "I;16", "I;16L": "I;16"}.get(image.mode, image.mode)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None  # read_photo reports the real problem
    return None if mode == "RGB" else f"{path} is {PHOTO_CONVERSIONS.get(mode, f'{mode}; converted to RGB')}."


def photo_size(path: Path) -> tuple[int, int] | None:
    """(height, width) from the file's header without decoding it; None when the header cannot be read."""
    try:
        with Image.open(path) as image:
            return image.height, image.width
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return None  # read_photo reports the real problem
