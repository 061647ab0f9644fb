"""The two architectures side by side: `--encoder unet` (width 16, depth 4) against `--encoder efficientnet-lite0`.

Run from the repository root on one thread (about five minutes):

    OMP_NUM_THREADS=1 python benchmarks/bench_encoder.py

For each: parameters, FLOPs of one padded FASSEG face (512 x 416, torch's FlopCounterMode), the fastest of
several forward passes on that face with torch float32 and ONNX Runtime float32 and int8 (the int8 model
calibrated on the example photo), and seconds
per training step (Adam, batch 8 of 256 x 256 crops, forward and backward). The networks are untrained:
their speed does not depend on their weights.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPOSITORY))

from c2f.config import ModelConfig, QuantizeSettings  # noqa: E402
from c2f.inference.export import export_int8, export_onnx  # noqa: E402
from c2f.io.label_sets import FASSEG_LABELS  # noqa: E402
from c2f.model import build_model  # noqa: E402
from c2f.weights import save_weights  # noqa: E402
from bench_speed import best_seconds  # noqa: E402  (benchmarks/ is the script's own folder on sys.path)

FACE = (512, 416)  # a FASSEG face padded to multiples of 32 (rows, columns)
ARCHITECTURES = {"unet (width 16, depth 4)": ModelConfig(),
                 "efficientnet-lite0": ModelConfig(encoder="efficientnet-lite0")}
TRAINING_BATCH, TRAINING_CROP = 8, 256


def network_inputs(batch: int, height: int, width: int, num_classes: int = 6) -> torch.Tensor:
    """Random photo channels and a random one-hot coarse map, as network_input lays them out."""
    generator = torch.Generator().manual_seed(0)
    coarse = torch.randint(0, num_classes, (batch, height, width), generator=generator)
    one_hot = torch.nn.functional.one_hot(coarse, num_classes).permute(0, 3, 1, 2).float()
    return torch.cat([torch.randn(batch, 3, height, width, generator=generator), one_hot], dim=1)


def ort_seconds(path: Path, inputs: np.ndarray, repeats: int) -> float:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return best_seconds(lambda: session.run(None, {name: inputs}), repeats)


def training_step_seconds(config: ModelConfig, steps: int) -> float:
    """Seconds of one Adam step on a batch of crops, the fastest of `steps` after a warm-up."""
    model = build_model(config).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    inputs = network_inputs(TRAINING_BATCH, TRAINING_CROP, TRAINING_CROP)
    targets = inputs[:, 3:].argmax(dim=1)

    def step() -> None:
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(inputs), targets).backward()
        optimizer.step()
    return best_seconds(step, steps)


def calibration_folder(folder: Path) -> Path:
    """A one-photo dataset folder of the shipped example: int8 speed does not depend on the calibration."""
    for name, source in (("images", "astronaut.png"), ("coarse", "astronaut_coarse.png")):
        (folder / name).mkdir(parents=True)
        (folder / name / "astronaut.png").write_bytes((REPOSITORY / "examples" / source).read_bytes())
    return folder


def main() -> None:
    torch.set_num_threads(1)
    print(f"one thread (OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}), face {FACE[0]} x {FACE[1]}")
    face = network_inputs(1, *FACE)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        calibration = calibration_folder(folder / "calibration")
        for name, config in ARCHITECTURES.items():
            torch.manual_seed(0)
            model = build_model(config).eval()
            parameters = sum(parameter.numel() for parameter in model.parameters())
            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                model(face)
            with torch.no_grad():
                torch_seconds = best_seconds(lambda: model(face), 5)
            weights = folder / f"{config.encoder}.safetensors"
            save_weights(weights, model, FASSEG_LABELS)
            float_path, _ = export_onnx(weights)
            # An untrained network's classes are near ties, so the int8 agreement check is off: only speed counts.
            int8_path, _, _ = export_int8(calibration, weights, folder / f"{config.encoder}.int8.onnx",
                                          settings=QuantizeSettings(min_agreement=0.0))
            float_seconds = ort_seconds(float_path, face.numpy(), 5)
            int8_seconds = ort_seconds(int8_path, face.numpy(), 5)
            step_seconds = training_step_seconds(config, 3)
            print(f"{name}: {parameters / 1e6:.2f} M parameters, {counter.get_total_flops() / 1e9:.2f} GFLOP per face; "
                  f"forward: torch fp32 {torch_seconds:.3f} s, ONNX Runtime fp32 {float_seconds:.3f} s, "
                  f"int8 {int8_seconds:.3f} s; training step (batch {TRAINING_BATCH} of {TRAINING_CROP}^2): "
                  f"{step_seconds:.2f} s")


if __name__ == "__main__":
    main()
