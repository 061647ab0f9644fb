"""Finding (photo, coarse, fine) samples on disk and loading them as arrays.

Three layouts are understood, photos and maps matched by file stem:
- FASSEG's own: `V1/` coarse, `V2/` fine, each with `{Train,Test}_RGB` and
  `{Train,Test}_Labels`; and its multi-pose `V3/Train_RGB/<pose>/` with fine maps
  in `V3/Train_labels/<pose>/` (no coarse maps: samples named `V3_<pose>_<stem>`);
- SegNet's CamVid layout: `train/` photos with fine maps in `trainannot/` (no
  coarse maps); as a validation folder, `val/` with `valannot/`;
- a generic one: `images/`, then `coarse/`, `fine/` or both.
Samples without a coarse map (coarse None) train only when coarse maps are drawn
for them (`c2f train --coarsen`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from c2f.errors import C2FError
from c2f.io.label_maps import (
    ClassBlend,
    check_same_size,
    read_class_blend,
    read_label_map,
)
from c2f.io.label_sets import LabelSet
from c2f.io.pairing import MAP_SUFFIXES, images_by_stem, pair_by_stem
from c2f.io.photos import read_photo


@dataclass(frozen=True)
class Sample:
    """Where one photo and its maps live on disk; `fine` is None for coarse-only samples, `coarse` for fine-only."""

    name: str
    photo: Path
    coarse: Path | None
    fine: Path | None


@dataclass(frozen=True)
class LoadedSample:
    """One sample as arrays: photo uint8 (H, W, 3), coarse and fine class ids (H, W) in [0, K] (K: not annotated in
    coarse, ignored in fine); fine_blend, the fine map's two-class blends for soft targets (colour maps only)."""

    name: str
    photo: np.ndarray
    coarse: np.ndarray
    fine: np.ndarray | None
    fine_blend: ClassBlend | None = None


def find_fasseg_samples(root: Path) -> list[Sample]:
    samples = []
    for split in ("Train", "Test"):
        photos = root / "V1" / f"{split}_RGB"
        if not photos.is_dir():
            continue
        coarse = images_by_stem(root / "V1" / f"{split}_Labels", MAP_SUFFIXES)
        fine_folder = root / "V2" / f"{split}_Labels"
        fine = images_by_stem(fine_folder, MAP_SUFFIXES) if fine_folder.is_dir() else {}
        for stem, photo in images_by_stem(photos).items():
            if stem in coarse:
                samples.append(Sample(f"{split}_{stem}", photo, coarse[stem], fine.get(stem)))
    return samples + find_multipose_samples(root / "V3")


def find_multipose_samples(root: Path) -> list[Sample]:
    """FASSEG's V3 multi-pose faces: fine maps only, one folder per pose."""
    photos_root, labels_root = root / "Train_RGB", root / "Train_labels"
    if not photos_root.is_dir() or not labels_root.is_dir():
        return []
    samples = []
    for pose in sorted(folder for folder in photos_root.iterdir() if folder.is_dir()):
        samples += [Sample(f"V3_{pose.name}_{stem}", photo, None, fine)
                    for stem, photo, fine in fine_only_pairs(pose, labels_root / pose.name)]
    return samples


def fine_only_pairs(photos: Path, fine: Path) -> list[tuple[str, Path, Path]]:
    """(stem, photo, fine map) of the photos that have a fine map; photos without one are refused."""
    pairs, unpaired = pair_by_stem(photos, fine, MAP_SUFFIXES)
    if unpaired:
        names = ", ".join(str(path) for path in unpaired[:10])
        raise C2FError(f"{len(unpaired)} files have no partner in {photos} or {fine}: {names}")
    return pairs


def find_generic_samples(root: Path) -> list[Sample]:
    if not (root / "coarse").is_dir():  # images/ and fine/ alone: coarse maps are drawn while training
        return [Sample(stem, photo, None, fine) for stem, photo, fine in fine_only_pairs(root / "images", root / "fine")]
    pairs, unpaired = pair_by_stem(root / "images", root / "coarse", MAP_SUFFIXES)
    if unpaired:
        names = ", ".join(str(path) for path in unpaired[:10])
        raise C2FError(f"{root}: {len(unpaired)} files have no partner in images/ or coarse/: {names}")
    fine = images_by_stem(root / "fine", MAP_SUFFIXES) if (root / "fine").is_dir() else {}
    return [Sample(stem, photo, coarse, fine.get(stem)) for stem, photo, coarse in pairs]


def find_samples(root: Path, split: str = "train") -> list[Sample]:
    """All samples under a FASSEG-style, CamVid-style (its `split`/ and `split`annot/) or generic dataset folder,
    sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise C2FError(f"data folder not found: {root}")
    if (root / "V1").is_dir() or (root / "V3").is_dir():
        samples = find_fasseg_samples(root)
    elif (root / split).is_dir() and (root / f"{split}annot").is_dir():
        samples = [Sample(stem, photo, None, fine)
                   for stem, photo, fine in fine_only_pairs(root / split, root / f"{split}annot")]
    elif (root / "images").is_dir() and ((root / "coarse").is_dir() or (root / "fine").is_dir()):
        samples = find_generic_samples(root)
    else:
        raise C2FError(f"{root}: expected FASSEG's V1/ and V2/ folders, CamVid's {split}/ and {split}annot/, "
                       "or images/ with coarse/, fine/ or both.")
    if not samples:
        raise C2FError(f"{root}: no (photo, map) pairs found.")
    return sorted(samples, key=lambda sample: sample.name)


def find_validation_samples(root: Path) -> list[Sample]:
    """The samples of a separate validation folder: CamVid's val/ and valannot/, or any layout find_samples reads."""
    return find_samples(root, split="val")


def load_sample(sample: Sample, labels: LabelSet, soft_targets: bool = False) -> LoadedSample:
    """Read a sample's files, checking that their sizes agree; soft_targets also reads a colour fine map's blends."""
    photo = read_photo(sample.photo)
    coarse = read_label_map(sample.coarse, labels, sample.photo.name).class_ids if sample.coarse else None
    fine = read_label_map(sample.fine, labels, sample.photo.name).class_ids if sample.fine else None
    for path, label_map in ((sample.coarse, coarse), (sample.fine, fine)):
        if label_map is not None:
            check_same_size(label_map, path, photo, sample.photo)
    blend = read_class_blend(sample.fine, labels) if soft_targets and sample.fine else None
    return LoadedSample(sample.name, photo, coarse, fine, blend)


def split_samples(samples: list[LoadedSample], fraction: float, seed: int) -> tuple[list, list]:
    """Deterministic (train, validation) split of the samples."""
    order = np.random.default_rng(seed).permutation(len(samples))
    count = int(round(len(samples) * fraction)) if len(samples) > 1 else 0
    count = min(count, len(samples) - 1)  # a few faces and a large fraction must still leave one to train on
    validation = [samples[index] for index in sorted(order[:count])]
    train = [samples[index] for index in sorted(order[count:])]
    if not train:
        raise C2FError("no face with a fine map is left for training; add faces or lower --validation-fraction.")
    return train, validation


def split_fine_and_coarse_only(samples: list[LoadedSample], fine_fraction: float,
                               seed: int) -> tuple[list[LoadedSample], list[LoadedSample]]:
    """Keep the fine maps of a seeded share of the faces; the rest become coarse-only."""
    if fine_fraction >= 1:
        return samples, []
    order = np.random.default_rng([seed, 1]).permutation(len(samples))
    keep = max(1, int(round(len(samples) * fine_fraction)))
    fine = [samples[index] for index in sorted(order[:keep])]
    coarse_only = [dataclasses.replace(samples[index], fine=None, fine_blend=None) for index in sorted(order[keep:])]
    return fine, coarse_only
