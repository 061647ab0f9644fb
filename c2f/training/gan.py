"""Semi-supervised training (`--mode gan`): a discriminator judges refined maps.

Step 1 trains the conditional U-Net (the generator) on fine-labelled faces with
the weighted cross-entropy plus an adversarial term, while a discriminator
learns to tell fine maps from generated ones, conditioned on the photo.
Step 2 goes on to the coarse-only faces, which have no fine map.

Two discriminators, to show why the 2019 report's step 2 collapsed:
- `pixel` (default, after Hung et al. 2018): fully convolutional, one confidence
  per pixel. In step 2 a pixel gets a pseudo-label where both the discriminator
  and the generator itself are confident; the label comes from the crop as it is
  and is taught on a strongly perturbed copy of it (FixMatch-style), so the
  generator learns something it did not already output. Every batch keeps
  fine-labelled crops with their supervised loss, so the generator stays anchored.
  It sees hard (one-hot) maps on both sides: fine maps are one-hot and generated ones
  soft, so a discriminator shown probabilities wins within a few hundred steps by
  their softness alone and then trusts no generated pixel. The generator still gets
  its gradient through the probabilities (straight-through).
- `image` (the 2019 report's): one real/fake score per map, least-squares loss; in
  step 2 the generator is driven by that score alone, as in the report.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from c2f.config import TrainConfig
from c2f.training.augment import STRONG_JITTER, jitter_factors, make_batch, random_crop
from c2f.training.samples import LoadedSample

ADVERSARIAL_WEIGHT = 0.01  # Hung et al.'s lambda_adv: small, the cross-entropy leads
# Weight of the pseudo-labels in step 2, against 1 for the supervised loss. Held-out accuracy after step 2
# on Table 1's split, one run each (benchmarks/gan_step2_variants.py): 1.0: 93.64 %, 0.3: 93.80 %, and
# 93.82 % with no coarse-only faces at all: 0.3 was no worse than leaving them out.
SEMI_WEIGHT = 0.3
CONFIDENCE_THRESHOLD = 0.2  # a pixel's pseudo-label counts when the discriminator believes it this much
# ... and the generator gives it at least this probability. The discriminator, judging maps at 1/16 of
# their resolution, passed 97.2 % of the coarse-only pixels, 94.15 % of them right; with this gate too,
# 73.0 %, 97.38 % right (benchmarks/gan_step2_variants.py, on Table 1's split).
GENERATOR_CONFIDENCE = 0.9


class Discriminator(nn.Module):
    """Photo + class probabilities in; per-pixel (pixel) or per-map (image) real/fake logits out."""

    def __init__(self, num_classes: int, kind: str = "pixel", width: int = 32):
        super().__init__()
        self.kind = kind
        layers, channels = [], 3 + num_classes
        for level in range(4):
            layers += [nn.Conv2d(channels, width * 2**level, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
            channels = width * 2**level
        self.trunk = nn.Sequential(*layers)
        self.classifier = nn.Conv2d(channels, 1, 3, padding=1)

    def forward(self, photo: torch.Tensor, probabilities: torch.Tensor) -> torch.Tensor:
        # photo: (N, 3, H, W) normalised; probabilities: (N, K, H, W) summing to 1 over K
        scores = self.classifier(self.trunk(torch.cat([photo, probabilities], dim=1)))  # (N, 1, H/16, W/16)
        if self.kind == "image":
            return scores.mean(dim=(1, 2, 3))  # (N,)
        return functional.interpolate(scores, size=photo.shape[2:], mode="bilinear", align_corners=False)


def adversarial_loss(kind: str, scores: torch.Tensor, real: bool) -> torch.Tensor:
    """Binary cross-entropy per pixel (pixel) or least squares per map (image, as in the report)."""
    target = torch.full_like(scores, 1.0 if real else 0.0)
    if kind == "image":
        return functional.mse_loss(scores, target)
    return functional.binary_cross_entropy_with_logits(scores, target)


def one_hot(class_ids: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(N, H, W) ids -> float (N, K, H, W)."""
    return functional.one_hot(class_ids, num_classes + 1)[..., :num_classes].permute(0, 3, 1, 2).float()


def output_probabilities(logits: torch.Tensor, loss_weights: torch.Tensor) -> torch.Tensor:
    """(N, K, H, W) probabilities of the map the model outputs: training logits with the log of the
    loss weights taken out, as UNet does at inference (raw training logits over-predict rare classes,
    and pseudo-labels taken from them teach that bias back, growing it)."""
    return (logits - loss_weights.log()[:, None, None]).softmax(dim=1)


def shown_map(kind: str, probabilities: torch.Tensor) -> torch.Tensor:
    """What the discriminator sees of a generated map: pixel: its one-hot argmax, with the
    probabilities' gradient (straight-through); image: the probabilities, as in the report."""
    if kind == "image":
        return probabilities
    hard = one_hot(probabilities.argmax(dim=1), probabilities.shape[1])
    return hard + probabilities - probabilities.detach()


def discriminator_step(discriminator: Discriminator, optimizer: torch.optim.Optimizer, photo: torch.Tensor,
                       fine: torch.Tensor, probabilities: torch.Tensor, num_classes: int) -> float:
    """Teach the discriminator: fine maps are real, generated ones (as shown_map presents them) are fake."""
    kind = discriminator.kind
    loss = (adversarial_loss(kind, discriminator(photo, one_hot(fine, num_classes)), real=True)
            + adversarial_loss(kind, discriminator(photo, shown_map(kind, probabilities.detach())), real=False))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def perturbed(inputs: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """A strongly perturbed copy of network inputs: harsher colour jitter than training's, and noise."""
    contrast, brightness, gain = (torch.from_numpy(factor.astype(np.float32)).to(inputs.device)
                                  for factor in jitter_factors(inputs.shape[0], rng, STRONG_JITTER))
    photo = inputs[:, :3] * contrast * gain + brightness + 0.1 * torch.randn_like(inputs[:, :3])
    return torch.cat([photo, inputs[:, 3:]], dim=1)


def coarse_only_loss(model: nn.Module, discriminator: Discriminator, inputs: torch.Tensor,
                     loss_weights: torch.Tensor, rng: np.random.Generator) -> tuple[torch.Tensor, float]:
    """Step 2's generator loss on a batch of faces without fine maps, and the share of pixels it teaches."""
    photo = inputs[:, :3]
    if discriminator.kind == "image":  # the 2019 report: nothing but the discriminator's verdict
        scores = discriminator(photo, output_probabilities(model(inputs), loss_weights))
        return adversarial_loss("image", scores, real=True), 0.0
    with torch.no_grad():  # in training mode, as the taught pass, so BatchNorm normalises both alike
        probabilities = output_probabilities(model(inputs), loss_weights)
        believed = torch.sigmoid(discriminator(photo, shown_map("pixel", probabilities)))[:, 0] > CONFIDENCE_THRESHOLD
        confidence, labels = probabilities.max(dim=1)
        confident = believed & (confidence > GENERATOR_CONFIDENCE)  # (N, H, W)
        pseudo_labels = torch.where(confident, labels, torch.full_like(labels, -1))
    strong = perturbed(inputs, rng)
    logits = model(strong)
    shown = shown_map("pixel", output_probabilities(logits, loss_weights))
    fooling = adversarial_loss("pixel", discriminator(strong[:, :3], shown), real=True)
    semi = functional.cross_entropy(logits, pseudo_labels, weight=loss_weights, ignore_index=-1) \
        if confident.any() else logits.sum() * 0
    return ADVERSARIAL_WEIGHT * fooling + SEMI_WEIGHT * semi, confident.float().mean().item()


def in_second_step(config: TrainConfig, epoch: int, has_coarse_only: bool) -> bool:
    """Whether this epoch is in step 2: the last step2_fraction of the epochs, when coarse-only faces exist."""
    return epoch >= math.ceil(config.epochs * (1 - config.step2_fraction)) and has_coarse_only


def gan_step(model: nn.Module, optimizer: torch.optim.Optimizer, discriminator: Discriminator,
             discriminator_optimizer: torch.optim.Optimizer, loss_weights: torch.Tensor,
             coarse_only: list[LoadedSample], crop_size: int, second_step: bool, inputs: torch.Tensor,
             targets: torch.Tensor, rng: np.random.Generator) -> dict[str, float]:
    """One optimiser step of step 1 (fine crops) or step 2 (coarse-only crops too); returns its losses."""
    num_classes = model.config.num_classes
    logits = model(inputs)
    probabilities = output_probabilities(logits, loss_weights)
    discriminator_loss, confident_share = 0.0, 0.0
    if not (second_step and discriminator.kind == "image"):  # the report froze its discriminator in step 2
        discriminator_loss = discriminator_step(discriminator, discriminator_optimizer, inputs[:, :3], targets,
                                                probabilities, num_classes)
    shown = shown_map(discriminator.kind, probabilities)
    fooling = adversarial_loss(discriminator.kind, discriminator(inputs[:, :3], shown), True)
    supervised = functional.cross_entropy(logits, targets, weight=loss_weights, ignore_index=num_classes)
    if second_step and discriminator.kind == "image":
        loss = torch.zeros((), device=inputs.device)  # the 2019 report's step 2 drops the fine faces altogether
    else:
        loss = supervised + ADVERSARIAL_WEIGHT * fooling
    if second_step:
        picks = rng.integers(0, len(coarse_only), size=len(inputs))
        crops = [random_crop(coarse_only[index], coarse_only[index].coarse, crop_size, rng) for index in picks]
        unlabelled_inputs, _ = make_batch(crops, num_classes, True, rng)
        semi, confident_share = coarse_only_loss(model, discriminator, unlabelled_inputs.to(inputs.device),
                                                 loss_weights, rng)
        loss = loss + semi
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return {"train_loss": loss.item(), "discriminator_loss": discriminator_loss, "confident_share": confident_share}
