"""Folder mode of `c2f refine`: pairing, planning and refining many images.

Photos and coarse maps are paired by file stem across two folders, each pair's
outputs are planned up front (write, skip, or refuse per --overwrite and
--skip-existing), and refine_folder yields one outcome per pair lazily, so the CLI
can stop after the current image. Refining one pair is refine.refine_file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from c2f_cli.config import WindowSettings
from c2f_cli.data import IMAGE_SUFFIXES, images_by_stem, pair_by_stem
from c2f_cli.errors import C2FError
from c2f_cli.labels import LabelMap, LabelSet
from c2f_cli.refine import RefineResult, read_inputs, refine_file
from c2f_cli.tiling import Predictor


def read_ahead(pairs: list[tuple[str, Path, Path]], labels: LabelSet, wanted: Callable[[str], bool]
               ) -> Iterator[tuple[tuple[str, Path, Path], Callable[[], tuple[np.ndarray, LabelMap]]]]:
    """Yield each (stem, photo, coarse) pair with a function returning its read_inputs.

    The next wanted pair is decoded on a background thread while the caller refines
    the current one (the network and most of numpy release the GIL), so decoding
    overlaps inference. A reading error is raised when the function is called.
    """
    from concurrent.futures import ThreadPoolExecutor
    from functools import partial

    with ThreadPoolExecutor(max_workers=1) as reader:
        def start(pair: tuple[str, Path, Path]):
            return reader.submit(read_inputs, pair[1], pair[2], labels) if wanted(pair[0]) else None

        upcoming = start(pairs[0]) if pairs else None
        for index, pair in enumerate(pairs):
            current = upcoming
            upcoming = start(pairs[index + 1]) if index + 1 < len(pairs) else None
            yield pair, current.result if current else partial(read_inputs, pair[1], pair[2], labels)


def check_folder_inputs(images: Path, coarse: Path, output: Path, overlay: Path | None) -> None:
    """Folder mode: refuse empty input folders and outputs that are files."""
    for folder in (images, coarse):
        if not images_by_stem(folder):
            raise C2FError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)}); check the folder.")
    for folder, option in ((output, "--output"), (overlay, "--overlay")):
        if folder is not None and folder.exists() and not folder.is_dir():
            raise C2FError(f"{folder} is a file, but in folder mode {option} names a folder.")


def outputs_allowed(target: Path, overlay_target: Path | None, overwrite: bool, skip_existing: bool) -> str:
    """For one pair in folder mode: "write", "skip", or why it must not be written.

    The fine map is written last, so it marks a finished pair; an overlay without its map
    is left over from an interrupted run and --skip-existing may replace it.
    """
    if overwrite:
        return "write"
    if target.exists():
        return "skip" if skip_existing else f"{target} exists; pass --overwrite or --skip-existing"
    if overlay_target is not None and overlay_target.exists() and not skip_existing:
        return f"{overlay_target} exists; pass --overwrite or --skip-existing"
    return "write"


@dataclass(frozen=True)
class FolderPair:
    """One pair of folder mode: its inputs, where its outputs go, and whether to write them."""

    stem: str
    photo: Path
    coarse: Path
    output: Path
    overlay: Path | None
    decision: str  # "write", "skip", or why its outputs must not be written (from outputs_allowed)


@dataclass(frozen=True)
class PairOutcome:
    """What became of one pair (or one unpaired file) in folder mode."""

    stem: str  # the file's name for an unpaired file
    status: str  # "written", "skipped", "refused" (its outputs exist) or "failed" (unpaired, or a C2FError)
    message: str = ""  # why it was refused or failed
    coarse: Path | None = None  # the coarse map, which a warning about its colours names
    result: RefineResult | None = None  # set when written


def plan_folder(images: Path, coarse: Path, output: Path, overlay: Path | None, overwrite: bool,
                skip_existing: bool) -> tuple[list[FolderPair], list[PairOutcome]]:
    """Folder mode's pairs in stem order with their decisions, and its unpaired files as failed outcomes."""
    check_folder_inputs(images, coarse, output, overlay)
    found, unpaired = pair_by_stem(images, coarse)
    if not found:
        raise C2FError(f"no photo in {images} has a coarse map of the same name in {coarse}; unpaired: "
                       + ", ".join(path.name for path in unpaired[:10]) + (" ..." if len(unpaired) > 10 else ""))
    pairs = []
    for stem, photo_path, coarse_path in found:
        target, overlay_target = output / f"{stem}.png", overlay / f"{stem}.png" if overlay else None
        pairs.append(FolderPair(stem, photo_path, coarse_path, target, overlay_target,
                                outputs_allowed(target, overlay_target, overwrite, skip_existing)))
    failures = [PairOutcome(path.name, "failed", f"{path} has no file of the same name in "
                                                 f"{coarse if path.parent == images else images}")
                for path in unpaired]
    return pairs, failures


def refine_folder(predictor: Predictor, labels: LabelSet, uses_coarse: bool, pairs: list[FolderPair],
                  settings: WindowSettings = WindowSettings(), output_format: str | None = None,
                  strict: bool = False, windows_dir: Path | None = None) -> Iterator[PairOutcome]:
    """Yield one outcome per planned pair, in order; a C2FError fails only its own pair.

    Lazy, so a caller can stop between images by asking for no more. A KeyboardInterrupt
    propagates and leaves nothing half-written, as refine_file writes atomically.
    """
    by_stem = {pair.stem: pair for pair in pairs}
    inputs = [(pair.stem, pair.photo, pair.coarse) for pair in pairs]
    for (stem, _, _), read_pair in read_ahead(inputs, labels, lambda stem: by_stem[stem].decision == "write"):
        pair = by_stem[stem]
        if pair.decision == "skip":
            outcome = PairOutcome(stem, "skipped", coarse=pair.coarse)
        elif pair.decision != "write":
            outcome = PairOutcome(stem, "refused", pair.decision, pair.coarse)
        else:
            try:
                result = refine_file(predictor, labels, uses_coarse, pair.photo, pair.coarse, pair.output, settings,
                                     output_format, strict, windows_dir=windows_dir / stem if windows_dir else None,
                                     overlay_path=pair.overlay, inputs=read_pair())
                outcome = PairOutcome(stem, "written", coarse=pair.coarse, result=result)
            except C2FError as error:
                outcome = PairOutcome(stem, "failed", str(error), pair.coarse)
        yield outcome
