"""Semi-supervised training (`--mode gan`) on tiny synthetic faces."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import make_scene

from c2f.config import ModelConfig, TrainConfig
from c2f.io.label_sets import FASSEG_LABELS
from c2f.training.gan import (
    Discriminator,
    adversarial_loss,
    coarse_only_loss,
    output_probabilities,
    perturbed,
    shown_map,
)
from c2f.training.loop import train_model
from c2f.training.run_state import CHECKPOINT_NAME
from c2f.training.samples import LoadedSample, split_fine_and_coarse_only
from c2f.weights import load_tensors


@pytest.fixture(scope="module")
def faces() -> list[LoadedSample]:
    return [LoadedSample(f"face_{index}", *make_scene(48, 48, seed=index)) for index in range(8)]


class FixedLogits(torch.nn.Module):
    """A stand-in generator whose logits are one learnable tensor, whatever the input."""

    def __init__(self, logits: torch.Tensor):
        super().__init__()
        self.logits = torch.nn.Parameter(logits)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(inputs.shape[0], -1, -1, -1)


def trusting(num_classes: int, bias: float) -> Discriminator:
    """A pixel discriminator that believes every pixel (bias 20) or none (bias -20)."""
    discriminator = Discriminator(num_classes=num_classes, kind="pixel", width=4)
    with torch.no_grad():
        discriminator.classifier.weight.zero_()
        discriminator.classifier.bias.fill_(bias)
    return discriminator


def gan_config(discriminator: str, epochs: int = 2) -> TrainConfig:
    return TrainConfig(mode="gan", epochs=epochs, crops_per_image=1, crop_size=32, batch_size=4,
                       learning_rate=1e-3, validation_fraction=0.25, fine_fraction=0.5,
                       discriminator=discriminator)


@pytest.mark.parametrize("kind, expected_shape", [("pixel", (2, 1, 32, 48)), ("image", (2,))])
def test_discriminator_scores_every_pixel_or_every_map(kind, expected_shape):
    discriminator = Discriminator(num_classes=6, kind=kind, width=4)
    scores = discriminator(torch.randn(2, 3, 32, 48), torch.rand(2, 6, 32, 48).softmax(dim=1))
    assert scores.shape == expected_shape


def test_adversarial_losses_reward_the_right_verdict():
    confident_real = torch.full((2, 1, 4, 4), 5.0)
    assert adversarial_loss("pixel", confident_real, real=True) < adversarial_loss("pixel", confident_real, real=False)
    assert adversarial_loss("image", torch.ones(3), real=True) == 0
    assert adversarial_loss("image", torch.ones(3), real=False) == 1


def test_pixel_step2_loss_teaches_only_pixels_the_discriminator_trusts():
    confident_logits = torch.zeros(1, 6, 32, 32)
    confident_logits[:, 2] = 10.0
    inputs, rng = torch.randn(2, 9, 32, 32), np.random.default_rng(0)
    _, share = coarse_only_loss(FixedLogits(confident_logits), trusting(6, -20.0), inputs, torch.ones(6), rng)
    assert share == 0.0
    _, share = coarse_only_loss(FixedLogits(confident_logits), trusting(6, 20.0), inputs, torch.ones(6), rng)
    assert share == 1.0


def test_pixel_step2_loss_skips_pixels_the_generator_is_unsure_of():
    logits = torch.zeros(1, 6, 32, 32)
    logits[:, 2, :16] = 10.0  # top half sure of class 2, bottom half uniform
    inputs = torch.randn(2, 9, 32, 32)
    _, share = coarse_only_loss(FixedLogits(logits), trusting(6, 20.0), inputs, torch.ones(6), np.random.default_rng(0))
    assert share == 0.5


def test_perturbed_inputs_change_the_photo_but_not_the_coarse_map():
    coarse = torch.nn.functional.one_hot(torch.randint(0, 6, (3, 32, 32)), 6).permute(0, 3, 1, 2).float()
    inputs = torch.cat([torch.randn(3, 3, 32, 32), coarse], dim=1)
    strong = perturbed(inputs, np.random.default_rng(0))
    assert strong.shape == inputs.shape
    assert not torch.allclose(strong[:, :3], inputs[:, :3])
    assert torch.equal(strong[:, 3:], coarse)


def test_fine_fraction_turns_the_rest_into_coarse_only_faces(faces):
    fine, coarse_only = split_fine_and_coarse_only(faces, 0.25, seed=0)
    assert len(fine) == 2 and len(coarse_only) == 6
    assert all(sample.fine is None for sample in coarse_only)
    assert {s.name for s in fine} | {s.name for s in coarse_only} == {s.name for s in faces}


@pytest.mark.parametrize("kind", ["pixel", "image"])
def test_gan_runs_both_steps_and_checkpoints_the_discriminator(faces, tmp_path, kind):
    train_model(faces, FASSEG_LABELS, ModelConfig(width=4, depth=2), gan_config(kind), tmp_path)
    tensors, metadata = load_tensors(tmp_path / CHECKPOINT_NAME)
    assert [row["gan_step"] for row in metadata["history"]] == [1, 2]
    assert all(math.isfinite(row["train_loss"]) for row in metadata["history"])
    assert any(name.startswith("discriminator.") for name in tensors)
    assert any(name.startswith("discriminator_optimizer.") for name in tensors)
    assert len(metadata["split"]["coarse_only"]) == 3  # 6 training faces, half keep their fine maps


def test_gan_resume_matches_an_uninterrupted_run(faces, tmp_path):
    model_config = ModelConfig(width=4, depth=2)
    train_model(faces, FASSEG_LABELS, model_config, gan_config("pixel", epochs=2), tmp_path / "whole")
    one_epoch = tmp_path / "one"
    config = gan_config("pixel", epochs=2)

    def stop_after_first_epoch(row: dict) -> None:
        if row["epoch"] == 1:
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        train_model(faces, FASSEG_LABELS, model_config, config, one_epoch, on_epoch=stop_after_first_epoch)
    train_model(faces, FASSEG_LABELS, model_config, config, one_epoch, resume=True)
    whole, _ = load_tensors(tmp_path / "whole" / CHECKPOINT_NAME)
    resumed, _ = load_tensors(one_epoch / CHECKPOINT_NAME)
    assert whole.keys() == resumed.keys()
    assert all(torch.equal(whole[name], resumed[name]) for name in whole)


def test_pixel_discriminator_sees_hard_maps_but_passes_gradients_to_the_generator():
    logits = torch.randn(2, 6, 8, 8, requires_grad=True)
    shown = shown_map("pixel", logits.softmax(dim=1))
    hard = torch.nn.functional.one_hot(logits.detach().argmax(dim=1), 6).permute(0, 3, 1, 2).float()
    assert torch.allclose(shown.detach(), hard, atol=1e-6)
    (shown * torch.randn_like(shown)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_image_discriminator_sees_probabilities_as_in_the_report():
    probabilities = torch.rand(2, 6, 8, 8).softmax(dim=1)
    assert torch.equal(shown_map("image", probabilities), probabilities)


def test_pseudo_labels_come_from_the_map_the_model_outputs_not_the_weighted_training_logits():
    # Raw logits favour class 1, but only because its loss weight is 100 times class 0's.
    logits = torch.zeros(1, 2, 32, 32)
    logits[:, 1] = 1.0
    loss_weights = torch.tensor([1.0, 100.0])
    assert output_probabilities(logits, loss_weights).argmax(dim=1).eq(0).all()
    model = FixedLogits(logits.clone())
    inputs = torch.randn(1, 5, 32, 32)
    loss, confident_share = coarse_only_loss(model, trusting(2, 20.0), inputs, loss_weights, np.random.default_rng(0))
    assert confident_share == 1.0
    loss.backward()
    # Learning the pseudo-label 0 pushes class 0's logit up everywhere.
    assert (model.logits.grad[:, 0] < 0).all()
