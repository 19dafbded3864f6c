"""The card's plots, drawn from the card's own fields (matplotlib, Agg backend) and written as PNG files
with `fileio`, so the report may live on cloud storage:

    training_curves.png     training loss, in-training eval metric and learning rate over the
                            steps (training.json's evals), the step kept marked
    confusion_matrix.png    single-label notes and pairs: counts [gold class, predicted class]
    per_class_scores.png    multi-label notes: precision, recall and F1 per label; entities:
                            precision and recall (and F1) per entity type
    reliability.png         the reliability diagram (10 bins) with the expected calibration error
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
from tfx.dsl.io import fileio

from components.model_card.figures import NOTE_TASK, PAIR_TASK, TOKEN_TASK

CURVES = "training_curves"
CONFUSION = "confusion_matrix"
PER_CLASS = "per_class_scores"
RELIABILITY = "reliability"


def _save(figure: plt.Figure, path: str) -> None:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    with fileio.open(path, "wb") as f:
        f.write(buffer.getvalue())


def training_curves(tuning: Mapping[str, Any]) -> plt.Figure | None:
    """The training loss, the eval metric and the learning rate at each evaluation's step, the kept
    step as a dashed line; None without evaluations."""
    evals = tuning.get("evals") or []
    if not evals:
        return None
    metric = tuning.get("metric", "metric")
    figure, panels = plt.subplots(1, 3, figsize=(13, 3.6))
    for axes, (key, title, colour) in zip(
        panels,
        (("loss", "Training loss", "tab:blue"), ("metric", f"Eval {metric}", "tab:green"),
         ("learning_rate", "Learning rate", "tab:grey")),
        strict=True,
    ):  # fmt: skip
        points = [(e["step"], e[key]) for e in evals if e.get(key) is not None]
        if points:
            axes.plot(*zip(*points, strict=True), marker="o", markersize=3, color=colour)
        axes.set(title=title, xlabel="step")
        axes.grid(alpha=0.3)
        best = tuning.get("best_step")
        if best is not None:
            axes.axvline(best, linestyle="--", color="grey", label=f"kept: step {best}")
    if tuning.get("best_step") is not None:
        panels[1].legend(loc="best", fontsize=8)
    stopped = " (stopped early)" if tuning.get("stopped_early") else ""
    trained = tuning.get("steps_trained", evals[-1]["step"])
    figure.suptitle(f"{trained} of {tuning.get('steps_planned', '?')} steps{stopped}")
    return figure


def confusion_matrix(matrix: list[list[int]], names: list[str]) -> plt.Figure:
    counts = np.asarray(matrix, dtype=float)
    size = len(counts)
    side = min(4 + 0.3 * size, 18)
    figure, axes = plt.subplots(figsize=(side, side))
    image = axes.imshow(counts, cmap="Blues")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    ticks = np.arange(size)
    small = 6 if size > 20 else 8
    axes.set_xticks(ticks, [n[:24] for n in names[:size]], rotation=90, fontsize=small)
    axes.set_yticks(ticks, [n[:24] for n in names[:size]], fontsize=small)
    axes.set(xlabel="predicted class", ylabel="gold class", title="Confusion matrix (eval split)")
    if size <= 15:
        for (row, column), value in np.ndenumerate(counts):
            if value:
                light = value > counts.max() / 2
                axes.text(column, row, int(value), ha="center", va="center", fontsize=8,
                          color="white" if light else "black")  # fmt: skip
    return figure


def per_class_scores(rows: list[Mapping[str, Any]], word: str, figures: tuple[str, ...]) -> plt.Figure:
    """Horizontal bars of each class's figures, with their bootstrap intervals as error bars."""
    names = [f"{row['name'][:30]} ({row['support']})" for row in rows]
    height = max(3.0, 0.28 * len(rows) * len(figures) / 2 + 1.5)
    figure, axes = plt.subplots(figsize=(8, height))
    positions = np.arange(len(rows))
    width = 0.8 / len(figures)
    for k, name in enumerate(figures):
        values = np.array([row[name]["value"] for row in rows], dtype=float)
        low = np.array([row[name]["low"] for row in rows], dtype=float)
        high = np.array([row[name]["high"] for row in rows], dtype=float)
        errors = np.nan_to_num(np.vstack([values - low, high - values]).clip(min=0))
        axes.barh(positions + k * width, values, height=width, xerr=errors, label=name,
                  error_kw={"elinewidth": 0.6, "capsize": 1.5})  # fmt: skip
    axes.set_yticks(positions + width * (len(figures) - 1) / 2, names, fontsize=7)
    axes.invert_yaxis()
    axes.set(xlim=(0, 1.05), xlabel="score (95% interval)", title=f"Per {word} (gold count in brackets)")
    axes.legend(loc="lower right", fontsize=8)
    axes.grid(axis="x", alpha=0.3)
    return figure


def reliability(calibration: Mapping[str, Any]) -> plt.Figure:
    """Observed frequency against mean probability per bin, the diagonal for perfect calibration,
    the bins' shares below, the expected calibration error in the title."""
    bins = calibration["bins"]
    figure, (axes, shares) = plt.subplots(
        2, 1, figsize=(5, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    centres = np.array([(b["low"] + b["high"]) / 2 for b in bins])
    observed = np.array([np.nan if b["observed"] is None else b["observed"] for b in bins])
    width = bins[0]["high"] - bins[0]["low"]
    axes.bar(centres, np.nan_to_num(observed), width=width * 0.9, edgecolor="black", label="observed")
    axes.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfectly calibrated")
    confidence = np.array([np.nan if b["confidence"] is None else b["confidence"] for b in bins])
    axes.plot(confidence, observed, marker="o", color="tab:red", linewidth=0, label="mean probability")
    ece = calibration["ece"]
    axes.set(ylim=(0, 1), ylabel="observed frequency", title=f"Reliability: ECE = {ece:.3f}")
    axes.text(0.03, 0.93, f"ECE {ece:.3f}", transform=axes.transAxes, fontsize=11, fontweight="bold")
    axes.legend(loc="lower right", fontsize=8)
    counts = np.array([b["count"] for b in bins])
    shares.bar(centres, counts, width=width * 0.9, color="tab:grey")
    shares.set(xlim=(0, 1), xlabel=calibration.get("of", "probability"), ylabel="predictions")
    return figure


def write_report(card: Mapping[str, Any], folder: str) -> dict[str, str]:
    """Draws every plot the card's fields allow into `folder`; returns {plot name: file name relative to
    the card} for the card's `report` field."""
    fileio.makedirs(folder)
    task, evaluation = card["model"]["task"], card["evaluation"]
    plots: dict[str, plt.Figure | None] = {CURVES: training_curves(card["fine_tuning"])}
    if "per_class" in evaluation:
        rows = evaluation["per_class"]
        if task in (NOTE_TASK, PAIR_TASK):
            plots[CONFUSION] = confusion_matrix(evaluation["confusion_matrix"], [row["name"] for row in rows])
        elif task == TOKEN_TASK:
            plots[PER_CLASS] = per_class_scores(rows, "entity type", ("precision", "recall", "f1"))
        else:
            plots[PER_CLASS] = per_class_scores(rows, "label", ("precision", "recall", "f1"))
        plots[RELIABILITY] = reliability(evaluation["calibration"])
    written = {}
    report_dir = os.path.basename(folder.rstrip("/"))
    for name, figure in plots.items():
        if figure is not None:
            _save(figure, os.path.join(folder, f"{name}.png"))
            written[name] = f"{report_dir}/{name}.png"
    return written
