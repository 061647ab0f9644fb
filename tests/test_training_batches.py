"""Where training runs: the CPU path stays in-process, the GPU path's batches do not depend on its workers.

The CUDA code paths are chosen by the device alone; on a machine without a GPU
these tests exercise what they share with the CPU (benchmarks/gpu_check.sh runs
the rest on a GPU).
"""

from __future__ import annotations

import contextlib
import csv

import numpy as np
import pytest
import torch
from conftest import make_generic_dataset

from c2f.config import ModelConfig, TrainConfig
from c2f.errors import C2FError
from c2f.io.label_sets import FASSEG_LABELS
from c2f.shipped import default_weights_path, resolve_weights
from c2f.training.batches import SeededBatches, worker_batches
from c2f.training.loop import (
    WEIGHTS_NAME,
    mixed_precision,
    train_from_folder,
    train_model,
)
from c2f.training.run_state import move_run, start_run
from c2f.training.samples import find_samples, load_sample

TINY_MODEL = ModelConfig(width=4, depth=2)
TINY_TRAINING = TrainConfig(epochs=1, crops_per_image=2, crop_size=32, batch_size=3, validation_fraction=0.25)


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    root = make_generic_dataset(tmp_path_factory.mktemp("batches"), [(48, 40), (40, 56), (64, 48), (44, 44)])
    return [load_sample(sample, FASSEG_LABELS) for sample in find_samples(root)]


def test_worker_batches_do_not_depend_on_the_number_of_workers(samples):
    order = np.array([3, 0, 2, 1, 1, 0, 2])
    dataset = SeededBatches(samples, order, 3, 32, 6, True, seed=5, epoch=2)
    in_process = list(worker_batches(dataset, 0, pin_memory=False))
    with_workers = list(worker_batches(dataset, 2, pin_memory=False))
    assert len(in_process) == len(with_workers) == 3
    for (inputs, targets, rng), (worker_inputs, worker_targets, worker_rng) in zip(in_process, with_workers):
        assert torch.equal(inputs, worker_inputs) and torch.equal(targets, worker_targets)
        assert rng.random() == worker_rng.random()
    other_epoch = SeededBatches(samples, order, 3, 32, 6, True, seed=5, epoch=3)
    assert not torch.equal(other_epoch[0][0], dataset[0][0])  # each epoch draws new crops


def test_full_precision_and_no_move_on_the_cpu():
    assert isinstance(mixed_precision(torch.device("cpu")), contextlib.nullcontext)
    run = start_run(TINY_MODEL, TrainConfig(), np.ones(6, np.float32))
    parameters = [parameter.data_ptr() for parameter in run.model.parameters()]
    move_run(run, torch.device("cpu"))
    assert [parameter.data_ptr() for parameter in run.model.parameters()] == parameters


@pytest.mark.skipif(torch.cuda.is_available(), reason="auto picks the GPU here")
def test_auto_on_a_machine_without_a_gpu_trains_exactly_as_the_cpu(samples, tmp_path):
    weights = {device: train_model(samples, FASSEG_LABELS, TINY_MODEL, TINY_TRAINING, tmp_path / device,
                                   device=device) for device in ("cpu", "auto")}
    from safetensors.torch import load_file

    cpu, auto = load_file(str(weights["cpu"])), load_file(str(weights["auto"]))
    assert cpu.keys() == auto.keys()
    assert all(torch.equal(cpu[name], auto[name]) for name in cpu)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_refused_before_reading_the_data(tmp_path):
    with pytest.raises(C2FError, match="--device cuda was asked for, but torch sees no CUDA GPU"):
        train_from_folder(tmp_path / "missing", tmp_path / "run", FASSEG_LABELS, TINY_TRAINING, device="cuda")


def test_the_log_names_its_iou_columns_by_class(samples, tmp_path):
    train_model(samples, FASSEG_LABELS, TINY_MODEL, TINY_TRAINING, tmp_path)
    with open(tmp_path / "log.csv") as handle:
        header = next(csv.reader(handle))
    assert [f"val_iou_{name}" for name in FASSEG_LABELS.names] == [name for name in header if "iou_" in name]
    assert (tmp_path / WEIGHTS_NAME).is_file()


def test_a_shipped_model_is_named_for_init(tmp_path):
    assert resolve_weights("fasseg") == default_weights_path()
    (tmp_path / "fasseg").write_text("a file of that name wins")
    assert resolve_weights(tmp_path / "fasseg") == tmp_path / "fasseg"


def test_the_defaults_are_the_shipped_models_recipe():
    import json

    from safetensors import safe_open

    path = default_weights_path()
    if not path.is_file():
        pytest.skip("no shipped weights")
    with safe_open(str(path), framework="pt") as handle:
        shipped = json.loads(handle.metadata()["train_config"])
    defaults = TrainConfig()
    for name in ("epochs", "learning_rate", "class_weight_power", "crops_per_image", "crop_size", "batch_size",
                 "validation_fraction", "seed"):
        assert getattr(defaults, name) == shipped[name], name


def test_void_probability_redraws_coarse_boundaries_with_the_nearest_class_in_both_batch_paths(samples):
    from c2f.training.batches import in_process_batches

    order = np.array([0, 1, 2, 3])

    def both_paths(void_probability: float):
        seeded = SeededBatches(samples, order, 4, 32, 6, True, seed=5, epoch=0, void_probability=void_probability)
        in_process = in_process_batches(samples, order, 4, 32, 6, True, np.random.default_rng(0),
                                        void_probability=void_probability)
        return [inputs for inputs, _, _ in (*worker_batches(seeded, 0, pin_memory=False), *in_process)]

    for voided, drawn in zip(both_paths(1.0), both_paths(0.0)):
        assert (voided[:, 3:].sum(dim=1) == 1).all()  # every pixel shows the network one class, as refine does
        assert (voided[:, 3:] != drawn[:, 3:]).any()  # ... but not always the drawn one near boundaries


def test_relabel_probability_changes_coarse_inputs_but_not_targets_in_both_batch_paths(samples):
    from c2f.training.batches import in_process_batches

    order = np.array([0, 1, 2, 3])

    def both_paths(relabel_probability: float):
        # One crop per batch: a seeded batch draws its crop first, so relabelling leaves it as it was.
        seeded = SeededBatches(samples, order, 1, 32, 6, True, seed=5, epoch=0,
                               relabel_probability=relabel_probability)
        in_process = in_process_batches(samples, order, 4, 32, 6, True, np.random.default_rng(0),
                                        relabel_probability=relabel_probability)
        return list(worker_batches(seeded, 0, pin_memory=False)), list(in_process)

    (seeded, in_process), (seeded_drawn, in_process_drawn) = both_paths(1.0), both_paths(0.0)
    assert all(torch.equal(targets, drawn[1]) for (_, targets, _), drawn in zip(seeded, seeded_drawn))
    for batches, drawn_batches in ((seeded, seeded_drawn), (in_process, in_process_drawn)):
        assert any((inputs[:, 3:] != drawn[0][:, 3:]).any() for (inputs, _, _), drawn in zip(batches, drawn_batches))
