"""Self-training (--teacher): coarse-only samples train on a teacher's refinements of their coarse maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import make_generic_dataset

from c2f.config import ModelConfig, TrainConfig
from c2f.errors import C2FError
from c2f.inference.sliding_window import refine_map
from c2f.inference.torch_backend import torch_predictor
from c2f.io.label_sets import FASSEG_LABELS, LabelSet
from c2f.training.loop import WEIGHTS_NAME, train_from_folder, train_model
from c2f.training.pseudo_labels import pseudo_labelled
from c2f.training.samples import LoadedSample, find_samples, load_sample
from c2f.weights import load_tensors, load_weights

TINY_MODEL = ModelConfig(width=4, depth=2)


def tiny_config(**changes) -> TrainConfig:
    settings = dict(epochs=1, crops_per_image=4, crop_size=32, batch_size=8, learning_rate=1e-2,
                    validation_fraction=0.25, seed=0)
    return TrainConfig(**{**settings, **changes})


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> list[LoadedSample]:
    root = make_generic_dataset(tmp_path_factory.mktemp("data"), [(64, 64), (56, 48), (48, 64), (64, 56)])
    return [load_sample(sample, FASSEG_LABELS) for sample in find_samples(root)]


@pytest.fixture(scope="module")
def teacher(samples, tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("teacher")
    return train_model(samples, FASSEG_LABELS, TINY_MODEL, tiny_config(epochs=2), out_dir)


def coarse_only(samples: list[LoadedSample]) -> list[LoadedSample]:
    return [LoadedSample(sample.name, sample.photo, sample.coarse, None) for sample in samples]


def test_each_coarse_only_sample_gets_the_teachers_refinement_as_its_fine_map(samples, teacher):
    calls = []
    taught = pseudo_labelled(coarse_only(samples), teacher, FASSEG_LABELS,
                             on_sample=lambda done, total: calls.append((done, total)))
    model, _, _ = load_weights(teacher)
    predictor = torch_predictor(model)
    for sample, original in zip(taught, samples):
        expected = refine_map(predictor, original.photo, original.coarse, FASSEG_LABELS.num_classes)
        assert sample.fine.shape == sample.coarse.shape and sample.fine.dtype == sample.coarse.dtype
        assert np.array_equal(sample.fine, expected)
        assert np.array_equal(sample.coarse, original.coarse) and np.array_equal(sample.photo, original.photo)
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_a_teacher_with_other_classes_is_refused(samples, teacher):
    other = LabelSet(names=("a", "b"), colors=((0, 0, 0), (255, 255, 255)))
    with pytest.raises(C2FError):
        pseudo_labelled(coarse_only(samples), teacher, other)


def test_with_a_teacher_the_coarse_only_samples_train_and_are_recorded(samples, teacher, tmp_path):
    steps = {}

    def count(name):
        return lambda step, total, loss: steps.__setitem__(name, total)
    # 3 training samples; a third keeps its fine map, the other two are coarse-only
    config = tiny_config(fine_fraction=0.34)
    train_model(samples, FASSEG_LABELS, TINY_MODEL, config, tmp_path / "alone", on_step=count("alone"))
    weights = train_model(samples, FASSEG_LABELS, TINY_MODEL, tiny_config(fine_fraction=0.34, teacher=str(teacher)),
                          tmp_path / "taught", on_step=count("taught"))
    assert steps == {"alone": 1, "taught": 2}  # 1 x 4 crops, then 3 x 4 crops, 8 a step
    _, metadata = load_tensors(weights)
    assert len(metadata["split"]["train"]) == 1 and len(metadata["split"]["pseudo_labelled"]) == 2
    assert "coarse_only" not in metadata["split"]
    assert metadata["train_config"]["teacher"] == str(teacher)


def test_a_taught_run_resumes_bit_identically(samples, teacher, tmp_path):
    config = tiny_config(epochs=2, fine_fraction=0.34, teacher=str(teacher))
    train_model(samples, FASSEG_LABELS, TINY_MODEL, config, tmp_path / "whole")
    train_model(samples, FASSEG_LABELS, TINY_MODEL, config, tmp_path / "halves", until_epoch=1)
    train_model(samples, FASSEG_LABELS, TINY_MODEL, config, tmp_path / "halves", resume=True)
    whole, _ = load_tensors(tmp_path / "whole" / WEIGHTS_NAME)
    halves, _ = load_tensors(tmp_path / "halves" / WEIGHTS_NAME)
    assert all(torch.equal(whole[name], halves[name]) for name in whole)


def test_a_teacher_needs_coarse_only_samples(samples, teacher, tmp_path):
    with pytest.raises(C2FError, match="--teacher refines coarse-only photos"):
        train_model(samples, FASSEG_LABELS, TINY_MODEL, tiny_config(teacher=str(teacher)), tmp_path)


def test_teacher_with_gan_is_refused_before_the_data_is_read(teacher, tmp_path):
    with pytest.raises(C2FError, match="--teacher and --mode gan"):  # the folder does not even exist
        train_from_folder(tmp_path / "absent", tmp_path / "run", FASSEG_LABELS,
                          tiny_config(mode="gan", teacher=str(teacher)))
