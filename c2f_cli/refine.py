"""Refining photos and coarse maps into fine maps, given any predictor.

One path serves every use: windows are predicted (tiling.predict_windows),
optionally saved for later (`--windows-dir`), and blended by the same
tiling.stitch_windows that `c2f stitch` uses.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from c2f_cli.errors import C2FError
from c2f_cli.labels import LabelSet, write_atomically
from c2f_cli.tiling import Box, Predictor, pad_image, padded_size, predict_windows, stitch_windows

# The U-Net halves the size up to five times, so inputs are padded to multiples of 32.
SIZE_MULTIPLE = 32
MANIFEST_NAME = "manifest.json"


@dataclass(frozen=True)
class WindowSettings:
    """How an image is cut into windows for the network."""

    window: int = 256  # side of a square window, in pixels (a multiple of 32)
    overlap: int = 64  # pixels shared by neighbouring windows, blended smoothly
    batch_size: int = 8  # windows per network call
    whole_image: bool = False  # one window covering the whole padded image (fast, seamless)

    def check(self) -> None:
        if self.window < SIZE_MULTIPLE or self.window % SIZE_MULTIPLE:
            raise C2FError(f"--window must be a positive multiple of {SIZE_MULTIPLE}, got {self.window}.")
        if not 0 <= self.overlap < self.window:
            raise C2FError(f"--overlap must be at least 0 and below --window ({self.window}), got {self.overlap}.")
        if self.batch_size < 1:
            raise C2FError(f"--batch-size must be at least 1, got {self.batch_size}.")


def class_ids(probabilities: np.ndarray) -> np.ndarray:
    """(H, W) class ids of float32 (K, H, W) probabilities."""
    return probabilities.argmax(axis=0).astype(np.uint8 if len(probabilities) <= 256 else np.uint16)


def refine_windows(predictor: Predictor, photo: np.ndarray, coarse: np.ndarray | None, num_classes: int,
                   settings: WindowSettings, on_batch: Callable[[int, int], None] | None = None
                   ) -> tuple[Iterator[tuple[Box, np.ndarray]], tuple[int, int], int]:
    """Windows' probabilities for a photo, the padded size they tile, and their overlap.

    photo is uint8 (H, W, 3); coarse is (H, W) class ids, or None for RGB-only models.
    """
    height, width = photo.shape[:2]
    if settings.whole_image:
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
    """float32 (K, H, W) stitched probabilities; windows are also saved when windows_dir is given."""
    windows, padded, overlap = refine_windows(predictor, photo, coarse, num_classes, settings, on_batch)
    if windows_dir is not None:
        manifest = {"height": photo.shape[0], "width": photo.shape[1], "padded": list(padded),
                    "overlap": overlap, "num_classes": num_classes,
                    "labels": json.loads(labels.to_json()) if labels else None, "windows": []}
        windows = save_windows(windows, Path(windows_dir), manifest)
    probabilities = stitch_windows(windows, num_classes, *padded, overlap)
    return probabilities[:, :photo.shape[0], :photo.shape[1]]


def refine_map(predictor: Predictor, photo: np.ndarray, coarse: np.ndarray | None, num_classes: int,
               settings: WindowSettings = WindowSettings()) -> np.ndarray:
    """Fine class ids (H, W) for one photo and its coarse map."""
    return class_ids(refine_probabilities(predictor, photo, coarse, num_classes, settings))


def save_windows(windows: Iterator[tuple[Box, np.ndarray]], folder: Path,
                 manifest: dict) -> Iterator[tuple[Box, np.ndarray]]:
    """Pass windows through while writing each as float16 .npy, then the manifest last.

    The manifest is written only once every window is on disk, so a folder with a
    manifest is always complete.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for index, (box, probabilities) in enumerate(windows):
        name = f"window_{index:05d}.npy"
        write_atomically(folder / name, lambda temporary: np.save(open(temporary, "wb"), probabilities.astype(np.float16)))
        manifest["windows"].append({"file": name, **asdict(box)})
        yield box, probabilities
    write_atomically(folder / MANIFEST_NAME, lambda temporary: temporary.write_text(json.dumps(manifest, indent=1)))


def stitch_folder(folder: Path) -> tuple[np.ndarray, dict]:
    """Blend a windows folder written by `refine --windows-dir`: (K, H, W) probabilities and its manifest."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST_NAME
    if not manifest_path.is_file():
        raise C2FError(f"{folder} has no {MANIFEST_NAME}; it is not a complete `refine --windows-dir` folder.")
    try:
        manifest = json.loads(manifest_path.read_text())
        entries = [(Box(entry["top"], entry["left"], entry["height"], entry["width"]), folder / entry["file"])
                   for entry in manifest["windows"]]
        padded, overlap, num_classes = manifest["padded"], manifest["overlap"], manifest["num_classes"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise C2FError(f"{manifest_path} is damaged ({error}).") from None

    def load_windows() -> Iterator[tuple[Box, np.ndarray]]:
        for box, path in entries:
            try:
                probabilities = np.load(path, allow_pickle=False).astype(np.float32)
            except (OSError, ValueError) as error:
                raise C2FError(f"{path} is missing or damaged ({error}); re-run refine for it.") from None
            if probabilities.shape != (num_classes, box.height, box.width):
                raise C2FError(f"{path} holds shape {probabilities.shape}, but the manifest expects "
                               f"{(num_classes, box.height, box.width)}.")
            yield box, probabilities
    probabilities = stitch_windows(load_windows(), num_classes, *padded, overlap)
    return probabilities[:, :manifest["height"], :manifest["width"]], manifest


@dataclass(frozen=True)
class RefineResult:
    """What refining one file produced."""

    output: Path
    far_pixels: int  # coarse pixels whose colour was far from every palette colour
    changed_fraction: float  # share of pixels whose class differs from the coarse map


def check_same_size(photo: np.ndarray, photo_path: Path, label_map: np.ndarray, map_path: Path) -> None:
    if label_map.shape != photo.shape[:2]:
        raise C2FError(f"{map_path} is {label_map.shape[1]}x{label_map.shape[0]} but {photo_path} is "
                       f"{photo.shape[1]}x{photo.shape[0]}; a coarse map must match its photo's size.")


def refine_file(predictor: Predictor, labels: LabelSet, uses_coarse: bool, photo_path: Path, coarse_path: Path,
                output_path: Path, settings: WindowSettings = WindowSettings(), output_format: str | None = None,
                strict: bool = False, windows_dir: Path | None = None, overlay_path: Path | None = None,
                on_batch: Callable[[int, int], None] | None = None) -> RefineResult:
    """Read a photo and coarse map, refine, and write the fine map (and extras) atomically."""
    from c2f_cli.labels import read_label_map, read_photo, write_label_map

    photo = read_photo(photo_path)
    coarse = read_label_map(coarse_path, labels)
    check_same_size(photo, photo_path, coarse.class_ids, coarse_path)
    if strict and coarse.far_pixels:
        raise C2FError(f"{coarse_path}: {coarse.far_pixels} pixels have colours far from every palette colour "
                       "(--strict); fix the map or pass the right --labels.")
    probabilities = refine_probabilities(predictor, photo, coarse.class_ids if uses_coarse else None,
                                         labels.num_classes, settings, on_batch, windows_dir, labels)
    fine = class_ids(probabilities)
    write_label_map(output_path, fine, labels, output_format or coarse.encoding)
    if overlay_path is not None:
        from c2f_cli.overlay import write_overlay
        write_overlay(overlay_path, photo, coarse.class_ids, fine, labels)
    changed = float((fine != coarse.class_ids).mean())
    return RefineResult(Path(output_path), coarse.far_pixels, changed)
