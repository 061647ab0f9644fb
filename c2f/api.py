"""c2f as a Python library: load a model once with Refiner, refine many photos, score maps.

    import c2f
    refiner = c2f.Refiner()  # the shipped FASSEG model, on ONNX Runtime
    fine = refiner.refine("examples/astronaut.png", "examples/astronaut_coarse.png")  # (H, W) class ids
    scores = c2f.score(fine, fine)  # pixel accuracy, per-class IoU, mean IoU

Arrays in and out are numpy: photos uint8 (H, W, 3) RGB; maps (H, W) integer class ids
(or uint8 (H, W, 3) colour-coded maps, decoded with the model's label set).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Union

import numpy as np

from c2f.config import WindowSettings
from c2f.errors import C2FError
from c2f.inference.backends import load_predictor, run_precision
from c2f.inference.postprocess import class_ids
from c2f.inference.sliding_window import refine_map, refine_probabilities
from c2f.io.label_maps import check_ids, colors_to_ids, id_dtype, read_label_map
from c2f.io.label_sets import LabelSet, load_label_set
from c2f.io.photos import read_photo
from c2f.scoring import Scores, confusion_matrix, scores_from_confusion
from c2f.shipped import SHIPPED_MODELS, refine_weights

ArrayOrPath = Union[np.ndarray, str, Path]


def as_photo(photo: ArrayOrPath) -> np.ndarray:
    """uint8 (H, W, 3) from a path or an array (a grey (H, W) array is repeated over three channels)."""
    if isinstance(photo, (str, Path)):
        return read_photo(Path(photo))
    array = np.asarray(photo)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise C2FError(f"a photo array must be uint8 (H, W, 3) RGB, got {array.dtype} {array.shape}.")
    return array


def as_class_ids(label_map: ArrayOrPath, labels: LabelSet, what: str) -> np.ndarray:
    """(H, W) class ids from a map file, an (H, W) integer array of class indices (K: not annotated / ignored), or a
    uint8 (H, W, 3) colour-coded array."""
    if isinstance(label_map, (str, Path)):
        return read_label_map(Path(label_map), labels).class_ids
    array = np.asarray(label_map)
    if array.ndim == 3 and array.shape[2] == 3 and array.dtype == np.uint8:
        return colors_to_ids(array, labels)[0]
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.integer):
        raise C2FError(f"the {what} map must be (H, W) integer class ids or uint8 (H, W, 3) colours, "
                       f"got {array.dtype} {array.shape}.")
    check_ids(array, labels, Path(f"the {what} map"))
    return array.astype(id_dtype(labels.num_classes))


class Refiner:
    """A model loaded once, refining any number of (photo, coarse map) pairs."""

    def __init__(self, weights: str | Path | None = None, backend: str = "auto", device: str = "auto",
                 labels: str | Path | LabelSet | None = None, settings: WindowSettings = WindowSettings(),
                 on_note: Callable[[str], None] | None = None, precision: str = "auto"):
        """weights: None (the shipped model made for labels, else FASSEG's), a shipped model's name (fasseg,
        camvid), a .safetensors or an .onnx file; backend: auto, torch or onnx; device: auto, cpu or cuda; labels:
        a label file, a shipped table's name or a LabelSet the model must have; precision: auto (a shipped
        model's int8 export where there is one), int8 or fp32, for shipped models, or bf16 (the torch backend in
        bfloat16, for a shipped model or a .safetensors file)."""
        requested = labels if isinstance(labels, LabelSet) or labels is None else load_label_set(Path(labels))
        settings.check()
        self.settings = settings
        shipped_name = str(weights) if weights is not None and str(weights) in SHIPPED_MODELS \
            and not Path(weights).exists() else None
        path = refine_weights(None if shipped_name or weights is None else Path(weights), shipped_name,
                              None if isinstance(labels, LabelSet) else labels, backend, precision)
        self.predictor, self.labels, self.uses_coarse = load_predictor(path, requested, backend, device, on_note,
                                                                       run_precision(precision))

    def refine(self, photo: ArrayOrPath, coarse: ArrayOrPath | None = None, probabilities: bool = False,
               ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Fine class ids (H, W); with probabilities=True also float32 (K, H, W) class probabilities."""
        photo_array = as_photo(photo)
        coarse_ids = None
        if self.uses_coarse:
            if coarse is None:
                raise C2FError("this model refines coarse maps: pass one with the photo.")
            coarse_ids = as_class_ids(coarse, self.labels, "coarse")
            if coarse_ids.shape != photo_array.shape[:2]:
                raise C2FError(f"the coarse map is {coarse_ids.shape[1]}x{coarse_ids.shape[0]} but the photo is "
                               f"{photo_array.shape[1]}x{photo_array.shape[0]}; they must be the same size.")
        if not probabilities:  # stitched in row bands: no (K, H, W) array for a big photo
            return refine_map(self.predictor, photo_array, coarse_ids, self.labels.num_classes, self.settings)
        stitched = refine_probabilities(self.predictor, photo_array, coarse_ids, self.labels.num_classes,
                                        self.settings)
        return class_ids(stitched), stitched


def score(predicted: ArrayOrPath, fine: ArrayOrPath, labels: str | Path | LabelSet | None = None) -> Scores:
    """Pixel accuracy, per-class IoU and mean IoU of a predicted map against a fine one (arrays or files)."""
    label_set = labels if isinstance(labels, LabelSet) else load_label_set(Path(labels) if labels else None)
    predicted_ids = as_class_ids(predicted, label_set, "predicted")
    fine_ids = as_class_ids(fine, label_set, "fine")
    if predicted_ids.shape != fine_ids.shape:
        raise C2FError(f"the predicted map is {predicted_ids.shape[1]}x{predicted_ids.shape[0]} but the fine map "
                       f"is {fine_ids.shape[1]}x{fine_ids.shape[0]}; they must be the same size.")
    return scores_from_confusion(confusion_matrix(predicted_ids, fine_ids, label_set.num_classes))
