"""Every default of c2f, in frozen dataclasses: one commented default per line."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum

from c2f.errors import C2FError

FORMAT_VERSION = "1"  # stored as "c2f_format" in every weights, checkpoint and ONNX file c2f writes


# The choices of the command line's options; configs store their plain string values.
class Mode(str, Enum):
    conditional = "conditional"  # photo + coarse map
    segment = "segment"  # RGB-only baseline
    gan = "gan"  # semi-supervised: coarse-only images too


class DiscriminatorKind(str, Enum):
    pixel = "pixel"  # one confidence per pixel, pseudo-labels
    image = "image"  # the 2019 report's one score per map


class Backend(str, Enum):
    auto = "auto"  # ONNX Runtime for .onnx files and the shipped model, torch otherwise
    torch = "torch"
    onnx = "onnx"


class Device(str, Enum):
    auto = "auto"  # CUDA when present, else the CPU
    cpu = "cpu"
    cuda = "cuda"


class Precision(str, Enum):
    auto = "auto"  # the shipped int8 model when present, else float32
    fp32 = "fp32"
    int8 = "int8"
    bf16 = "bf16"  # the torch backend under bfloat16 autocast, on CPUs and GPUs with bfloat16 instructions


class ShippedModel(str, Enum):
    fasseg = "fasseg"  # faces: FASSEG's six classes
    camvid = "camvid"  # street scenes: CamVid's eleven classes and void


class MapFormat(str, Enum):
    color = "color"  # RGB, one colour per class
    palette = "palette"  # 8-bit palette PNG whose indices are class ids
    index = "index"  # single-channel class ids
    labelme = "labelme"  # labelme JSON polygons
    coco = "coco"  # COCO JSON: polygons, RLE for regions with holes


class Encoder(str, Enum):
    unet = "unet"  # the plain U-Net, trained from scratch; --width and --depth set its size
    efficientnet_lite0 = "efficientnet-lite0"  # ImageNet-pretrained EfficientNet-Lite0 with a light U-Net decoder


class CoarseTargetInput(str, Enum):
    drawn = "drawn"  # a coarser map drawn from the coarse target by --coarsen, anew every epoch
    none = "none"  # no coarse map: every pixel not annotated


class Upsampling(str, Enum):
    nearest = "nearest"  # a 1x1 convolution, then each pixel doubled: int8 runs every layer of it quantised
    transposed = "transposed"  # a 2x2, stride-2 transposed convolution: the U-Net's first design


def input_channels(num_classes: int, uses_coarse: bool) -> int:
    """Channels of the network's input: RGB, then one per class when the coarse map goes in."""
    return 3 + (num_classes if uses_coarse else 0)


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the network; stored in the weights' metadata."""

    num_classes: int = 6  # FASSEG: background, hair, skin, eyes, nose, mouth
    use_coarse: bool = True  # False = the RGB-only baseline (`--mode segment`)
    width: int = 16  # channels of the first level; doubled at each level
    depth: int = 4  # number of 2x downsamplings
    encoder: str = "unet"  # unet | efficientnet-lite0 (width and depth then have no effect); files without it: unet
    upsampling: str = "nearest"  # the U-Net decoder's: nearest | transposed; U-Net files without it: transposed

    @property
    def in_channels(self) -> int:
        """RGB plus one channel per class of the coarse map when conditioned."""
        return input_channels(self.num_classes, self.use_coarse)

    @property
    def size_multiple(self) -> int:
        """What the network's input sides must be multiples of: 2**depth for the U-Net, 32 for an encoder."""
        return 2**self.depth if self.encoder == Encoder.unet.value else SIZE_MULTIPLE


@dataclass(frozen=True)
class TrainConfig:
    """Everything that shapes a training run besides the model's architecture."""

    mode: str = "conditional"  # conditional | segment | gan
    # The recipe of the shipped FASSEG model (its weights' train_config): 20 epochs at 1e-3 with power 0.25.
    epochs: int = 20  # passes over the training faces
    crops_per_image: int = 8  # random crops drawn from each training face per epoch
    crop_size: int = 256  # side of a training crop, in pixels
    batch_size: int = 8  # crops per optimiser step
    learning_rate: float = 1e-3  # Adam's; decays on a cosine (the 2019 report's 2e-4 learns too slowly)
    class_weight_power: float = 0.25  # loss weight = class frequency ** -power (1 = inverse, 0 = unweighted)
    validation_fraction: float = 0.2  # share of fine-labelled faces held out
    seed: int = 0  # fixes split, initialisation, crops and augmentation
    split_seed: int | None = None  # fixes the split alone when set (reruns on the same held-out faces); None: seed
    fine_fraction: float | None = None  # share of training faces keeping fine maps; None: 0.4 for gan, else 1.0
    discriminator: str = "pixel"  # gan: pixel (per-pixel confidence) or image (the 2019 report's)
    step2_fraction: float = 0.5  # gan: share of epochs spent in step 2, on coarse-only faces too
    init_weights: str = ""  # weights file to start from (fine-tuning); "" = random initialisation
    # Share of training crops whose coarse map loses a band along its class boundaries (and, in some, a patch) to
    # "not annotated", as Cityscapes' coarse maps leave them, so the network learns to fill such gaps itself.
    void_probability: float = 0.0
    # Coarse maps drawn from the fine ones (training/coarsen.py's "KEY=LOW:HIGH,..." ranges), anew every epoch, for
    # the training samples that have no coarse map of their own; "" = only samples with coarse maps train.
    coarsen: str = ""
    coarsen_all: bool = False  # draw coarse maps for every training sample, replacing the coarse maps on disk
    # Share of training crops in which one to three connected regions of the coarse map take another class (mostly
    # a bordering one), the fine target unchanged, so the network learns to overrule whole wrong regions.
    relabel_probability: float = 0.0
    # Soft targets where a colour fine map's anti-aliased edge pixel blends two class colours: its loss is shared
    # between the two classes by its colour. Validation and scoring stay hard (nearest colour).
    soft_boundaries: bool = False
    # Weights of a model whose refinements of the coarse-only samples' coarse maps train as their fine maps
    # (self-training, training/pseudo_labels.py); "" = coarse-only samples train only in gan mode.
    teacher: str = ""
    # The coarse-only samples train too, their own coarse map as the target and a coarser map drawn from it by
    # --coarsen (anew every epoch) as the input: they teach what the photo says where a coarser map is silent.
    coarse_targets: bool = False
    coarse_target_crops: int = 0  # crops of each coarse-target sample per epoch; 0 = crops_per_image
    # What a coarse-target sample shows the network: "drawn", a coarser map drawn from its target by --coarsen
    # anew every epoch; "none", no coarse map at all (every pixel not annotated), so that it teaches what the
    # photo shows rather than how far an outline may be trusted.
    coarse_target_input: str = "drawn"

    def resolved(self) -> TrainConfig:
        """This config with a None fine_fraction set for its mode (gan: 0.4, 20 of 50 faces as in the report)."""
        if self.fine_fraction is not None:
            return self
        return dataclasses.replace(self, fine_fraction=0.4 if self.mode == "gan" else 1.0)

    @property
    def split_by(self) -> int:
        """The seed of the train/validation and fine/coarse-only splits."""
        return self.seed if self.split_seed is None else self.split_seed


# The U-Net halves the size up to five times, so inputs are padded to multiples of 32.
SIZE_MULTIPLE = 32
# Wider smoothing than this erases whole faces' parts; it also bounds the kernel's size. Below the
# minimum a Gaussian's weights underflow, and it would change nothing anyway.
MIN_SMOOTHING, MAX_SMOOTHING = 0.1, 32.0

# Limits on what c2f accepts, so a damaged or hostile file fails in one line instead of exhausting memory.
MAX_CLASSES = 4096  # a K x K int64 confusion matrix is then 134 MB; label maps hold at most uint16 ids
POLYGON_TOLERANCE = 0.5  # px a traced outline, simplified, may stray from the region's edge
MAX_PIXELS = 64_000_000  # width x height of a photo or map (8000 x 8000), checked from the header before decoding


@dataclass(frozen=True)
class ReadLimits:
    """What `c2f refine` agrees to decode; --max-megapixels raises it for real big photos."""

    max_pixels: int = MAX_PIXELS  # width x height of a photo or map, checked from the header before decoding
MAX_BATCH = 1024  # windows per network call
MAX_WINDOW = 4096  # side of a network window; a float32 batch of 8 such windows with 9 channels is 4.8 GB


def is_smoothing(value: object) -> bool:
    """True for a number (not a bool) c2f accepts as --smooth: 0 (off) or MIN_SMOOTHING..MAX_SMOOTHING."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and (value == 0 or MIN_SMOOTHING <= value <= MAX_SMOOTHING))


@dataclass(frozen=True)
class WindowSettings:
    """How an image is cut into windows for the network."""

    window: int = 256  # side of a square window, in pixels (a multiple of 32)
    overlap: int = 64  # pixels shared by neighbouring windows, blended smoothly
    batch_size: int = 8  # windows per network call
    whole_image: bool = False  # always one window covering the whole padded image
    # Images up to this many (padded) pixels go through in one pass anyway: a single pass
    # needs no overlap, so it does half the work of windows on a face and is seamless by
    # construction. Larger photos are windowed so memory stays bounded. 0 = always windows.
    whole_image_max_pixels: int = 1024 * 1024
    # Gaussian sigma, in pixels, applied to the stitched class probabilities before each pixel takes its
    # class: hand-drawn fine maps have smooth outlines, the network's are ragged by a pixel or two. On the
    # first shipped face model's held-out faces (benchmarks/error_analysis.py): 0: 96.09 %, 1: 96.16 %, 2: 96.17 %,
    # 3: 96.18 %, 4: 96.16 %; 2 is a light blur (kind to thin structures) within 0.01 of the best. 0 = off.
    smoothing: float = 2.0

    def check(self) -> None:
        if self.window < SIZE_MULTIPLE or self.window % SIZE_MULTIPLE:
            raise C2FError(f"--window must be a positive multiple of {SIZE_MULTIPLE}, got {self.window}.")
        if self.window > MAX_WINDOW:
            raise C2FError(f"--window must be at most {MAX_WINDOW} pixels, got {self.window}.")
        if not 0 <= self.overlap < self.window:
            raise C2FError(f"--overlap must be at least 0 and below --window ({self.window}), got {self.overlap}.")
        if not 1 <= self.batch_size <= MAX_BATCH:
            raise C2FError(f"--batch-size must be at least 1 and at most {MAX_BATCH}, got {self.batch_size}.")
        if not is_smoothing(self.smoothing):
            raise C2FError(f"--smooth must be 0 (off) or between {MIN_SMOOTHING} and {MAX_SMOOTHING} pixels, "
                           f"got {self.smoothing}.")


@dataclass(frozen=True)
class QuantizeSettings:
    """How `c2f export --quantize int8` calibrates and checks an int8 model."""

    calibration_images: int = 16  # photos whose activations set the int8 ranges, spread over the folder's sorted names
    # Share of the calibration pixels whose class the int8 model must keep; the shipped FASSEG model keeps 99.7 %.
    min_agreement: float = 0.98


@dataclass(frozen=True)
class ClusterSettings:
    """How `refine --ray` spreads a folder over a Ray cluster."""

    workers: int = 0  # actors refining at once, each with its own model; 0 = one per GPU, else one per CPU
    # Photos with more pixels than this are cut into window batches that different actors compute, then
    # stitched: one 100-megapixel orthophoto then keeps the whole cluster busy. 0 = never split.
    split_pixels: int = 16 * 1024 * 1024
    windows_per_batch: int = 16  # windows of such a photo that one actor computes per task

    def check(self) -> None:
        if self.workers < 0:
            raise C2FError(f"--workers must be at least 1 (or 0 for one per CPU), got {self.workers}.")
        if self.split_pixels < 0 or self.windows_per_batch < 1:
            raise C2FError("the split threshold must be at least 0 and the windows per batch at least 1.")
