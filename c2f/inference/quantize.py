"""int8 quantisation of an exported model: ONNX Runtime static quantisation, QDQ, per-channel weights.

Activations are calibrated (min/max) on whole faces built exactly as refine builds its
one-pass network inputs, so the ranges are those the model meets. Unsigned 8-bit
activations with signed 8-bit per-channel weights are what ONNX Runtime's x86 kernels
run fastest without VNNI; signed activations gave no speed-up on an AVX2-only CPU.
The file keeps its source's metadata plus "precision": "int8", and is refused unless
its class ids agree with float32 on the calibration inputs.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import onnx

from c2f.config import SIZE_MULTIPLE, QuantizeSettings
from c2f.errors import C2FError
from c2f.inference.network_input import network_input
from c2f.inference.onnx_session import INPUT_NAME, OUTPUT_NAME, open_session
from c2f.inference.tiling import pad_image, padded_size


def calibration_inputs(samples: list[tuple[np.ndarray, np.ndarray | None]], num_classes: int
                       ) -> Iterator[np.ndarray]:
    """float32 (1, C, H', W') one-pass network inputs of (photo uint8 (H, W, 3), coarse ids (H, W) or None) pairs."""
    for photo, coarse in samples:
        padded = padded_size(*photo.shape[:2], 1, SIZE_MULTIPLE)
        yield network_input(pad_image(photo, *padded), None if coarse is None else pad_image(coarse, *padded),
                            num_classes)[None]


def quantize_model(source: Path, output: Path, inputs: list[np.ndarray],
                   settings: QuantizeSettings = QuantizeSettings()) -> float:
    """Write source (a float32 `c2f export` file) as int8 QDQ to output; return its class-id agreement with float32.

    Refused (C2FError; the caller's atomic write then keeps nothing) when fewer than settings.min_agreement of the calibration
    inputs' pixels keep their float32 class.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.remaining = iter(inputs)

        def get_next(self) -> dict | None:
            batch = next(self.remaining, None)
            return None if batch is None else {INPUT_NAME: batch}

    with tempfile.TemporaryDirectory() as folder:
        quantized = Path(folder) / "quantized.onnx"
        # No onnxruntime pre-processing: its symbolic shape inference fails on the dynamic height and
        # width, and without it the quantised model measured the same.
        root_logger, level = logging.getLogger(), logging.getLogger().level
        root_logger.setLevel(logging.ERROR)  # the quantiser logs that advice as warnings on the root logger
        try:
            quantize_static(str(source), str(quantized), Reader(), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                            calibrate_method=CalibrationMethod.MinMax)
        finally:
            root_logger.setLevel(level)
        model = onnx.load(str(quantized))
    carried = {entry.key: entry.value for entry in onnx.load(str(source), load_external_data=False).metadata_props}
    carried["precision"] = json.dumps("int8")
    del model.metadata_props[:]
    for key, value in carried.items():
        model.metadata_props.add(key=key, value=value)
    Path(output).write_bytes(model.SerializeToString())
    agreement = class_agreement(source, output, inputs)
    if agreement < settings.min_agreement:
        raise C2FError(f"the int8 model keeps only {agreement:.2%} of the calibration pixels' classes (below "
                       f"{settings.min_agreement:.0%}); it was not written. Use more or more typical "
                       "--calibration photos, or keep the float32 model.")
    return agreement


def class_agreement(reference: Path, candidate: Path, inputs: list[np.ndarray]) -> float:
    """Share of pixels whose arg-max class the candidate model gives as the reference does, over the inputs."""
    sessions = [open_session(path, "cpu") for path in (reference, candidate)]
    same = total = 0
    for batch in inputs:
        expected, actual = (session.run([OUTPUT_NAME], {INPUT_NAME: batch})[0].argmax(axis=1) for session in sessions)
        same += int((expected == actual).sum())
        total += expected.size
    return same / max(total, 1)
