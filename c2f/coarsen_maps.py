"""`c2f coarsen`: coarse label maps drawn from fine ones, one file or a folder at a time.

Each map draws its own settings from the given ranges with a generator seeded by (seed, its file stem), so a
map's coarse version does not depend on which other maps are in the folder.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from c2f.errors import C2FError
from c2f.io.files import check_map_output, guard_outputs
from c2f.io.label_maps import output_encoding, read_label_map, write_label_map
from c2f.io.label_sets import LabelSet
from c2f.io.pairing import MAP_SUFFIXES, images_by_stem
from c2f.training.coarsen import CoarsenSettings, coarsen


@dataclass(frozen=True)
class Coarsened:
    """One coarse map written by coarsen_maps."""

    source: Path
    output: Path
    unannotated_share: float  # share of the coarse map's pixels left not annotated (bands, void)


def map_rng(seed: int, stem: str) -> np.random.Generator:
    """The generator a map's coarse version draws from: fixed by the seed and the map's file stem."""
    return np.random.default_rng([seed, zlib.crc32(stem.encode("utf-8"))])


def coarsen_maps(source: Path, output: Path, labels: LabelSet, settings: CoarsenSettings, seed: int = 0,
                 encoding: str | None = None, overwrite: bool = False) -> Iterator[Coarsened]:
    """Write a coarse version of one fine map (to a file) or of a folder of them (to a folder), yielding each."""
    source, output = Path(source), Path(output)
    if settings.band[1] > 0 and not labels.ignore:
        raise C2FError("--band leaves pixels unannotated, which needs a label table with an ignore entry "
                       "(e.g. --labels camvid or cityscapes); or use --band 0.")
    if source.is_dir():
        files = sorted(images_by_stem(source, MAP_SUFFIXES).items())
        if not files:
            raise C2FError(f"{source}: no label maps found.")
        if output.exists() and not output.is_dir():
            raise C2FError(f"{output} is a file; give a folder as --output for a folder of maps.")
    elif source.is_file():
        files = [(source.stem, source)]
    else:
        raise C2FError(f"not found: {source}")
    ignore_value = labels.ignore_index if labels.ignore else None
    for stem, path in files:
        target = output / f"{stem}.png" if source.is_dir() else output
        guard_outputs({"the fine map": path}, {"--output": target})
        check_map_output(target, overwrite)
        fine = read_label_map(path, labels)
        coarse = coarsen(fine.class_ids, settings, map_rng(seed, stem), ignore_value,
                         skip_values=(labels.ignore_index,))
        target.parent.mkdir(parents=True, exist_ok=True)
        write_label_map(target, coarse, labels, output_encoding(encoding, fine.encoding, target))
        yield Coarsened(path, target, float(np.mean(coarse == labels.ignore_index)))
