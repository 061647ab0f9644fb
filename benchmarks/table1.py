"""The 2019 report's Table 1, reproduced side by side on one fixed split of FASSEG.

Every row trains from scratch on the same split (seeded), with the same budget,
and is scored on the same held-out faces by pooled pixel accuracy against the
fine maps. The budget is the number of supervised optimiser steps: rows that keep
only 40 % of the fine maps draw 1 / 0.4 times as many crops from each fine face,
so they are not also starved of training steps. Run from the repository root:

    python benchmarks/table1.py --epochs 12 --width 8

It needs ../shared/data/FASSEG and takes tens of minutes on 2 CPU cores.
Run folders go to runs/table1/ (kept, so an interrupted run resumes). With scarcer
fine maps, and only the rows that depend on them:

    python benchmarks/table1.py --fine-fraction 0.1 --rows conditional,conditional_fine_only,gan_pixel
"""

from __future__ import annotations

import argparse
from pathlib import Path


from c2f.config import ModelConfig, TrainConfig
from c2f.training.samples import find_samples, load_sample
from c2f.io.label_sets import FASSEG_LABELS
from c2f.scoring import confusion_matrix, scores_from_confusion
from c2f.training.loop import train_model
from c2f.training.samples import split_samples
from c2f.weights import load_tensors

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "FASSEG"
PAPER = {  # the 2019 report's Table 1, pixel accuracy in %
    "coarse map (reference)": 89.9,
    "conditional U-Net": 94.5,
    "GAN step 1": 91.4,
    "GAN step 2": 2.3,
    "RGB-only U-Net": 92.8,
}


def coarse_reference(samples, config: TrainConfig) -> dict:
    """Pixel accuracy and mIoU of the coarse maps themselves on the validation faces."""
    labelled = [sample for sample in samples if sample.fine is not None]
    _, validation = split_samples(labelled, config.validation_fraction, config.seed)
    confusion = sum(confusion_matrix(sample.coarse, sample.fine, FASSEG_LABELS.num_classes) for sample in validation)
    scores = scores_from_confusion(confusion)
    return {"val_accuracy": scores.pixel_accuracy, "val_miou": scores.mean_iou}


def train_row(samples, out: Path, mode: str, width: int, budget: dict, **overrides) -> tuple[list[dict], float]:
    """Train one row (resuming if its folder holds a checkpoint); return its history and training seconds."""
    fine_fraction = overrides.get("fine_fraction", 1.0)
    crops_per_image = round(budget["crops_per_image"] / fine_fraction)  # same steps with fewer fine faces
    config = TrainConfig(mode=mode, **{**budget, "crops_per_image": crops_per_image}, **overrides)
    model_config = ModelConfig(use_coarse=mode != "segment", width=width)

    def report(row: dict) -> None:
        print(f"  {out.name} epoch {row['epoch']}: val accuracy {row.get('val_accuracy', float('nan')):.4f}", flush=True)
    train_model(samples, FASSEG_LABELS, model_config, config, out, resume=True, on_epoch=report)
    _, metadata = load_tensors(out / "checkpoint.safetensors")
    history = metadata["history"]
    return history, sum(row["seconds"] for row in history)


def last_of_step(history: list[dict], step: int) -> dict:
    rows = [row for row in history if row.get("gan_step", 1) == step]
    return rows[-1] if rows else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--width", type=int, default=8)
    parser.add_argument("--crops-per-image", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--fine-fraction", type=float, default=0.4,
                        help="share of training faces keeping fine maps in the fine-only and GAN rows")
    parser.add_argument("--rows", default="conditional,conditional_fine_only,gan_image,segment,gan_pixel",
                        help="comma-separated rows to train and print")
    parser.add_argument("--out", type=Path, default=Path("runs/table1"))
    arguments = parser.parse_args()
    if not 0 < arguments.fine_fraction < 1:
        parser.error("--fine-fraction must lie between 0 and 1 (exclusive): the GAN rows need coarse-only faces")
    if not DATA.is_dir():
        raise SystemExit(f"skipped: {DATA} is absent")
    budget = {"epochs": arguments.epochs, "crops_per_image": arguments.crops_per_image,
              "learning_rate": arguments.lr}
    samples = [load_sample(sample, FASSEG_LABELS) for sample in find_samples(DATA)]
    rows: list[tuple[str, dict, float]] = [("coarse map (reference)", coarse_reference(samples, TrainConfig()), 0.0)]
    fraction = arguments.fine_fraction
    runs = {
        "conditional": ("conditional", {}),
        "conditional_fine_only": ("conditional", {"fine_fraction": fraction}),
        "gan_image": ("gan", {"fine_fraction": fraction, "discriminator": "image"}),
        "segment": ("segment", {}),
        "gan_pixel": ("gan", {"fine_fraction": fraction, "discriminator": "pixel"}),
    }
    wanted = arguments.rows.split(",")
    if unknown := set(wanted) - set(runs):
        raise SystemExit(f"unknown rows {sorted(unknown)}; choose from {list(runs)}")
    results = {}
    for name, (mode, overrides) in runs.items():
        if name not in wanted:
            continue
        # Rows that depend on the fraction get their own folder per fraction, so runs never mix.
        folder = f"{name}_{fraction:g}" if "fine_fraction" in overrides else name
        print(f"training {folder}", flush=True)
        results[name] = train_row(samples, arguments.out / folder, mode, arguments.width, budget, **overrides)
    share = f"{fraction:.0%} fine faces"
    if "conditional" in results:
        history, seconds = results["conditional"]
        rows.append(("conditional U-Net", history[-1], seconds))
    if "conditional_fine_only" in results:
        history, seconds = results["conditional_fine_only"]
        rows.append((f"conditional U-Net, {share} only", history[-1], seconds))
    for name, label in (("gan_image", "report's image discriminator"), ("gan_pixel", "pixel discriminator (ours)")):
        if name in results:
            history, seconds = results[name]
            rows.append((f"GAN step 1, {label}, {share}", last_of_step(history, 1), seconds))
            rows.append((f"GAN step 2, {label}, {share}", last_of_step(history, 2), seconds))
    if "segment" in results:
        history, seconds = results["segment"]
        rows.append(("RGB-only U-Net", history[-1], seconds))

    print(f"\nTable 1 on one split of FASSEG (held-out faces; epochs={arguments.epochs}, width={arguments.width}, "
          f"crops/face={arguments.crops_per_image}, lr={arguments.lr}, fine fraction={fraction:g})\n")
    print("| row | report (pixel acc.) | c2f pixel acc. | c2f mIoU | training wall time |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, row, seconds in rows:
        paper_key = next((key for key in PAPER if label.startswith(key)), None)
        # The report's GAN rows kept 40 % of the fine maps; other fractions have no report figure.
        comparable = " only" not in label and (fraction == 0.4 or not label.startswith("GAN"))
        paper = f"{PAPER[paper_key]:.1f} %" if paper_key and comparable else "-"
        accuracy = row.get("val_accuracy", float("nan")) * 100
        print(f"| {label} | {paper} | {accuracy:.2f} % | {row.get('val_miou', float('nan')):.3f} | "
              f"{seconds / 60:.1f} min |")


if __name__ == "__main__":
    main()
