"""The Python API: c2f.Refiner loads a model once, refines arrays or files; c2f.score; a light `import c2f`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_scene
from PIL import Image

import c2f
from c2f.errors import C2FError
from c2f.io.label_maps import read_label_map, write_label_map
from c2f.io.label_sets import FASSEG_LABELS

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
REPOSITORY = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def shipped_refiner():
    return c2f.Refiner(device="cpu")


def test_importing_c2f_loads_neither_torch_nor_onnx_runtime():
    script = ("import sys, c2f; c2f.__version__\n"
              "heavy = [name for name in ('torch', 'onnxruntime', 'safetensors', 'matplotlib') if name in sys.modules]\n"
              "assert not heavy, heavy")
    finished = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                              cwd=REPOSITORY)
    assert finished.returncode == 0, finished.stderr


def test_the_version_is_a_string():
    assert isinstance(c2f.__version__, str) and c2f.__version__


def test_refining_files_matches_refining_arrays(shipped_refiner):
    photo = np.asarray(Image.open(EXAMPLES / "astronaut.png").convert("RGB"))
    coarse = read_label_map(EXAMPLES / "astronaut_coarse.png", FASSEG_LABELS).class_ids
    from_files = shipped_refiner.refine(EXAMPLES / "astronaut.png", str(EXAMPLES / "astronaut_coarse.png"))
    from_arrays = shipped_refiner.refine(photo, coarse)
    coarse_colours = np.asarray(Image.open(EXAMPLES / "astronaut_coarse.png").convert("RGB"))
    from_colours = shipped_refiner.refine(photo, coarse_colours)
    assert from_files.shape == photo.shape[:2]
    np.testing.assert_array_equal(from_files, from_arrays)
    np.testing.assert_array_equal(from_files, from_colours)


def test_probabilities_on_request(shipped_refiner):
    photo, coarse, _ = make_scene(40, 52)
    fine, probabilities = shipped_refiner.refine(photo, coarse, probabilities=True)
    assert probabilities.shape == (6, 40, 52) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=0), 1.0, atol=1e-4)
    np.testing.assert_array_equal(fine, probabilities.argmax(axis=0))


def test_refine_matches_the_command_line(shipped_refiner, tmp_path):
    from typer.testing import CliRunner

    from c2f.cli import app

    result = CliRunner().invoke(app, ["refine", str(EXAMPLES / "astronaut.png"),
                                      str(EXAMPLES / "astronaut_coarse.png"), "-o", str(tmp_path / "fine.png"),
                                      "--device", "cpu"])
    assert result.exit_code == 0, result.output
    from_cli = read_label_map(tmp_path / "fine.png", FASSEG_LABELS).class_ids
    np.testing.assert_array_equal(from_cli, shipped_refiner.refine(EXAMPLES / "astronaut.png",
                                                                   EXAMPLES / "astronaut_coarse.png"))


def test_a_safetensors_model_with_the_torch_backend(tiny_weights):
    refiner = c2f.Refiner(tiny_weights, backend="torch", device="cpu", labels=FASSEG_LABELS)
    photo, coarse, _ = make_scene(40, 52)
    assert refiner.refine(photo, coarse).shape == (40, 52)


def test_bad_inputs_are_clear_errors(shipped_refiner):
    photo, coarse, _ = make_scene(40, 52)
    with pytest.raises(C2FError, match="uint8 \\(H, W, 3\\)"):
        shipped_refiner.refine(photo.astype(np.float32), coarse)
    with pytest.raises(C2FError, match="same size"):
        shipped_refiner.refine(photo, coarse[:30])
    with pytest.raises(C2FError, match="pass one with the photo"):
        shipped_refiner.refine(photo)
    with pytest.raises(C2FError, match="class ids up to 9"):
        shipped_refiner.refine(photo, np.full((40, 52), 9))


def test_score_arrays_and_files(tmp_path):
    _, coarse, fine = make_scene(40, 52)
    write_label_map(tmp_path / "fine.png", fine, FASSEG_LABELS, "color")
    assert c2f.score(fine, fine).pixel_accuracy == 1.0
    scores = c2f.score(coarse, tmp_path / "fine.png")
    assert scores.pixel_accuracy == pytest.approx(float((coarse == fine).mean()))
    assert len(scores.class_iou) == 6


def test_score_is_the_function_and_scoring_the_module():
    from c2f.scoring import confusion_matrix  # the scoring module keeps its own name

    assert callable(confusion_matrix)
    assert c2f.score.__module__ == "c2f.api"


def test_the_command_line_prints_the_version():
    from typer.testing import CliRunner

    from c2f.cli import app

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"c2f {c2f.__version__}"
