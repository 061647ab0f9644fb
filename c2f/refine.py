"""Refining photos and coarse maps into fine maps on disk: one file, or two folders paired by stem.

Refining one pair is refine_file: read, run the one sliding-window path
(inference.sliding_window), write the map atomically. Folder mode plans every
pair's outputs up front (write, skip, or refuse per --overwrite and
--skip-existing) and refine_folder yields one outcome per pair lazily, so a
caller can stop after the current image.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from c2f.config import WindowSettings
from c2f.errors import C2FError, ModelError
from c2f.inference.predictor import Predictor
from c2f.inference.sliding_window import refine_map
from c2f.inference.windows_folder import manifest_labels, stitch_folder_class_ids
from c2f.io.files import (
    check_map_output,
    check_new_file,
    guard_output_folders,
    guard_outputs,
    sweep_stale_temporaries,
)
from c2f.io.label_maps import (
    POLYGON_ENCODINGS,
    POLYGON_SUFFIX,
    LabelMap,
    check_same_size,
    output_encoding,
    read_label_map,
    write_label_map,
)
from c2f.io.label_sets import LabelSet
from c2f.io.overlay import write_overlay
from c2f.io.pairing import IMAGE_SUFFIXES, MAP_SUFFIXES, images_by_stem, pair_by_stem
from c2f.io.photos import photo_note, read_photo, row_bands


@dataclass(frozen=True)
class RefineResult:
    """What refining one file produced."""

    output: Path
    far_pixels: int  # coarse pixels whose colour was far from every palette colour
    changed_fraction: float  # share of pixels whose class differs from the coarse map
    photo_note: str | None = None  # how a photo that was not 8-bit RGB was converted


def read_inputs(photo_path: Path, coarse_path: Path, labels: LabelSet) -> tuple[np.ndarray, LabelMap]:
    """A photo, uint8 (H, W, 3), and its decoded coarse map, checked to be the same size."""
    photo = read_photo(photo_path)
    coarse = read_label_map(coarse_path, labels, Path(photo_path).name)
    check_same_size(coarse.class_ids, coarse_path, photo, photo_path)
    return photo, coarse


def check_strict(coarse: LabelMap, coarse_path: Path, strict: bool) -> None:
    """With --strict, refuse a coarse map with colours far from every palette colour."""
    if strict and coarse.far_pixels:
        raise C2FError(f"{coarse_path}: {coarse.far_pixels} pixels have colours far from every palette colour "
                       "(--strict); fix the map or pass the right --labels.")


def refine_file(predictor: Predictor, labels: LabelSet, uses_coarse: bool, photo_path: Path, coarse_path: Path,
                output_path: Path, settings: WindowSettings = WindowSettings(), output_format: str | None = None,
                strict: bool = False, windows_dir: Path | None = None, overlay_path: Path | None = None,
                on_batch: Callable[[int, int], None] | None = None,
                inputs: tuple[np.ndarray, LabelMap] | None = None) -> RefineResult:
    """Read a photo and coarse map (unless `inputs` holds them already), refine, and write the fine map atomically."""
    photo, coarse = inputs if inputs is not None else read_inputs(photo_path, coarse_path, labels)
    check_strict(coarse, coarse_path, strict)
    output_encoding(output_format, coarse.encoding, output_path)  # refuse a format the output cannot hold, early
    fine = refine_map(predictor, photo, coarse.class_ids if uses_coarse else None, labels.num_classes, settings,
                      on_batch, windows_dir, labels)
    if overlay_path is None:  # nothing else needs the photo: its 3 bytes a pixel are free for encoding the map
        photo = inputs = None
    return write_outputs(fine, photo, coarse, labels, photo_path, output_path, output_format, overlay_path)


def changed_fraction(fine: np.ndarray, coarse: np.ndarray) -> float:
    """The share of pixels whose class differs between two (H, W) maps, counted in row bands."""
    changed = sum(int(np.count_nonzero(fine[rows] != coarse[rows])) for rows in row_bands(*fine.shape))
    return changed / max(1, fine.size)


def write_outputs(fine: np.ndarray, photo: np.ndarray | None, coarse: LabelMap, labels: LabelSet,
                  photo_path: Path, output_path: Path, output_format: str | None = None,
                  overlay_path: Path | None = None) -> RefineResult:
    """Write the fine map of (H, W) class ids atomically (and its overlay of the photo first, when asked)."""
    if overlay_path is not None:  # before the map: an existing map then means its overlay is complete too
        write_overlay(overlay_path, photo, coarse.class_ids, fine, labels)
    changed = changed_fraction(fine, coarse.class_ids)
    encoding = output_encoding(output_format, coarse.encoding, output_path)
    write_label_map(output_path, fine, labels, encoding, image_path=Path(photo_path))
    return RefineResult(Path(output_path), coarse.far_pixels, changed, photo_note(photo_path))


def check_refine_inputs(image: Path, coarse: Path) -> None:
    """Refuse missing inputs, and a file paired with a folder."""
    for path in (image, coarse):
        if not path.exists():
            raise C2FError(f"not found: {path}")
    if image.is_dir() != coarse.is_dir():
        raise C2FError(f"give two files or two folders; {image} and {coarse} are one of each.")


def stitch_file(windows_dir: Path, output: Path, output_format: str = "color", overwrite: bool = False) -> int:
    """`c2f stitch`: blend a windows folder into a fine map written atomically; returns the number of windows."""
    check_map_output(output, overwrite)
    started = time.time()
    windows_dir = Path(windows_dir)
    if windows_dir.is_dir():  # its manifest and every window are inputs
        guard_outputs({f"the windows folder's {path.name}": path for path in windows_dir.iterdir()}, {"-o": output})
    sweep_stale_temporaries([Path(output).parent], started)
    fine, manifest = stitch_folder_class_ids(windows_dir)
    labels = manifest_labels(manifest, windows_dir)
    write_label_map(output, fine, labels, output_encoding(output_format, "color", output))
    return len(manifest["windows"])


def check_file_outputs(photo: Path, coarse: Path, output: Path, overlay: Path | None, overwrite: bool) -> None:
    """Single-file mode, before any work: refuse outputs that are inputs or each other, outputs that exist
    (without --overwrite), folders and lossy map formats; then sweep stale temporary files of earlier runs."""
    started = time.time()
    guard_outputs({"the photo": photo, "the coarse map": coarse}, {"-o": output, "--overlay": overlay})
    check_map_output(output, overwrite)
    if overlay is not None:
        check_new_file(overlay, overwrite)
    sweep_stale_temporaries([Path(output).parent, Path(overlay).parent if overlay else None], started)


def read_ahead(pairs: list[tuple[str, Path, Path]], labels: LabelSet, wanted: Callable[[str], bool]
               ) -> Iterator[tuple[tuple[str, Path, Path], Callable[[], tuple[np.ndarray, LabelMap]]]]:
    """Yield each (stem, photo, coarse) pair with a function returning its read_inputs, to be called once.

    The next wanted pair is decoded on a background thread while the caller refines
    the current one (the network and most of numpy release the GIL), so decoding
    overlaps inference. A reading error is raised when the function is called.
    """
    def take(decoding: list[Future]) -> tuple[np.ndarray, LabelMap]:
        return decoding.pop().result()  # emptied, so the caller alone holds the inputs and can free them early

    with ThreadPoolExecutor(max_workers=1) as reader:
        def start(pair: tuple[str, Path, Path]) -> list[Future]:
            return [reader.submit(read_inputs, pair[1], pair[2], labels)] if wanted(pair[0]) else []

        upcoming = start(pairs[0]) if pairs else []
        for index, pair in enumerate(pairs):
            current, upcoming = upcoming, start(pairs[index + 1]) if index + 1 < len(pairs) else []
            yield pair, partial(take, current) if current else partial(read_inputs, pair[1], pair[2], labels)


def check_folder_inputs(images: Path, coarse: Path, output: Path, overlay: Path | None) -> None:
    """Folder mode: refuse empty input folders and outputs that are files."""
    for folder, suffixes in ((images, IMAGE_SUFFIXES), (coarse, MAP_SUFFIXES)):
        if not images_by_stem(folder, suffixes):
            raise C2FError(f"{folder} holds no images ({', '.join(suffixes)}); check the folder.")
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
                skip_existing: bool, output_format: str | None = None) -> tuple[list[FolderPair], list[PairOutcome]]:
    """Folder mode's pairs in stem order with their decisions, and its unpaired files as failed outcomes.

    Refuses output folders that are input folders and outputs that are inputs, then removes stale
    temporary files that runs which died left in the output folders.
    """
    started = time.time()
    check_folder_inputs(images, coarse, output, overlay)
    guard_output_folders({"the photo folder": images, "the coarse folder": coarse},
                         {"-o": output, "--overlay": overlay})
    found, unpaired = pair_by_stem(images, coarse, MAP_SUFFIXES)
    if not found:
        raise C2FError(f"no photo in {images} has a coarse map of the same name in {coarse}; unpaired: "
                       + ", ".join(path.name for path in unpaired[:10]) + (" ..." if len(unpaired) > 10 else ""))
    pairs = []
    for stem, photo_path, coarse_path in found:
        suffix = POLYGON_SUFFIX if output_format in POLYGON_ENCODINGS else ".png"
        target, overlay_target = output / f"{stem}{suffix}", overlay / f"{stem}.png" if overlay else None
        guard_outputs({"the photo": photo_path, "the coarse map": coarse_path},
                      {"-o": target, "--overlay": overlay_target})
        pairs.append(FolderPair(stem, photo_path, coarse_path, target, overlay_target,
                                outputs_allowed(target, overlay_target, overwrite, skip_existing)))
    failures = [PairOutcome(path.name, "failed", f"{path} has no file of the same name in "
                                                 f"{coarse if path.parent == images else images}")
                for path in unpaired]
    sweep_stale_temporaries([output, overlay], started)
    return pairs, failures


def refine_folder(predictor: Predictor, labels: LabelSet, uses_coarse: bool, pairs: list[FolderPair],
                  settings: WindowSettings = WindowSettings(), output_format: str | None = None,
                  strict: bool = False, windows_dir: Path | None = None) -> Iterator[PairOutcome]:
    """Yield one outcome per planned pair, in order; a C2FError fails only its own pair (a ModelError, or a
    failed write such as a full disk, stops the run).

    Lazy, so a caller can stop between images by asking for no more. A KeyboardInterrupt
    propagates and leaves nothing half-written, as refine_file writes atomically.
    """
    by_stem = {pair.stem: pair for pair in pairs}
    inputs = [(pair.stem, pair.photo, pair.coarse) for pair in pairs]
    for (stem, _, _), read_pair in read_ahead(inputs, labels, lambda stem: by_stem[stem].decision == "write"):
        yield refine_pair(predictor, labels, uses_coarse, by_stem[stem], settings, output_format, strict,
                          windows_dir, read_pair)


def refine_pair(predictor: Predictor, labels: LabelSet, uses_coarse: bool, pair: FolderPair,
                settings: WindowSettings = WindowSettings(), output_format: str | None = None,
                strict: bool = False, windows_dir: Path | None = None,
                read_pair: Callable[[], tuple[np.ndarray, LabelMap]] | None = None) -> PairOutcome:
    """One planned pair's outcome: skipped, refused, or refined and written; a C2FError fails this pair alone."""
    if pair.decision == "skip":
        return PairOutcome(pair.stem, "skipped", coarse=pair.coarse)
    if pair.decision != "write":
        return PairOutcome(pair.stem, "refused", pair.decision, pair.coarse)
    try:
        result = refine_file(predictor, labels, uses_coarse, pair.photo, pair.coarse, pair.output, settings,
                             output_format, strict, windows_dir=windows_dir / pair.stem if windows_dir else None,
                             overlay_path=pair.overlay, inputs=read_pair() if read_pair else None)
    except ModelError:
        raise  # the model is at fault, not this pair: every other pair would fail the same way
    except C2FError as error:
        return PairOutcome(pair.stem, "failed", str(error), pair.coarse)
    return PairOutcome(pair.stem, "written", coarse=pair.coarse, result=result)


@dataclass
class FolderTally:
    """Folder mode's running counts, and the failures to list at the end."""

    written: int = 0
    skipped: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)  # (stem or file name, why)

    def record(self, outcome: PairOutcome) -> None:
        """Count one outcome: written, skipped, or a failure (refused pairs count as failed)."""
        if outcome.status == "written":
            self.written += 1
        elif outcome.status == "skipped":
            self.skipped += 1
        else:
            self.failures.append((outcome.stem, outcome.message))

    def not_done(self, planned: int, unpaired: int) -> int:
        """Pairs neither written, skipped nor failed: left over when folder mode stops early."""
        return planned - self.written - self.skipped - len(self.failures) + unpaired
