"""Interrupted work resumes: `c2f train --resume` after kill -9, and folder refines after Ctrl-C.

The training test runs the real CLI in a subprocess, kills it with SIGKILL as
soon as its first checkpoint appears, resumes it, and compares the final
weights bit for bit with an uninterrupted run of the same seed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_generic_dataset, make_scene
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

import c2f.inference.backends
from c2f.cli import app
from c2f.config import ModelConfig, TrainConfig
from c2f.io.label_maps import read_label_map, write_label_map
from c2f.io.label_sets import FASSEG_LABELS
from c2f.training.loop import WEIGHTS_NAME, train_model
from c2f.training.run_state import CHECKPOINT_NAME
from c2f.training.samples import find_samples, load_sample
from c2f.weights import load_tensors

runner = CliRunner()
EPOCHS = 4
TRAIN_OPTIONS = ["--epochs", str(EPOCHS), "--width", "4", "--depth", "2", "--crop-size", "32",
                 "--crops-per-image", "2", "--batch-size", "2", "--validation-fraction", "0.34", "--seed", "3"]


def train_command(data: Path, out: Path, *extra: str) -> list[str]:
    """`c2f train ...` as a subprocess command line, on one thread so runs repeat bit for bit."""
    return [sys.executable, "-c", "from c2f.cli import app; app()", "train", "--data", str(data),
            "--out", str(out), *TRAIN_OPTIONS, *extra]


def quiet_environment() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "COLUMNS": "200"}


def run_to_completion(command: list[str]) -> None:
    finished = subprocess.run(command, env=quiet_environment(), capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr
    assert "Traceback" not in finished.stderr


def kill_after_first_checkpoint(command: list[str], out: Path) -> None:
    """Start training and SIGKILL it the moment its first checkpoint exists."""
    process = subprocess.Popen(command, env=quiet_environment(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300  # only a guard against a hang, not a timing assertion
        while not (out / CHECKPOINT_NAME).exists():
            assert process.poll() is None, "training ended before writing a checkpoint"
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.002)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    return make_generic_dataset(tmp_path_factory.mktemp("resume") / "dataset", [(40, 40), (36, 44), (44, 36)])


def train_in_this_process(data: Path, out: Path) -> None:
    """The uninterrupted reference run, through the same CLI but without a subprocess's start-up time."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the subprocesses, so the arithmetic is the same
    try:
        result = runner.invoke(app, ["train", "--data", str(data), "--out", str(out), *TRAIN_OPTIONS])
    finally:
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output


def test_kill_9_then_resume_gives_bit_identical_weights(dataset, tmp_path):
    uninterrupted, interrupted = tmp_path / "uninterrupted", tmp_path / "interrupted"
    train_in_this_process(dataset, uninterrupted)

    kill_after_first_checkpoint(train_command(dataset, interrupted), interrupted)
    _, metadata = load_tensors(interrupted / CHECKPOINT_NAME)  # the checkpoint on disk is complete
    assert 1 <= len(metadata["history"]) < EPOCHS, "the kill must land before training finished"
    assert not (interrupted / WEIGHTS_NAME).exists()
    run_to_completion(train_command(dataset, interrupted, "--resume"))

    expected, resumed = load_file(uninterrupted / WEIGHTS_NAME), load_file(interrupted / WEIGHTS_NAME)
    assert expected.keys() == resumed.keys()
    for name in expected:
        assert torch.equal(expected[name], resumed[name]), name
    histories = [load_tensors(folder / CHECKPOINT_NAME)[1]["history"] for folder in (uninterrupted, interrupted)]
    assert [row["train_loss"] for row in histories[0]] == [row["train_loss"] for row in histories[1]]
    assert len(histories[1]) == EPOCHS


@pytest.fixture(scope="module")
def samples(dataset):
    return [load_sample(sample, FASSEG_LABELS) for sample in find_samples(dataset)]


TINY = ModelConfig(width=4, depth=2)
TINY_TRAINING = TrainConfig(epochs=2, crops_per_image=2, crop_size=32, batch_size=2, validation_fraction=0.0, seed=1)


def test_resume_before_any_checkpoint_starts_afresh(samples, tmp_path):
    fresh = train_model(samples, FASSEG_LABELS, TINY, TINY_TRAINING, tmp_path / "fresh")
    resumed = train_model(samples, FASSEG_LABELS, TINY, TINY_TRAINING, tmp_path / "resumed", resume=True)
    first, second = load_file(fresh), load_file(resumed)
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_a_checkpoint_write_that_dies_keeps_the_previous_checkpoint(samples, tmp_path, monkeypatch):
    import c2f.weights

    out = tmp_path / "run"
    original_save = c2f.weights.save_file
    calls = []

    def save_then_die_on_the_second_checkpoint(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == 2:
            Path(filename).write_bytes(b"half a checkpoint")
            raise KeyboardInterrupt
        original_save(tensors, filename, metadata=metadata)
    monkeypatch.setattr(c2f.weights, "save_file", save_then_die_on_the_second_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        train_model(samples, FASSEG_LABELS, TINY, TINY_TRAINING, out)
    assert sorted(path.name for path in out.iterdir() if path.name.endswith(".part")) == []
    _, metadata = load_tensors(out / CHECKPOINT_NAME)
    assert len(metadata["history"]) == 1

    monkeypatch.setattr(c2f.weights, "save_file", original_save)
    resumed = load_file(train_model(samples, FASSEG_LABELS, TINY, TINY_TRAINING, out, resume=True))
    expected = load_file(train_model(samples, FASSEG_LABELS, TINY, TINY_TRAINING, tmp_path / "straight"))
    assert all(torch.equal(expected[name], resumed[name]) for name in expected)


@pytest.mark.parametrize("stored", ["stored as 1.0", "absent"])
def test_a_checkpoint_with_or_without_fine_fraction_resumes_with_the_same_command_line(dataset, tmp_path, stored):
    from safetensors.torch import save_file

    out = tmp_path / "run"
    options = ["train", "--data", str(dataset), "--out", str(out), *TRAIN_OPTIONS]
    first = runner.invoke(app, [*options, "--epochs", "1"])  # the last --epochs counts: stop after one ...
    assert first.exit_code == 0, first.output
    tensors, metadata = load_tensors(out / CHECKPOINT_NAME)
    train_config = metadata["train_config"]
    assert train_config["fine_fraction"] == 1.0
    train_config["epochs"] = EPOCHS  # ... as if the full run had been killed there
    if stored == "absent":  # a checkpoint written before fine_fraction, discriminator and step2_fraction existed
        for key in ("fine_fraction", "discriminator", "step2_fraction"):
            del train_config[key]
    text_metadata = {key: json.dumps(value) for key, value in metadata.items()} | {"c2f_format": "1"}
    save_file(tensors, str(out / CHECKPOINT_NAME), metadata=text_metadata)
    resumed = runner.invoke(app, [*options, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert len(load_tensors(out / CHECKPOINT_NAME)[1]["history"]) == EPOCHS


def test_ctrl_c_during_training_says_how_to_resume(dataset, tmp_path, monkeypatch):
    import c2f.training.loop

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(c2f.training.loop, "train_model", interrupted)
    result = runner.invoke(app, ["train", "--data", str(dataset), "--out", str(tmp_path / "run"), *TRAIN_OPTIONS])
    assert result.exit_code == 130
    assert "--resume" in result.output and "Traceback" not in result.output


# --- folder mode: keeps going, stops cleanly, resumes -------------------------------------------------

STEMS = ["anna", "ben", "cleo", "dan"]


@pytest.fixture
def folders(tmp_path) -> tuple[Path, Path]:
    photos, maps = tmp_path / "photos", tmp_path / "maps"
    photos.mkdir()
    for index, stem in enumerate(STEMS):
        photo, coarse, _ = make_scene(36, 44, seed=index)
        Image.fromarray(photo).save(photos / f"{stem}.png")
        write_label_map(maps / f"{stem}.png", coarse, FASSEG_LABELS, "color")
    return photos, maps


class ScriptedPredictor:
    """A fake model (its argmax is the coarse map) that can send Ctrl-C or raise during a given call."""

    def __init__(self, signal_on_call: int | None = None, raise_on_call: int | None = None):
        self.calls = 0
        self.signal_on_call, self.raise_on_call = signal_on_call, raise_on_call

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.calls == self.signal_on_call:
            os.kill(os.getpid(), signal.SIGINT)  # as if the user pressed Ctrl-C now
        if self.calls == self.raise_on_call:
            raise KeyboardInterrupt
        return batch[:, 3:] * 8.0


def refine_folder(monkeypatch, folders, out: Path, predictor, *extra: str):
    monkeypatch.setattr(c2f.inference.backends, "load_predictor",
                        lambda weights, labels, backend, device, precision="auto": (predictor, FASSEG_LABELS, True))
    photos, maps = folders
    result = runner.invoke(app, ["refine", str(photos), str(maps), "-o", str(out), "--whole-image", *extra])
    assert "Traceback" not in result.output
    return result


def written(out: Path) -> list[str]:
    return sorted(path.name for path in out.iterdir()) if out.exists() else []


def test_one_bad_pair_is_reported_and_the_rest_refined(monkeypatch, folders, tmp_path):
    photos, _ = folders
    (photos / "ben.png").write_bytes((photos / "ben.png").read_bytes()[:100])
    result = refine_folder(monkeypatch, folders, tmp_path / "out", ScriptedPredictor())
    assert result.exit_code == 1
    assert written(tmp_path / "out") == ["anna.png", "cleo.png", "dan.png"]
    summary = result.output[result.output.index("3 written"):]
    assert "1 failed" in summary and any("ben" in line and "truncated" in line for line in summary.splitlines())


def test_ctrl_c_finishes_the_current_image_then_stops(monkeypatch, folders, tmp_path):
    result = refine_folder(monkeypatch, folders, tmp_path / "out", ScriptedPredictor(signal_on_call=2))
    assert result.exit_code == 130
    assert written(tmp_path / "out") == ["anna.png", "ben.png"]  # ben was being refined: it is finished
    assert "interrupted" in result.output and "--skip-existing" in result.output
    assert "2 not done" in result.output


def test_a_second_ctrl_c_drops_the_current_image_without_a_partial_file(monkeypatch, folders, tmp_path):
    result = refine_folder(monkeypatch, folders, tmp_path / "out", ScriptedPredictor(raise_on_call=3))
    assert result.exit_code == 130
    assert written(tmp_path / "out") == ["anna.png", "ben.png"]  # no cleo.png, no hidden .part either


def test_skip_existing_resumes_a_stopped_job_and_leaves_finished_maps_alone(monkeypatch, folders, tmp_path):
    out = tmp_path / "out"
    refine_folder(monkeypatch, folders, out, ScriptedPredictor(signal_on_call=2), "--overlay", str(tmp_path / "checks"),
                  "--smooth", "0")
    finished = {name: (out / name).stat().st_mtime_ns for name in written(out)}
    predictor = ScriptedPredictor()
    result = refine_folder(monkeypatch, folders, out, predictor, "--skip-existing", "--overlay",
                           str(tmp_path / "checks"), "--smooth", "0")
    assert result.exit_code == 0, result.output
    assert predictor.calls == 2  # only cleo and dan were refined
    assert "2 written" in result.output and "2 skipped" in result.output
    assert written(out) == [f"{stem}.png" for stem in STEMS] == written(tmp_path / "checks")
    assert all((out / name).stat().st_mtime_ns == mtime for name, mtime in finished.items())
    for stem in STEMS:  # the fake model echoes the coarse map: unsmoothed, every map equals its coarse map
        np.testing.assert_array_equal(read_label_map(out / f"{stem}.png", FASSEG_LABELS).class_ids,
                                      read_label_map(folders[1] / f"{stem}.png", FASSEG_LABELS).class_ids)


def test_existing_outputs_are_failures_without_skip_existing_or_overwrite(monkeypatch, folders, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "ben.png").write_bytes(b"precious")
    result = refine_folder(monkeypatch, folders, out, ScriptedPredictor())
    assert result.exit_code == 1
    assert (out / "ben.png").read_bytes() == b"precious"
    assert any("ben.png exists" in line and "--overwrite" in line for line in result.output.splitlines())
    result = refine_folder(monkeypatch, folders, out, ScriptedPredictor(), "--overwrite")
    assert result.exit_code == 0 and (out / "ben.png").read_bytes() != b"precious"


def test_a_checkpoint_from_before_the_upsampling_choice_resumes_as_transposed(dataset, tmp_path):
    from safetensors.torch import save_file

    out = tmp_path / "run"
    options = ["train", "--data", str(dataset), "--out", str(out), *TRAIN_OPTIONS]
    first = runner.invoke(app, [*options, "--epochs", "1", "--upsampling", "transposed"])
    assert first.exit_code == 0, first.output
    tensors, metadata = load_tensors(out / CHECKPOINT_NAME)
    metadata["train_config"]["epochs"] = EPOCHS
    del metadata["model_config"]["upsampling"]  # as c2f wrote checkpoints before the choice existed
    text_metadata = {key: json.dumps(value) for key, value in metadata.items()} | {"c2f_format": "1"}
    save_file(tensors, str(out / CHECKPOINT_NAME), metadata=text_metadata)
    refused = runner.invoke(app, [*options, "--resume"])  # today's default up-sampling is nearest
    assert refused.exit_code == 1 and "upsampling 'transposed' there, 'nearest' now" in " ".join(refused.output.split())
    resumed = runner.invoke(app, [*options, "--resume", "--upsampling", "transposed"])
    assert resumed.exit_code == 0, resumed.output
    assert len(load_tensors(out / CHECKPOINT_NAME)[1]["history"]) == EPOCHS
