"""Windows as the unit of work: a huge photo's windows computed in batches by different workers, then stitched.

A batch is a range of the photo's windows in the order refine computes them
(inference.sliding_window.window_layout). Each worker writes its windows into a
`--windows-dir` folder (inference.windows_folder); once all are there, the
manifest is written and the folder is blended by stitch_folder_class_ids, the function
`c2f stitch` uses. Windows are stored as float32 unless the user asked for a
windows folder (float16, as refine writes one), so the stitched map is the very
map a single process writes. Needs no Ray: any engine can run these functions.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from c2f.config import ClusterSettings, WindowSettings
from c2f.inference.predictor import Predictor
from c2f.inference.sliding_window import padded_inputs, predict_boxes, window_layout
from c2f.inference.windows_folder import (
    MANIFEST_NAME,
    new_manifest,
    save_window,
    stitch_folder_class_ids,
    write_manifest,
)
from c2f.io.label_maps import LabelMap
from c2f.io.label_sets import LabelSet
from c2f.io.photos import photo_size
from c2f.refine import FolderPair, RefineResult, check_strict, read_inputs, write_outputs


def window_batches(pair: FolderPair, settings: WindowSettings, cluster: ClusterSettings) -> list[tuple[int, int]]:
    """(start, end) ranges of a photo's windows, one per task; empty when the photo is not split."""
    size = photo_size(pair.photo)
    if size is None or not cluster.split_pixels or size[0] * size[1] <= cluster.split_pixels:
        return []
    count = len(window_layout(*size, settings).boxes())
    return [(start, min(start + cluster.windows_per_batch, count))
            for start in range(0, count, cluster.windows_per_batch)]


def windows_folder_for(pair: FolderPair, windows_dir: Path | None) -> Path:
    """Where a split photo's windows go: the user's --windows-dir, else a hidden folder beside its fine map."""
    return windows_dir / pair.stem if windows_dir else pair.output.parent / f".{pair.stem}.c2f-windows"


def prepare_windows_folder(folder: Path) -> None:
    """Create the folder, dropping an old manifest that would vouch for a mix of old and new windows."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST_NAME).unlink(missing_ok=True)


def discard_windows_folder(pair: FolderPair, windows_dir: Path | None) -> None:
    """Remove a failed split photo's temporary windows; a --windows-dir folder stays, without a manifest."""
    if windows_dir is None:
        shutil.rmtree(windows_folder_for(pair, windows_dir), ignore_errors=True)


def compute_window_batch(predictor: Predictor, labels: LabelSet, uses_coarse: bool, pair: FolderPair,
                         settings: WindowSettings, strict: bool, folder: Path, start: int, end: int,
                         keeps_windows: bool, inputs: tuple[np.ndarray, LabelMap] | None = None) -> list[dict]:
    """Compute windows start..end-1 of a photo and write each into folder; their manifest entries, in order."""
    photo, coarse = inputs if inputs is not None else read_inputs(pair.photo, pair.coarse, labels)
    check_strict(coarse, pair.coarse, strict)
    layout = window_layout(*photo.shape[:2], settings)
    padded_photo, padded_coarse = padded_inputs(photo, coarse.class_ids if uses_coarse else None, layout,
                                                 labels.num_classes)
    windows = predict_boxes(predictor, padded_photo, padded_coarse, labels.num_classes,
                            layout.boxes()[start:end], layout.batch_size)
    dtype = np.float16 if keeps_windows else np.float32
    return [save_window(folder, index, box, probabilities, dtype)[0]
            for index, (box, probabilities) in enumerate(windows, start)]


def finish_split_pair(labels: LabelSet, pair: FolderPair, settings: WindowSettings, folder: Path,
                      entries: list[dict], output_format: str | None, keeps_windows: bool) -> RefineResult:
    """Write the manifest of a split photo's computed windows, stitch them, and write its fine map atomically."""
    photo, coarse = read_inputs(pair.photo, pair.coarse, labels)
    layout = window_layout(*photo.shape[:2], settings)
    manifest = new_manifest(photo.shape[:2], layout.padded, layout.overlap, labels.num_classes,
                            settings.smoothing, labels)
    manifest["windows"] = entries
    write_manifest(folder, manifest)
    fine, _ = stitch_folder_class_ids(folder)
    result = write_outputs(fine, photo, coarse, labels, pair.photo, pair.output, output_format, pair.overlay)
    if not keeps_windows:
        shutil.rmtree(folder, ignore_errors=True)
    return result
