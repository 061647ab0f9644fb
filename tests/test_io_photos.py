"""Reading photos in row bands: every mode and EXIF orientation gives what converting the whole image gives."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageOps

from c2f.io import photos
from c2f.io.photos import read_photo, row_bands

RGB = np.random.default_rng(3).integers(0, 256, size=(13, 21, 3), dtype=np.uint8)


@pytest.fixture
def small_bands(monkeypatch):
    """Bands of 40 pixels: a 21-pixel-wide image is read one row at a time."""
    monkeypatch.setattr(photos, "BAND_PIXELS", 40)


def whole_image_photo(path) -> np.ndarray:
    """What reading a photo meant before bands: the whole image turned upright, then converted at once."""
    with Image.open(path) as image:
        image.load()
        image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I"):
        values = np.asarray(image, dtype=np.int64)
        grey = np.clip(values // (257 if values.max() > 255 else 1), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    return np.asarray(image.convert("RGB"))


def test_row_bands_cover_every_row_once(small_bands):
    bands = list(row_bands(13, 21))
    assert [band.start for band in bands] == list(range(13)) and bands[-1].stop == 13
    assert [(band.start, band.stop) for band in row_bands(5, 100)] == [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P", "1", "LA", "I;16", "CMYK", "I"])
def test_every_mode_reads_in_bands_as_the_whole_image_converts(small_bands, tmp_path, mode):
    if mode == "I;16":
        image = Image.fromarray(RGB[..., 0].astype(np.uint16) * 257)
    elif mode == "I":
        image = Image.fromarray(RGB[..., 0].astype(np.int32) * 3 - 100)  # negative and above 255 alike
    else:
        image = Image.fromarray(RGB).convert(mode)
    path = tmp_path / ("photo.tif" if mode in ("CMYK", "I") else "photo.png")
    image.save(path)
    photo = read_photo(path)
    assert photo.dtype == np.uint8 and photo.shape == (13, 21, 3)
    np.testing.assert_array_equal(photo, whole_image_photo(path))


@pytest.mark.parametrize("image_format", ["PNG", "JPEG"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_reads_as_pillow_turns_the_whole_image(small_bands, tmp_path, image_format,
                                                                      orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"photo.{image_format.lower()}"
    Image.fromarray(RGB).save(path, format=image_format, exif=exif)
    photo = read_photo(path)
    assert photo.shape == ((21, 13, 3) if orientation >= 5 else (13, 21, 3))
    np.testing.assert_array_equal(photo, whole_image_photo(path))


def test_read_limits_restore_pillows_settings():
    from c2f.config import ReadLimits
    from c2f.io.photos import max_pixels, read_limits

    before = (Image.MAX_IMAGE_PIXELS, Image.core.get_block_size(), max_pixels())
    with read_limits(ReadLimits(max_pixels=10**9)):
        assert max_pixels() == Image.MAX_IMAGE_PIXELS == 10**9
        assert Image.core.get_block_size() > 32 * 2**20  # freed images go straight back to the system
    assert (Image.MAX_IMAGE_PIXELS, Image.core.get_block_size(), max_pixels()) == before
