"""The windows-folder format of `refine --windows-dir` and `c2f stitch`.

One float16 .npy file of (K, h, w) probabilities per window, and a manifest.json
written last (so a folder with a manifest is complete) that names the image
size, the padding, the overlap, the smoothing and the label set.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from tokenize import TokenError
from typing import Iterator

import numpy as np

from c2f.config import MAX_CLASSES, MAX_WINDOW, is_smoothing
from c2f.errors import C2FError
from c2f.inference.tiling import Box, Stitcher, stitch_class_ids, stitch_probabilities
from c2f.io.documents import parse_json
from c2f.io.files import write_atomically
from c2f.io.label_sets import LabelSet
from c2f.io.photos import max_pixels

MANIFEST_NAME = "manifest.json"


def new_manifest(size: tuple[int, int], padded: tuple[int, int], overlap: int, num_classes: int,
                 smoothing: float, labels: LabelSet | None) -> dict:
    """The manifest of a windows folder before its windows are added: what `c2f stitch` needs to rebuild the map."""
    return {"height": size[0], "width": size[1], "padded": list(padded), "overlap": overlap,
            "num_classes": num_classes, "smoothing": smoothing,
            "labels": labels.to_dict() if labels else None, "windows": []}

def window_name(index: int) -> str:
    """The file name of a folder's index-th window (its place in the stitching order)."""
    return f"window_{index:05d}.npy"


def save_window(folder: Path, index: int, box: Box, probabilities: np.ndarray,
                dtype: type = np.float16) -> tuple[dict, np.ndarray]:
    """Write one window's (K, h, w) probabilities atomically; its manifest entry, and float32 of what was stored.

    float16 halves the files; float32 keeps the probabilities exactly, so stitching them
    gives the very map that stitching in memory gives.
    """
    stored = probabilities.astype(dtype)

    def write_window(temporary: Path) -> None:
        with open(temporary, "wb") as handle:  # a path would make np.save append ".npy"
            np.save(handle, stored)
    write_atomically(folder / window_name(index), write_window)
    return {"file": window_name(index), **asdict(box)}, stored.astype(np.float32)


def write_manifest(folder: Path, manifest: dict) -> None:
    """Write the manifest atomically, once every window it lists is on disk: it marks the folder complete."""
    write_atomically(folder / MANIFEST_NAME, lambda temporary: temporary.write_text(json.dumps(manifest, indent=1)))


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
        entry, stored = save_window(folder, index, box, probabilities)
        manifest["windows"].append(entry)
        # Blend exactly what was stored, so this refine and a later `c2f stitch` agree pixel for pixel
        # even where two classes differ by less than float16 can tell apart.
        yield box, stored
    write_manifest(folder, manifest)


def folder_windows(folder: Path) -> tuple[Iterator[tuple[Box, np.ndarray]], Stitcher, dict]:
    """A windows folder's windows in row-major order (loaded one at a time), their Stitcher, and its manifest."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST_NAME
    if not folder.is_dir():
        raise C2FError(f"windows folder not found: {folder}")
    if not manifest_path.is_file():
        raise C2FError(f"{folder} has no {MANIFEST_NAME}; it is not a complete `refine --windows-dir` folder.")
    manifest, entries = read_manifest(manifest_path)
    num_classes = manifest["num_classes"]
    # The stitcher takes windows top to bottom; refine writes them so, and a stable sort keeps its order.
    entries = sorted(entries, key=lambda entry: (entry[0].top, entry[0].left))

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
    # Folders written before smoothing existed name none: they are stitched unsmoothed.
    stitcher = Stitcher(num_classes, tuple(manifest["padded"]), (manifest["height"], manifest["width"]),
                        manifest["overlap"], manifest.get("smoothing", 0.0))
    return load_windows(), stitcher, manifest


def check_covered(stitcher: Stitcher, folder: Path) -> None:
    """Refuse a folder whose windows left some pixel of the image without any window."""
    if stitcher.uncovered:
        raise C2FError(f"{Path(folder) / MANIFEST_NAME}: its windows do not cover the whole image; "
                       "re-run refine with --windows-dir.")


def stitch_folder(folder: Path) -> tuple[np.ndarray, dict]:
    """Blend a windows folder written by `refine --windows-dir`: smoothed (K, H, W) probabilities and its manifest."""
    windows, stitcher, manifest = folder_windows(folder)
    probabilities = stitch_probabilities(windows, stitcher)
    check_covered(stitcher, folder)
    return probabilities, manifest


def stitch_folder_class_ids(folder: Path) -> tuple[np.ndarray, dict]:
    """A windows folder's fine map, (H, W) class ids, stitched in row bands, and its manifest."""
    windows, stitcher, manifest = folder_windows(folder)
    fine = stitch_class_ids(windows, stitcher)
    check_covered(stitcher, folder)
    return fine, manifest


def manifest_labels(manifest: dict, folder: Path) -> LabelSet:
    """The label set a manifest names, refused when missing or not matching its windows' class count."""
    if not manifest.get("labels"):
        raise C2FError(f"{folder}: the manifest names no label set.")
    labels = LabelSet.from_dict(manifest["labels"], str(folder))
    if labels.num_classes != manifest["num_classes"]:
        raise C2FError(f"{folder}: the manifest's label set has {labels.num_classes} classes but its windows hold "
                       f"{manifest['num_classes']}; re-run refine with --windows-dir.")
    return labels


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
        text = manifest_path.read_text(encoding="utf-8")
    except ValueError as error:  # UnicodeDecodeError
        raise C2FError(f"{damaged} ({error}); re-run refine with --windows-dir.") from None
    manifest = parse_json(text, str(manifest_path), "; re-run refine with --windows-dir")
    if not isinstance(manifest, dict):
        raise C2FError(f"{damaged}: it holds no JSON object; re-run refine with --windows-dir.")
    height, width, padded = manifest.get("height"), manifest.get("width"), manifest.get("padded")
    if not (is_count(height, 1) and is_count(width, 1) and isinstance(padded, list) and len(padded) == 2
            and is_count(padded[0], height) and is_count(padded[1], width)
            and is_count(manifest.get("overlap"), 0) and manifest["overlap"] < MAX_WINDOW
            and is_count(manifest.get("num_classes"), 1) and manifest["num_classes"] <= MAX_CLASSES
            and is_smoothing(manifest.get("smoothing", 0.0))
            and height * width <= max_pixels() and padded[0] < height + MAX_WINDOW and padded[1] < width + MAX_WINDOW
            and manifest["num_classes"] * padded[0] * padded[1] <= MAX_STITCHED_VALUES
            and isinstance(manifest.get("windows"), list) and manifest["windows"]):
        raise C2FError(f"{damaged}: height, width, padded, overlap, num_classes, smoothing or windows are "
                       f"missing, invalid or beyond c2f's limits ({max_pixels() / 1e6:g} megapixels, "
                       f"{MAX_CLASSES} classes); re-run refine with --windows-dir.")
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
