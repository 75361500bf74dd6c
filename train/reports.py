"""What a run leaves for people: history.csv, curves.png, confusion_matrix.png, report.json and report.txt."""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from edgevision import atomic
from edgevision.edge_runtime.metrics import classification_report, format_report

log = logging.getLogger(__name__)


def write_history_csv(path: Path, history: List[Dict[str, float]]) -> None:
    if not history:
        return
    keys = list(dict.fromkeys(k for row in history for k in row))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys)
    writer.writeheader()
    writer.writerows(history)
    atomic.write_text(path, buf.getvalue())


def write_classification_reports(run_dir: Path, y_true, probs, classes: Sequence[str], extra: Optional[dict] = None) -> dict:
    from edgevision.train import run_dir as rd

    report = classification_report(y_true, np.argmax(probs, axis=1), classes)
    if extra:
        report.update(extra)
    atomic.write_json(run_dir / rd.REPORT_JSON, report)
    atomic.write_text(run_dir / rd.REPORT_TXT, format_report(report))
    plot_confusion_matrix(run_dir / rd.CONFUSION, np.asarray(report["confusion_matrix"]), classes)
    return report


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        return plt
    except ImportError:
        log.warning("matplotlib is not installed: skipping the PNG plots (the JSON and text reports are complete)")
        return None


def plot_confusion_matrix(path: Path, cm: np.ndarray, classes: Sequence[str]) -> Optional[Path]:
    plt = _pyplot()
    if plt is None:
        return None
    n = len(classes)
    size = max(4.0, 0.45 * n + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), classes, rotation=45, ha="right")
    ax.set_yticks(range(n), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix (counts; colour = row fraction)")
    if n <= 20:
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.5 else "black")
    fig.tight_layout()
    return atomic.write_figure(path, fig, dpi=110)


def plot_curves(path: Path, history: List[Dict[str, float]]) -> Optional[Path]:
    """Loss and accuracy per epoch, train and validation, with a marker on every epoch (a one-epoch run is
    one visible point, not a blank plot), whole-number epoch ticks, the phase changes of a two-phase recipe
    and the epoch of the best validation accuracy."""
    plt = _pyplot()
    if plt is None or not history:
        return None
    return atomic.write_figure(path, curves_figure(plt, history), dpi=110)


def curves_figure(plt, history: List[Dict[str, float]]):
    """The matplotlib figure of `plot_curves` (the caller closes it)."""
    from matplotlib.ticker import MaxNLocator

    epochs = [row.get("epoch", i + 1) for i, row in enumerate(history)]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("loss", "accuracy")):
        for prefix, style, marker in (("", "-", "o"), ("val_", "--", "s")):
            values = [row.get(prefix + metric) for row in history]
            if any(v is not None for v in values):
                ax.plot(epochs, [np.nan if v is None else v for v in values], style, marker=marker, markersize=4,
                        label=("validation" if prefix else "train"))
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # no epoch 1.5
        if len(set(epochs)) == 1:  # one point: one tick, not 0.96 ... 1.04
            ax.set_xticks([epochs[0]])
            ax.set_xlim(epochs[0] - 0.5, epochs[0] + 0.5)
    _mark_best(axes[1], epochs, [row.get("val_accuracy") for row in history])
    _mark_phases(axes, epochs, [row.get("phase") for row in history])
    for ax in axes:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _mark_best(ax, epochs: Sequence[int], val_accuracy: Sequence[Optional[float]]) -> None:
    """A star on the best validation accuracy: the epoch a best checkpoint comes from."""
    scored = [(v, -i) for i, v in enumerate(val_accuracy) if v is not None]
    if not scored:
        return
    value, neg_i = max(scored)  # the first epoch reaching the best score, as checkpointing keeps it
    ax.plot([epochs[-neg_i]], [value], "*", color="gold", markeredgecolor="black", markersize=13, zorder=3,
            label=f"best validation (epoch {epochs[-neg_i]}: {value:.3f})")


def _mark_phases(axes, epochs: Sequence[int], phases: Sequence[Optional[str]]) -> None:
    """A dotted line where the recipe's phase changes (head -> fine_tune), named in the legend (a name
    written on the plot would collide with the legend)."""
    for i in range(1, len(phases)):
        if phases[i] != phases[i - 1]:
            for ax in axes:
                ax.axvline(epochs[i] - 0.5, color="grey", lw=0.8, ls=":",
                           label=f"{phases[i]} from epoch {epochs[i]}")
