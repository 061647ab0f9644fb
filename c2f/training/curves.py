"""A training run's log: log.csv and curves.png, rewritten whole after every epoch."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from c2f.io.files import write_atomically


def write_log(out_dir: Path, history: list[dict]) -> None:
    """Rewrite the per-epoch CSV and the curves PNG from the full history."""
    if not history:
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    write_atomically(out_dir / "log.csv", lambda temporary: temporary.write_text(buffer.getvalue()))
    plot_curves(out_dir / "curves.png", history)


def plot_curves(path: Path, history: list[dict]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot

    epochs = [row["epoch"] for row in history]
    figure, (loss_axis, score_axis) = pyplot.subplots(1, 2, figsize=(10, 4))
    for key in [key for key in history[0] if key.endswith("loss")]:
        loss_axis.plot(epochs, [row[key] for row in history], label=key)
    loss_axis.set(xlabel="epoch", ylabel="loss", yscale="log")
    loss_axis.legend()
    for key in ("val_accuracy", "val_miou"):
        if key in history[0]:
            score_axis.plot(epochs, [row[key] for row in history], label=key)
    score_axis.set(xlabel="epoch", ylabel="validation")
    if "val_accuracy" in history[0]:  # without held-out faces there is nothing to label (and matplotlib warns)
        score_axis.legend()
    figure.tight_layout()
    write_atomically(path, lambda temporary: figure.savefig(temporary, format="png", dpi=80))
    pyplot.close(figure)
