"""Matplotlib figures: gradient-flow curves and learning curves. Nothing here computes a diagnostic."""

from __future__ import annotations

import dataclasses
import io
import os
import textwrap
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

from seqjax import workdir


@dataclasses.dataclass(frozen=True)
class Curve:
    """One line of a figure. Curves with the same ``group`` share a colour."""

    label: str
    x: np.ndarray
    y: np.ndarray
    group: str
    linestyle: str = "-"


def _draw(ax, curves: Sequence[Curve], colors: dict[str, str]) -> None:
    for curve in curves:
        y = np.asarray(curve.y, dtype=np.float64)
        # Log axes cannot show 0 or inf: leave those points out rather than let matplotlib clip them.
        y = np.where(np.isfinite(y) & (y > 0), y, np.nan)
        ax.plot(curve.x, y, curve.linestyle, color=colors[curve.group], label=curve.label, linewidth=1.6)


def _colors(panels: Sequence[Sequence[Curve]]) -> dict[str, str]:
    groups = list(dict.fromkeys(c.group for curves in panels for c in curves))
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    return {g: cycle[i % len(cycle)] for i, g in enumerate(groups)}


def gradient_flow_figure(
    panels: Sequence[tuple[str, Sequence[Curve]]],
    path: str | os.PathLike,
    *,
    ylabel: str = "||dL/dh_t|| / ||dL/dh_T||",
    learning_curves: Sequence[Curve] = (),
    loss_label: str = "loss (MSE)",
    baseline: float | None = None,
    title: str = "",
) -> None:
    """Saves a PNG: one log-scale panel per snapshot, plus a learning-curve panel if given.

    Args:
      panels: ``(panel title, curves)``; each curve's x is the distance T - t from the loss.
      path: the PNG to write (atomically).
      ylabel: label of the gradient panels' y axis.
      learning_curves: loss against training step, drawn in an extra panel.
      loss_label: the y label of that panel.
      baseline: a horizontal reference line for the learning-curve panel (e.g. the predict-the-mean MSE).
      title: the figure's title.
    """
    extra = 1 if learning_curves else 0
    count = len(panels) + extra
    fig, axes = plt.subplots(1, count, figsize=(5.0 * count, 4.2), squeeze=False)
    colors = _colors([curves for _, curves in panels] + [learning_curves])
    for ax, (panel_title, curves) in zip(axes[0], panels, strict=False):
        _draw(ax, curves, colors)
        ax.set_yscale("log")
        ax.set_title(panel_title)
        ax.set_xlabel("steps back from the loss, T - t")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    if learning_curves:
        ax = axes[0][-1]
        _draw(ax, learning_curves, colors)
        if baseline is not None:
            ax.axhline(baseline, color="gray", linestyle=":", label=f"predict the mean ({baseline:.3g})")
        ax.set_yscale("log")
        ax.set_title("training loss")
        ax.set_xlabel("training step")
        ax.set_ylabel(loss_label)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7, loc="best")
    if title:
        fig.suptitle(textwrap.fill(title, width=60 * count), fontsize=10)
    _save(fig, path)


def _save(fig, path) -> None:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    workdir.write_atomic(path, buffer.getvalue())


def metric_vs_length_figure(
    curves: Sequence[Curve], metric_name: str, baseline: float, path: str | os.PathLike
) -> None:
    """A test metric (lower is better) against sequence length, one curve per cell, with the baseline."""
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    _draw(ax, curves, _colors([curves]))
    ax.axhline(baseline, color="gray", linestyle=":", label=f"trivial baseline ({baseline:.3g})")
    ax.set_yscale("log")
    ax.set_xlabel("sequence length T")
    ax.set_ylabel(metric_name)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def heatmap_figure(panels: Sequence[tuple[str, Sequence[int], np.ndarray]], path: str | os.PathLike) -> None:
    """log10 ||dL/dh_t|| as an image per panel: rows are training steps, columns time steps t."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.8), squeeze=False)
    for ax, (title, steps, values) in zip(axes[0], panels, strict=True):
        image = ax.imshow(values, aspect="auto", origin="lower", cmap="viridis", interpolation="nearest")
        ax.set_yticks(range(len(steps)), [str(s) for s in steps], fontsize=7)
        ax.set_title(title)
        ax.set_xlabel("time step t")
        ax.set_ylabel("training step")
        fig.colorbar(image, ax=ax, label="log10 ||dL/dh_t||")
    _save(fig, path)


@dataclasses.dataclass(frozen=True)
class Spread:
    """A line with a band: ``mean`` over repeats (e.g. seeds) at each x, shaded from ``low`` to ``high``."""

    label: str
    x: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray


def spread_figure(
    lines: Sequence[Spread],
    path: str | os.PathLike,
    *,
    xlabel: str,
    ylabel: str,
    baseline: float | None = None,
    log_y: bool = False,
    xticks: Sequence[str] | None = None,
) -> None:
    """One line per group with its min-max band over repeats; an optional horizontal baseline."""
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, line in enumerate(lines):
        color = cycle[i % len(cycle)]
        ax.plot(line.x, line.mean, "-o", color=color, label=line.label, linewidth=1.6, markersize=4)
        if np.any(line.high > line.low):
            ax.fill_between(line.x, line.low, line.high, color=color, alpha=0.2, linewidth=0)
    if baseline is not None:
        ax.axhline(baseline, color="gray", linestyle=":", label=f"baseline ({baseline:.3g})")
    if log_y:
        ax.set_yscale("log")
    if xticks is not None:
        ax.set_xticks(range(len(xticks)), xticks)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def memory_figure(curves: Sequence[Curve], path: str | os.PathLike) -> None:
    """XLA temporary memory of a training step against sequence length, log-log, one curve per mode."""
    fig, ax = plt.subplots(figsize=(5.8, 4.2))
    _draw(ax, curves, _colors([curves]))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("sequence length T")
    ax.set_ylabel("temporary memory of the step (MiB)")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def epoch_curve_figure(
    curves: Sequence[Curve], metric_name: str, references: dict[str, float], path: str | os.PathLike
) -> None:
    """A validation metric (lower is better) after each epoch, with horizontal reference values."""
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    _draw(ax, curves, _colors([curves]))
    for (label, value), style in zip(references.items(), (":", "--", "-."), strict=False):
        ax.axhline(value, color="gray", linestyle=style, label=f"{label} ({value:.4g})")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())  # 120, not 1.2 x 10^2
    ax.yaxis.set_minor_formatter(matplotlib.ticker.ScalarFormatter())
    ax.set_xlabel("epoch")
    ax.set_ylabel(metric_name)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def scaling_figure(rows: Sequence[dict], title: str, path: str | os.PathLike) -> None:
    """Weak scaling (tokens/s) and strong scaling (step time) against the device count, log2 x axes.

    ``rows``: dicts with ``mode`` (``weak`` or ``strong``), ``devices``, ``tokens_per_s`` and ``step_ms``.
    """
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    panels = (("weak", "tokens_per_s", "tokens/s"), ("strong", "step_ms", "step ms"))
    for ax, (mode, key, label) in zip(axes, panels, strict=True):
        chosen = [r for r in rows if r["mode"] == mode]
        ax.plot([r["devices"] for r in chosen], [r[key] for r in chosen], "-o")
        ax.set_xscale("log", base=2)
        ax.set(xlabel="devices", ylabel=label, title=f"{mode} scaling")
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    _save(fig, path)


def captions_figure(
    images: np.ndarray, predicted: Sequence[str], truth: Sequence[str], path: str | os.PathLike
) -> None:
    """``images [n, H, W]`` in a grid, each titled with its decoded caption (green: exact; red: not, with the truth)."""
    columns = min(4, len(images))
    rows = -(-len(images) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.0 * columns, 1.6 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, guess, true in zip(axes.flat, images, predicted, truth, strict=False):
        ax.imshow(image, cmap="gray_r", vmin=0, vmax=1, interpolation="nearest")
        right = guess == true
        ax.set_title(guess if right else f"{guess}\n(truth: {true})", fontsize=8, color="green" if right else "red")
    _save(fig, path)


def attention_figure(
    source: Sequence[str], target: Sequence[str], alpha: np.ndarray, path: str | os.PathLike, title: str = ""
) -> None:
    """A heat map of attention weights ``alpha [len(target), len(source)]``: source tokens on x, outputs on y."""
    fig, ax = plt.subplots(figsize=(0.5 * len(source) + 2.2, 0.4 * len(target) + 1.6))
    image = ax.imshow(alpha, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks(range(len(source)), source, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(target)), target, fontsize=8)
    ax.set_xlabel("source")
    ax.set_ylabel("output")
    if title:
        ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, label="attention weight")
    _save(fig, path)


def grid_heatmap_figure(
    scores: np.ndarray,
    chance: np.ndarray,
    rows: Sequence[str],
    columns: Sequence[str],
    path: str | os.PathLike,
    *,
    title: str,
) -> None:
    """A rows x columns matrix of accuracies (e.g. cells x tasks), each annotated in percent and coloured by how
    far above its column's chance level it is, ``(score - chance) / (1 - chance)``: red at chance, green at 1,
    whatever the chance. NaN shows blank."""
    scores = np.asarray(scores, dtype=np.float64)
    above = (scores - np.asarray(chance)[None, :]) / (1.0 - np.asarray(chance)[None, :])
    fig, ax = plt.subplots(figsize=(1.1 * len(columns) + 2.6, 0.45 * len(rows) + 1.8))
    image = ax.imshow(np.ma.masked_invalid(above), cmap="RdYlGn", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(columns)), columns, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    for (i, j), value in np.ndenumerate(scores):
        if np.isfinite(value):
            ax.text(j, i, f"{100 * value:.0f}", ha="center", va="center", fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, label="above chance: (score - chance) / (1 - chance)")
    _save(fig, path)


def panels_figure(
    panels: Sequence[tuple[str, Sequence[Spread]]],
    path: str | os.PathLike,
    *,
    xlabel: str,
    ylabel: str,
    chance: Sequence[float | None] | None = None,
) -> None:
    """One panel per title, each with its lines and their min-max bands over a log2 x axis (ticks at the lines'
    x, or at powers of 2 when they are many) and a 0-1 y axis (accuracies); a dotted chance level per panel."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    labels = list(dict.fromkeys(line.label for _, lines in panels for line in lines))
    colors = {label: cycle[i % len(cycle)] for i, label in enumerate(labels)}
    for k, (ax, (title, lines)) in enumerate(zip(axes[0], panels, strict=True)):
        for line in lines:
            color = colors[line.label]
            marker = "-o" if len(line.x) <= 16 else "-"
            ax.plot(line.x, line.mean, marker, color=color, label=line.label, linewidth=1.4, markersize=3)
            if np.any(line.high > line.low):
                ax.fill_between(line.x, line.low, line.high, color=color, alpha=0.15, linewidth=0)
        if chance is not None and chance[k] is not None:
            ax.axhline(chance[k], color="gray", linestyle=":", label="chance")
        ax.set_xscale("log", base=2)
        ticks = sorted({float(x) for line in lines for x in line.x})
        if len(ticks) > 12:
            ticks = [2.0**k for k in range(int(np.ceil(np.log2(ticks[0]))), int(np.log2(ticks[-1])) + 1)]
        ax.set_xticks(ticks, [f"{x:g}" for x in ticks])
        ax.minorticks_off()
        ax.set_ylim(0.0, 1.02)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, which="major", alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="best")
    _save(fig, path)
