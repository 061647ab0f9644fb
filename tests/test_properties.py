"""Property-based and fuzz tests (hypothesis).

Tiling and stitching hold for random image sizes and strides, label maps round
trip for random palettes, and every reader turns random, truncated or damaged
files into a C2FError, never another exception.
"""

from __future__ import annotations

import io
import json
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from conftest import coarse_echo_predictor
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image
from safetensors.torch import save_file

from c2f.config import ModelConfig, WindowSettings
from c2f.errors import C2FError
from c2f.inference.sliding_window import refine_map, refine_probabilities
from c2f.inference.tiling import pad_image, padded_size, plan_windows, stitch_windows
from c2f.inference.windows_folder import MANIFEST_NAME, stitch_folder
from c2f.io.label_maps import read_label_map, write_label_map
from c2f.io.label_sets import FASSEG_LABELS, LabelSet, load_label_set
from c2f.io.photos import read_photo
from c2f.model import UNet
from c2f.weights import load_weights, save_weights

# PIL's TIFF reader warns about damaged files before c2f refuses them; the refusal is what is tested.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL.TiffImagePlugin")
# Modest counts keep this file to seconds; a failing example is printed and replayed by hypothesis.
FEW = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SOME = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def read_or_refused(call: Callable[[], object]) -> str:
    """Run a reader on input that may or may not be valid: 'ok' or 'refused' (C2FError); anything else fails."""
    try:
        call()
    except C2FError as error:
        assert str(error), "a C2FError must say what went wrong"
        return "refused"
    return "ok"


def refused(call: Callable[[], object]) -> None:
    """Run a reader on input that cannot be valid: it must raise a C2FError that says something."""
    with pytest.raises(C2FError) as caught:
        call()
    assert str(caught.value), "a C2FError must say what went wrong"


# --- tiling and stitching -------------------------------------------------------------------------------

@FEW
@given(height=st.integers(1, 300), width=st.integers(1, 300), window=st.integers(1, 96), data=st.data())
def test_planned_windows_cover_every_pixel_and_stay_inside_for_any_size(height, width, window, data):
    overlap = data.draw(st.integers(0, window - 1), label="overlap")
    coverage = np.zeros((height, width), np.int32)
    for box in plan_windows(height, width, window, overlap):
        assert 0 <= box.top and box.top + box.height <= height
        assert 0 <= box.left and box.left + box.width <= width
        coverage[box.slices()] += 1
    assert coverage.min() >= 1


@FEW
@given(height=st.integers(1, 120), width=st.integers(1, 120), target_extra=st.tuples(st.integers(0, 300),
                                                                                          st.integers(0, 300)))
def test_padding_keeps_the_image_at_the_top_left_for_any_size(height, width, target_extra):
    image = np.random.default_rng(height * 1000 + width).integers(0, 256, (height, width, 3), dtype=np.uint8)
    padded = pad_image(image, height + target_extra[0], width + target_extra[1])
    assert padded.shape == (height + target_extra[0], width + target_extra[1], 3)
    np.testing.assert_array_equal(padded[:height, :width], image)


@FEW
@given(height=st.integers(1, 200), width=st.integers(1, 200), window=st.sampled_from([32, 64, 96]),
       multiple=st.sampled_from([1, 8, 32]))
def test_padded_size_fits_the_window_and_the_multiple(height, width, window, multiple):
    padded_height, padded_width = padded_size(height, width, window, multiple)
    for original, padded in ((height, padded_height), (width, padded_width)):
        assert padded >= max(original, window) and padded % multiple == 0
        assert padded - max(original, window) < multiple


@FEW
@given(height=st.integers(32, 160), width=st.integers(32, 160), window=st.sampled_from([32, 64]),
       num_classes=st.integers(2, 5), data=st.data())
def test_stitching_windows_cut_from_a_known_field_gives_the_field_back(height, width, window, num_classes, data):
    overlap = data.draw(st.integers(0, window - 1), label="overlap")
    rng = np.random.default_rng(height * 7 + width)
    field = rng.random((num_classes, height, width), dtype=np.float32)
    field /= field.sum(axis=0, keepdims=True)
    boxes = plan_windows(height, width, window, overlap)
    stitched = stitch_windows(((box, field[(slice(None), *box.slices())]) for box in boxes),
                              num_classes, height, width, overlap)
    np.testing.assert_allclose(stitched, field, rtol=1e-5, atol=1e-6)


@FEW
@given(height=st.integers(1, 150), width=st.integers(1, 150), num_classes=st.integers(2, 7),
       window=st.sampled_from([32, 64, 96]), whole_image=st.booleans(), batch_size=st.integers(1, 5), data=st.data())
def test_refining_with_an_echo_predictor_returns_the_coarse_map_for_any_size_and_stride(
        height, width, num_classes, window, whole_image, batch_size, data):
    overlap = data.draw(st.integers(0, window - 1), label="overlap")
    rng = np.random.default_rng(height * 151 + width)
    photo = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    coarse = rng.integers(0, num_classes, (height, width)).astype(np.uint8)
    settings_ = WindowSettings(window, overlap, batch_size, whole_image, whole_image_max_pixels=0, smoothing=0.0)
    refined = refine_map(coarse_echo_predictor(num_classes), photo, coarse, num_classes, settings_)
    assert refined.shape == (height, width)
    np.testing.assert_array_equal(refined, coarse)


# --- label sets and label maps --------------------------------------------------------------------------

colors = st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255))


@st.composite
def label_sets(draw, max_classes: int = 24) -> LabelSet:
    """Random label sets: distinct names and distinct colours."""
    palette = draw(st.lists(colors, min_size=2, max_size=max_classes, unique=True))
    names = draw(st.lists(st.text(min_size=1, max_size=12), min_size=len(palette), max_size=len(palette),
                          unique=True))
    return LabelSet(tuple(names), tuple(palette))


@SOME
@given(labels=label_sets(), encoding=st.sampled_from(["color", "palette", "index"]),
       height=st.integers(1, 24), width=st.integers(1, 24), seed=st.integers(0, 2**16))
def test_label_maps_round_trip_for_random_palettes(labels, encoding, height, width, seed):
    ids = np.random.default_rng(seed).integers(0, labels.num_classes, (height, width))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "map.png"
        write_label_map(path, ids, labels, encoding)
        label_map = read_label_map(path, labels)
    np.testing.assert_array_equal(label_map.class_ids, ids)
    assert label_map.far_pixels == 0
    # A palette PNG decoded by its colours still gives the same ids.
    assert label_map.encoding == encoding or (encoding == "palette" and label_map.encoding == "color")


@SOME
@given(labels=label_sets())
def test_label_sets_round_trip_through_their_json(labels):
    assert LabelSet.from_json(labels.to_json()) == labels
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "labels.json"
        path.write_text(labels.to_json(), encoding="utf-8")
        assert load_label_set(path) == labels


# --- fuzzing every reader ------------------------------------------------------------------------------

def image_bytes(array: np.ndarray, image_format: str = "PNG", mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    image = Image.fromarray(array)
    (image.convert(mode) if mode else image).save(buffer, format=image_format)
    return buffer.getvalue()


def valid_image_files() -> list[bytes]:
    """A few real images in several formats and modes, to truncate and damage."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    ids = rng.integers(0, 6, (12, 10)).astype(np.uint8)
    palette_map = Image.fromarray(ids, mode="P")
    palette_map.putpalette(FASSEG_LABELS.palette().ravel().tolist())
    buffer = io.BytesIO()
    palette_map.save(buffer, format="PNG")
    return [image_bytes(rgb), image_bytes(rgb, "JPEG"), image_bytes(rgb, "BMP"), image_bytes(rgb, "TIFF"),
            image_bytes(rgb, "GIF", "P"), image_bytes(rgb, "PNG", "RGBA"), image_bytes(ids), buffer.getvalue(),
            image_bytes(FASSEG_LABELS.palette()[ids]), image_bytes(rgb[..., 0].astype(np.uint16) * 257)]


VALID_IMAGES = valid_image_files()


def damaged(original: bytes, draw) -> bytes:
    """original truncated, or with a few bytes overwritten at random places."""
    if draw(st.booleans(), label="truncate"):
        return original[:draw(st.integers(0, len(original) - 1), label="length")]
    result = bytearray(original)
    for _ in range(draw(st.integers(1, 8), label="changes")):
        result[draw(st.integers(0, len(result) - 1), label="position")] = draw(st.integers(0, 255), label="byte")
    return bytes(result)


def read_both_ways(path: Path, check=read_or_refused) -> None:
    check(lambda: read_photo(path))
    check(lambda: check_label_map(read_label_map(path, FASSEG_LABELS).class_ids, path))


def check_label_map(ids: np.ndarray, path: Path) -> None:
    assert ids.ndim == 2 and int(ids.max(initial=0)) < FASSEG_LABELS.num_classes, path


@SOME
@given(content=st.binary(max_size=600), suffix=st.sampled_from([".png", ".jpg", ".bmp", ".tif", ".gif"]))
def test_random_bytes_are_refused_by_the_image_readers(content, suffix):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"random{suffix}"
        path.write_bytes(content)
        read_both_ways(path, refused)


@SOME
@given(index=st.integers(0, len(VALID_IMAGES) - 1), data=st.data())
def test_truncated_or_damaged_images_are_refused_or_read_cleanly(index, data):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "damaged.png"
        path.write_bytes(damaged(VALID_IMAGES[index], data.draw))
        read_both_ways(path)


def test_truncated_png_is_refused_with_its_name(tmp_path):
    path = tmp_path / "cut.png"
    path.write_bytes(VALID_IMAGES[0][: len(VALID_IMAGES[0]) // 2])
    with pytest.raises(C2FError, match="cut.png.*truncated or corrupt"):
        read_photo(path)


IMAGE_MODES = ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "I", "I;16", "F", "LAB", "HSV"]


@FEW
@given(mode=st.sampled_from(IMAGE_MODES), image_format=st.sampled_from(["PNG", "TIFF", "BMP", "WEBP"]),
       seed=st.integers(0, 1000))
def test_images_of_every_mode_and_format_are_read_or_refused_cleanly(mode, image_format, seed):
    rng = np.random.default_rng(seed)
    if mode in ("I", "I;16", "F"):
        values = rng.integers(-5 if mode == "I" else 0, 70000 if mode != "I;16" else 65535, (9, 11))
        dtype = {"I": np.int32, "I;16": np.uint16, "F": np.float32}[mode]
        image = Image.fromarray(values.astype(dtype))
    else:
        image = Image.fromarray(rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)).convert(
            mode if mode not in ("LAB", "HSV") else "RGB")
        if mode in ("LAB", "HSV"):
            image = Image.merge(mode, image.split())
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"image.{image_format.lower()}"
        try:
            image.save(path, format=image_format)
        except (OSError, ValueError, KeyError):
            assume(False)  # PIL cannot write this mode in this format; nothing to read
        if read_or_refused(lambda: read_photo(path)) == "ok":
            photo = read_photo(path)
            assert photo.shape == (9, 11, 3) and photo.dtype == np.uint8
        if read_or_refused(lambda: read_label_map(path, FASSEG_LABELS)) == "ok":
            check_label_map(read_label_map(path, FASSEG_LABELS).class_ids, path)


VALID_LABEL_TOML = 'classes = [\n  { name = "sky", color = [70, 130, 180] },\n  { name = "road", color = [128, 64, 128] },\n]\n'


@SOME
@given(content=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(lambda text: text.encode())),
       suffix=st.sampled_from([".toml", ".json", ".txt"]))
def test_random_label_files_are_refused(content, suffix):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"labels{suffix}"
        path.write_bytes(content)
        refused(lambda: load_label_set(path))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-300, 300) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@SOME
@given(data=st.data())
def test_damaged_or_odd_label_files_are_read_or_refused_cleanly(data):
    with tempfile.TemporaryDirectory() as folder:
        if data.draw(st.booleans(), label="damage the TOML"):
            path = Path(folder) / "labels.toml"
            path.write_bytes(damaged(VALID_LABEL_TOML.encode(), data.draw))
        else:
            classes = data.draw(st.lists(json_values, max_size=4) | json_values, label="classes")
            path = Path(folder) / "labels.json"
            path.write_text(json.dumps({"classes": classes}))
        read_or_refused(lambda: load_label_set(path))


@pytest.fixture(scope="module")
def valid_weights_bytes(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    torch.manual_seed(0)
    save_weights(path, UNet(ModelConfig(width=2, depth=1)), FASSEG_LABELS)
    return path.read_bytes()


@SOME
@given(content=st.binary(max_size=400), data=st.data())
def test_random_weights_are_refused_and_damaged_ones_read_or_refused_cleanly(valid_weights_bytes, content, data):
    feed_random_or_damaged(valid_weights_bytes, content, data, "weights.safetensors", load_weights)


def feed_random_or_damaged(valid_bytes: bytes, content: bytes, data, name: str, reader) -> None:
    """Write random bytes (refused) or a damaged copy of a valid file (read or refused), and hand it to reader."""
    choice = data.draw(st.sampled_from(["random", "damaged"]), label="kind")
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(content if choice == "random" else damaged(valid_bytes, data.draw))
        (refused if choice == "random" else read_or_refused)(lambda: reader(path))


@FEW
@given(field=st.sampled_from(["model_config", "labels"]), value=json_values,
       config_value=st.fixed_dictionaries({}, optional={
           "num_classes": st.sampled_from([-1, 0, 1, 6, 7, 10**9, "6", 6.0, None]),
           "width": st.sampled_from([-3, 0, 1, 2, 3, 300, 10**6, True]), "depth": st.sampled_from([-1, 0, 1, 2, 7, 40]),
           "use_coarse": st.sampled_from([True, False, 1, "yes"]), "colour": st.just(1)}))
def test_weights_with_odd_metadata_are_read_or_refused_without_building_a_huge_model(field, value, config_value):
    metadata = {"c2f_format": "1", "model_config": json.dumps({"num_classes": 6, "use_coarse": True, "width": 2,
                                                               "depth": 1}),
                "labels": FASSEG_LABELS.to_json()}
    metadata[field] = json.dumps(value if field == "labels" else config_value)
    state = UNet(ModelConfig(width=2, depth=1)).state_dict()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "odd.safetensors"
        save_file({name: tensor.contiguous() for name, tensor in state.items()}, str(path), metadata=metadata)
        read_or_refused(lambda: load_weights(path))


@pytest.fixture(scope="module")
def windows_folder(tmp_path_factory) -> Path:
    """A complete `refine --windows-dir` folder of a 40 x 70 image."""
    folder = tmp_path_factory.mktemp("windows")
    rng = np.random.default_rng(1)
    photo = rng.integers(0, 256, (40, 70, 3), dtype=np.uint8)
    coarse = rng.integers(0, 6, (40, 70)).astype(np.uint8)
    refine_probabilities(coarse_echo_predictor(6), photo, coarse, 6, WindowSettings(32, 8, 4, whole_image_max_pixels=0), windows_dir=folder,
                         labels=FASSEG_LABELS)
    return folder


def copy_folder(source: Path, target: Path) -> None:
    for path in source.iterdir():
        (target / path.name).write_bytes(path.read_bytes())


@SOME
@given(data=st.data())
def test_random_manifests_are_refused_and_damaged_ones_read_or_refused_cleanly(windows_folder, data):
    original = (windows_folder / MANIFEST_NAME).read_bytes()
    kind = data.draw(st.sampled_from(["random", "damaged", "json"]), label="kind")
    with tempfile.TemporaryDirectory() as folder:
        copy_folder(windows_folder, Path(folder))
        if kind == "random":
            content = data.draw(st.binary(max_size=300), label="content")
        elif kind == "damaged":
            content = damaged(original, data.draw)
        else:
            manifest = json.loads(original)
            key = data.draw(st.sampled_from(sorted(manifest)), label="key")
            manifest[key] = data.draw(json_values, label="value")
            content = json.dumps(manifest).encode()
        (Path(folder) / MANIFEST_NAME).write_bytes(content)
        (refused if kind == "random" else read_or_refused)(lambda: stitch_folder(Path(folder)))


@FEW
@given(data=st.data())
def test_odd_window_entries_in_a_manifest_are_read_or_refused_cleanly(windows_folder, data):
    manifest = json.loads((windows_folder / MANIFEST_NAME).read_text())
    entry = manifest["windows"][data.draw(st.integers(0, len(manifest["windows"]) - 1), label="window")]
    key = data.draw(st.sampled_from(["file", "top", "left", "height", "width"]), label="key")
    entry[key] = data.draw(st.integers(-10**6, 10**6) | st.text(max_size=12) | json_values, label="value")
    with tempfile.TemporaryDirectory() as folder:
        copy_folder(windows_folder, Path(folder))
        (Path(folder) / MANIFEST_NAME).write_text(json.dumps(manifest))
        read_or_refused(lambda: stitch_folder(Path(folder)))


@SOME
@given(data=st.data())
def test_random_window_files_are_refused_and_damaged_ones_read_or_refused_cleanly(windows_folder, data):
    with tempfile.TemporaryDirectory() as folder:
        copy_folder(windows_folder, Path(folder))
        target = Path(folder) / "window_00001.npy"
        random = data.draw(st.booleans(), label="random")
        if random:
            target.write_bytes(data.draw(st.binary(max_size=300), label="content"))
        else:
            target.write_bytes(damaged(target.read_bytes(), data.draw))
        (refused if random else read_or_refused)(lambda: stitch_folder(Path(folder)))


@pytest.fixture(scope="module")
def valid_onnx_bytes(tmp_path_factory, valid_weights_bytes) -> bytes:
    onnx_backend = pytest.importorskip("c2f.inference.export")
    folder = tmp_path_factory.mktemp("onnx")
    (folder / "tiny.safetensors").write_bytes(valid_weights_bytes)
    path, _ = onnx_backend.export_onnx(folder / "tiny.safetensors", folder / "tiny.onnx")
    return path.read_bytes()


@FEW
@given(content=st.binary(max_size=400), data=st.data())
def test_random_onnx_files_are_refused_and_damaged_ones_read_or_refused_cleanly(valid_onnx_bytes, content, data):
    from c2f.inference.onnx_session import onnx_predictor

    feed_random_or_damaged(valid_onnx_bytes, content, data, "model.onnx", lambda path: onnx_predictor(path, None, "cpu"))
