"""Label sets, and reading and writing photos and label maps.

Arrays leaving this module: photos are uint8 (H, W, 3) RGB; label maps are
uint8 (or uint16 for more than 256 classes) (H, W) class ids in [0, K).
"""

from __future__ import annotations

import json
import os
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, UnidentifiedImageError

from c2f_cli.errors import C2FError

ENCODINGS = ("color", "palette", "index")

# A pixel counts as "far" from the palette when it is more than this many RGB
# units from every blend of two palette colours: anti-aliased edges are blends
# and stay quiet, genuinely foreign colours are counted.
FAR_COLOR_DISTANCE = 60.0


@dataclass(frozen=True)
class LabelSet:
    """Ordered class names with one RGB colour each."""

    names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def palette(self) -> np.ndarray:
        """Colours as a uint8 (K, 3) array."""
        return np.array(self.colors, dtype=np.uint8).reshape(-1, 3)

    def to_json(self) -> str:
        return json.dumps({"classes": [{"name": n, "color": list(c)} for n, c in zip(self.names, self.colors)]})

    @classmethod
    def from_dict(cls, data: dict, source: str) -> "LabelSet":
        """Build from {"classes": [{"name": ..., "color": [r, g, b]}, ...]}."""
        hint = f'{source}: a label file needs a list "classes" of {{name = "...", color = [r, g, b]}} entries'
        classes = data.get("classes") if isinstance(data, dict) else None
        if not isinstance(classes, list) or len(classes) < 2:
            raise C2FError(f"{hint} (at least two).")
        names, colors = [], []
        for position, entry in enumerate(classes):
            color = entry.get("color") if isinstance(entry, dict) else None
            name = entry.get("name") if isinstance(entry, dict) else None
            valid_color = (
                isinstance(color, list) and len(color) == 3
                and all(type(v) is int and 0 <= v <= 255 for v in color)  # type(): JSON true is no colour value
            )
            if not isinstance(name, str) or not name or not valid_color:
                raise C2FError(f"{hint}; entry {position} is {entry!r}.")
            names.append(name)
            colors.append(tuple(color))
        if len(set(names)) != len(names) or len(set(colors)) != len(colors):
            raise C2FError(f"{source}: class names and colours must each be unique.")
        return cls(tuple(names), tuple(colors))

    @classmethod
    def from_json(cls, text: str, source: str = "label set") -> "LabelSet":
        try:
            return cls.from_dict(json.loads(text), source)
        except (json.JSONDecodeError, RecursionError) as error:
            raise C2FError(f"{source}: not valid JSON ({error}).") from None


FASSEG_LABELS = LabelSet(
    names=("background", "hair", "skin", "eyes", "nose", "mouth"),
    colors=((255, 0, 0), (127, 0, 0), (255, 255, 0), (0, 0, 255), (0, 255, 255), (0, 255, 0)),
)


def check_labels(stored: LabelSet, requested: LabelSet | None, path: Path) -> None:
    """Refuse weights trained for another label set than the one asked for."""
    if requested is not None and requested != stored:
        raise C2FError(
            f"{path} was trained for classes {', '.join(stored.names)}, not for "
            f"{', '.join(requested.names)}; pass matching --labels and --weights."
        )


def load_label_set(path: Path | None) -> LabelSet:
    """Read a label set from a .toml or .json file; None gives FASSEG's six classes."""
    if path is None:
        return FASSEG_LABELS
    path = Path(path)
    if not path.is_file():
        raise C2FError(f"label file not found: {path}")
    text = path.read_text(encoding="utf-8-sig", errors="replace")  # -sig: editors on Windows add a BOM
    if path.suffix.lower() == ".json":
        return LabelSet.from_json(text, str(path))
    try:
        return LabelSet.from_dict(tomllib.loads(text), str(path))
    except (tomllib.TOMLDecodeError, RecursionError) as error:
        raise C2FError(f"{path}: not valid TOML ({error}); see `c2f train --help` for the format.") from None


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


@dataclass(frozen=True)
class LabelMap:
    """A decoded label map and how it was stored."""

    class_ids: np.ndarray  # (H, W) uint8/uint16 in [0, K)
    encoding: str  # one of ENCODINGS
    far_pixels: int  # colour pixels far from every palette blend (0 for ids)


def id_dtype(num_classes: int) -> np.dtype:
    return np.dtype(np.uint8) if num_classes <= 256 else np.dtype(np.uint16)


def distance_to_palette_blends(colors: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Distance of each (N, 3) colour to the nearest segment between two palette colours."""
    colors = colors.astype(np.float32)
    palette = palette.astype(np.float32)
    best = np.full(len(colors), np.inf, dtype=np.float32)
    for first in range(len(palette)):
        for second in range(first, len(palette)):
            start, direction = palette[first], palette[second] - palette[first]
            length = float(direction @ direction)
            t = np.zeros(len(colors), np.float32) if length == 0 else np.clip((colors - start) @ direction / length, 0, 1)
            nearest = start + t[:, None] * direction
            best = np.minimum(best, np.linalg.norm(colors - nearest, axis=1))
    return best


def colors_to_ids(rgb: np.ndarray, labels: LabelSet) -> tuple[np.ndarray, int]:
    """Map each pixel of uint8 (H, W, 3) to its nearest palette colour; also count far pixels."""
    packed = rgb[..., 0].astype(np.int32)  # 0xRRGGBB, built in place: one int32 array, not four
    packed <<= 8
    packed |= rgb[..., 1]
    packed <<= 8
    packed |= rgb[..., 2]
    # Sort only to find the few distinct colours, then look every pixel up by binary search:
    # np.unique(return_inverse=True) costs 9x the time and 1 GB on a 6000 x 4000 map.
    unique = np.unique(packed)
    unique_rgb = np.stack([(unique >> 16) & 255, (unique >> 8) & 255, unique & 255], axis=1)
    palette = labels.palette().astype(np.int32)
    squared = ((unique_rgb[:, None, :] - palette[None, :, :]) ** 2).sum(axis=2)
    nearest = squared.argmin(axis=1).astype(id_dtype(labels.num_classes))
    # A colour near a palette colour is never far (a colour is a blend of itself), so only the rest
    # need the blend test, whose cost grows with the square of the class count.
    candidates = squared.min(axis=1) > FAR_COLOR_DISTANCE**2
    far_colors = np.zeros(len(unique), dtype=bool)
    if candidates.any():
        far_colors[candidates] = distance_to_palette_blends(unique_rgb[candidates], palette) > FAR_COLOR_DISTANCE
    positions = np.searchsorted(unique, packed)
    far_pixels = int(np.count_nonzero(far_colors[positions])) if far_colors.any() else 0
    return nearest[positions], far_pixels


def read_label_map(path: Path, labels: LabelSet) -> LabelMap:
    """Read a colour-coded, palette or single-channel class-id map."""
    image = open_image(path)
    if image.mode == "P":
        palette = np.array(image.getpalette() or [], dtype=np.uint8).reshape(-1, 3)
        if palette[: labels.num_classes].tobytes() == labels.palette().tobytes():
            ids = np.asarray(image)
            check_ids(ids, labels, path)
            return LabelMap(ids.astype(id_dtype(labels.num_classes)), "palette", 0)
        image = image.convert("RGB")  # a palette of other colours: decode by colour
    if image.mode in ("L", "I;16", "I;16B", "I;16L", "I"):
        ids = np.asarray(image)
        check_ids(ids, labels, path)
        return LabelMap(ids.astype(id_dtype(labels.num_classes)), "index", 0)
    if image.mode not in ("RGB", "RGBA", "LA"):
        image = image.convert("RGB")
    ids, far_pixels = colors_to_ids(np.asarray(image.convert("RGB")), labels)
    return LabelMap(ids, "color", far_pixels)


def check_same_size(label_map: np.ndarray, map_path: Path, reference: np.ndarray, reference_path: Path) -> None:
    """Refuse an (H, W) label map whose size differs from its photo's or reference map's (H, W, ...)."""
    if label_map.shape[:2] != reference.shape[:2]:
        raise C2FError(f"{map_path} is {label_map.shape[1]}x{label_map.shape[0]} but {reference_path} is "
                       f"{reference.shape[1]}x{reference.shape[0]}; they must be the same size.")


def check_ids(ids: np.ndarray, labels: LabelSet, path: Path) -> None:
    if int(ids.min(initial=0)) < 0:  # only 32-bit TIFFs can hold these
        raise C2FError(f"{path}: {int((ids < 0).sum())} pixels hold negative class ids; "
                       "class ids run from 0 to the number of classes - 1.")
    largest = int(ids.max(initial=0))
    if largest >= labels.num_classes:
        count = int((ids >= labels.num_classes).sum())
        raise C2FError(
            f"{path}: {count} pixels hold class ids up to {largest}, but the label set has only "
            f"{labels.num_classes} classes (0..{labels.num_classes - 1}); pass the right --labels file."
        )


def label_map_image(class_ids: np.ndarray, labels: LabelSet, encoding: str) -> Image.Image:
    """Encode (H, W) class ids as a PIL image in one of ENCODINGS."""
    if encoding == "color":
        return Image.fromarray(labels.palette()[class_ids])
    if encoding == "palette":
        if labels.num_classes > 256:
            raise C2FError("a palette PNG holds at most 256 classes; use --format color or index.")
        image = Image.fromarray(class_ids.astype(np.uint8), mode="P")
        image.putpalette(labels.palette().ravel().tolist())
        return image
    if encoding == "index":
        if labels.num_classes > 256:
            return Image.fromarray(class_ids.astype(np.uint16))
        return Image.fromarray(class_ids.astype(np.uint8), mode="L")
    raise C2FError(f"unknown map format {encoding!r}; choose one of {', '.join(ENCODINGS)}.")


def new_file_mode() -> int:
    """Permission bits a newly created file gets under the current umask (0644 for the usual 022)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(temporary_path) in path's folder, then rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    os.close(descriptor)
    try:
        write(Path(temporary))
        # mkstemp makes 0600 files, and some writers (safetensors) replace the file they are given:
        # set the mode last, so outputs read like any other file.
        os.chmod(temporary, new_file_mode())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def save_image(image: Image.Image, path: Path) -> None:
    """Save a PIL image atomically, in the format its suffix names (PNG when unsure)."""
    suffix = Path(path).suffix.lower()
    image_format = {".bmp": "BMP", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}.get(suffix, "PNG")
    write_atomically(path, lambda temporary: image.save(temporary, format=image_format))


def write_label_map(path: Path, class_ids: np.ndarray, labels: LabelSet, encoding: str) -> None:
    """Write (H, W) class ids atomically in the given encoding."""
    save_image(label_map_image(class_ids, labels, encoding), path)
