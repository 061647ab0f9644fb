"""Finding images in folders and pairing them across folders by file stem."""

from __future__ import annotations

from pathlib import Path

from c2f.errors import C2FError

IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp")


def images_by_stem(folder: Path) -> dict[str, Path]:
    """Image files of a folder keyed by stem (hidden and partial files ignored); a stem used twice is an error."""
    paths = [path for path in sorted(Path(folder).iterdir())
             if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")]
    by_stem = {path.stem: path for path in paths}
    if len(by_stem) < len(paths):  # a.jpg and a.png: which one pairs with coarse/a.png is anyone's guess
        clashes = sorted({path.stem for path in paths if by_stem[path.stem] != path})
        listed = "; ".join(", ".join(path.name for path in paths if path.stem == stem) for stem in clashes[:10])
        raise C2FError(f"{folder}: more than one image is named {', '.join(clashes[:10])} ({listed}); "
                       "rename one of each, as files are paired by name.")
    return by_stem


def pair_by_stem(first: Path, second: Path) -> tuple[list[tuple[str, Path, Path]], list[Path]]:
    """Pair two folders' images by stem; return the pairs and the unpaired files."""
    first_files, second_files = images_by_stem(first), images_by_stem(second)
    pairs = [(stem, first_files[stem], second_files[stem]) for stem in first_files if stem in second_files]
    unpaired = [path for stem, path in {**second_files, **first_files}.items()
                if stem not in first_files or stem not in second_files]
    return pairs, sorted(unpaired)
