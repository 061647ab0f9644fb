"""Inference benchmark: seconds per face, peak memory, FLOPs against the machine's peak, time to train.

Run from the repository root (it takes a few minutes; training adds more):

    python benchmarks/bench_inference.py                      # everything, shipped weights
    python benchmarks/bench_inference.py --skip-training --skip-memory --faces 5

(a) End to end (read, refine, write) per FASSEG face for torch and ONNX Runtime, windows and
    --whole-image, one file at a time and in folder mode (reading ahead), against eager torch
    running one window per call; all in the same run, so the ratios compare like with like.
(b) Peak memory of refining a 6000 x 4000 photo and coarse map, each backend in a fresh process.
(c) Convolution FLOPs per face (torch's FlopCounterMode) and the share of the machine's peak,
    measured here with a large float32 matmul.
(d) Time to train from scratch until validation accuracy passes 94.5 % (needs FASSEG).
A markdown table of every figure closes the output. Timings are only as quiet as the machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from c2f.inference.backends import load_predictor
from c2f.config import ModelConfig, SIZE_MULTIPLE, TrainConfig, WindowSettings
from c2f.training.samples import Sample, find_samples
from c2f.refine import read_ahead
from c2f.io.label_maps import write_label_map
from c2f.io.label_sets import FASSEG_LABELS
from c2f.model import UNet
from c2f.inference.export import export_onnx
from c2f.inference.onnx_session import thread_count
from c2f.inference.sliding_window import goes_whole
from c2f.refine import refine_file
from c2f.inference.tiling import padded_size, plan_windows
from c2f.shipped import default_weights_path
from c2f.weights import load_weights, save_weights

REPOSITORY = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPOSITORY.parent / "shared" / "data" / "FASSEG"
TARGET_ACCURACY = 0.945
BIG_HEIGHT, BIG_WIDTH = 4000, 6000  # a 24-megapixel landscape photo


@dataclass(frozen=True)
class Setup:
    """One way of running refine: backend and window settings."""

    name: str
    backend: str
    settings: WindowSettings


@dataclass
class Timing:
    """What one setup measured."""

    setup: Setup
    single_seconds: float  # per face, one refine_file after another
    network_seconds: float  # per face, inside the predictor only
    folder_faces_per_second: float | None = None
    flops_per_face: float = 0.0


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, help="Weights (.safetensors). Default: the shipped model, else "
                                                      "a random-init model of the default architecture.")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="FASSEG (or generic) dataset folder; "
                                                                        "synthetic faces when absent.")
    parser.add_argument("--faces", type=int, default=10, help="Faces timed per setup.")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda.")
    parser.add_argument("--skip-memory", action="store_true", help="Skip the 6000 x 4000 peak-memory runs.")
    parser.add_argument("--skip-training", action="store_true", help="Skip the time-to-accuracy training run.")
    parser.add_argument("--max-epochs", type=int, default=40, help="Epoch cap when the weights carry no training recipe "
                                                                    "(otherwise the recipe's own epochs).")
    return parser.parse_args()


def prepare_weights(requested: Path | None, folder: Path) -> tuple[Path, str]:
    """The weights to measure and a note saying which they are."""
    if requested is not None:
        return requested, f"weights {requested}"
    shipped = default_weights_path()
    if shipped.is_file():
        return shipped, f"shipped weights {shipped}"
    torch.manual_seed(0)
    path = folder / "random_init.safetensors"
    save_weights(path, UNet(ModelConfig()).eval(), FASSEG_LABELS)
    return path, "NO shipped weights yet: a random-init model of the default architecture ModelConfig()"


def prepare_faces(data: Path, count: int, folder: Path) -> tuple[list[Sample], str]:
    """Up to `count` faces with coarse maps: FASSEG's when present, else synthetic 512 x 400 ones."""
    if data.is_dir():
        samples = find_samples(data)[:count]
        return samples, f"{len(samples)} faces from {data}"
    rng = np.random.default_rng(0)
    samples = []
    for index in range(count):
        rows, columns = np.mgrid[:512, :400]
        coarse = np.zeros((512, 400), np.uint8)
        coarse[(rows - 280) ** 2 + (columns - 200) ** 2 < 150**2] = 2  # skin
        coarse[(rows < 150) & (coarse == 0)] = 1  # hair
        for class_id, (row, column) in zip((3, 3, 4, 5), ((240, 150), (240, 250), (300, 200), (370, 200))):
            coarse[(rows - row) ** 2 + (columns - column) ** 2 < 20**2] = class_id
        photo = np.clip(FASSEG_LABELS.palette()[coarse] * 0.6 + rng.normal(60, 20, (512, 400, 3)), 0, 255)
        photo_path, coarse_path = folder / f"face_{index:02d}.png", folder / f"face_{index:02d}_coarse.png"
        Image.fromarray(photo.astype(np.uint8)).save(photo_path)
        write_label_map(coarse_path, coarse, FASSEG_LABELS, "color")
        samples.append(Sample(f"face_{index:02d}", photo_path, coarse_path, None))
    return samples, f"{count} synthetic 512 x 400 faces ({data} is absent)"


def count_flops(config: ModelConfig, height: int, width: int) -> float:
    """Convolution FLOPs of one forward pass at (height, width), counted on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = UNet(config).eval()
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model(torch.empty(1, config.in_channels, height, width))
    return float(counter.get_total_flops())


def flops_per_face(config: ModelConfig, settings: WindowSettings, samples: list[Sample]) -> float:
    """Mean network FLOPs per face: every window (overlaps included), or the whole padded image."""
    total = 0.0
    for sample in samples:
        width, height = Image.open(sample.photo).size
        if goes_whole(height, width, settings):
            total += count_flops(config, *padded_size(height, width, 1, SIZE_MULTIPLE))
        else:
            padded = padded_size(height, width, settings.window, SIZE_MULTIPLE)
            windows = len(plan_windows(*padded, settings.window, settings.overlap))
            total += windows * count_flops(config, settings.window, settings.window)
    return total / len(samples)


def measure_peak_flops() -> float:
    """Best float32 FLOP/s of a 4096 x 4096 matmul on every thread torch uses."""
    size = 4096
    first, second = torch.randn(size, size), torch.randn(size, size)
    first @ second  # warm-up
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        first @ second
        best = min(best, time.perf_counter() - started)
    return 2 * size**3 / best


def time_setup(setup: Setup, model_path: Path, samples: list[Sample], device: str, folder: Path) -> Timing:
    """Seconds per face one file at a time, network seconds, and faces per second in folder mode."""
    predictor, labels, uses_coarse = load_predictor(model_path, None, setup.backend, device)
    inside = [0.0]

    def timed_predictor(batch: np.ndarray) -> np.ndarray:
        started = time.perf_counter()
        logits = predictor(batch)
        inside[0] += time.perf_counter() - started
        return logits

    output = folder / setup.name.replace(" ", "_").replace(",", "")
    refine_file(timed_predictor, labels, uses_coarse, samples[0].photo, samples[0].coarse,
                output / "warm_up.png", setup.settings)  # first calls allocate and plan
    inside[0] = 0.0
    started = time.perf_counter()
    for sample in samples:
        refine_file(timed_predictor, labels, uses_coarse, sample.photo, sample.coarse,
                    output / f"{sample.name}.png", setup.settings)
    single = (time.perf_counter() - started) / len(samples)
    network = inside[0] / len(samples)
    pairs = [(sample.name, sample.photo, sample.coarse) for sample in samples]
    started = time.perf_counter()
    for (stem, photo, coarse), read_inputs in read_ahead(pairs, labels, lambda stem: True):
        refine_file(predictor, labels, uses_coarse, photo, coarse, output / f"folder_{stem}.png", setup.settings,
                    inputs=read_inputs())
    folder_rate = len(samples) / (time.perf_counter() - started)
    return Timing(setup, single, network, folder_rate)


MEMORY_CHILD = """
import json, resource, sys, time
from c2f.inference.backends import load_predictor
from c2f.refine import refine_file
model, backend, device, photo, coarse, output = sys.argv[1:7]
predictor, labels, uses_coarse = load_predictor(model, None, backend, device)
started = time.perf_counter()
refine_file(predictor, labels, uses_coarse, photo, coarse, output)
print(json.dumps({"seconds": time.perf_counter() - started,
                  "peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def measure_memory(backend: str, model_path: Path, device: str, folder: Path) -> tuple[float, float]:
    """Peak resident bytes and seconds of refining a 6000 x 4000 photo, default windows, in a fresh process."""
    photo_path, coarse_path = folder / "big_photo.png", folder / "big_coarse.png"
    if not photo_path.exists():
        rows, columns = np.mgrid[:BIG_HEIGHT, :BIG_WIDTH]
        coarse = ((rows // 500 + columns // 700) % FASSEG_LABELS.num_classes).astype(np.uint8)
        noise = np.random.default_rng(0).integers(0, 60, (BIG_HEIGHT, BIG_WIDTH, 3), dtype=np.uint8)
        Image.fromarray(FASSEG_LABELS.palette()[coarse] // 2 + noise).save(photo_path, compress_level=1)
        write_label_map(coarse_path, coarse, FASSEG_LABELS, "color")
        del rows, columns, coarse, noise
    command = [sys.executable, "-c", MEMORY_CHILD, str(model_path), backend, device, str(photo_path),
               str(coarse_path), str(folder / f"big_fine_{backend}.png")]
    # The child reports its own ru_maxrss: what RUSAGE_CHILDREN would give, but per child rather than
    # the largest of every child so far.
    finished = subprocess.run(command, capture_output=True, text=True, check=False)
    if finished.returncode != 0:
        raise SystemExit(f"the {backend} memory run failed:\n{finished.stderr}")
    result = json.loads(finished.stdout.strip().splitlines()[-1])
    return result["peak_bytes"], result["seconds"]


def time_command(backend: str, model_path: Path, sample: Sample, device: str, folder: Path) -> float:
    """Wall seconds of one whole `c2f refine` command on one face: start-up and model loading included."""
    command = [sys.executable, "-c", "from c2f.cli import app; app()", "refine", str(sample.photo),
               str(sample.coarse), "-o", str(folder / f"command_{backend}.png"), "--weights", str(model_path),
               "--backend", backend, "--device", device, "--overwrite"]
    started = time.perf_counter()
    finished = subprocess.run(command, capture_output=True, text=True, check=False)
    if finished.returncode != 0:
        raise SystemExit(f"`c2f refine --backend {backend}` failed:\n{finished.stderr}")
    return time.perf_counter() - started


def measure_overlaps(onnx_path: Path, metadata: dict, data: Path, device: str) -> list[tuple[str, float, float, float]]:
    """Validation accuracy, mIoU and seconds per face for several overlaps and the one-pass mode.

    Scored on the faces the weights held out (their metadata's split), so the default overlap is
    chosen from numbers the model never trained on.
    """
    from c2f.training.samples import load_sample
    from c2f.training.evaluation import score_refinement

    held_out = set(metadata.get("split", {}).get("validation", []))
    samples = [load_sample(sample, FASSEG_LABELS) for sample in find_samples(data) if sample.name in held_out]
    if not samples:
        return []
    predictor, labels, uses_coarse = load_predictor(onnx_path, None, "onnx", device)
    windows = WindowSettings(whole_image_max_pixels=0)
    variants = [(f"windows, overlap {overlap}", replace(windows, overlap=overlap)) for overlap in (0, 32, 64, 128)]
    variants.append(("one pass (whole image)", replace(windows, whole_image=True)))
    results = []
    for name, settings in variants:
        started = time.perf_counter()
        scores = score_refinement(predictor, samples, labels.num_classes, uses_coarse, settings)
        seconds = (time.perf_counter() - started) / len(samples)
        results.append((name, scores.pixel_accuracy, scores.mean_iou, seconds))
        print(f"{name}: accuracy {scores.pixel_accuracy:.2%}, mIoU {scores.mean_iou:.3f}, {seconds:.3f} s/face",
              flush=True)
    return results


class TargetReached(Exception):
    """Raised from the epoch callback to stop training once validation accuracy passes the target."""


def time_training(data: Path, config: ModelConfig, recipe: dict, max_epochs: int,
                  folder: Path) -> tuple[float, int, float, bool]:
    """Seconds and epochs until validation accuracy >= TARGET_ACCURACY (or the cap), and the accuracy then.

    The recipe is the weights' own training config (the shipped model's), so the figure says how
    soon the shipped recipe passes the 2019 report's accuracy, not how some other recipe does.
    """
    from c2f.training.samples import load_sample
    from c2f.training.loop import train_model

    samples = [load_sample(sample, FASSEG_LABELS) for sample in find_samples(data)]
    train_config = TrainConfig(**recipe) if recipe else TrainConfig(epochs=max_epochs)
    last = {"epoch": 0, "val_accuracy": float("nan")}

    def on_epoch(row: dict) -> None:
        last.update(row)
        print(f"  epoch {row['epoch']}: validation accuracy {row.get('val_accuracy', float('nan')):.2%}", flush=True)
        if row.get("val_accuracy", 0.0) >= TARGET_ACCURACY:
            raise TargetReached

    started = time.perf_counter()
    try:
        train_model(samples, FASSEG_LABELS, config, train_config, folder / "training", on_epoch=on_epoch)
        reached = False
    except TargetReached:
        reached = True
    return time.perf_counter() - started, last["epoch"], last["val_accuracy"], reached


def main() -> None:
    arguments = parse_arguments()
    with tempfile.TemporaryDirectory(prefix="c2f_bench_") as temporary:
        folder = Path(temporary)
        weights, weights_note = prepare_weights(arguments.weights, folder)
        _, _, metadata = load_weights(weights)
        config = ModelConfig(**metadata["model_config"])
        started = time.perf_counter()
        onnx_path, difference = export_onnx(weights, folder / "model.onnx")
        export_seconds = time.perf_counter() - started
        samples, faces_note = prepare_faces(arguments.data, arguments.faces, folder)
        print(f"model: {weights_note}\nfaces: {faces_note}\ntorch threads {torch.get_num_threads()}, "
              f"ONNX Runtime threads {thread_count()}, {os.cpu_count()} CPUs; ONNX export "
              f"{export_seconds:.1f} s, max |ONNX - torch| logit {difference:.1e}", flush=True)

        peak = measure_peak_flops()
        print(f"peak: {peak / 1e9:.1f} GFLOP/s (float32 matmul, 4096^3)", flush=True)
        default = WindowSettings()
        windows = replace(default, whole_image_max_pixels=0)
        setups = [
            Setup("eager torch, 1 window per call (baseline)", "torch", replace(windows, batch_size=1)),
            Setup(f"torch, windows (batch {default.batch_size})", "torch", windows),
            Setup("torch, whole image", "torch", replace(default, whole_image=True)),
            Setup(f"onnx, windows (batch {default.batch_size})", "onnx", windows),
            Setup("onnx, default settings (one pass up to 1 MP) = c2f refine's default", "onnx", default),
        ]
        timings = []
        for setup in setups:
            model_path = onnx_path if setup.backend == "onnx" else weights
            timing = time_setup(setup, model_path, samples, arguments.device, folder)
            timing.flops_per_face = flops_per_face(config, setup.settings, samples)
            timings.append(timing)
            print(f"{setup.name}: {timing.single_seconds:.3f} s/face, network {timing.network_seconds:.3f} s/face, "
                  f"folder {timing.folder_faces_per_second:.2f} faces/s", flush=True)

        commands = []
        for backend, model_path in (("torch", weights), ("onnx", onnx_path)):
            commands.append((backend, time_command(backend, model_path, samples[0], arguments.device, folder)))
            print(f"one `c2f refine --backend {backend}` command, one face: {commands[-1][1]:.2f} s", flush=True)

        memory = []
        if not arguments.skip_memory:
            for backend, model_path in (("torch", weights), ("onnx", onnx_path)):
                peak_bytes, seconds = measure_memory(backend, model_path, arguments.device, folder)
                memory.append((backend, peak_bytes, seconds))
                print(f"6000 x 4000 with {backend}: peak {peak_bytes / 2**30:.2f} GiB, {seconds:.0f} s", flush=True)

        overlaps = measure_overlaps(onnx_path, metadata, arguments.data, arguments.device) \
            if arguments.data.is_dir() else []

        training = None
        if not arguments.skip_training:
            if arguments.data.is_dir():
                print(f"training from scratch with the weights' own recipe until validation accuracy >= "
                      f"{TARGET_ACCURACY:.1%}...", flush=True)
                training = time_training(arguments.data, config, metadata.get("train_config", {}),
                                         arguments.max_epochs, folder)
            else:
                print(f"training skipped: {arguments.data} is absent.")

    print_report(weights_note, faces_note, peak, timings, commands, memory, training, overlaps)


def print_report(weights_note: str, faces_note: str, peak: float, timings: list[Timing],
                 commands: list[tuple[str, float]], memory: list[tuple[str, float, float]],
                 training: tuple[float, int, float, bool] | None,
                 overlaps: list[tuple[str, float, float, float]]) -> None:
    baseline = timings[0].single_seconds
    print(f"\n## Inference benchmark\n\nModel: {weights_note}. Faces: {faces_note}. "
          f"Peak: {peak / 1e9:.1f} GFLOP/s (float32 matmul). Seconds per face cover reading, refining and "
          "writing; starting Python and loading the model happen once per command and are timed apart.\n")
    print("| setup | s/face, one file | faces/s, folder | speed-up vs baseline | network s/face "
          "| GFLOP/face | network GFLOP/s | of peak |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for timing in timings:
        rate = timing.flops_per_face / timing.network_seconds
        print(f"| {timing.setup.name} | {timing.single_seconds:.3f} | {timing.folder_faces_per_second:.2f} "
              f"| {baseline / timing.single_seconds:.2f}x | {timing.network_seconds:.3f} "
              f"| {timing.flops_per_face / 1e9:.3g} | {rate / 1e9:.1f} | {rate / peak:.0%} |")
    print("\n| figure | value |\n| --- | ---: |")
    for backend, seconds in commands:
        print(f"| one `c2f refine --backend {backend}` command, one face, start-up included | {seconds:.2f} s |")
    for backend, peak_bytes, seconds in memory:
        print(f"| peak memory, 6000 x 4000 photo, {backend}, default windows | {peak_bytes / 2**30:.2f} GiB "
              f"({seconds:.0f} s) |")
    if training:
        seconds, epochs, accuracy, reached = training
        verdict = "reached" if reached else "NOT reached"
        print(f"| time to {TARGET_ACCURACY:.1%} validation accuracy ({verdict}) | {seconds / 60:.1f} min, "
              f"{epochs} epochs, {accuracy:.2%} |")
    if overlaps:
        print("\n| held-out faces, ONNX | pixel accuracy | mIoU | s/face |\n| --- | ---: | ---: | ---: |")
        for name, accuracy, mean_iou, seconds in overlaps:
            print(f"| {name} | {accuracy:.2%} | {mean_iou:.3f} | {seconds:.3f} |")


if __name__ == "__main__":
    main()
