"""The `c2f` command line end to end on synthetic faces: train, refine, stitch, score, help."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from conftest import make_generic_dataset
from typer.testing import CliRunner

from c2f.cli import app
from c2f.config import WindowSettings
from c2f.inference.sliding_window import refine_map
from c2f.inference.torch_backend import torch_predictor
from c2f.io.label_maps import read_label_map
from c2f.io.label_sets import FASSEG_LABELS
from c2f.io.photos import read_photo
from c2f.weights import load_weights

runner = CliRunner()


def run(*arguments: str | Path, expect_exit: int = 0):
    """Invoke `c2f arguments...` and check its exit code, showing its output when it differs."""
    result = runner.invoke(app, [str(argument) for argument in arguments])
    assert result.exit_code == expect_exit, f"exit {result.exit_code}\n{result.output}\n{result.exception!r}"
    return result


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_generic_dataset(tmp_path_factory.mktemp("cli") / "dataset", [(48, 40), (40, 56), (64, 48), (36, 36)])


@pytest.fixture(scope="module")
def trained_run(dataset) -> Path:
    """The run folder of a one-epoch `c2f train` of a tiny model."""
    out = dataset.parent / "run"
    run("train", "--data", dataset, "--out", out, "--epochs", "1", "--width", "4", "--depth", "2",
        "--crop-size", "32", "--crops-per-image", "2", "--batch-size", "4", "--validation-fraction", "0.25")
    return out


def test_train_writes_weights_log_and_curves(trained_run):
    for name in ("model.safetensors", "checkpoint.safetensors", "log.csv", "curves.png"):
        assert (trained_run / name).is_file(), name
    model, labels, metadata = load_weights(trained_run / "model.safetensors")
    assert (model.config.width, model.config.depth) == (4, 2)
    assert labels == FASSEG_LABELS
    assert metadata["train_config"]["crop_size"] == 32
    assert len(metadata["split"]["validation"]) == 1


def test_train_refuses_a_crop_size_the_network_cannot_halve(dataset, tmp_path):
    result = run("train", "--data", dataset, "--out", tmp_path / "run", "--depth", "3", "--crop-size", "36",
                 expect_exit=1)
    assert "--crop-size" in result.output
    assert "Traceback" not in result.output


def test_train_init_takes_width_and_depth_from_the_starting_weights(dataset, trained_run, tmp_path):
    run("train", "--data", dataset, "--out", tmp_path / "finetuned", "--epochs", "1", "--crop-size", "32",
        "--crops-per-image", "1", "--batch-size", "4", "--init", trained_run / "model.safetensors")
    model, _, metadata = load_weights(tmp_path / "finetuned" / "model.safetensors")
    assert (model.config.width, model.config.depth) == (4, 2)
    assert metadata["train_config"]["init_weights"] == str(trained_run / "model.safetensors")


def test_train_init_with_another_width_is_one_line_and_exit_one(dataset, trained_run, tmp_path):
    result = run("train", "--data", dataset, "--out", tmp_path / "finetuned", "--epochs", "1", "--crop-size", "32",
                 "--width", "8", "--init", trained_run / "model.safetensors", expect_exit=1)
    assert "--init" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("options, message", [
    (["--width", "8"], "--width and --depth size the U-Net; --encoder efficientnet-lite0 has a fixed size"),
    (["--crop-size", "48"], "--crop-size must be a multiple of 32"),
    (["--upsampling", "nearest"], "--upsampling shapes the U-Net's decoder; --encoder efficientnet-lite0's decoder"),
])
def test_train_with_the_encoder_refuses_unet_sizes_in_one_line(dataset, tmp_path, options, message):
    result = run("train", "--data", dataset, "--out", tmp_path / "run", "--encoder", "efficientnet-lite0", *options,
                 expect_exit=1)
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output


def test_train_coarse_targets_trains_the_coarse_only_faces_on_their_coarse_maps(dataset, tmp_path):
    result = run("train", "--data", dataset, "--out", tmp_path / "run", "--coarse-targets", expect_exit=1)
    assert "--coarse-targets draws coarser inputs" in " ".join(result.output.split())
    run("train", "--data", dataset, "--out", tmp_path / "run", "--epochs", "1", "--crop-size", "32",
        "--crops-per-image", "1", "--batch-size", "4", "--width", "4", "--depth", "2", "--fine-fraction", "0.5",
        "--coarse-targets", "--coarsen", "tolerance=2:4", "--coarse-target-input", "none")
    _, _, metadata = load_weights(tmp_path / "run" / "model.safetensors")
    assert metadata["train_config"]["coarse_targets"] is True and metadata["split"]["coarse_targets"]
    assert metadata["train_config"]["coarse_target_input"] == "none"


def test_refine_one_file_keeps_size_and_encoding(dataset, trained_run, tmp_path):
    output = tmp_path / "fine.png"
    result = run("refine", dataset / "images" / "face_01.png", dataset / "coarse" / "face_01.png",
                 "-o", output, "--weights", trained_run / "model.safetensors", "--device", "cpu",
                 "--window", "32", "--overlap", "8")
    assert "wrote" in result.output
    refined = read_label_map(output, FASSEG_LABELS)
    assert refined.encoding == "color"
    assert refined.class_ids.shape == (40, 56)


def test_refine_smooth_zero_gives_the_networks_own_map_and_a_negative_one_is_refused(dataset, trained_run, tmp_path):
    inputs = [dataset / "images" / "face_00.png", dataset / "coarse" / "face_00.png"]
    weights = ["--weights", trained_run / "model.safetensors", "--whole-image"]
    run("refine", *inputs, "-o", tmp_path / "raw.png", *weights, "--smooth", "0")
    run("refine", *inputs, "-o", tmp_path / "smooth.png", *weights)
    model, _, _ = load_weights(trained_run / "model.safetensors")
    photo = read_photo(inputs[0])
    coarse = read_label_map(inputs[1], FASSEG_LABELS).class_ids
    expected = {name: refine_map(torch_predictor(model), photo, coarse, 6,
                                 WindowSettings(whole_image=True, smoothing=smoothing))
                for name, smoothing in (("raw.png", 0.0), ("smooth.png", WindowSettings.smoothing))}
    assert (expected["raw.png"] != expected["smooth.png"]).any()  # so the option is seen to reach refine
    for name, expected_map in expected.items():
        np.testing.assert_array_equal(read_label_map(tmp_path / name, FASSEG_LABELS).class_ids, expected_map)
    result = run("refine", *inputs, "-o", tmp_path / "bad.png", *weights, "--smooth", "-1", expect_exit=1)
    assert "--smooth must be 0" in result.output and not (tmp_path / "bad.png").exists()


def test_refine_precision_bf16_runs_the_weights_in_bfloat16(dataset, trained_run, tmp_path, monkeypatch):
    from c2f.inference import torch_backend

    monkeypatch.setattr(torch_backend, "bf16_supported", lambda device: True)  # emulated where the CPU lacks it
    inputs = [dataset / "images" / "face_00.png", dataset / "coarse" / "face_00.png"]
    weights = trained_run / "model.safetensors"
    run("refine", *inputs, "-o", tmp_path / "bf16.png", "--weights", weights, "--whole-image", "--precision", "bf16")
    model, _, _ = load_weights(weights)
    expected = refine_map(torch_predictor(model, "cpu", "bf16"), read_photo(inputs[0]),
                          read_label_map(inputs[1], FASSEG_LABELS).class_ids, 6, WindowSettings(whole_image=True))
    np.testing.assert_array_equal(read_label_map(tmp_path / "bf16.png", FASSEG_LABELS).class_ids, expected)
    monkeypatch.setattr(torch_backend, "bf16_supported", lambda device: False)
    result = run("refine", *inputs, "-o", tmp_path / "no.png", "--weights", weights, "--precision", "bf16",
                 expect_exit=1)
    assert "no bfloat16 instructions" in result.output and not (tmp_path / "no.png").exists()


def test_refine_writes_the_format_asked_for(dataset, trained_run, tmp_path):
    run("refine", dataset / "images" / "face_00.png", dataset / "coarse" / "face_00.png", "-o", tmp_path / "ids.png",
        "--weights", trained_run / "model.safetensors", "--whole-image", "--format", "index")
    assert read_label_map(tmp_path / "ids.png", FASSEG_LABELS).encoding == "index"


def test_refine_does_not_overwrite_without_being_told(dataset, trained_run, tmp_path):
    arguments = ["refine", dataset / "images" / "face_00.png", dataset / "coarse" / "face_00.png",
                 "-o", tmp_path / "fine.png", "--weights", trained_run / "model.safetensors", "--whole-image"]
    run(*arguments)
    result = run(*arguments, expect_exit=1)
    assert "--overwrite" in result.output
    run(*arguments, "--overwrite")


def test_refine_folders_writes_one_map_per_pair_and_can_skip_existing(dataset, trained_run, tmp_path):
    arguments = ["refine", dataset / "images", dataset / "coarse", "-o", tmp_path / "fine",
                 "--weights", trained_run / "model.safetensors", "--window", "32", "--overlap", "8"]
    result = run(*arguments)
    assert "4 written" in result.output
    assert sorted(path.name for path in (tmp_path / "fine").iterdir()) == [
        "face_00.png", "face_01.png", "face_02.png", "face_03.png"]
    assert run(*arguments, expect_exit=1).output.count("exists") >= 4  # nothing replaced silently
    assert "4 skipped" in run(*arguments, "--skip-existing").output


def test_refine_windows_dir_then_stitch_gives_the_same_map(dataset, trained_run, tmp_path):
    run("refine", dataset / "images" / "face_02.png", dataset / "coarse" / "face_02.png", "-o", tmp_path / "fine.png",
        "--weights", trained_run / "model.safetensors", "--window", "32", "--overlap", "16",
        "--windows-dir", tmp_path / "windows")
    result = run("stitch", tmp_path / "windows", "-o", tmp_path / "stitched.png")
    assert "windows" in result.output
    refined = read_label_map(tmp_path / "fine.png", FASSEG_LABELS).class_ids
    stitched = read_label_map(tmp_path / "stitched.png", FASSEG_LABELS).class_ids
    np.testing.assert_array_equal(stitched, refined)


def test_score_prints_a_table_with_pooled_and_per_image_accuracy(dataset):
    result = run("score", dataset / "coarse", dataset / "fine")
    for row in ("pixel accuracy (pooled)", "pixel accuracy (mean per image)", "mean IoU", "IoU skin", "confusion"):
        assert row in result.output


def test_score_json_gives_the_same_figures_as_the_library(dataset):
    from c2f.scoring import score_files

    result = run("score", dataset / "coarse", dataset / "fine", "--json")
    figures = json.loads(result.stdout)
    names = sorted(path.stem for path in (dataset / "fine").iterdir())
    report = score_files([(name, dataset / "coarse" / f"{name}.png", dataset / "fine" / f"{name}.png", None)
                          for name in names], FASSEG_LABELS)
    assert figures["images"] == 4
    assert figures["predicted"]["pixel_accuracy"] == pytest.approx(report.predicted.pixel_accuracy)
    assert figures["predicted"]["mean_image_accuracy"] == pytest.approx(report.mean_image_accuracy())
    assert 0 < figures["predicted"]["pixel_accuracy"] < 1
    assert set(figures["predicted"]["class_iou"]) == set(FASSEG_LABELS.names)
    assert "coarse" not in figures


def test_score_json_with_coarse_maps_scores_both(dataset):
    figures = json.loads(run("score", dataset / "fine", dataset / "fine", "--coarse", dataset / "coarse",
                             "--json").stdout)
    assert figures["predicted"]["pixel_accuracy"] == 1.0
    assert figures["coarse"]["pixel_accuracy"] < 1.0


def test_score_one_file_pair(dataset):
    figures = json.loads(run("score", dataset / "fine" / "face_00.png", dataset / "fine" / "face_00.png",
                             "--json").stdout)
    assert figures["images"] == 1 and figures["predicted"]["mean_iou"] == 1.0


def test_a_missing_input_is_one_red_line_and_exit_one(tmp_path):
    result = run("refine", tmp_path / "nope.png", tmp_path / "nope_coarse.png", "-o", tmp_path / "out.png",
                 expect_exit=1)
    assert "error" in result.output and "nope.png" in result.output
    assert "Traceback" not in result.output


def test_main_help_shows_an_example():
    result = run("--help")
    assert "Example" in result.output
    for command in ("train", "refine", "stitch", "score"):
        assert command in result.output


@pytest.mark.parametrize("command", sorted(typer.main.get_command(app).commands))
def test_every_command_help_shows_an_example(command):
    assert "Example" in run(command, "--help").output


def test_max_megapixels_refuses_bigger_photos_and_raising_it_lets_them_through(tmp_path):
    from conftest import make_scene
    from PIL import Image

    from c2f.io.label_maps import write_label_map
    from c2f.io.photos import max_pixels

    photo, coarse, _ = make_scene(120, 100, seed=5)  # 12,000 pixels
    Image.fromarray(photo).save(tmp_path / "photo.png")
    write_label_map(tmp_path / "coarse.png", coarse, FASSEG_LABELS, "color")
    arguments = ["refine", str(tmp_path / "photo.png"), str(tmp_path / "coarse.png"), "--precision", "fp32"]
    refused = CliRunner().invoke(app, [*arguments, "-o", str(tmp_path / "a.png"), "--max-megapixels", "0.01"])
    assert refused.exit_code == 1 and "--max-megapixels" in refused.output
    assert not (tmp_path / "a.png").exists()
    allowed = CliRunner().invoke(app, [*arguments, "-o", str(tmp_path / "b.png"), "--max-megapixels", "0.02"])
    assert allowed.exit_code == 0, allowed.output
    assert max_pixels() == 64_000_000  # the limit is raised for that command only


def test_train_from_fine_maps_alone_in_camvids_layout_with_a_separate_validation_folder(tmp_path):
    from conftest import make_scene
    from PIL import Image

    root = tmp_path / "CamVid"
    for split, count in (("train", 3), ("val", 1)):
        for folder in (split, f"{split}annot"):
            (root / folder).mkdir(parents=True)
        for index in range(count):
            photo, _, fine = make_scene(40, 48, seed=index + (10 if split == "val" else 0))
            Image.fromarray(photo).save(root / split / f"{split}_{index}.png")
            Image.fromarray(fine).save(root / f"{split}annot" / f"{split}_{index}.png")
    common = ("train", "--data", root, "--epochs", "1", "--crops-per-image", "1", "--crop-size", "32",
              "--width", "4", "--depth", "2", "--device", "cpu")
    refused = run(*common, "--out", tmp_path / "refused", expect_exit=1)
    assert "--coarsen" in refused.output
    run(*common, "--out", tmp_path / "run", "--val-data", root, "--coarsen", "tolerance=1:4,min_area=4:16")
    _, _, metadata = load_weights(tmp_path / "run" / "model.safetensors")
    assert metadata["split"]["validation"] == ["val_0"]
    assert metadata["split"]["train"] == ["train_0", "train_1", "train_2"]
