"""Reading photos: 8- or 16-bit PNG, BMP, JPEG, TIFF or WebP, upright as viewers show them, as uint8 (H, W, 3) RGB."""

from __future__ import annotations

import struct
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, UnidentifiedImageError

# The decoders of READABLE_FORMATS, imported by name: otherwise the first Image.open(formats=...) makes Pillow
# import all of its forty-odd plugins to find them, which costs every command more than these five do.
from PIL import BmpImagePlugin, JpegImagePlugin, PngImagePlugin, TiffImagePlugin, WebPImagePlugin  # noqa: F401

from c2f.config import ReadLimits
from c2f.errors import C2FError
from c2f.io.documents import first_line


# The only decoders c2f lets Pillow try: other formats (PostScript, which Pillow hands to Ghostscript,
# ICO, GIF, PSD...) are refused by name rather than decoded.
READABLE_FORMATS = ("PNG", "BMP", "JPEG", "TIFF", "WEBP")
READABLE_NAMES = "PNG, BMP, JPEG, TIFF, WebP"
FORMAT_DESCRIPTIONS = {"EPS": "a PostScript (EPS) file", "PDF": "a PDF document", "GIF": "a GIF image",
                       "ICO": "an icon (ICO) file", "PSD": "a Photoshop (PSD) file", "XBM": "an X bitmap (XBM)",
                       "PPM": "a PPM/PGM image", "TGA": "a Targa (TGA) image", "PCX": "a PCX image"}
ORIENTATION_TAG = 0x0112  # EXIF: how a viewer turns the stored pixels to show the photo upright
ORIENTATIONS = {2: "mirrored", 3: "rotated 180°", 4: "flipped upside down", 5: "mirrored and rotated 90°",
                6: "rotated 90° clockwise", 7: "mirrored and rotated 90°", 8: "rotated 90° anticlockwise"}


# The limit in force: a command that reads big photos on purpose raises it with read_limits().
current_limits = [ReadLimits()]


# Pillow holds an image in blocks of 16 MB (PILLOW_BLOCK_SIZE), which glibc's malloc serves from its heap once
# such a block has been freed, and cannot give back while anything newer lies above it there: a decoded
# colour map (4 bytes a pixel) could stay resident while the photo is refined. Blocks larger than malloc's
# largest mmap threshold (32 MB) are mapped and unmapped on their own, so freed images leave at once.
BIG_IMAGE_BLOCK_BYTES = 64 * 2**20


@contextmanager
def read_limits(limits: ReadLimits) -> Iterator[None]:
    """Within the block, read images up to limits.max_pixels (Pillow's own bomb guard raised to match), with
    Pillow's image memory in blocks the system takes back as soon as an image is freed."""
    previous_pillow, previous_block = Image.MAX_IMAGE_PIXELS, Image.core.get_block_size()
    current_limits.append(limits)
    # Pillow warns above its limit and refuses above twice it; c2f's header check is the guard that counts.
    Image.MAX_IMAGE_PIXELS = max(previous_pillow or 0, limits.max_pixels)
    Image.core.set_block_size(max(previous_block, BIG_IMAGE_BLOCK_BYTES))
    try:
        yield
    finally:
        current_limits.pop()
        Image.MAX_IMAGE_PIXELS = previous_pillow
        Image.core.set_block_size(previous_block)


def max_pixels() -> int:
    """The most pixels (width x height) c2f decodes now."""
    return current_limits[-1].max_pixels


def check_pixels(size: tuple[int, int], path: Path) -> None:
    """Refuse an image whose header claims more than the pixel limit, before anything is decoded."""
    width, height = size
    if width * height > max_pixels():
        raise C2FError(f"{path} is {width}x{height} pixels, more than c2f reads ({max_pixels() / 1e6:g} "
                       "megapixels); pass --max-megapixels to refine a photo this big, or scale it down.")


def describe_format(path: Path) -> str | None:
    """What a file c2f does not read is, from its header alone (nothing is decoded); None when unknown."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as image:  # every decoder, but header only: nothing is decoded or run
                return FORMAT_DESCRIPTIONS.get(image.format, f"a {image.format} image")
    except Exception:  # only to name the format in the error: any failure means "unknown"
        return None


def open_image(path: Path) -> Image.Image:
    """Open and decode a PNG, BMP, JPEG, TIFF or WebP image as stored, checking its size from the header first.

    Every failure is a C2FError, and no Pillow warning reaches the user.
    """
    return open_oriented(path)[0]


def open_oriented(path: Path) -> tuple[Image.Image, int]:
    """open_image, and the EXIF orientation a viewer turns the decoded pixels by (1: none, or a value c2f ignores)."""
    path = Path(path)
    if not path.is_file():
        raise C2FError(f"file not found: {path}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow's notes on odd metadata: the pixels decode regardless
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=READABLE_FORMATS) as image:
                check_pixels(image.size, path)
                image.load()
                # Read after decoding: Pillow turns some TIFFs upright while decoding and drops their tag.
                orientation = image.getexif().get(ORIENTATION_TAG, 1)
                return image, orientation if orientation in ORIENTATIONS else 1
    except UnidentifiedImageError:
        kind = describe_format(path)
        raise C2FError(f"{path} is {kind + ', ' if kind else ''}not an image c2f can read ({READABLE_NAMES}); "
                       "convert it to PNG.") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise C2FError(f"{path} is too large to read safely ({first_line(error)}); c2f reads at most "
                       f"{max_pixels() / 1e6:g} megapixels.") from None
    except (OSError, ValueError, SyntaxError, EOFError, struct.error, MemoryError) as error:
        raise C2FError(f"{path} is truncated or corrupt ({first_line(error)}); re-export it.") from None


# Pixels converted from a decoded image to numpy at a time: a band of rows (4 MB as Pillow holds RGB), so
# no whole-image copy exists beside the decoded image and the array it becomes. Bands of 2**20 pixels
# read a 100-megapixel PNG as fast as bands of 2**22 and leave less memory to temporaries.
BAND_PIXELS = 2**20


def row_bands(height: int, width: int) -> Iterator[slice]:
    """Slices of consecutive rows, about BAND_PIXELS pixels each (at least one row), from the top."""
    rows = max(1, BAND_PIXELS // max(1, width))
    for top in range(0, height, rows):
        yield slice(top, min(top + rows, height))


def image_rows(image: Image.Image, rows: slice, mode: str | None = None) -> np.ndarray:
    """Rows of a decoded PIL image as a numpy array, converted to `mode` first when given and different."""
    band = image.crop((0, rows.start, image.width, rows.stop))
    return np.asarray(band if mode is None or band.mode == mode else band.convert(mode))


def stored_view(upright: np.ndarray, orientation: int) -> np.ndarray:
    """A view of an upright (H, W, ...) array laid out as a photo of this EXIF orientation stores its pixels:
    the stored pixels written into it leave the array as ImageOps.exif_transpose turns them."""
    # Each view undoes the turn ImageOps.exif_transpose applies for the orientation (the flips and the
    # transpositions are their own inverses; rotations go back the other way).
    views = {1: lambda array: array, 2: lambda array: array[:, ::-1], 3: lambda array: array[::-1, ::-1],
             4: lambda array: array[::-1], 5: lambda array: array.swapaxes(0, 1),
             6: lambda array: np.rot90(array, 1), 7: lambda array: array[::-1, ::-1].swapaxes(0, 1),
             8: lambda array: np.rot90(array, -1)}
    return views[orientation](upright)


# What read_photo does to photos that are not 8-bit RGB, in words for the user.
PHOTO_CONVERSIONS = {
    "1": "black-and-white; read as grey RGB", "L": "greyscale; read as grey RGB",
    "LA": "greyscale with transparency; transparency dropped", "P": "a palette image; converted to RGB",
    "PA": "a palette image with transparency; converted to RGB", "RGBA": "RGBA; transparency dropped",
    "I;16": "16-bit greyscale; scaled to 8-bit grey RGB", "I": "32-bit greyscale; scaled to 8-bit grey RGB",
    "CMYK": "CMYK; converted to RGB", "YCbCr": "YCbCr; converted to RGB",
}


def read_photo(path: Path) -> np.ndarray:
    """Read a photo as uint8 (H, W, 3) RGB, upright as viewers show it; grey, RGBA, palette, CMYK and 16-bit are
    converted, float refused.

    The decoded image becomes the array in row bands, each written where the EXIF orientation puts it, so memory
    holds Pillow's image and the array, with no whole turned or converted copy between them.
    """
    image, orientation = open_oriented(path)
    if image.mode == "F":
        raise C2FError(f"{path} holds floating-point pixels, which c2f cannot read as a photo; "
                       "save it as an 8- or 16-bit image.")
    height, width = image.height, image.width
    photo = np.empty((width, height, 3) if orientation in (5, 6, 7, 8) else (height, width, 3), np.uint8)
    stored = stored_view(photo, orientation)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        scale = 257 if image.getextrema()[1] > 255 else 1  # 16-bit range to 8-bit
        for rows in row_bands(height, width):
            stored[rows] = np.clip(image_rows(image, rows) // scale, 0, 255)[:, :, None]  # grey, in all three
        return photo
    try:
        for rows in row_bands(height, width):
            stored[rows] = image_rows(image, rows, "RGB")
    except (ValueError, OSError) as error:
        raise C2FError(f"{path} uses colour mode {image.mode}, which c2f cannot convert to RGB ({error}); "
                       "save it as an 8-bit RGB image.") from None
    return photo


def photo_note(path: Path) -> str | None:
    """How read_photo turns or converts this photo, in words for the user; None for upright 8-bit RGB (header only)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path, formats=READABLE_FORMATS) as image:
                mode = {"I;16B": "I;16", "I;16L": "I;16"}.get(image.mode, image.mode)
                orientation = image.getexif().get(ORIENTATION_TAG, 1)
    except (OSError, ValueError, SyntaxError, struct.error, Image.DecompressionBombError):
        return None  # read_photo reports the real problem
    notes = []
    if orientation in ORIENTATIONS:
        notes.append(f"has EXIF orientation {orientation}; refined as image viewers show it "
                     f"({ORIENTATIONS[orientation]})")
    if mode != "RGB":
        notes.append(f"is {PHOTO_CONVERSIONS.get(mode, f'{mode}; converted to RGB')}")
    return f"{path} {'; it '.join(notes)}." if notes else None


def photo_size(path: Path) -> tuple[int, int] | None:
    """(height, width) as read_photo will return it, from the header alone; None when the header cannot be read."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path, formats=READABLE_FORMATS) as image:
                turned = image.getexif().get(ORIENTATION_TAG, 1) in (5, 6, 7, 8)  # a quarter turn swaps the sides
                return (image.width, image.height) if turned else (image.height, image.width)
    except (OSError, ValueError, SyntaxError, struct.error, Image.DecompressionBombError):
        return None  # read_photo reports the real problem
