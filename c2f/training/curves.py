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
    """Draw training losses (log scale) and validation figures per epoch into a PNG."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot
    from matplotlib.ticker import FormatStrFormatter, LogLocator, MaxNLocator

    epochs = [row["epoch"] for row in history]
    figure, (loss_axis, score_axis) = pyplot.subplots(1, 2, figsize=(10, 4))
    for key in [key for key in history[0] if key.endswith("loss")]:
        loss_axis.plot(epochs, [row[key] for row in history], marker=".", label=key)  # a dot: one epoch shows
    loss_axis.set(xlabel="epoch", ylabel="loss", yscale="log")
    # A log axis spanning less than a decade shows no labelled tick at all by default: label 1, 2 and 5 too.
    loss_axis.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    loss_axis.yaxis.set_minor_locator(LogLocator(subs="auto"))
    loss_axis.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    loss_axis.yaxis.set_minor_formatter(FormatStrFormatter(""))
    loss_axis.legend()
    for key in ("val_accuracy", "val_miou"):
        if key in history[0]:
            score_axis.plot(epochs, [row[key] for row in history], marker=".", label=key)
    score_axis.set(xlabel="epoch", ylabel="validation")
    for axis in (loss_axis, score_axis):  # epochs are whole numbers: no tick at 1.5
        axis.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        if len(epochs) == 1:  # matplotlib would span a few hundredths around the one epoch
            axis.set_xlim(epochs[0] - 0.5, epochs[0] + 0.5)
        axis.grid(True, alpha=0.3)
    if "val_accuracy" in history[0]:  # without held-out faces there is nothing to label (and matplotlib warns)
        score_axis.legend()
    figure.tight_layout()
    write_atomically(path, lambda temporary: figure.savefig(temporary, format="png", dpi=80))
    pyplot.close(figure)
