"""Every way a new user can get an input wrong gives one clear error line, a non-zero exit and no output.

Each case runs the real `c2f` app through Typer's CliRunner and checks the
message names what went wrong and which file, the exit code, that no Python
traceback is shown, and that nothing (not even a partial file) was written.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_scene
from PIL import Image
from typer.testing import CliRunner

from c2f.cli import app
from c2f.config import ModelConfig
from c2f.io.label_maps import write_label_map
from c2f.io.label_sets import FASSEG_LABELS, LabelSet
from c2f.model import UNet
from c2f.weights import save_weights

runner = CliRunner()
THREE_CLASSES = LabelSet(("sky", "road", "car"), ((70, 130, 180), (128, 64, 128), (0, 0, 142)))
THREE_CLASSES_TOML = ('classes = [\n  { name = "sky", color = [70, 130, 180] },\n'
                      '  { name = "road", color = [128, 64, 128] },\n  { name = "car", color = [0, 0, 142] },\n]\n')


def invoke(*arguments: str | Path):
    """Run `c2f arguments...`; whatever happens, no traceback and no exception other than a clean exit."""
    result = runner.invoke(app, [str(argument) for argument in arguments])
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


def error_line(result, *fragments: str, exit_code: int = 1) -> str:
    """The one `error:` line of a refused command, checked to hold every fragment."""
    assert result.exit_code == exit_code, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, f"expected one error line:\n{result.output}"
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


def files_in(folder: Path) -> list[str]:
    """Every file under folder, hidden partial files included."""
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file()) \
        if folder.exists() else []


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """An untrained tiny FASSEG model: error handling does not need a good one."""
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    torch.manual_seed(0)
    save_weights(path, UNet(ModelConfig(width=4, depth=2)), FASSEG_LABELS)
    return path


@pytest.fixture(scope="module")
def three_class_weights(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "three.safetensors"
    save_weights(path, UNet(ModelConfig(num_classes=3, width=4, depth=2)), THREE_CLASSES)
    return path


@pytest.fixture
def inputs(tmp_path) -> Path:
    """A folder with a 52 x 40 photo.png and its colour-coded coarse.png."""
    folder = tmp_path / "in"
    folder.mkdir()
    photo, coarse, _ = make_scene(40, 52, seed=1)
    Image.fromarray(photo).save(folder / "photo.png")
    write_label_map(folder / "coarse.png", coarse, FASSEG_LABELS, "color")
    return folder


@pytest.fixture
def out(tmp_path) -> Path:
    """Where outputs go; tests check it stays empty when a command is refused."""
    return tmp_path / "out"


def refine(inputs: Path, out: Path, weights: Path, *extra: str | Path, photo: str = "photo.png",
           coarse: str = "coarse.png"):
    return invoke("refine", inputs / photo, inputs / coarse, "-o", out / "fine.png", "--weights", weights,
                  "--whole-image", "--device", "cpu", *extra)


def test_a_good_pair_is_refined(inputs, out, weights):
    result = refine(inputs, out, weights)
    assert result.exit_code == 0, result.output
    assert files_in(out) == ["fine.png"]


# --- missing files and folders ---------------------------------------------------------------------------

def test_a_missing_photo_is_named(inputs, out, weights):
    error_line(refine(inputs, out, weights, photo="nothere.png"), "not found", "nothere.png")
    assert files_in(out) == []


def test_a_missing_coarse_map_is_named(inputs, out, weights):
    error_line(refine(inputs, out, weights, coarse="nothere.png"), "not found", "nothere.png")
    assert files_in(out) == []


def test_missing_folders_are_named(tmp_path, out, weights):
    result = invoke("refine", tmp_path / "photos", tmp_path / "maps", "-o", out, "--weights", weights)
    error_line(result, "not found", "photos")
    assert files_in(out) == []


def test_a_missing_argument_is_a_usage_message_not_a_traceback(inputs):
    result = invoke("refine", inputs / "photo.png")
    assert result.exit_code == 2
    assert "Missing argument" in result.output


def test_a_missing_label_file_is_named(inputs, out, weights):
    error_line(refine(inputs, out, weights, "--labels", inputs / "labels.toml"), "label file not found", "labels.toml")


def test_a_missing_weights_file_is_named(inputs, out):
    error_line(refine(inputs, out, inputs / "model.safetensors"), "weights file not found", "model.safetensors")
    assert files_in(out) == []


@pytest.mark.parametrize("command", [
    ["stitch", "{tmp}/windows", "-o", "{tmp}/out/fine.png"],
    ["score", "{tmp}/predicted.png", "{tmp}/fine.png"],
    ["train", "--data", "{tmp}/dataset", "--out", "{tmp}/out/run"],
])
def test_every_command_names_a_missing_input(tmp_path, command):
    result = invoke(*[part.format(tmp=tmp_path) for part in command])
    error_line(result, "not found", str(tmp_path))
    assert files_in(tmp_path / "out") == []


# --- files that are not images, or are damaged --------------------------------------------------------

@pytest.mark.parametrize("which", ["photo.png", "coarse.png"])
def test_a_file_that_is_not_an_image_is_refused(inputs, out, weights, which):
    (inputs / which).write_text("these are not pixels")
    error_line(refine(inputs, out, weights), which, "is not an image c2f can read")
    assert files_in(out) == []


@pytest.mark.parametrize("which", ["photo.png", "coarse.png"])
def test_a_truncated_image_is_refused(inputs, out, weights, which):
    content = (inputs / which).read_bytes()
    (inputs / which).write_bytes(content[: len(content) * 2 // 3])
    error_line(refine(inputs, out, weights), which, "truncated or corrupt", "re-export")
    assert files_in(out) == []


def test_a_coarse_map_of_another_size_names_both_sizes(inputs, out, weights):
    photo = np.asarray(Image.open(inputs / "photo.png"))
    Image.fromarray(photo[:30]).save(inputs / "photo.png")
    error_line(refine(inputs, out, weights), "coarse.png is 52x40", "photo.png is 52x30")
    assert files_in(out) == []


def test_a_photo_and_a_folder_are_not_a_pair(inputs, out, weights):
    result = invoke("refine", inputs / "photo.png", inputs, "-o", out / "fine.png", "--weights", weights)
    error_line(result, "two files or two folders")


# --- photo modes: converted, or refused, and the user is told which --------------------------------------

@pytest.mark.parametrize("mode, note", [
    ("L", "greyscale"), ("RGBA", "transparency dropped"), ("P", "palette image"), ("I;16", "16-bit"),
    ("CMYK", "CMYK"),
])
def test_photos_that_can_be_converted_are_refined_with_a_note(inputs, out, weights, mode, note):
    rgb = np.asarray(Image.open(inputs / "photo.png"))
    if mode == "I;16":
        image = Image.fromarray(rgb[..., 0].astype(np.uint16) * 257)
    else:
        image = Image.fromarray(rgb).convert(mode)
    name = "photo.tif" if mode == "CMYK" else "photo.png"
    image.save(inputs / name)
    result = refine(inputs, out, weights, photo=name)
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and name in notes[0] and note in notes[0], result.output
    assert files_in(out) == ["fine.png"]


def test_an_rgb_photo_gets_no_note(inputs, out, weights):
    assert "note:" not in refine(inputs, out, weights).output


def test_a_floating_point_photo_is_refused(inputs, out, weights):
    rgb = np.asarray(Image.open(inputs / "photo.png"))
    Image.fromarray(rgb[..., 0].astype(np.float32) / 255).save(inputs / "photo.tif")
    error_line(refine(inputs, out, weights, photo="photo.tif"), "photo.tif", "floating-point", "8- or 16-bit")
    assert files_in(out) == []


# --- coarse maps that do not fit the label set ----------------------------------------------------------

def paint_foreign_colour(path: Path, count: int) -> None:
    """Paint `count` pixels of a colour map magenta, far from every FASSEG colour and every blend of two."""
    rgb = np.array(Image.open(path).convert("RGB"))
    rgb.reshape(-1, 3)[:count] = (255, 0, 255)
    Image.fromarray(rgb).save(path)


def test_foreign_colours_are_counted_and_warned_about(inputs, out, weights):
    paint_foreign_colour(inputs / "coarse.png", 37)
    result = refine(inputs, out, weights)
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "37 pixels" in warnings[0] and "coarse.png" in warnings[0]
    assert "--strict" in warnings[0]


def test_foreign_colours_are_refused_with_strict(inputs, out, weights):
    paint_foreign_colour(inputs / "coarse.png", 37)
    error_line(refine(inputs, out, weights, "--strict"), "coarse.png", "37 pixels", "--strict")
    assert files_in(out) == []


def test_class_ids_beyond_the_label_set_are_refused(inputs, out, weights):
    ids = np.zeros((40, 52), np.uint8)
    ids[:3, :5] = 9
    Image.fromarray(ids, mode="L").save(inputs / "coarse.png")
    error_line(refine(inputs, out, weights), "coarse.png", "15 pixels", "ids (9)", "it names 0..5", "--labels")
    assert files_in(out) == []


# --- label files ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, content, message", [
    ("labels.toml", "classes = [", "not valid TOML"),
    ("labels.json", '{"classes": [', "not valid JSON"),
    ("labels.toml", 'classes = [{ name = "sky", color = [70, 130] }, { name = "road", color = [1, 2, 3] }]',
     "entry 0"),
    ("labels.toml", 'names = ["sky", "road"]', 'a list "classes"'),
    ("labels.json", '{"classes": [{"name": "a", "color": [1, 2, 3]}, {"name": "a", "color": [4, 5, 6]}]}',
     "must each be unique"),
])
def test_a_malformed_label_file_is_refused(inputs, out, weights, name, content, message):
    (inputs / name).write_text(content)
    error_line(refine(inputs, out, weights, "--labels", inputs / name), name, message)
    assert files_in(out) == []


# --- weights and ONNX files ----------------------------------------------------------------------------

def test_truncated_weights_are_refused(inputs, out, weights):
    content = weights.read_bytes()
    (inputs / "cut.safetensors").write_bytes(content[: len(content) // 2])
    error_line(refine(inputs, out, inputs / "cut.safetensors"), "cut.safetensors", "may be truncated")
    assert files_in(out) == []


def test_a_file_that_is_not_weights_is_refused(inputs, out):
    error_line(refine(inputs, out, inputs / "photo.png"), "photo.png", "not a readable safetensors file")


def test_weights_for_another_label_set_are_refused(inputs, out, three_class_weights):
    (inputs / "faces.toml").write_text("\n".join(
        ["classes = ["] + [f'  {{ name = "{name}", color = {list(color)} }},'
                           for name, color in zip(FASSEG_LABELS.names, FASSEG_LABELS.colors)] + ["]"]))
    result = refine(inputs, out, three_class_weights, "--labels", inputs / "faces.toml")
    error_line(result, "three.safetensors", "trained for classes sky, road, car", "not for background")
    assert files_in(out) == []


def test_a_label_file_other_than_the_weights_is_refused(inputs, out, weights):
    (inputs / "street.toml").write_text(THREE_CLASSES_TOML)
    error_line(refine(inputs, out, weights, "--labels", inputs / "street.toml"), "trained for classes background")


@pytest.mark.parametrize("device", ["gpu", "mps"])
def test_an_unknown_device_is_named_with_the_allowed_ones(inputs, out, weights, device):
    result = refine(inputs, out, weights, "--backend", "torch", "--device", device)
    assert result.exit_code == 2  # a usage error, listed by the option's choices
    assert f"'{device}' is not one of 'auto', 'cpu', 'cuda'" in " ".join(result.output.replace("│", " ").split())
    assert "Traceback" not in result.output
    assert files_in(out) == []


@pytest.fixture(scope="module")
def onnx_files(weights, three_class_weights):
    """The tiny models exported as ONNX (needs the ONNX backend)."""
    onnx_backend = pytest.importorskip("c2f.inference.export")
    return {name: onnx_backend.export_onnx(path, path.with_suffix(".onnx"))[0]
            for name, path in (("faces", weights), ("three", three_class_weights))}


def test_a_missing_onnx_file_is_named(inputs, out, onnx_files):
    result = refine(inputs, out, inputs / "model.onnx", "--backend", "onnx")
    error_line(result, "ONNX model not found", "model.onnx", "c2f export")


def test_a_truncated_onnx_file_is_refused(inputs, out, onnx_files):
    content = onnx_files["faces"].read_bytes()
    (inputs / "cut.onnx").write_bytes(content[: len(content) // 2])
    error_line(refine(inputs, out, inputs / "cut.onnx", "--backend", "onnx"), "cut.onnx", "not a readable ONNX model")
    assert files_in(out) == []


def test_an_onnx_file_for_another_label_set_is_refused(inputs, out, onnx_files):
    (inputs / "street.toml").write_text(THREE_CLASSES_TOML)
    result = refine(inputs, out, onnx_files["faces"], "--backend", "onnx", "--labels", inputs / "street.toml")
    error_line(result, "tiny.onnx", "trained for classes background")


def test_the_onnx_backend_refines_a_good_pair(inputs, out, onnx_files):
    result = refine(inputs, out, onnx_files["faces"], "--backend", "onnx")
    assert result.exit_code == 0, result.output
    assert files_in(out) == ["fine.png"]


# --- folders -------------------------------------------------------------------------------------------

def make_folders(root: Path, photo_stems: list[str], coarse_stems: list[str]) -> tuple[Path, Path]:
    photos, maps = root / "photos", root / "maps"
    photos.mkdir(parents=True)
    maps.mkdir(parents=True)
    for index, stem in enumerate(sorted(set(photo_stems) | set(coarse_stems))):
        photo, coarse, _ = make_scene(36, 44, seed=index)
        if stem in photo_stems:
            Image.fromarray(photo).save(photos / f"{stem}.png")
        if stem in coarse_stems:
            write_label_map(maps / f"{stem}.png", coarse, FASSEG_LABELS, "color")
    return photos, maps


def refine_folders(photos: Path, maps: Path, out: Path, weights: Path, *extra: str | Path):
    return invoke("refine", photos, maps, "-o", out, "--weights", weights, "--whole-image", "--device", "cpu", *extra)


def test_an_empty_folder_is_refused(tmp_path, out, weights):
    photos, maps = make_folders(tmp_path, [], ["face"])
    error_line(refine_folders(photos, maps, out, weights), "photos", "holds no images")
    assert files_in(out) == []


@pytest.mark.parametrize("command", [["score", "{tmp}/photos", "{tmp}/maps"],
                                     ["train", "--data", "{tmp}/photos", "--out", "{tmp}/out/run"],
                                     ["stitch", "{tmp}/photos", "-o", "{tmp}/out/fine.png"]])
def test_every_command_refuses_an_empty_folder(tmp_path, command):
    (tmp_path / "photos").mkdir()
    (tmp_path / "maps").mkdir()
    error_line(invoke(*[part.format(tmp=tmp_path) for part in command]), "photos")
    assert files_in(tmp_path / "out") == []


def test_unpaired_stems_are_listed_and_the_pairs_still_refined(tmp_path, out, weights):
    photos, maps = make_folders(tmp_path, ["alice", "bob", "carol"], ["alice", "carol", "dave"])
    result = refine_folders(photos, maps, out, weights)
    assert result.exit_code == 1, result.output
    assert files_in(out) == ["alice.png", "carol.png"]
    summary = result.output[result.output.index("2 written"):]
    assert "2 failed" in summary
    for name in ("bob.png", "dave.png"):
        assert any(name in line and "no file of the same name" in line for line in summary.splitlines()), summary


def test_folders_that_share_no_stem_are_refused_listing_the_files(tmp_path, out, weights):
    photos, maps = make_folders(tmp_path, ["alice"], ["bob"])
    error_line(refine_folders(photos, maps, out, weights), "no photo in", "alice.png", "bob.png")
    assert files_in(out) == []


def test_a_photo_and_a_map_sharing_a_stem_in_one_folder_are_refused(tmp_path, out, weights):
    photos, maps = make_folders(tmp_path, ["alice", "bob"], ["alice", "bob"])
    Image.open(photos / "alice.png").save(photos / "alice.jpg")
    error_line(refine_folders(photos, maps, out, weights), "photos", "alice.jpg, alice.png", "rename one")
    assert files_in(out) == []


def test_folder_mode_refuses_an_output_that_is_a_file(tmp_path, weights):
    photos, maps = make_folders(tmp_path, ["alice"], ["alice"])
    (tmp_path / "out.png").write_bytes(b"")
    error_line(refine_folders(photos, maps, tmp_path / "out.png", weights), "out.png is a file", "--output")


# --- outputs: atomic, never overwritten unless asked ---------------------------------------------------

def test_an_existing_output_is_kept_unless_overwrite_is_given(inputs, out, weights):
    out.mkdir()
    (out / "fine.png").write_bytes(b"precious")
    error_line(refine(inputs, out, weights), "fine.png already exists", "--overwrite")
    assert (out / "fine.png").read_bytes() == b"precious"
    assert refine(inputs, out, weights, "--overwrite").exit_code == 0
    assert Image.open(out / "fine.png").size == (52, 40)


def test_an_existing_overlay_is_kept_unless_overwrite_is_given(inputs, out, weights):
    out.mkdir()
    (out / "check.png").write_bytes(b"precious")
    error_line(refine(inputs, out, weights, "--overlay", out / "check.png"), "check.png already exists")
    assert files_in(out) == ["check.png"] and (out / "check.png").read_bytes() == b"precious"


def test_an_output_that_is_a_folder_is_refused_even_with_overwrite(inputs, out, weights):
    (out / "fine.png").mkdir(parents=True)
    error_line(refine(inputs, out, weights, "--overwrite"), "fine.png is a folder")


def test_an_output_that_cannot_be_created_is_one_clean_line(inputs, tmp_path, weights):
    (tmp_path / "blocker").write_bytes(b"a file where a folder should be")
    result = invoke("refine", inputs / "photo.png", inputs / "coarse.png", "-o", tmp_path / "blocker" / "fine.png",
                    "--weights", weights, "--whole-image")
    error_line(result, "blocker", "check the path")


def test_an_interrupted_write_leaves_no_file_at_all(inputs, out, weights, monkeypatch):
    def write_half_then_interrupt(image, target, *args, **kwargs):
        Path(target).write_bytes(b"\x89PNG half")
        raise KeyboardInterrupt
    monkeypatch.setattr(Image.Image, "save", write_half_then_interrupt)
    result = refine(inputs, out, weights)
    assert result.exit_code == 130 and "interrupted" in result.output
    assert files_in(out) == []  # neither the map nor its hidden partial file


def test_outputs_get_the_usual_file_permissions(inputs, out, weights):
    assert refine(inputs, out, weights).exit_code == 0
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((out / "fine.png").stat().st_mode) == 0o666 & ~umask


# --- training inputs -----------------------------------------------------------------------------------

TINY_TRAINING = ["--epochs", "1", "--width", "4", "--depth", "2", "--crop-size", "32", "--crops-per-image", "1",
                 "--batch-size", "4"]


def test_training_refuses_a_damaged_image_naming_it_and_writes_nothing(generic_dataset, tmp_path):
    fine = generic_dataset / "fine" / "face_01.png"
    fine.write_bytes(fine.read_bytes()[:200])
    result = invoke("train", "--data", generic_dataset, "--out", tmp_path / "run", *TINY_TRAINING)
    error_line(result, "face_01.png", "truncated or corrupt")
    assert not (tmp_path / "run").exists()


def test_training_refuses_an_out_that_is_a_file(generic_dataset, tmp_path):
    (tmp_path / "run").write_bytes(b"")
    error_line(invoke("train", "--data", generic_dataset, "--out", tmp_path / "run", *TINY_TRAINING),
               "is a file", "--out")


def test_training_into_an_existing_run_or_resuming_with_other_settings_is_refused(generic_dataset, tmp_path):
    arguments = ["train", "--data", generic_dataset, "--out", tmp_path / "run", *TINY_TRAINING]
    assert invoke(*arguments).exit_code == 0
    checkpoint = (tmp_path / "run" / "checkpoint.safetensors").read_bytes()
    error_line(invoke(*arguments), "already holds a training run", "--resume")
    error_line(invoke(*arguments, "--resume", "--seed", "7"), "checkpoint.safetensors", "seed 0 there, 7 now")
    assert (tmp_path / "run" / "checkpoint.safetensors").read_bytes() == checkpoint
