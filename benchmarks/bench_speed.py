"""Speed at the machine's limit: FLOPs against measured peaks, time and memory per megapixel, c2f against densecrf.

Run from the repository root (about ten minutes on two cores; --big adds a 400-megapixel photo):

    python benchmarks/bench_speed.py
    python benchmarks/bench_speed.py --big
    python benchmarks/bench_speed.py --networks a.safetensors b.safetensors   # (a) only, for these models

All in one run, so ratios compare like with like:
(a) FLOPs of one padded FASSEG face (torch's FlopCounterMode), the machine's measured peaks
    (float32 torch.mm and ONNX Runtime MatMul; int8 ONNX Runtime MatMulInteger, u8 x s8, what
    the int8 model's convolutions run on; bfloat16 torch.mm on CPUs with bfloat16 instructions),
    and the share of the matching peak each backend and precision reaches on the network alone,
    the torch rows through c2f's own torch predictor (channels-last).
(b) `c2f refine` end to end, one command per photo (process start included), for photos of
    0.2, 2 and 24 megapixels (and 400 with --big): seconds per megapixel and peak memory
    (maximum resident set size from /usr/bin/time -v), int8 (the default) and float32 (and bf16,
    on the torch backend, where the CPU has bfloat16 instructions).
    The photos are the shipped example resized, its coarse map resized with it.
(c) The held-out FASSEG faces in folder mode, one command each for c2f (default: int8; fp32;
    bf16 where the CPU has it) and densecrf (pydensecrf, when installed), process start included; seconds per face
    (the median of FOLDER_REPEATS interleaved rounds) and accuracy. A row with a random width-1, depth-1 network,
    whose arithmetic is next to none (its time alone printed too), shows what the command costs around the
    network.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPOSITORY = Path(__file__).resolve().parent.parent
DATA = REPOSITORY.parent / "shared" / "data" / "FASSEG"
EXAMPLE_PHOTO = REPOSITORY / "examples" / "astronaut.png"
EXAMPLE_COARSE = REPOSITORY / "examples" / "astronaut_coarse.png"
FACE = (512, 416)  # a FASSEG face padded to multiples of 32 (rows, columns)
SIZES = {0.2: (512, 416), 2: (1632, 1248), 24: (4000, 6000)}
BIG = {400: (20000, 20000)}
# Folder-mode rounds per method, the methods taking turns: one command's time moves by a fifth between runs on a
# shared 2-core machine, so the median of several, interleaved, is what the ratio to densecrf compares.
FOLDER_REPEATS = 3
TINY_NETWORK = "c2f refine, random width-1 depth-1 network (all but the network)"


def best_seconds(function, repeats: int) -> float:
    """Fastest of repeats calls after one warm-up: the least disturbed by other work on a shared machine."""
    function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def ort_session(model, threads: int):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    source = model if isinstance(model, str) else model.SerializeToString()
    return onnxruntime.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def measure_peaks(threads: int, side: int = 2048) -> dict[str, float]:
    """Operations per second of large matrix products: float32 torch.mm and ORT MatMul, int8 ORT MatMulInteger."""
    import torch
    from onnx import TensorProto, helper

    torch.set_num_threads(threads)
    first, second = torch.randn(side, side), torch.randn(side, side)
    operations = 2 * side**3
    peaks = {"float32 torch.mm": operations / best_seconds(lambda: first @ second, 5)}
    if has_bf16():
        halves = first.bfloat16(), second.bfloat16()
        peaks["bfloat16 torch.mm"] = operations / best_seconds(lambda: halves[0] @ halves[1], 5)

    def product(op: str, left_type, right_type, out_type):
        graph = helper.make_graph([helper.make_node(op, ["A", "B"], ["Y"])], op,
                                  [helper.make_tensor_value_info("A", left_type, [side, side]),
                                   helper.make_tensor_value_info("B", right_type, [side, side])],
                                  [helper.make_tensor_value_info("Y", out_type, [side, side])])
        # IR version 8 (opset 17's own): a newer onnx writes a newer one by default than ONNX Runtime may read.
        return ort_session(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8),
                           threads)
    session = product("MatMul", TensorProto.FLOAT, TensorProto.FLOAT, TensorProto.FLOAT)
    inputs = {"A": first.numpy(), "B": second.numpy()}
    peaks["float32 ORT MatMul"] = operations / best_seconds(lambda: session.run(None, inputs), 5)
    random = np.random.default_rng(0)
    session = product("MatMulInteger", TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32)
    inputs = {"A": random.integers(0, 255, (side, side), dtype=np.uint8),
              "B": random.integers(-127, 127, (side, side), dtype=np.int8)}
    peaks["int8 ORT MatMulInteger"] = operations / best_seconds(lambda: session.run(None, inputs), 5)
    return peaks


def network_rates(threads: int, weights: Path | None = None) -> tuple[float, list[tuple[str, float, str]]]:
    """FLOPs of one padded face, and (backend and precision, seconds per face, peak it is held to) per network.

    The shipped face model by default; for other weights, the NAME.onnx and NAME.int8.onnx files beside them.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from c2f.inference.torch_backend import torch_predictor
    from c2f.shipped import default_onnx_path, default_weights_path, int8_onnx_path
    from c2f.weights import load_weights

    model, _, _ = load_weights(weights or default_weights_path())
    onnx_files = ((weights.with_suffix(".onnx"), weights.with_suffix(".int8.onnx")) if weights
                  else (default_onnx_path(), int8_onnx_path()))
    model = model.cpu().eval()
    inputs = np.random.default_rng(0).normal(size=(1, model.config.in_channels, *FACE)).astype(np.float32)
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(torch.from_numpy(inputs))
    flops = counter.get_total_flops()
    torch.set_num_threads(threads)
    rows = []
    for precision, name, peak in (("fp32", "torch float32", "float32 torch.mm"),
                                  ("bf16", "torch bfloat16", "bfloat16 torch.mm")):
        if precision == "fp32" or has_bf16():
            predictor = torch_predictor(model, "cpu", precision)
            rows.append((name, best_seconds(lambda: predictor(inputs), 5), peak))
    for name, path, peak in (("ONNX Runtime float32", onnx_files[0], "float32 torch.mm"),
                             ("ONNX Runtime int8", onnx_files[1], "int8 ORT MatMulInteger")):
        if path.is_file():
            session = ort_session(str(path), threads)
            rows.append((name, best_seconds(lambda: session.run(None, {"inputs": inputs}), 5), peak))
    return flops, rows


def make_photo(folder: Path, megapixels: float, size: tuple[int, int]) -> tuple[Path, Path]:
    """The shipped example resized to size (rows, columns), photo and coarse map, as PNG files in folder."""
    height, width = size
    photo = Image.open(EXAMPLE_PHOTO).convert("RGB").resize((width, height), Image.BILINEAR)
    coarse = Image.open(EXAMPLE_COARSE).convert("RGB").resize((width, height), Image.NEAREST)
    paths = folder / f"photo_{megapixels:g}.png", folder / f"coarse_{megapixels:g}.png"
    photo.save(paths[0], compress_level=1)
    coarse.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(paths[1])
    return paths


def timed_command(arguments: list[str]) -> tuple[float, float]:
    """Wall seconds and peak resident memory (GiB, /usr/bin/time -v) of one command in a fresh process."""
    started = time.perf_counter()
    result = subprocess.run(["/usr/bin/time", "-v", *arguments], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPOSITORY)}, cwd=REPOSITORY)
    seconds = time.perf_counter() - started
    if result.returncode:
        raise SystemExit(f"{' '.join(arguments)} failed:\n{result.stderr[-2000:]}")
    peak_kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr).group(1))
    return seconds, peak_kib / 2**20


def refine_command(photo: Path, coarse: Path, output: Path, precision: str, megapixels: float) -> list[str]:
    return [sys.executable, "-m", "c2f", "refine", str(photo), str(coarse), "-o", str(output), "--overwrite",
            "--precision", precision, "--max-megapixels", str(max(64, megapixels * 1.1))]


DENSECRF_SCRIPT = """
import sys
from pathlib import Path
import numpy as np
import pydensecrf.densecrf as dcrf
from pydensecrf.utils import unary_from_labels
from c2f.io.label_maps import read_label_map, write_label_map
from c2f.io.label_sets import FASSEG_LABELS
from c2f.io.photos import read_photo
photos, coarse, out = (Path(p) for p in sys.argv[1:4])
for photo_path in sorted(photos.iterdir()):
    photo = read_photo(photo_path)
    ids = read_label_map(coarse / photo_path.name, FASSEG_LABELS).class_ids
    height, width = ids.shape
    crf = dcrf.DenseCRF2D(width, height, 6)
    crf.setUnaryEnergy(np.array(unary_from_labels(ids.astype(np.int32), 6, gt_prob=0.7,
                                                              zero_unsure=False), order="C"))
    crf.addPairwiseGaussian(sxy=3, compat=3)
    crf.addPairwiseBilateral(sxy=80, srgb=13, rgbim=np.array(photo, order="C"), compat=10)
    fine = np.argmax(crf.inference(5), axis=0).reshape(height, width).astype(np.uint8)
    write_label_map(out / (photo_path.stem + ".png"), fine, FASSEG_LABELS, "color")
"""


def tiny_model(folder: Path, width: int = 2, depth: int = 4) -> Path:
    """A random-weights U-Net (width 2, depth 4 by default) for FASSEG's labels, exported to float32 ONNX in
    folder."""
    import torch

    from c2f.config import ModelConfig
    from c2f.inference.export import export_onnx
    from c2f.io.label_sets import FASSEG_LABELS
    from c2f.model import UNet
    from c2f.weights import save_weights

    torch.manual_seed(0)
    save_weights(folder / "tiny.safetensors", UNet(ModelConfig(width=width, depth=depth)).eval(), FASSEG_LABELS)
    path, _ = export_onnx(folder / "tiny.safetensors", folder / "tiny.onnx")
    return path


def held_out_folders(folder: Path) -> tuple[Path, Path, list[str]] | None:
    """Folders of the shipped weights' held-out FASSEG faces (photos, coarse maps), linked; None without FASSEG."""
    from c2f.shipped import default_weights_path
    from c2f.weights import load_tensors

    if not DATA.is_dir():
        return None
    _, metadata = load_tensors(default_weights_path())
    names = sorted(metadata["split"]["validation"])
    photos, coarse = folder / "photos", folder / "coarse"
    photos.mkdir()
    coarse.mkdir()
    for name in names:
        stem = name.split("_", 1)[1]
        (photos / f"{stem}.bmp").symlink_to(DATA / "V1" / "Test_RGB" / f"{stem}.bmp")
        (coarse / f"{stem}.bmp").symlink_to(DATA / "V1" / "Test_Labels" / f"{stem}.bmp")
    return photos, coarse, names


def pooled_accuracy(predicted: Path, names: list[str]) -> float:
    """Pooled pixel accuracy of a folder of fine maps against FASSEG's fine ground truth."""
    from c2f.io.label_maps import read_label_map
    from c2f.io.label_sets import FASSEG_LABELS

    right = total = 0
    for name in names:
        stem = name.split("_", 1)[1]
        guess = read_label_map(predicted / f"{stem}.png", FASSEG_LABELS).class_ids
        truth = read_label_map(DATA / "V2" / "Test_Labels" / f"{stem}.bmp", FASSEG_LABELS).class_ids
        right += int((guess == truth).sum())
        total += truth.size
    return right / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", action="store_true", help="also refine a 20000 x 20000 (400-megapixel) photo")
    parser.add_argument("--big-only", action="store_true", help="refine the 400-megapixel photo and nothing else")
    parser.add_argument("--networks", type=Path, nargs="+", metavar="WEIGHTS",
                        help="only the peaks and the network table, for each of these .safetensors files "
                             "(their .onnx and .int8.onnx beside them) instead of the shipped model")
    arguments = parser.parse_args()
    if arguments.big_only:
        refine_sizes(BIG)
        return
    from c2f.inference.onnx_session import thread_count

    threads = thread_count()
    load = os.getloadavg()
    print(f"# Speed benchmark\n\n{threads} threads; CPU flags: {cpu_flags()}; load average at start "
          f"{load[0]:.1f} on {os.cpu_count()} cores.\n")
    peaks = measure_peaks(threads)
    print("| peak (2048^3 product) | GOP/s |\n| --- | ---: |")
    for name, rate in peaks.items():
        print(f"| {name} | {rate / 1e9:.1f} |")
    for weights in arguments.networks or [None]:
        flops, rows = network_rates(threads, weights)
        print(f"\n{weights or 'The shipped face model'}: {flops / 1e9:.2f} GFLOP per padded face "
              f"({FACE[0]} x {FACE[1]}).\n")
        print("| network, one face | ms | GOP/s | share of peak | peak it is held to |\n| --- | ---: | ---: | ---: | --- |")
        for name, seconds, peak in rows:
            rate = flops / seconds
            print(f"| {name} | {seconds * 1e3:.0f} | {rate / 1e9:.1f} | {rate / peaks[peak]:.0%} | {peak} |", flush=True)
    if arguments.networks:
        return
    refine_sizes({**SIZES, **(BIG if arguments.big else {})})
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        faces = held_out_folders(folder)
        if faces is None:
            print(f"\n(skipped c2f vs densecrf: {DATA} is absent)")
            return
        photos, coarse, names = faces
        print(f"\n{len(names)} held-out FASSEG faces, folder mode, one command each (process start included); "
              f"the median of {FOLDER_REPEATS} rounds, the methods taking turns:\n")
        print("| method | s per face | pooled pixel accuracy | peak memory (GiB) |\n| --- | ---: | ---: | ---: |")
        refine = [sys.executable, "-m", "c2f", "refine", str(photos), str(coarse), "-o"]
        commands = {"c2f refine (int8, default)": lambda output: [*refine, str(output)]}
        for precision in ("fp32", "bf16") if has_bf16() else ("fp32",):
            commands[f"c2f refine --precision {precision}"] = (
                lambda output, precision=precision: [*refine, str(output), "--precision", precision])
        # The same command with a network of almost no arithmetic: what reading, stitching, blurring, writing
        # and process start cost around any network. Its maps are noise, so it gets no accuracy.
        tiny = str(tiny_model(folder, width=1, depth=1))
        commands[TINY_NETWORK] = lambda output: [*refine, str(output), "--weights", tiny]
        session = ort_session(tiny, threads)
        face_input = np.zeros((1, session.get_inputs()[0].shape[1], *FACE), np.float32)
        tiny_seconds = best_seconds(lambda: session.run(None, {session.get_inputs()[0].name: face_input}), 5)
        del session  # not held through the timed commands
        try:
            import pydensecrf  # noqa: F401

            commands["densecrf (5 iterations, gt_prob 0.7, sxy 3/80, srgb 13)"] = (
                lambda output: [sys.executable, "-c", DENSECRF_SCRIPT, str(photos), str(coarse), str(output)])
        except ImportError:
            print("(densecrf skipped: pydensecrf is not installed; pip install pydensecrf2 provides it)")
        timings: dict[str, list[float]] = {name: [] for name in commands}
        peak_memory: dict[str, float] = {}  # GiB, the most of any round
        for round_number in range(FOLDER_REPEATS):
            for index, (name, command) in enumerate(commands.items()):
                output = folder / f"method{index}_round{round_number}"
                output.mkdir()
                seconds, memory = timed_command(command(output))
                timings[name].append(seconds / len(names))
                peak_memory[name] = max(peak_memory.get(name, 0.0), memory)
        results = {name: statistics.median(values) for name, values in timings.items()}
        for index, name in enumerate(commands):
            output = folder / f"method{index}_round0"
            accuracy = "-" if name == TINY_NETWORK else f"{pooled_accuracy(output, names):.2%}"
            print(f"| {name} | {results[name]:.3f} | {accuracy} | {peak_memory[name]:.2f} |", flush=True)
        print(f"\n(the random width-1 network alone: {tiny_seconds * 1e3:.0f} ms a face, ONNX Runtime float32)")
        crf = [value for name, value in results.items() if name.startswith("densecrf")]
        if crf:
            for name, value in results.items():
                if not name.startswith("densecrf"):
                    print(f"\n{name}: {crf[0] / value:.2f} times as fast as densecrf", end="")
            print()
    load = os.getloadavg()
    print(f"\nLoad average at the end: {load[0]:.1f} (1 min), {load[1]:.1f} (5 min).")


def refine_sizes(sizes: dict[float, tuple[int, int]]) -> None:
    """One `c2f refine` command per photo size and precision: seconds per megapixel and peak memory."""
    print("\n| photo | precision | s per command | s per megapixel | peak memory (GiB) |\n| --- | --- | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        for megapixels, size in sizes.items():
            photo, coarse = make_photo(folder, megapixels, size)
            actual = size[0] * size[1] / 1e6
            precisions = ("int8", "fp32", "bf16") if has_bf16() else ("int8", "fp32")
            for precision in precisions if megapixels < 100 else ("int8",):
                seconds, peak = timed_command(refine_command(photo, coarse, folder / "fine.png", precision, actual))
                print(f"| {size[1]} x {size[0]} ({actual:.1f} MP) | {precision} | {seconds:.1f} | "
                      f"{seconds / actual:.2f} | {peak:.2f} |", flush=True)
            photo.unlink()
            coarse.unlink()


def has_bf16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX512-BF16 or AMX), as `--precision bf16` requires."""
    import torch

    from c2f.inference.torch_backend import bf16_supported

    return bf16_supported(torch.device("cpu"))


def cpu_flags() -> str:
    """The vector extensions this CPU reports (x86 Linux), the ones that decide int8 and bf16 speed."""
    try:
        flags = set(re.search(r"^flags\s*:(.*)$", Path("/proc/cpuinfo").read_text(), re.M).group(1).split())
    except (OSError, AttributeError):
        return "unknown"
    wanted = ["avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8", "amx_bf16"]
    return ", ".join(f"{flag} {'yes' if flag in flags else 'no'}" for flag in wanted)


if __name__ == "__main__":
    main()
