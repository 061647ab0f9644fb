"""Refining photos and coarse maps into fine maps, given any predictor.

One path serves every use: windows are predicted (tiling.predict_windows),
optionally saved for later (`--windows-dir`), blended by the same
tiling.stitch_windows that `c2f stitch` uses, and smoothed as the manifest says.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from tokenize import TokenError
from typing import Callable, Iterator

import numpy as np

from c2f_cli.config import MIN_SMOOTHING, SIZE_MULTIPLE, WindowSettings, is_smoothing
from c2f_cli.errors import C2FError
from c2f_cli.labels import LabelMap, LabelSet, write_atomically
from c2f_cli.score import Scores, confusion_matrix, scores_from_confusion
from c2f_cli.tiling import Box, Predictor, pad_image, padded_size, predict_windows, stitch_windows

MANIFEST_NAME = "manifest.json"


def class_ids(probabilities: np.ndarray) -> np.ndarray:
    """(H, W) class ids of float32 (K, H, W) probabilities; ties go to the lower class, as with argmax."""
    # A loop over classes instead of argmax(axis=0), which copies a cropped (K, H, W)
    # view whole (0.6 GB for a 6000 x 4000 photo) and is slower even for a small face.
    ids = np.zeros(probabilities.shape[1:], dtype=np.uint8 if len(probabilities) <= 256 else np.uint16)
    best = probabilities[0].copy()
    for class_id in range(1, len(probabilities)):
        np.copyto(ids, class_id, where=probabilities[class_id] > best)
        np.maximum(best, probabilities[class_id], out=best)
    return ids


def smooth(probabilities: np.ndarray, sigma: float) -> np.ndarray:
    """Blur each class plane of float32 (K, H, W) probabilities in place by a Gaussian (edges repeated)."""
    # scipy.ndimage.gaussian_filter does the same, but importing scipy would add more to refine's
    # start-up than this blur costs a face; c2f does not depend on scipy otherwise.
    if not sigma >= MIN_SMOOTHING:  # 0 (off), and NaN, leave them alone
        return probabilities
    radius = math.ceil(2.5 * sigma)  # the tails beyond hold 1 % of the weight
    kernel = np.exp(-np.arange(radius + 1) ** 2 / (2 * sigma**2)).astype(np.float32)
    kernel /= 2 * kernel.sum() - kernel[0]
    for plane in probabilities:  # one class at a time, so a huge photo needs only a few planes of memory
        for lines in (plane, plane.T):  # blur along axis 0 of each: down the columns, then along the rows
            length = lines.shape[0]
            padded = np.concatenate([lines[:1].repeat(radius, axis=0), lines, lines[-1:].repeat(radius, axis=0)])
            blurred = kernel[0] * lines
            pair = np.empty_like(lines)
            for offset in range(1, radius + 1):  # the kernel is symmetric: add each pair, then weigh it once
                before, after = radius - offset, radius + offset
                np.add(padded[before:before + length], padded[after:after + length], out=pair)
                pair *= kernel[offset]
                blurred += pair
            lines[...] = blurred
    return probabilities


def goes_whole(height: int, width: int, settings: WindowSettings) -> bool:
    """Whether an image of this size goes through the network in one pass rather than in windows."""
    padded_height, padded_width = padded_size(height, width, 1, SIZE_MULTIPLE)
    return settings.whole_image or padded_height * padded_width <= settings.whole_image_max_pixels


def refine_windows(predictor: Predictor, photo: np.ndarray, coarse: np.ndarray | None, num_classes: int,
                   settings: WindowSettings, on_batch: Callable[[int, int], None] | None = None
                   ) -> tuple[Iterator[tuple[Box, np.ndarray]], tuple[int, int], int]:
    """Windows' probabilities for a photo, the padded size they tile, and their overlap.

    photo is uint8 (H, W, 3); coarse is (H, W) class ids, or None for RGB-only models.
    """
    height, width = photo.shape[:2]
    if goes_whole(height, width, settings):
        padded = padded_size(height, width, 1, SIZE_MULTIPLE)
        window, overlap, batch_size = max(padded), 0, 1
    else:
        padded = padded_size(height, width, settings.window, SIZE_MULTIPLE)
        window, overlap, batch_size = settings.window, settings.overlap, settings.batch_size
    padded_photo = pad_image(photo, *padded)
    padded_coarse = None if coarse is None else pad_image(coarse, *padded)
    windows = predict_windows(predictor, padded_photo, padded_coarse, num_classes, window, overlap,
                              batch_size, on_batch)
    return windows, padded, overlap


def refine_probabilities(predictor: Predictor, photo: np.ndarray, coarse: np.ndarray | None, num_classes: int,
                         settings: WindowSettings = WindowSettings(),
                         on_batch: Callable[[int, int], None] | None = None,
                         windows_dir: Path | None = None, labels: LabelSet | None = None) -> np.ndarray:
    """float32 (K, H, W) stitched and smoothed probabilities; windows are also saved when windows_dir is given."""
    windows, padded, overlap = refine_windows(predictor, photo, coarse, num_classes, settings, on_batch)
    if windows_dir is not None:
        manifest = {"height": photo.shape[0], "width": photo.shape[1], "padded": list(padded),
                    "overlap": overlap, "num_classes": num_classes, "smoothing": settings.smoothing,
                    "labels": json.loads(labels.to_json()) if labels else None, "windows": []}
        windows = save_windows(windows, Path(windows_dir), manifest)
    probabilities = stitch_windows(windows, num_classes, *padded, overlap)
    return smooth(probabilities[:, :photo.shape[0], :photo.shape[1]], settings.smoothing)


def refine_map(predictor: Predictor, photo: np.ndarray, coarse: np.ndarray | None, num_classes: int,
               settings: WindowSettings = WindowSettings()) -> np.ndarray:
    """Fine class ids (H, W) for one photo and its coarse map."""
    return class_ids(refine_probabilities(predictor, photo, coarse, num_classes, settings))


def score_refinement(predictor: Predictor, samples: list, num_classes: int, uses_coarse: bool,
                     settings: WindowSettings = WindowSettings()) -> Scores:
    """Pooled scores of refining fine-labelled samples (data.LoadedSample) against their fine maps."""
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    for sample in samples:
        predicted = refine_map(predictor, sample.photo, sample.coarse if uses_coarse else None, num_classes, settings)
        confusion += confusion_matrix(predicted, sample.fine, num_classes)
    return scores_from_confusion(confusion)


def save_windows(windows: Iterator[tuple[Box, np.ndarray]], folder: Path,
                 manifest: dict) -> Iterator[tuple[Box, np.ndarray]]:
    """Pass windows through while writing each as float16 .npy, then the manifest last.

    The manifest is written only once every window is on disk, so a folder with a
    manifest is always complete.
    """
    folder.mkdir(parents=True, exist_ok=True)
    # A reused folder's old manifest would vouch for a mix of old and new windows if this run stops early.
    (folder / MANIFEST_NAME).unlink(missing_ok=True)
    for index, (box, probabilities) in enumerate(windows):
        name = f"window_{index:05d}.npy"
        stored = probabilities.astype(np.float16)

        def write_window(temporary: Path) -> None:
            with open(temporary, "wb") as handle:  # a path would make np.save append ".npy"
                np.save(handle, stored)
        write_atomically(folder / name, write_window)
        manifest["windows"].append({"file": name, **asdict(box)})
        # Blend exactly what was stored, so this refine and a later `c2f stitch` agree pixel for pixel
        # even where two classes differ by less than float16 can tell apart.
        yield box, stored.astype(np.float32)
    write_atomically(folder / MANIFEST_NAME, lambda temporary: temporary.write_text(json.dumps(manifest, indent=1)))


def stitch_folder(folder: Path) -> tuple[np.ndarray, dict]:
    """Blend a windows folder written by `refine --windows-dir`: (K, H, W) probabilities and its manifest."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST_NAME
    if not folder.is_dir():
        raise C2FError(f"windows folder not found: {folder}")
    if not manifest_path.is_file():
        raise C2FError(f"{folder} has no {MANIFEST_NAME}; it is not a complete `refine --windows-dir` folder.")
    manifest, entries = read_manifest(manifest_path)
    num_classes = manifest["num_classes"]

    def load_windows() -> Iterator[tuple[Box, np.ndarray]]:
        for box, path in entries:
            expected = (num_classes, box.height, box.width)
            try:
                # Memory-mapped, so a damaged header claiming a huge shape allocates nothing.
                stored = np.load(path, mmap_mode="r", allow_pickle=False)
                if stored.shape != expected or stored.dtype.kind not in "fiu":
                    raise C2FError(f"{path} holds {stored.dtype} {stored.shape}, but the manifest expects "
                                   f"float {expected}; re-run refine for it.")
                probabilities = np.array(stored, dtype=np.float32)
                if not np.isfinite(probabilities).all():
                    raise C2FError(f"{path} holds values that are not numbers; re-run refine for it.")
            except NPY_READ_ERRORS as error:
                raise C2FError(f"{path} is missing or damaged ({error}); re-run refine for it.") from None
            yield box, probabilities
    probabilities = stitch_windows(load_windows(), num_classes, *manifest["padded"], manifest["overlap"])
    probabilities = probabilities[:, :manifest["height"], :manifest["width"]]
    if np.isnan(probabilities[0]).any():  # no window reached these pixels
        raise C2FError(f"{manifest_path}: its windows do not cover the whole image; re-run refine with --windows-dir.")
    return smooth(probabilities, manifest.get("smoothing", 0.0)), manifest  # folders from before smoothing: none


# A stitched map holds num_classes x height x width float32 values; more than this (16 GB) means a damaged manifest.
MAX_STITCHED_VALUES = 2**32
# numpy's .npy header parser reports a damaged file through any of these.
NPY_READ_ERRORS = (OSError, ValueError, EOFError, SyntaxError, TypeError, TokenError)


def is_count(value: object, minimum: int) -> bool:
    """True for a whole number (not a bool) of at least minimum."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= minimum


def read_manifest(manifest_path: Path) -> tuple[dict, list[tuple[Box, Path]]]:
    """A windows folder's manifest and its (box, window file) entries, checked so stitching cannot fail."""
    damaged = f"{manifest_path} is damaged"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except ValueError as error:  # includes JSONDecodeError and UnicodeDecodeError
        raise C2FError(f"{damaged} ({error}); re-run refine with --windows-dir.") from None
    if not isinstance(manifest, dict):
        raise C2FError(f"{damaged}: it holds no JSON object; re-run refine with --windows-dir.")
    height, width, padded = manifest.get("height"), manifest.get("width"), manifest.get("padded")
    if not (is_count(height, 1) and is_count(width, 1) and isinstance(padded, list) and len(padded) == 2
            and is_count(padded[0], height) and is_count(padded[1], width)
            and is_count(manifest.get("overlap"), 0) and is_count(manifest.get("num_classes"), 1)
            and is_smoothing(manifest.get("smoothing", 0.0))
            and manifest["num_classes"] * padded[0] * padded[1] <= MAX_STITCHED_VALUES
            and isinstance(manifest.get("windows"), list) and manifest["windows"]):
        raise C2FError(f"{damaged}: height, width, padded, overlap, num_classes, smoothing or windows are "
                       "missing or invalid; re-run refine with --windows-dir.")
    entries = []
    for entry in manifest["windows"]:
        fields = [entry.get(key) for key in ("top", "left", "height", "width")] if isinstance(entry, dict) else []
        name = entry.get("file") if isinstance(entry, dict) else None
        valid = (len(fields) == 4 and all(is_count(value, 0) for value in fields) and fields[2] and fields[3]
                 and fields[0] + fields[2] <= padded[0] and fields[1] + fields[3] <= padded[1]
                 and isinstance(name, str) and name == Path(name).name and name not in ("", ".", ".."))
        if not valid:
            raise C2FError(f"{damaged}: window entry {entry!r} is invalid; re-run refine with --windows-dir.")
        entries.append((Box(*fields), manifest_path.parent / name))
    return manifest, entries


@dataclass(frozen=True)
class RefineResult:
    """What refining one file produced."""

    output: Path
    far_pixels: int  # coarse pixels whose colour was far from every palette colour
    changed_fraction: float  # share of pixels whose class differs from the coarse map
    photo_note: str | None = None  # how a photo that was not 8-bit RGB was converted


def read_inputs(photo_path: Path, coarse_path: Path, labels: LabelSet) -> tuple[np.ndarray, LabelMap]:
    """A photo, uint8 (H, W, 3), and its decoded coarse map, checked to be the same size."""
    from c2f_cli.labels import check_same_size, read_label_map, read_photo

    photo = read_photo(photo_path)
    coarse = read_label_map(coarse_path, labels)
    check_same_size(coarse.class_ids, coarse_path, photo, photo_path)
    return photo, coarse


def refine_file(predictor: Predictor, labels: LabelSet, uses_coarse: bool, photo_path: Path, coarse_path: Path,
                output_path: Path, settings: WindowSettings = WindowSettings(), output_format: str | None = None,
                strict: bool = False, windows_dir: Path | None = None, overlay_path: Path | None = None,
                on_batch: Callable[[int, int], None] | None = None,
                inputs: tuple[np.ndarray, LabelMap] | None = None) -> RefineResult:
    """Read a photo and coarse map (unless `inputs` holds them already), refine, and write the fine map atomically."""
    from c2f_cli.labels import photo_note, write_label_map

    photo, coarse = inputs if inputs is not None else read_inputs(photo_path, coarse_path, labels)
    if strict and coarse.far_pixels:
        raise C2FError(f"{coarse_path}: {coarse.far_pixels} pixels have colours far from every palette colour "
                       "(--strict); fix the map or pass the right --labels.")
    probabilities = refine_probabilities(predictor, photo, coarse.class_ids if uses_coarse else None,
                                         labels.num_classes, settings, on_batch, windows_dir, labels)
    fine = class_ids(probabilities)
    if overlay_path is not None:  # before the map: an existing map then means its overlay is complete too
        from c2f_cli.overlay import write_overlay
        write_overlay(overlay_path, photo, coarse.class_ids, fine, labels)
    write_label_map(output_path, fine, labels, output_format or coarse.encoding)
    changed = float((fine != coarse.class_ids).mean())
    return RefineResult(Path(output_path), coarse.far_pixels, changed, photo_note(photo_path))
