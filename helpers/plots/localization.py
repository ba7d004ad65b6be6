"""Figures for localisation: accuracy against the box threshold, and a gallery of boxes.

Introduced in notebook 04. Like :mod:`helpers.plots.cam`, every function draws with matplotlib's
object API, returns what it drew on, and never changes global settings.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from helpers.checks import indices as checked_indices
from helpers.checks import mapping
from helpers.evaluate.localization import LocalizationReport, MaxBoxAccuracy
from helpers.plots.cam import display_image, draw_box

__all__ = ["PREDICTED_BOX_COLOR", "TRUE_BOX_COLOR", "plot_threshold_sweep",
           "plot_localization_gallery"]

#: Colour of boxes predicted from a map.
PREDICTED_BOX_COLOR = "white"
#: Colour of ground-truth boxes.
TRUE_BOX_COLOR = "lime"


def plot_threshold_sweep(
    sweeps: Mapping[str, MaxBoxAccuracy],
    *,
    threshold: float | None = 0.2,
    ax: Axes | None = None,
    colors: Mapping[str, str] | None = None,
    title: str | None = None,
) -> Axes:
    """Localisation accuracy against the box threshold, one line per model.

    Introduced in notebook 04. Each model's best point (its MaxBoxAcc) is marked with a star and
    labelled; a dashed vertical line marks ``threshold`` (the paper's 0.2) and a dot each model's
    accuracy there, when ``threshold`` is one of the swept values.

    Parameters
    ----------
    sweeps
        ``{name: MaxBoxAccuracy}`` from :func:`helpers.max_box_accuracy` (or
        ``LocalizationReport.max_box``).
    threshold
        The fixed threshold to mark; None for none.
    ax
        Axes to draw on; a new figure if None.
    colors
        Optional ``{name: colour}``.
    title
        Axes title.

    Returns
    -------
    matplotlib.axes.Axes
    """
    sweeps = mapping("sweeps", sweeps, MaxBoxAccuracy,
                     "a MaxBoxAccuracy (helpers.max_box_accuracy, or a report's .max_box)")
    for name, sweep in sweeps.items():
        if np.ndim(sweep.accuracies) != 1:
            raise ValueError(f"sweep {name!r} has {len(sweep.iou_thresholds)} IoU thresholds; "
                             "draw one per line: max_box_accuracy(..., iou_threshold=0.5)")
    if ax is None:
        import matplotlib.pyplot as plt  # imported here: importing helpers stays light

        _, ax = plt.subplots(figsize=(6.5, 3.6), layout="constrained")
    if threshold is not None:
        ax.axvline(threshold, color="0.5", linestyle="--", linewidth=1,
                   label=f"τ = {threshold:g} (the paper's)")
    for index, (name, sweep) in enumerate(sweeps.items()):
        color = (colors or {}).get(name, f"C{index}")
        ax.plot(sweep.thresholds, sweep.accuracies, "-", color=color, label=name)
        ax.plot([sweep.best_threshold], [sweep.best], "*", color=color, markersize=13,
                markeredgecolor="black", markeredgewidth=0.6)
        name_at = "MaxBoxAcc" + (f"@{sweep.iou_thresholds[0]:g}" if len(sweep.iou_thresholds) == 1 else "V2")
        ax.annotate(f"{name_at} {sweep.best:.2f}\nat τ = {sweep.best_threshold:g}",
                    (sweep.best_threshold, sweep.best), textcoords="offset points",
                    xytext=(10, 2), fontsize=8, color=color)
        if threshold is not None:
            at = np.flatnonzero(np.isclose(sweep.thresholds, threshold))
            if at.size:
                ax.plot([threshold], [sweep.accuracies[at[0]]], "o", color=color, markersize=5)
    protocols = {sweep.protocol for sweep in sweeps.values()}
    ious = {sweep.iou_thresholds[0] for sweep in sweeps.values()}
    ax.set_xlabel("box threshold τ (fraction of the map's maximum)" if protocols == {"zhou"} else
                  "box threshold τ (fraction of the min-max normalised map)" if protocols == {"choe"}
                  else "box threshold τ (Zhou: of the maximum; Choe: of the min-max map)")
    ax.set_ylabel(f"share of boxes with IoU ≥ {ious.pop():g}" if len(ious) == 1 else
                  "share of boxes right")
    ax.set_ylim(0, 1.02)
    ax.set_xlim(0, 1)
    ax.legend(fontsize=8, loc="upper right")
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def _gallery_title(report: LocalizationReport, index: int) -> str:
    hit = "hit" if report.hits[index] else "miss"
    title = f"IoU {report.ious[index]:.2f} ({hit})"
    if report.labels is not None and report.predicted is not None:
        title += f"\npred. {report.predicted[index]}, true {report.labels[index]}"
    return title


def plot_localization_gallery(
    images: Any,
    reports: Mapping[str, LocalizationReport],
    indices: Sequence[int],
    *,
    size: float = 1.8,
    alpha: float = 0.45,
    cmap: str = "inferno",
    title: str | None = None,
) -> Figure:
    """Images with their class map, predicted box and true box: one row per model.

    Introduced in notebook 04. Each panel shows the image, the positive part of the map scored by
    the report (scaled to its maximum, the scale the box threshold uses), the predicted box in
    :data:`PREDICTED_BOX_COLOR` and the true box in :data:`TRUE_BOX_COLOR` (dashed); its title
    gives the IoU and, when known, the predicted and true classes.

    Parameters
    ----------
    images
        ``(N, H, W)``, ``(N, H, W, 1)`` or ``(N, H, W, 3)``: the images the reports scored.
    reports
        ``{row name: LocalizationReport}`` for the same images.
    indices
        Which images, one column each.
    size
        Panel height in inches.
    alpha
        Opacity of the map.
    cmap
        Colour map of the map (the positive part, 0 to its maximum: perceptually uniform).
    title
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    array = np.asarray(images)
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (3, 4):
        raise ValueError(f"images must be (N, H, W[, C]), got shape {np.shape(images)}")
    reports = mapping("reports", reports, LocalizationReport,
                      "a LocalizationReport from helpers.localization_report")
    columns = checked_indices("indices", indices, array.shape[0])
    for name, report in reports.items():
        if report.cams.shape[0] != array.shape[0] or report.cams.shape[1:] != array.shape[1:3]:
            raise ValueError(
                f"report {name!r} has maps {report.cams.shape}, images are {array.shape}"
            )

    figure, axes = plt.subplots(
        len(reports), len(columns), figsize=(size * len(columns), size * 1.25 * len(reports)),
        squeeze=False, layout="constrained",
    )
    for row, (name, report) in zip(axes, reports.items()):
        for ax, index in zip(row, columns):
            image = display_image(array[index])
            ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1)
            positive = np.maximum(report.cams[index], 0.0)
            peak = float(positive.max())
            ax.imshow(positive, cmap=cmap, alpha=alpha, vmin=0, vmax=peak if peak > 0 else 1,
                      interpolation="nearest")
            draw_box(ax, report.true_boxes[index], color=TRUE_BOX_COLOR, linestyle="--")
            draw_box(ax, report.boxes[index], color=PREDICTED_BOX_COLOR)
            ax.set_title(_gallery_title(report, index), fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(name, fontsize=9)
    handles = [
        Line2D([], [], color=PREDICTED_BOX_COLOR, linewidth=1.5,
               label="box from the map", markeredgecolor="black"),
        Line2D([], [], color=TRUE_BOX_COLOR, linestyle="--", linewidth=1.5, label="true box"),
    ]
    legend = figure.legend(handles=handles, loc="outside lower center", ncols=2, fontsize=8,
                           facecolor="0.35", labelcolor="white")
    legend.get_frame().set_edgecolor("0.35")
    if title:
        figure.suptitle(title, fontsize=10)
    return figure
