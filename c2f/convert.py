"""`c2f convert`: label maps from any format c2f reads into any it writes, one file or a folder at a time.

A COCO file may hold many images: it becomes one map per image. Polygon outputs (labelme, COCO) name their photo
by the map's stem, or by the photo of that stem in an images folder when one is given.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Iterator

from c2f.errors import C2FError
from c2f.io.files import check_map_output
from c2f.io.label_maps import POLYGON_ENCODINGS, POLYGON_SUFFIX, read_label_map, write_label_map
from c2f.io.label_sets import LabelSet
from c2f.io.pairing import MAP_SUFFIXES, images_by_stem

RASTER_SUFFIX = ".png"


@dataclass(frozen=True)
class Converted:
    """One map written by convert."""

    source: Path
    output: Path
    ignored_pixels: int  # pixels not annotated / ignored, written as the table's ignore entry (or left uncovered)


def coco_image_names(path: Path) -> list[str] | None:
    """The file names of a COCO file's images, or None when the file is not COCO."""
    if path.suffix.lower() != POLYGON_SUFFIX:
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise C2FError(f"{path}: not valid JSON ({error})") from None
    if isinstance(document, dict) and "images" in document and "annotations" in document:
        return [str(image.get("file_name")) for image in document["images"]]
    return None


def plan_conversion(source: Path, output: Path) -> Iterator[tuple[Path, str | None, Path]]:
    """(map file, image name within it or None, output path without suffix) for every map to convert."""
    if source.is_dir():
        files, into_folder = list(images_by_stem(source, MAP_SUFFIXES).values()), True
    elif source.is_file():
        files, into_folder = [source], output.is_dir() or not output.suffix
    else:
        raise C2FError(f"not found: {source}")
    for path in files:
        names = coco_image_names(path)
        if names is not None and (len(names) > 1 or into_folder):
            if not into_folder:
                raise C2FError(f"{path} holds {len(names)} COCO images; give a folder as --output")
            for name in names:
                yield path, name, output / PurePath(name).stem
        else:
            yield path, None, output / path.stem if into_folder else output.with_suffix("")


def convert_maps(source: Path, output: Path, labels: LabelSet, encoding: str, images: Path | None = None,
                 overwrite: bool = False) -> Iterator[Converted]:
    """Convert one map file (to a file) or a folder of them (to a folder), yielding each map written."""
    source, output = Path(source), Path(output)
    photos = images_by_stem(images) if images is not None and images.is_dir() else {}
    suffix = POLYGON_SUFFIX if encoding in POLYGON_ENCODINGS else RASTER_SUFFIX
    for path, image_name, target in plan_conversion(source, output):
        target = target.with_name(target.name + suffix) if (source.is_dir() or image_name or not output.suffix) \
            else output
        check_map_output(target, overwrite)
        stem = PurePath(image_name).stem if image_name else path.stem
        photo = photos.get(stem) or (images if images is not None and images.is_file() else None)
        label_map = read_label_map(path, labels, image_name or (photo.name if photo else None))
        target.parent.mkdir(parents=True, exist_ok=True)
        write_label_map(target, label_map.class_ids, labels, encoding,
                        image_path=photo or target.with_name(image_name or f"{stem}.png"))
        yield Converted(path, target, label_map.ignored_pixels(labels))
