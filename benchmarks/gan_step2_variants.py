"""GAN step 2 variants, all started from one step-1 checkpoint of Table 1's pixel-discriminator row.

Run from the repository root:

    python benchmarks/gan_step2_variants.py
    python benchmarks/gan_step2_variants.py --fine-fraction 0.1 --variants semi,no_coarse_only

Trains Table 1's `gan_pixel` row (width 8, 12 epochs, lr 1e-3, 16 of 40 training faces
fine) up to the end of step 1 (epoch 6) once, then runs its 6 step-2 epochs once per
variant from that same checkpoint, so the variants differ in step 2 alone:
- `semi_0.3`: c2f's step 2 as shipped (pseudo-labels weigh 0.3);
- `semi_1.0`: the same with pseudo-labels weighing as much as the supervised loss;
- `no_coarse_only`: step 1 simply continued, the coarse-only faces left out (the control).
Prints held-out pixel accuracy and mIoU after step 1 and after each variant, then how
good each final model's pseudo-labels are on the coarse-only faces, checked against the
fine maps those faces really have (training never saw them). It needs
../shared/data/FASSEG; each variant takes about half an hour on one CPU core. Folders go
to runs/gan_step2/ (runs/gan_step2_0.1/ for --fine-fraction 0.1, with Table 1's budget
for that fraction) and are kept, so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
from pathlib import Path

import torch

import c2f.training.gan as gan
from c2f.config import ModelConfig, TrainConfig
from c2f.training.samples import find_samples, load_sample
from c2f.io.label_sets import FASSEG_LABELS
from c2f.model import UNet
from c2f.inference.network_input import network_input
from c2f.training.loop import train_model
from c2f.training.run_state import CHECKPOINT_NAME
from c2f.weights import load_tensors

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "FASSEG"
OUT = Path("runs/gan_step2")
CONFIG = TrainConfig(mode="gan", epochs=12, crops_per_image=20, learning_rate=1e-3, fine_fraction=0.4,
                     discriminator="pixel")  # Table 1's gan_pixel row: 8 crops per face / 0.4 fine
VARIANTS = ("semi", "semi_1.0", "no_coarse_only")
MODEL = ModelConfig(width=8)
STEP1_EPOCHS = 6  # epochs * (1 - step2_fraction)


class StepOneDone(Exception):
    pass


def step_one(samples, config: TrainConfig, out: Path) -> Path:
    """The row's checkpoint at the end of step 1, trained once and kept."""
    kept = out / "step1_end.safetensors"
    if not kept.exists():
        def stop_at_step_two(row: dict) -> None:
            if row["epoch"] == STEP1_EPOCHS:
                raise StepOneDone
        try:
            train_model(samples, FASSEG_LABELS, MODEL, config, out / "step1", resume=True, on_epoch=stop_at_step_two)
        except StepOneDone:
            shutil.copy(out / "step1" / CHECKPOINT_NAME, kept)
    return kept


def step_two(samples, config: TrainConfig, out: Path, start: Path, name: str, semi_weight: float,
             use_coarse_only: bool) -> dict:
    """Step 2 from the step-1 checkpoint with one variant; returns the last epoch's row."""
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / CHECKPOINT_NAME).exists():
        shutil.copy(start, folder / CHECKPOINT_NAME)
    gan.SEMI_WEIGHT = semi_weight
    if not use_coarse_only:  # train.train_model samples the coarse-only faces; hide them from the epoch
        train_gan_epoch = gan.train_gan_epoch
        gan.train_gan_epoch = lambda run, fine, coarse_only, *rest: train_gan_epoch(run, fine, [], *rest)
    try:
        train_model(samples, FASSEG_LABELS, MODEL, config, folder, resume=True,
                    on_epoch=lambda row: print(f"  {name} epoch {row['epoch']}: {row['val_accuracy']:.4f}", flush=True))
    finally:
        if not use_coarse_only:
            gan.train_gan_epoch = train_gan_epoch
    return load_tensors(folder / CHECKPOINT_NAME)[1]["history"][-1]


def pseudo_label_quality(samples, checkpoint: Path) -> dict[str, float]:
    """Share of coarse-only pixels each gate lets through and how many of those the fine map confirms
    (whole faces, cropped to multiples of 32, the model in inference mode)."""
    tensors, metadata = load_tensors(checkpoint)
    model, discriminator = UNet(MODEL), gan.Discriminator(MODEL.num_classes, "pixel")
    model.load_state_dict({name.removeprefix("model."): value for name, value in tensors.items()
                           if name.startswith("model.")})
    discriminator.load_state_dict({name.removeprefix("discriminator."): value for name, value in tensors.items()
                                   if name.startswith("discriminator.")})
    model.eval()
    coarse_only = set(metadata["split"]["coarse_only"])
    counts = {"pixels": 0, "right": 0, "d_gate": 0, "d_right": 0, "both_gate": 0, "both_right": 0}
    for sample in (sample for sample in samples if sample.name in coarse_only):
        height, width = (size - size % 32 for size in sample.photo.shape[:2])
        inputs = torch.from_numpy(network_input(sample.photo[:height, :width], sample.coarse[:height, :width],
                                                MODEL.num_classes))[None]
        with torch.inference_mode():
            probabilities = model(inputs).softmax(dim=1)  # inference mode takes the loss weights back out
            believed = torch.sigmoid(discriminator(inputs[:, :3], gan.shown_map("pixel", probabilities)))[0, 0]
        confidence, labels = (array[0].numpy() for array in probabilities.max(dim=1))
        right = labels == sample.fine[:height, :width]
        d_gate = believed.numpy() > gan.CONFIDENCE_THRESHOLD
        both_gate = d_gate & (confidence > gan.GENERATOR_CONFIDENCE)
        counts["pixels"] += right.size
        counts["right"] += int(right.sum())
        for gate, name in ((d_gate, "d"), (both_gate, "both")):
            counts[f"{name}_gate"] += int(gate.sum())
            counts[f"{name}_right"] += int((right & gate).sum())
    return {"accuracy": counts["right"] / counts["pixels"],
            **{f"{name}_share": counts[f"{name}_gate"] / counts["pixels"] for name in ("d", "both")},
            **{f"{name}_precision": counts[f"{name}_right"] / max(counts[f"{name}_gate"], 1) for name in ("d", "both")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fine-fraction", type=float, default=CONFIG.fine_fraction,
                        help="share of training faces keeping fine maps (Table 1's --fine-fraction)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated variants to run")
    arguments = parser.parse_args()
    fraction, wanted = arguments.fine_fraction, arguments.variants.split(",")
    if not 0 < fraction < 1 or set(wanted) - set(VARIANTS):
        parser.error(f"--fine-fraction must lie in (0, 1) and --variants among {', '.join(VARIANTS)}")
    if not DATA.is_dir():
        sys.exit(f"skipped: {DATA} is absent")
    # Table 1's budget: as many supervised steps as 8 crops of every one of the 40 training faces.
    config = dataclasses.replace(CONFIG, fine_fraction=fraction, crops_per_image=round(8 / fraction))
    out = OUT if fraction == CONFIG.fine_fraction else OUT.with_name(f"{OUT.name}_{fraction:g}")
    samples = [load_sample(sample, FASSEG_LABELS) for sample in find_samples(DATA)]
    start = step_one(samples, config, out)
    shipped_weight = gan.SEMI_WEIGHT
    rows = [("end of step 1", load_tensors(start)[1]["history"][-1])]
    settings = {"semi": (f"semi_{shipped_weight:g}", shipped_weight, True), "semi_1.0": ("semi_1.0", 1.0, True),
                "no_coarse_only": ("no_coarse_only", shipped_weight, False)}
    for variant in wanted:
        name, semi_weight, use_coarse_only = settings[variant]
        rows.append((name, step_two(samples, config, out, start, name, semi_weight, use_coarse_only)))
    print(f"\nfine fraction {fraction:g}\n")
    print("| variant | held-out pixel accuracy | mIoU |\n| --- | ---: | ---: |")
    for name, row in rows:
        print(f"| {name} | {row['val_accuracy']:.2%} | {row['val_miou']:.3f} |")
    print("\nPseudo-labels on the coarse-only faces (checked against their unused fine maps)\n")
    print("| variant | generator right | discriminator gate: share, right | both gates: share, right |")
    print("| --- | ---: | ---: | ---: |")
    for name in [row[0] for row in rows[1:]]:
        quality = pseudo_label_quality(samples, out / name / CHECKPOINT_NAME)
        print(f"| {name} | {quality['accuracy']:.2%} | {quality['d_share']:.1%}, {quality['d_precision']:.2%} | "
              f"{quality['both_share']:.1%}, {quality['both_precision']:.2%} |")


if __name__ == "__main__":
    main()
