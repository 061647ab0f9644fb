"""GAN step 2 variants, all started from one step-1 checkpoint of Table 1's pixel-discriminator row.

Run from the repository root:

    python benchmarks/gan_step2_variants.py

Trains Table 1's `gan_pixel` row (width 8, 12 epochs, lr 1e-3, 16 of 40 training faces
fine) up to the end of step 1 (epoch 6) once, then runs its 6 step-2 epochs once per
variant from that same checkpoint, so the variants differ in step 2 alone:
- `semi_0.3`: c2f's step 2 as shipped (pseudo-labels weigh 0.3);
- `semi_1.0`: the same with pseudo-labels weighing as much as the supervised loss;
- `no_coarse_only`: step 1 simply continued, the coarse-only faces left out (the control).
Prints held-out pixel accuracy and mIoU after step 1 and after each variant. It needs
../shared/data/FASSEG; each variant takes about half an hour on one CPU core. Folders go
to runs/gan_step2/ and are kept, so an interrupted run resumes.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import c2f_cli.gan as gan
from c2f_cli.config import ModelConfig, TrainConfig
from c2f_cli.data import find_samples, load_sample
from c2f_cli.labels import FASSEG_LABELS
from c2f_cli.train import CHECKPOINT_NAME, train_model
from c2f_cli.weights import load_tensors

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "FASSEG"
OUT = Path("runs/gan_step2")
CONFIG = TrainConfig(mode="gan", epochs=12, crops_per_image=20, learning_rate=1e-3, fine_fraction=0.4,
                     discriminator="pixel")  # Table 1's gan_pixel row
MODEL = ModelConfig(width=8)
STEP1_EPOCHS = 6  # epochs * (1 - step2_fraction)


class StepOneDone(Exception):
    pass


def step_one(samples) -> Path:
    """The row's checkpoint at the end of step 1, trained once and kept."""
    kept = OUT / "step1_end.safetensors"
    if not kept.exists():
        def stop_at_step_two(row: dict) -> None:
            if row["epoch"] == STEP1_EPOCHS:
                raise StepOneDone
        try:
            train_model(samples, FASSEG_LABELS, MODEL, CONFIG, OUT / "step1", resume=True, on_epoch=stop_at_step_two)
        except StepOneDone:
            shutil.copy(OUT / "step1" / CHECKPOINT_NAME, kept)
    return kept


def step_two(samples, start: Path, name: str, semi_weight: float, use_coarse_only: bool) -> dict:
    """Step 2 from the step-1 checkpoint with one variant; returns the last epoch's row."""
    folder = OUT / name
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / CHECKPOINT_NAME).exists():
        shutil.copy(start, folder / CHECKPOINT_NAME)
    gan.SEMI_WEIGHT = semi_weight
    if not use_coarse_only:  # train.train_model samples the coarse-only faces; hide them from the epoch
        train_gan_epoch = gan.train_gan_epoch
        gan.train_gan_epoch = lambda run, fine, coarse_only, *rest: train_gan_epoch(run, fine, [], *rest)
    try:
        train_model(samples, FASSEG_LABELS, MODEL, CONFIG, folder, resume=True,
                    on_epoch=lambda row: print(f"  {name} epoch {row['epoch']}: {row['val_accuracy']:.4f}", flush=True))
    finally:
        if not use_coarse_only:
            gan.train_gan_epoch = train_gan_epoch
    return load_tensors(folder / CHECKPOINT_NAME)[1]["history"][-1]


def main() -> None:
    if not DATA.is_dir():
        sys.exit(f"skipped: {DATA} is absent")
    samples = [load_sample(sample, FASSEG_LABELS) for sample in find_samples(DATA)]
    start = step_one(samples)
    shipped_weight = gan.SEMI_WEIGHT
    rows = [("end of step 1", load_tensors(start)[1]["history"][-1])]
    for name, semi_weight, use_coarse_only in ((f"semi_{shipped_weight:g}", shipped_weight, True),
                                               ("semi_1.0", 1.0, True), ("no_coarse_only", shipped_weight, False)):
        rows.append((name, step_two(samples, start, name, semi_weight, use_coarse_only)))
    print("\n| variant | held-out pixel accuracy | mIoU |\n| --- | ---: | ---: |")
    for name, row in rows:
        print(f"| {name} | {row['val_accuracy']:.2%} | {row['val_miou']:.3f} |")


if __name__ == "__main__":
    main()
