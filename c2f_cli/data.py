"""Finding (photo, coarse, fine) samples on disk and loading them as arrays.

Two layouts are understood: FASSEG's own (`V1/` coarse, `V2/` fine, each with
`{Train,Test}_RGB` and `{Train,Test}_Labels`) and a generic one (`images/`,
`coarse/`, optional `fine/`, matched by file stem).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from c2f_cli.errors import C2FError
from c2f_cli.labels import LabelSet, check_same_size, read_label_map, read_photo

IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class Sample:
    """Where one face lives on disk; `fine` is None for coarse-only samples."""

    name: str
    photo: Path
    coarse: Path
    fine: Path | None


@dataclass(frozen=True)
class LoadedSample:
    """One sample as arrays: photo uint8 (H, W, 3), coarse and fine class ids (H, W)."""

    name: str
    photo: np.ndarray
    coarse: np.ndarray
    fine: np.ndarray | None


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


def find_fasseg_samples(root: Path) -> list[Sample]:
    samples = []
    for split in ("Train", "Test"):
        photos = root / "V1" / f"{split}_RGB"
        if not photos.is_dir():
            continue
        coarse = images_by_stem(root / "V1" / f"{split}_Labels")
        fine_folder = root / "V2" / f"{split}_Labels"
        fine = images_by_stem(fine_folder) if fine_folder.is_dir() else {}
        for stem, photo in images_by_stem(photos).items():
            if stem in coarse:
                samples.append(Sample(f"{split}_{stem}", photo, coarse[stem], fine.get(stem)))
    return samples


def find_generic_samples(root: Path) -> list[Sample]:
    pairs, unpaired = pair_by_stem(root / "images", root / "coarse")
    if unpaired:
        names = ", ".join(str(path) for path in unpaired[:10])
        raise C2FError(f"{root}: {len(unpaired)} files have no partner in images/ or coarse/: {names}")
    fine = images_by_stem(root / "fine") if (root / "fine").is_dir() else {}
    return [Sample(stem, photo, coarse, fine.get(stem)) for stem, photo, coarse in pairs]


def find_samples(root: Path) -> list[Sample]:
    """All samples under a FASSEG-style or generic dataset folder, sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise C2FError(f"data folder not found: {root}")
    if (root / "V1").is_dir():
        samples = find_fasseg_samples(root)
    elif (root / "images").is_dir() and (root / "coarse").is_dir():
        samples = find_generic_samples(root)
    else:
        raise C2FError(f"{root}: expected FASSEG's V1/ and V2/ folders, or images/, coarse/ and fine/.")
    if not samples:
        raise C2FError(f"{root}: no (photo, coarse map) pairs found.")
    return sorted(samples, key=lambda sample: sample.name)


def load_sample(sample: Sample, labels: LabelSet) -> LoadedSample:
    """Read a sample's files, checking that their sizes agree."""
    photo = read_photo(sample.photo)
    coarse = read_label_map(sample.coarse, labels).class_ids
    fine = read_label_map(sample.fine, labels).class_ids if sample.fine else None
    for path, label_map in ((sample.coarse, coarse), (sample.fine, fine)):
        if label_map is not None:
            check_same_size(label_map, path, photo, sample.photo)
    return LoadedSample(sample.name, photo, coarse, fine)
