"""Finding images in folders and pairing them across folders by file stem."""

from __future__ import annotations

from pathlib import Path

from c2f.errors import C2FError

IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp")
MAP_SUFFIXES = IMAGE_SUFFIXES + (".json",)  # label maps may also be labelme, Cityscapes or COCO JSON


def images_by_stem(folder: Path, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> dict[str, Path]:
    """Image (or label map) files of a folder keyed by stem (hidden and partial files ignored); a stem used twice is
    an error."""
    paths = [path for path in sorted(Path(folder).iterdir())
             if path.is_file() and path.suffix.lower() in suffixes and not path.name.startswith(".")]
    by_stem = {path.stem: path for path in paths}
    if len(by_stem) < len(paths):  # a.jpg and a.png: which one pairs with coarse/a.png is anyone's guess
        clashes = sorted({path.stem for path in paths if by_stem[path.stem] != path})
        listed = "; ".join(", ".join(path.name for path in paths if path.stem == stem) for stem in clashes[:10])
        raise C2FError(f"{folder}: more than one image is named {', '.join(clashes[:10])} ({listed}); "
                       "rename one of each, as files are paired by name.")
    return by_stem


def pair_by_stem(first: Path, second: Path, second_suffixes: tuple[str, ...] = IMAGE_SUFFIXES
                 ) -> tuple[list[tuple[str, Path, Path]], list[Path]]:
    """Pair two folders' files by stem (photos in first, files of second_suffixes in second); return the pairs and
    the unpaired files."""
    first_files, second_files = images_by_stem(first), images_by_stem(second, second_suffixes)
    pairs = [(stem, first_files[stem], second_files[stem]) for stem in first_files if stem in second_files]
    unpaired = [path for stem, path in {**second_files, **first_files}.items()
                if stem not in first_files or stem not in second_files]
    return pairs, sorted(unpaired)
