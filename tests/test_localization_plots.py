"""Localisation figures (helpers.localization_plots): boxes enclose their pixels, sweeps mark the
best threshold, the gallery draws one row per model, and global settings stay untouched."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.patches import Rectangle

from helpers.evaluate.boxes import NO_BOX
from helpers.evaluate.localization import localization_report, max_box_accuracy
from helpers.plots.localization import (
    PREDICTED_BOX_COLOR,
    TRUE_BOX_COLOR,
    draw_box,
    plot_localization_gallery,
    plot_threshold_sweep,
)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture()
def toy():
    """Three 12x12 images and maps: a hit, a miss, and a map without positive values."""
    images = np.zeros((3, 12, 12, 1), dtype=np.float32)
    cams = np.zeros((3, 12, 12))
    cams[0, 2:6, 3:7] = 1.0
    cams[1, 8:11, 8:11] = 1.0
    cams[2] = -1.0
    truth = np.array([[3, 2, 6, 5]] * 3)
    images[:, 2:6, 3:7] = 1.0
    return images, localization_report(cams, truth, labels=[1, 2, 3], predicted=[1, 0, 3])


def test_draw_box_encloses_inclusive_pixels():
    _, ax = plt.subplots()
    patch = draw_box(ax, (2, 3, 4, 7), color="red")
    assert patch.get_xy() == (1.5, 2.5) and (patch.get_width(), patch.get_height()) == (3, 5)
    assert draw_box(ax, None) is None and draw_box(ax, NO_BOX) is None
    assert len(ax.patches) == 1


def test_threshold_sweep_marks_best_and_fixed_threshold():
    cams = np.zeros((2, 20, 20))
    cams[:, 2:18, 2:18] = 0.3
    cams[:, 8:12, 8:12] = 1.0
    truth = np.array([[8, 8, 11, 11]] * 2)
    sweeps = {"halo": max_box_accuracy(cams, truth, protocol="zhou"),
              "flat": max_box_accuracy(cams * 0 + 1, truth, protocol="zhou")}
    before = dict(matplotlib.rcParams)
    ax = plot_threshold_sweep(sweeps, colors={"halo": "tab:blue"})
    assert dict(matplotlib.rcParams) == before
    stars = [line for line in ax.get_lines() if line.get_marker() == "*"]
    assert len(stars) == 2
    assert (stars[0].get_xdata()[0], stars[0].get_ydata()[0]) == (
        sweeps["halo"].best_threshold, sweeps["halo"].best)
    assert stars[0].get_color() == "tab:blue"
    dots = [line for line in ax.get_lines() if line.get_marker() == "o"]
    assert [d.get_xdata()[0] for d in dots] == [0.2, 0.2]
    assert dots[0].get_ydata()[0] == 0.0  # the halo's box at 0.2 is too big
    assert any("MaxBoxAcc@0.5 1.00" in text.get_text() for text in ax.texts)  # named with its IoU
    assert ax.get_xlabel() == "box threshold τ (fraction of the map's maximum)"
    with pytest.raises(ValueError, match="empty"):
        plot_threshold_sweep({})
    choe = max_box_accuracy(cams, truth)
    ax = plot_threshold_sweep({"halo": choe})
    assert "min-max" in ax.get_xlabel() and ax.get_ylabel() == "share of boxes with IoU ≥ 0.5"
    with pytest.raises(ValueError, match="3 IoU thresholds; draw one per line"):
        plot_threshold_sweep({"v2": max_box_accuracy(cams, truth, (0.3, 0.5, 0.7))})


def test_gallery_draws_maps_and_both_boxes(toy):
    images, report = toy
    figure = plot_localization_gallery(images, {"A": report, "B": report}, [0, 1, 2],
                                       title="toy")
    axes = [ax for ax in figure.axes]
    assert len(axes) == 6
    first = axes[0]
    assert len(first.get_images()) == 2  # the image and its map
    rectangles = [p for p in first.patches if isinstance(p, Rectangle)]
    colours = sorted(matplotlib.colors.to_hex(r.get_edgecolor()) for r in rectangles)
    assert colours == sorted(matplotlib.colors.to_hex(c) for c in (PREDICTED_BOX_COLOR,
                                                                  TRUE_BOX_COLOR))
    assert first.get_title().startswith("IoU 1.00 (hit)") and "pred. 1, true 1" in first.get_title()
    assert axes[1].get_title().startswith("IoU 0.00 (miss)")
    assert len(axes[2].patches) == 1  # no positive value: only the true box
    assert axes[0].get_ylabel() == "A" and axes[3].get_ylabel() == "B"
    assert figure._suptitle.get_text() == "toy"


def test_gallery_rejects_mismatches(toy):
    images, report = toy
    with pytest.raises(ValueError, match="has maps"):
        plot_localization_gallery(images[:2], {"A": report}, [0])
    with pytest.raises(ValueError, match=r"indices\[0\] must be an integer in 0\.\.2, got int 3"):
        plot_localization_gallery(images, {"A": report}, [3])
    for bad in ([], 2, [1.5], "01"):  # one int or a float was taken, truncated, or crashed
        with pytest.raises(ValueError, match=r"indices"):
            plot_localization_gallery(images, {"A": report}, bad)
    with pytest.raises(ValueError, match="reports is empty"):
        plot_localization_gallery(images, {}, [0])
    with pytest.raises(TypeError, match=r"reports must be a dict of \{name: a LocalizationReport"):
        plot_localization_gallery(images, (report,), [0])
    with pytest.raises(TypeError, match=r"reports\['A'\] must be a LocalizationReport .*got tuple"):
        plot_localization_gallery(images, {"A": (1, 2)}, [0])


def test_threshold_sweep_rejects_what_is_not_a_dict_of_sweeps(toy):
    _, report = toy
    with pytest.raises(TypeError, match=r"sweeps must be a dict of \{name: a MaxBoxAccuracy"):
        plot_threshold_sweep((report.max_box,))
    with pytest.raises(TypeError, match=r"sweeps\['A'\] must be a MaxBoxAccuracy"):
        plot_threshold_sweep({"A": report})
    with pytest.raises(ValueError, match="sweeps is empty"):
        plot_threshold_sweep({})
