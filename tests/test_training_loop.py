"""Training on tiny synthetic faces: the loss falls, the run's files appear, and seeds repeat exactly."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_generic_dataset, make_scene
from PIL import Image

from c2f.config import ModelConfig, TrainConfig
from c2f.errors import C2FError
from c2f.io.label_sets import FASSEG_LABELS
from c2f.model import UNet
from c2f.training.augment import random_crop
from c2f.training.loop import WEIGHTS_NAME, class_weights, train_model
from c2f.training.run_state import CHECKPOINT_NAME
from c2f.training.samples import LoadedSample, find_samples, load_sample, split_samples
from c2f.weights import load_tensors, load_weights, save_weights

TINY_MODEL = ModelConfig(width=4, depth=2)


@pytest.fixture(scope="module")
def synthetic_samples(tmp_path_factory) -> list[LoadedSample]:
    """Four small faces whose fine maps are the coarse maps' shapes grown and shifted."""
    root = make_generic_dataset(tmp_path_factory.mktemp("train_data"), [(64, 64), (56, 48), (48, 64), (64, 56)])
    return [load_sample(sample, FASSEG_LABELS) for sample in find_samples(root)]


def tiny_config(**changes) -> TrainConfig:
    settings = dict(epochs=2, crops_per_image=4, crop_size=32, batch_size=8, learning_rate=1e-2,
                    validation_fraction=0.25, seed=0)
    return TrainConfig(**{**settings, **changes})


@pytest.fixture(scope="module")
def finished_run(synthetic_samples, tmp_path_factory) -> tuple[Path, list[dict]]:
    """A four-epoch run of the tiny model; returns its folder and the rows reported each epoch."""
    out_dir = tmp_path_factory.mktemp("run")
    rows: list[dict] = []
    train_model(synthetic_samples, FASSEG_LABELS, TINY_MODEL, tiny_config(epochs=4), out_dir,
                command="c2f train --data synthetic", on_epoch=rows.append)
    return out_dir, rows


def test_training_loss_falls(finished_run):
    _, rows = finished_run
    losses = [row["train_loss"] for row in rows]
    assert len(losses) == 4
    assert all(np.isfinite(losses))
    # Three steps an epoch make each epoch's mean loss noisy: a later epoch a tenth lower, and the last one lower.
    assert min(losses[1:]) < 0.9 * losses[0] and losses[-1] < losses[0]


def test_training_writes_log_curves_weights_and_checkpoint(finished_run):
    out_dir, rows = finished_run
    with open(out_dir / "log.csv") as handle:
        logged = list(csv.DictReader(handle))
    assert [int(row["epoch"]) for row in logged] == [1, 2, 3, 4]
    assert {"train_loss", "val_accuracy", "val_miou", "seconds"} <= set(logged[0])
    assert float(logged[-1]["train_loss"]) == pytest.approx(rows[-1]["train_loss"])
    with Image.open(out_dir / "curves.png") as curves:
        assert curves.format == "PNG" and curves.width > 100
    assert (out_dir / CHECKPOINT_NAME).is_file()
    assert not list(out_dir.glob("*.part"))


def test_saved_weights_carry_config_split_command_and_validation_figures(finished_run, synthetic_samples):
    out_dir, rows = finished_run
    model, labels, metadata = load_weights(out_dir / WEIGHTS_NAME, FASSEG_LABELS)
    assert model.config == TINY_MODEL and labels == FASSEG_LABELS
    assert metadata["training_command"] == "c2f train --data synthetic"
    assert metadata["train_config"]["epochs"] == 4
    split = metadata["split"]
    assert len(split["validation"]) == 1 and len(split["train"]) == 3
    assert sorted(split["train"] + split["validation"]) == [sample.name for sample in synthetic_samples]
    assert metadata["validation"]["val_accuracy"] == pytest.approx(rows[-1]["val_accuracy"])


def test_the_checkpoint_also_loads_as_weights(finished_run):
    out_dir, _ = finished_run
    from_checkpoint, _, _ = load_weights(out_dir / CHECKPOINT_NAME)
    final, _, _ = load_weights(out_dir / WEIGHTS_NAME)
    inputs = torch.randn(1, TINY_MODEL.in_channels, 32, 32)
    with torch.no_grad():
        assert torch.equal(from_checkpoint(inputs), final(inputs))


def test_same_seed_gives_identical_weights(synthetic_samples, tmp_path):
    for name in ("first", "second"):
        train_model(synthetic_samples, FASSEG_LABELS, TINY_MODEL, tiny_config(epochs=1), tmp_path / name)
    first, _ = load_tensors(tmp_path / "first" / WEIGHTS_NAME)
    second, _ = load_tensors(tmp_path / "second" / WEIGHTS_NAME)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_another_seed_gives_other_weights(synthetic_samples, tmp_path):
    for name, seed in (("first", 0), ("second", 1)):
        train_model(synthetic_samples, FASSEG_LABELS, TINY_MODEL, tiny_config(epochs=1, seed=seed), tmp_path / name)
    first, _ = load_tensors(tmp_path / "first" / WEIGHTS_NAME)
    second, _ = load_tensors(tmp_path / "second" / WEIGHTS_NAME)
    assert not all(torch.equal(first[name], second[name]) for name in first)


def test_split_seed_keeps_the_held_out_faces_while_seed_changes_the_rest(synthetic_samples, tmp_path):
    splits = {}
    for name, seed, split_seed in (("base", 0, None), ("rerun", 1, 0), ("other_split", 1, None)):
        config = tiny_config(epochs=1, seed=seed, split_seed=split_seed)
        train_model(synthetic_samples, FASSEG_LABELS, TINY_MODEL, config, tmp_path / name)
        splits[name] = load_weights(tmp_path / name / WEIGHTS_NAME, FASSEG_LABELS)[2]["split"]
    assert splits["rerun"] == splits["base"]
    assert splits["other_split"]["validation"] != splits["base"]["validation"]


def test_rgb_only_mode_trains_a_model_without_coarse_input(synthetic_samples, tmp_path):
    config = ModelConfig(use_coarse=False, width=4, depth=2)
    weights = train_model(synthetic_samples, FASSEG_LABELS, config, tiny_config(epochs=1), tmp_path)
    model, _, _ = load_weights(weights)
    assert model.config.use_coarse is False and model.config.in_channels == 3


def test_training_without_fine_maps_is_refused(synthetic_samples, tmp_path):
    coarse_only = [LoadedSample(sample.name, sample.photo, sample.coarse, None) for sample in synthetic_samples]
    with pytest.raises(C2FError, match="fine map"):
        train_model(coarse_only, FASSEG_LABELS, TINY_MODEL, tiny_config(), tmp_path)


def test_split_is_deterministic_disjoint_and_complete(synthetic_samples):
    train, validation = split_samples(synthetic_samples * 5, 0.2, seed=3)
    again_train, again_validation = split_samples(synthetic_samples * 5, 0.2, seed=3)
    assert len(validation) == 4 and len(train) == 16
    assert [id(s) for s in train] == [id(s) for s in again_train]
    assert [id(s) for s in validation] == [id(s) for s in again_validation]


def test_a_single_sample_is_never_held_out(synthetic_samples):
    train, validation = split_samples(synthetic_samples[:1], 0.5, seed=0)
    assert len(train) == 1 and validation == []


def test_a_large_validation_fraction_still_leaves_one_face_to_train_on(synthetic_samples, tmp_path):
    train, validation = split_samples(synthetic_samples, 0.9, seed=0)
    assert len(train) == 1 and len(validation) == 3
    weights = train_model(synthetic_samples, FASSEG_LABELS, TINY_MODEL,
                          tiny_config(epochs=1, validation_fraction=0.9), tmp_path)
    assert weights.is_file()


def test_splitting_no_faces_is_a_clear_error():
    with pytest.raises(C2FError, match="no face with a fine map is left for training"):
        split_samples([], 0.2, seed=0)


def test_gan_mode_keeps_the_fine_maps_of_40_percent_of_the_faces_by_itself(synthetic_samples, tmp_path):
    config = tiny_config(epochs=1, mode="gan", crops_per_image=1, validation_fraction=0.0)
    train_model(synthetic_samples, FASSEG_LABELS, TINY_MODEL, config, tmp_path)
    _, metadata = load_tensors(tmp_path / CHECKPOINT_NAME)
    assert metadata["train_config"]["fine_fraction"] == 0.4
    assert len(metadata["split"]["train"]) == 2 and len(metadata["split"]["coarse_only"]) == 2  # round(4 * 0.4)
    assert TrainConfig(fine_fraction=0.7, mode="gan").resolved().fine_fraction == 0.7
    assert TrainConfig(mode="segment").resolved().fine_fraction == 1.0


def test_class_weights_favour_rare_classes_and_average_one_per_pixel():
    maps = [np.array([[0] * 9 + [1]] * 10)]  # class 0 nine times as common as class 1
    weights = class_weights(maps, 2, power=1.0)
    assert weights[1] == pytest.approx(9 * weights[0])
    assert weights[0] * 0.9 + weights[1] * 0.1 == pytest.approx(1.0, rel=1e-4)
    np.testing.assert_allclose(class_weights(maps, 2, power=0.0), 1.0, rtol=1e-4)


def test_class_weights_stay_finite_for_a_class_absent_from_training():
    weights = class_weights([np.zeros((4, 4), int), np.ones((4, 4), int)], 3, power=1.0)
    assert np.all(np.isfinite(weights)) and weights[2] > weights[0]


def test_random_crops_have_the_crop_size_and_only_valid_class_ids():
    photo, coarse, fine = make_scene(40, 30, seed=2)
    sample = LoadedSample("face", photo, coarse, fine)
    rng = np.random.default_rng(0)
    for _ in range(10):
        photo_crop, coarse_crop, fine_crop = random_crop(sample, fine, 32, rng)
        assert photo_crop.shape == (32, 32, 3) and photo_crop.dtype == np.uint8
        assert coarse_crop.shape == fine_crop.shape == (32, 32)
        assert set(np.unique(fine_crop)) <= set(np.unique(fine))


def test_init_starts_from_the_given_weights(finished_run, synthetic_samples, tmp_path):
    start, _, _ = load_weights(finished_run[0] / WEIGHTS_NAME)
    # With a learning rate of 0 nothing moves, so the result is the starting point exactly.
    weights = train_model(synthetic_samples, FASSEG_LABELS, TINY_MODEL,
                          tiny_config(epochs=1, learning_rate=0.0, init_weights=str(finished_run[0] / WEIGHTS_NAME)),
                          tmp_path)
    finetuned, _, metadata = load_weights(weights)
    for (name, before), after in zip(start.named_parameters(), finetuned.parameters()):
        assert torch.equal(before, after), name
    assert metadata["train_config"]["init_weights"].endswith(WEIGHTS_NAME)


def test_init_with_another_architecture_is_a_clear_error(finished_run, synthetic_samples, tmp_path):
    other = ModelConfig(width=8, depth=2)
    with pytest.raises(C2FError, match="--init .* width=4"):
        train_model(synthetic_samples, FASSEG_LABELS, other,
                    tiny_config(init_weights=str(finished_run[0] / WEIGHTS_NAME)), tmp_path)


def test_resume_of_a_finetuning_run_does_not_need_the_init_file_any_more(finished_run, synthetic_samples, tmp_path):
    start = tmp_path / "start.safetensors"
    start.write_bytes((finished_run[0] / WEIGHTS_NAME).read_bytes())
    config = tiny_config(epochs=2, init_weights=str(start))

    def stop_after_first_epoch(row: dict) -> None:
        if row["epoch"] == 1:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        train_model(synthetic_samples, FASSEG_LABELS, TINY_MODEL, config, tmp_path / "run",
                    on_epoch=stop_after_first_epoch)
    start.unlink()
    train_model(synthetic_samples, FASSEG_LABELS, TINY_MODEL, config, tmp_path / "run", resume=True)
    _, metadata = load_tensors(tmp_path / "run" / CHECKPOINT_NAME)
    assert len(metadata["history"]) == 2


COARSEN = "tolerance=2:6,min_area=4:20,jitter=0:1,band=0:3"


def fine_only(samples: list[LoadedSample]) -> list[LoadedSample]:
    return [LoadedSample(sample.name, sample.photo, None, sample.fine) for sample in samples]


def test_fine_only_samples_need_coarsen(synthetic_samples, tmp_path):
    with pytest.raises(C2FError, match="--coarsen"):
        train_model(fine_only(synthetic_samples), FASSEG_LABELS, TINY_MODEL, tiny_config(), tmp_path)


def test_coarsen_draws_new_coarse_maps_every_epoch_and_fixed_ones_for_validation(synthetic_samples, tmp_path,
                                                                                monkeypatch):
    import c2f.training.loop as loop

    trained, validated = [], []
    real_batches, real_evaluate = loop.in_process_batches, loop.evaluate

    def recording_batches(samples, *arguments, **keywords):
        trained.append([sample.coarse.copy() for sample in samples])
        return real_batches(samples, *arguments, **keywords)

    def recording_evaluate(model, samples, names):
        validated.append([sample.coarse.copy() for sample in samples])
        return real_evaluate(model, samples, names)

    monkeypatch.setattr(loop, "in_process_batches", recording_batches)
    monkeypatch.setattr(loop, "evaluate", recording_evaluate)
    train_model(fine_only(synthetic_samples), FASSEG_LABELS, TINY_MODEL, tiny_config(epochs=2, coarsen=COARSEN),
                tmp_path)
    assert len(trained) == 2 and len(validated) == 2
    assert not all(np.array_equal(first, second) for first, second in zip(*trained))  # redrawn every epoch
    assert all(np.array_equal(first, second) for first, second in zip(*validated))  # one drawing throughout


def test_training_coarse_maps_differ_between_epochs():
    from c2f.training.coarsen import draw_coarse_maps, parse_coarsen_spec
    from c2f.training.loop import TRAINING_COARSE_STREAM

    fine = np.zeros((64, 64), np.uint8)
    fine[20:50, 10:40] = 1
    sample = LoadedSample("s", np.zeros((64, 64, 3), np.uint8), None, fine)
    settings = parse_coarsen_spec("tolerance=2:12,jitter=1:3")
    drawings = [draw_coarse_maps([sample], settings, 6, (0, epoch, TRAINING_COARSE_STREAM))[0].coarse
                for epoch in range(2)]
    assert not np.array_equal(*drawings)


def test_fine_only_training_resumes_bit_identically(synthetic_samples, tmp_path):
    samples = fine_only(synthetic_samples[:3])
    validation = fine_only(synthetic_samples[3:])
    config = tiny_config(epochs=2, coarsen=COARSEN)
    train_model(samples, FASSEG_LABELS, TINY_MODEL, config, tmp_path / "whole", validation=validation)
    train_model(samples, FASSEG_LABELS, TINY_MODEL, config, tmp_path / "halves", validation=validation, until_epoch=1)
    train_model(samples, FASSEG_LABELS, TINY_MODEL, config, tmp_path / "halves", validation=validation, resume=True)
    whole, metadata = load_tensors(tmp_path / "whole" / WEIGHTS_NAME)
    halves, _ = load_tensors(tmp_path / "halves" / WEIGHTS_NAME)
    assert all(torch.equal(whole[name], halves[name]) for name in whole)
    assert metadata["split"]["validation"] == [sample.name for sample in validation]
    assert metadata["split"]["train"] == [sample.name for sample in samples]
    assert metadata["train_config"]["coarsen"] == COARSEN


def test_coarsen_all_replaces_the_coarse_maps_on_disk_and_needs_coarsen(synthetic_samples, tmp_path):
    from c2f.training.loop import train_from_folder

    with pytest.raises(C2FError, match="--coarsen-all needs --coarsen"):
        train_from_folder(tmp_path, tmp_path / "run", FASSEG_LABELS, tiny_config(coarsen_all=True))
    config = tiny_config(epochs=1, coarsen=COARSEN, coarsen_all=True)
    weights = train_model(synthetic_samples, FASSEG_LABELS, TINY_MODEL, config, tmp_path / "all")
    assert weights.exists()


def test_fine_only_samples_always_train_and_leave_the_held_out_triplets_as_they_were(synthetic_samples):
    from c2f.training.loop import split_paired_first
    from c2f.training.samples import split_samples

    fine_only = [dataclasses.replace(sample, name=f"zz_{sample.name}", coarse=None) for sample in synthetic_samples]
    train, validation = split_paired_first(synthetic_samples + fine_only, 0.5, seed=3)
    expected_train, expected_validation = split_samples(synthetic_samples, 0.5, seed=3)
    assert [sample.name for sample in validation] == [sample.name for sample in expected_validation]
    assert {sample.name for sample in train} == {sample.name for sample in expected_train + fine_only}


def test_the_soft_loss_equals_the_hard_loss_on_pure_pixels_and_splits_a_blend_by_its_shares():
    from c2f.training.augment import target_shares
    from c2f.training.loop import weighted_cross_entropy

    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 6, 5, 7, generator=generator)
    ids = torch.randint(0, 7, (2, 5, 7), generator=generator)  # 6: ignored
    weights = torch.rand(6, generator=generator) + 0.5
    shares = torch.from_numpy(np.stack([target_shares(face.numpy().astype(np.uint8), 6) for face in ids]))
    hard = torch.nn.CrossEntropyLoss(weight=weights, ignore_index=6)(logits, ids)
    torch.testing.assert_close(weighted_cross_entropy(logits, shares, weights), hard)
    assert torch.equal(weighted_cross_entropy(logits, ids, weights), hard)
    half = torch.zeros(1, 6, 1, 1)
    half[0, 2], half[0, 0] = 0.5, 0.5  # half skin, half background
    log_p = torch.log_softmax(logits[:1, :, :1, :1], dim=1)[0, :, 0, 0]
    expected = -(0.5 * weights[2] * log_p[2] + 0.5 * weights[0] * log_p[0]) / (0.5 * weights[2] + 0.5 * weights[0])
    torch.testing.assert_close(weighted_cross_entropy(logits[:1, :, :1, :1], half, weights), expected)


def with_blends(samples: list[LoadedSample]) -> list[LoadedSample]:
    """The samples with a blend along every fine boundary: 70 % the pixel's class, 30 % its right neighbour's."""
    from c2f.io.label_maps import ClassBlend

    blended = []
    for sample in samples:
        second = np.concatenate([sample.fine[:, 1:], sample.fine[:, -1:]], axis=1)
        share = np.where(second != sample.fine, 0.7, 1.0).astype(np.float32)
        blended.append(dataclasses.replace(sample, fine_blend=ClassBlend(sample.fine, second, share)))
    return blended


def test_soft_boundaries_and_relabelling_train_repeat_resume_exactly_and_are_stored(synthetic_samples, tmp_path):
    samples = with_blends(synthetic_samples)
    config = tiny_config(epochs=2, soft_boundaries=True, relabel_probability=0.5)
    for name in ("whole", "again"):
        train_model(samples, FASSEG_LABELS, TINY_MODEL, config, tmp_path / name)
    train_model(samples, FASSEG_LABELS, TINY_MODEL, config, tmp_path / "halves", until_epoch=1)
    train_model(samples, FASSEG_LABELS, TINY_MODEL, config, tmp_path / "halves", resume=True)
    train_model(synthetic_samples, FASSEG_LABELS, TINY_MODEL, tiny_config(epochs=2), tmp_path / "plain")
    whole, metadata = load_tensors(tmp_path / "whole" / WEIGHTS_NAME)
    for other in ("again", "halves"):
        tensors, _ = load_tensors(tmp_path / other / WEIGHTS_NAME)
        assert all(torch.equal(whole[name], tensors[name]) for name in whole)
    plain, _ = load_tensors(tmp_path / "plain" / WEIGHTS_NAME)
    assert not all(torch.equal(whole[name], plain[name]) for name in whole)
    assert metadata["train_config"]["soft_boundaries"] is True
    assert metadata["train_config"]["relabel_probability"] == 0.5
    with pytest.raises(C2FError, match="--soft-boundaries"):
        train_model(samples, FASSEG_LABELS, TINY_MODEL, tiny_config(mode="gan", soft_boundaries=True),
                    tmp_path / "gan")

def test_the_encoder_model_trains_from_imagenet_and_fine_tunes_with_init(tiny_encoder_weights, synthetic_samples,
                                                                          tmp_path):
    from c2f.encoders import pretrained_state_dict

    model, _, metadata = load_weights(tiny_encoder_weights, FASSEG_LABELS)
    assert model.config.encoder == "efficientnet-lite0"
    assert np.isfinite(metadata["validation"]["val_accuracy"])
    # One epoch moved the encoder away from ImageNet, but it started there: its batch-norm scales stay close.
    imagenet = pretrained_state_dict()["blocks.8.depthwise.norm.weight"]
    trained = model.encoder.blocks[8].depthwise.norm.weight
    assert not torch.equal(trained, imagenet) and torch.allclose(trained, imagenet, atol=0.05)
    config = tiny_config(epochs=1, crop_size=64, init_weights=str(tiny_encoder_weights))
    train_model(synthetic_samples, FASSEG_LABELS, model.config, config, tmp_path / "tuned")
    with pytest.raises(C2FError, match="--init .* but this run builds"):
        train_model(synthetic_samples, FASSEG_LABELS, TINY_MODEL, config, tmp_path / "wrong")


def test_width_and_depth_are_refused_with_the_encoder_and_init_gives_its_encoder(tiny_encoder_weights):
    from c2f.training.loop import model_config_for

    with pytest.raises(C2FError, match="--width and --depth size the U-Net; --encoder efficientnet-lite0"):
        model_config_for(FASSEG_LABELS, "conditional", 8, None, None, "efficientnet-lite0")
    assert model_config_for(FASSEG_LABELS, "conditional", None, None, tiny_encoder_weights, None).encoder == (
        "efficientnet-lite0")
    assert model_config_for(FASSEG_LABELS, "conditional", None, None, None, None) == ModelConfig()


def test_upsampling_is_refused_with_the_encoder_and_comes_from_init_when_not_given(tiny_encoder_weights, tmp_path):
    from c2f.training.loop import model_config_for

    with pytest.raises(C2FError, match="--upsampling shapes the U-Net's decoder; --encoder efficientnet-lite0"):
        model_config_for(FASSEG_LABELS, "conditional", None, None, None, "efficientnet-lite0", "nearest")
    assert model_config_for(FASSEG_LABELS, "conditional", None, None, None, None, "nearest").upsampling == "nearest"
    model = UNet(ModelConfig(width=4, depth=2, upsampling="nearest"))
    save_weights(tmp_path / "nearest.safetensors", model, FASSEG_LABELS)
    inherited = model_config_for(FASSEG_LABELS, "conditional", None, None, tmp_path / "nearest.safetensors")
    assert inherited == ModelConfig(width=4, depth=2, upsampling="nearest")


def test_an_encoder_model_written_before_the_upsampling_choice_still_starts_an_init_run(tiny_encoder_weights,
                                                                                         tmp_path):
    from c2f.training.loop import model_config_for
    from c2f.training.run_state import initial_weights
    from c2f.weights import model_metadata, save_tensors

    model, _, _ = load_weights(tiny_encoder_weights, FASSEG_LABELS)
    stored = model_metadata(model.config, FASSEG_LABELS)
    del stored["model_config"]["upsampling"]  # as c2f wrote every weights file before the choice existed
    save_tensors(tmp_path / "old.safetensors", model.state_dict(), stored)
    config = model_config_for(FASSEG_LABELS, "conditional", None, None, tmp_path / "old.safetensors")
    assert config == ModelConfig(encoder="efficientnet-lite0")
    assert initial_weights(tmp_path / "old.safetensors", config, FASSEG_LABELS).config == config


def test_soft_boundaries_with_gan_are_refused_before_the_data_is_read(tmp_path):
    from c2f.training.loop import train_from_folder

    config = tiny_config(mode="gan", soft_boundaries=True)
    with pytest.raises(C2FError, match="--soft-boundaries"):  # the folder does not even exist
        train_from_folder(tmp_path / "absent", tmp_path / "run", FASSEG_LABELS, config)


@pytest.mark.parametrize("option", ["init_weights", "teacher"])
def test_a_missing_init_or_teacher_file_is_named_before_the_data_is_read(option, tmp_path):
    from c2f.training.loop import train_from_folder

    flag = {"init_weights": "--init", "teacher": "--teacher"}[option]
    config = tiny_config(**{option: str(tmp_path / "missing.safetensors")})
    with pytest.raises(C2FError, match=f"{flag} .*missing.safetensors: no such weights file.*fasseg, camvid"):
        train_from_folder(tmp_path / "absent", tmp_path / "run", FASSEG_LABELS, config)


def epoch_samples_recorded(monkeypatch) -> list[list[LoadedSample]]:
    """A list that gets each epoch's training samples, as train_epoch hands them to its batches."""
    import c2f.training.loop as loop

    trained = []
    real_batches = loop.in_process_batches

    def recording_batches(samples, *arguments, **keywords):
        trained.append(samples)
        return real_batches(samples, *arguments, **keywords)

    monkeypatch.setattr(loop, "in_process_batches", recording_batches)
    return trained


def test_coarse_targets_train_coarse_only_samples_on_coarser_drawings_of_their_coarse_maps(synthetic_samples, tmp_path,
                                                                                          monkeypatch):
    trained = epoch_samples_recorded(monkeypatch)
    # 3 training samples: a third keeps its fine map, the other two train on their coarse maps
    config = tiny_config(epochs=2, fine_fraction=0.34, coarse_targets=True, coarsen=COARSEN)
    weights = train_model(synthetic_samples, FASSEG_LABELS, TINY_MODEL, config, tmp_path)
    _, metadata = load_tensors(weights)
    split = metadata["split"]
    assert len(split["train"]) == 1 and len(split["coarse_targets"]) == 2 and "coarse_only" not in split
    assert metadata["train_config"]["coarse_targets"] is True
    originals = {sample.name: sample for sample in synthetic_samples}
    for epoch_samples in trained:
        assert [sample.name for sample in epoch_samples] == split["train"] + split["coarse_targets"]
        for sample in epoch_samples[1:]:
            assert np.array_equal(sample.fine, originals[sample.name].coarse)  # the coarse map is the target
            assert sample.coarse.shape == sample.fine.shape
            assert not np.array_equal(sample.coarse, sample.fine)  # and a coarser drawing of it the input
    assert not all(np.array_equal(first.coarse, second.coarse) for first, second in zip(*trained))  # anew per epoch


def test_coarse_target_input_none_shows_coarse_target_photos_no_coarse_map(synthetic_samples, tmp_path, monkeypatch):
    trained = epoch_samples_recorded(monkeypatch)
    config = tiny_config(epochs=2, fine_fraction=0.34, coarse_targets=True, coarsen=COARSEN,
                         coarse_target_input="none")
    weights = train_model(synthetic_samples, FASSEG_LABELS, TINY_MODEL, config, tmp_path)
    _, metadata = load_tensors(weights)
    assert metadata["train_config"]["coarse_target_input"] == "none"
    originals = {sample.name: sample for sample in synthetic_samples}
    for epoch_samples in trained:
        assert np.array_equal(epoch_samples[0].coarse, originals[epoch_samples[0].name].coarse)  # fine: as before
        for sample in epoch_samples[1:]:
            assert np.array_equal(sample.fine, originals[sample.name].coarse)  # the coarse map is the target
            assert (sample.coarse == FASSEG_LABELS.num_classes).all()  # and nothing of it is shown


def test_coarse_target_crops_set_the_coarse_target_photos_share_of_each_epoch(synthetic_samples, tmp_path):
    steps = []
    # 1 fine photo at 4 crops and 2 coarse-target photos at 14 crops each: 32 crops, 4 steps of 8
    config = tiny_config(epochs=1, fine_fraction=0.34, coarse_targets=True, coarsen=COARSEN, coarse_target_crops=14)
    train_model(synthetic_samples, FASSEG_LABELS, TINY_MODEL, config, tmp_path,
                on_step=lambda step, total, loss: steps.append(total))
    assert steps and set(steps) == {4}


@pytest.mark.parametrize("changes, message", [
    (dict(coarse_target_crops=2), "--coarse-target-crops .* needs --coarse-targets"),
    (dict(coarse_target_input="none"), "--coarse-target-input .* needs --coarse-targets"),
    (dict(coarse_targets=True, coarsen=COARSEN, coarse_target_input="none", coarsen_all=True), "choose one"),
    (dict(coarse_targets=True), "--coarse-targets draws coarser inputs"),
    (dict(coarse_targets=True, coarsen=COARSEN, mode="gan"), "choose one"),
    (dict(coarse_targets=True, coarsen=COARSEN, teacher="fasseg"), "choose one"),
])
def test_coarse_targets_need_coarsen_and_no_other_coarse_only_training(changes, message, tmp_path):
    from c2f.training.loop import train_from_folder

    with pytest.raises(C2FError, match=message):  # the folder does not even exist
        train_from_folder(tmp_path / "absent", tmp_path / "run", FASSEG_LABELS, tiny_config(**changes))


def test_coarse_targets_need_coarse_only_samples(synthetic_samples, tmp_path):
    with pytest.raises(C2FError, match="--coarse-targets trains on coarse-only photos"):
        train_model(synthetic_samples, FASSEG_LABELS, TINY_MODEL, tiny_config(coarse_targets=True, coarsen=COARSEN),
                    tmp_path)
