"""The light install: the default refine path needs no torch, and a missing extra is one line naming it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from c2f.cli import app
from c2f.errors import C2FError
from c2f.extras import require

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
REPOSITORY = Path(__file__).resolve().parent.parent
TRAIN_ONLY = ("torch", "safetensors", "matplotlib", "onnx")


def test_the_default_refine_imports_nothing_of_the_train_extra(tmp_path):
    script = ("import sys; from c2f.cli import app\n"
              "try:\n    app(sys.argv[1:])\nexcept SystemExit as end:\n    assert not end.code, end.code\n"
              f"loaded = sorted(name for name in sys.modules if name.split('.')[0] in {TRAIN_ONLY!r})\n"
              "assert not loaded, loaded[:5]")
    finished = subprocess.run(
        [sys.executable, "-c", script, "refine", str(EXAMPLES / "astronaut.png"),
         str(EXAMPLES / "astronaut_coarse.png"), "-o", str(tmp_path / "fine.png")],
        capture_output=True, text=True, timeout=300, cwd=REPOSITORY)
    assert finished.returncode == 0, finished.stderr
    assert (tmp_path / "fine.png").is_file()


def test_require_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # as if torch were not installed
    with pytest.raises(C2FError, match=r'^c2f train needs PyTorch: pip install "c2f\[train\]"$'):
        require("c2f train", "torch", "safetensors")
    require("c2f refine", "numpy")


@pytest.mark.parametrize("arguments, expected", [
    (["train", "--data", "somewhere", "--out", "run"], 'error: c2f train needs PyTorch: pip install "c2f[train]"'),
    (["export", "-o", "model.onnx"], 'error: c2f export needs PyTorch: pip install "c2f[train]"'),
])
def test_commands_without_torch_say_which_extra_to_install(monkeypatch, tmp_path, arguments, expected):
    monkeypatch.setitem(sys.modules, "torch", None)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 1
    assert result.output.strip() == expected


def test_refining_safetensors_without_torch_says_which_extra(monkeypatch, tmp_path, tiny_weights):
    monkeypatch.setitem(sys.modules, "torch", None)
    result = CliRunner().invoke(app, ["refine", str(EXAMPLES / "astronaut.png"),
                                      str(EXAMPLES / "astronaut_coarse.png"), "-o", str(tmp_path / "fine.png"),
                                      "--weights", str(tiny_weights)])
    assert result.exit_code == 1
    assert result.output.strip() == ('error: the torch backend (model.safetensors) needs PyTorch: '
                                     'pip install "c2f[train]"')
