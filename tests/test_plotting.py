"""Figures (helpers.plots.cam): overlays line up with the photo, carry a colour bar and a title,
and leave matplotlib's global settings alone."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.patches import Rectangle

from helpers import cam
from helpers.plots import cam as plotting


@pytest.fixture()
def result():
    """A hand-made CAM result: 2 images, 2 classes, 4x4 maps, 224x224 input."""
    low_res = np.zeros((2, 2, 4, 4), dtype=np.float32)
    low_res[0, 0, 0, 0] = 5.0  # image 0, class 0: evidence in the top-left corner
    low_res[0, 1, 3, 3] = 5.0  # image 0, class 1: bottom-right
    low_res[1, 0] = 2.0  # image 1, class 0: a constant map
    low_res[1, 1, 1:3, 1:3] = -1.0  # image 1, class 1: no positive evidence
    logits = np.zeros((2, 3), dtype=np.float32)
    logits[:, 0] = 2.0
    return cam.CAMResult(
        low_res=low_res, class_ids=np.array([[0, 1], [0, 2]]), logits=logits,
        input_size=(224, 224), class_names=("cat", "dog", "car"), bias=np.zeros((2, 2)),
    )


@pytest.fixture()
def photos():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (300, 400, 3), dtype=np.uint8),
            rng.integers(0, 255, (120, 120, 3), dtype=np.uint8)]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_overlay_lines_up_with_the_photo(result, photos):
    before = dict(matplotlib.rcParams)
    ax = plotting.plot_cam(result, photos, 0, 0)
    assert dict(matplotlib.rcParams) == before  # no global style change
    photo, heat = ax.get_images()
    assert heat.get_extent() == photo.get_extent() == [0, 400, 300, 0]  # stretched over the photo
    assert heat.get_array().shape == (224, 224)
    assert ax.get_title() == result.label(0, 0) and "cat (0), p = " in ax.get_title()
    assert len(ax.figure.axes) == 2  # the photo's axes and the colour bar
    peak_row, peak_col = np.unravel_index(np.argmax(heat.get_array()), (224, 224))
    assert peak_row < 56 and peak_col < 56  # evidence in the top-left stays top-left


def test_box_threshold_draws_the_box(result, photos):
    ax = plotting.plot_cam(result, photos, 0, 1, box_threshold=0.5)
    boxes = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert len(boxes) == 1
    x, y = boxes[0].get_xy()
    assert x > 200 and y > 150  # bottom-right quarter of the 400x300 photo
    assert x + boxes[0].get_width() <= 400 and y + boxes[0].get_height() <= 300


def test_degenerate_maps_draw_without_nan(result, photos):
    constant = plotting.plot_cam(result, photos, 1, 0, box_threshold=0.2)
    low, high = constant.get_images()[1].get_clim()
    assert np.isfinite([low, high]).all() and low < high
    (box,) = constant.patches  # a constant positive map: every pixel is >= 0.2 max
    assert (box.get_x(), box.get_y(), box.get_width(), box.get_height()) == (0, 0, 120, 120)
    negative = plotting.plot_cam(result, photos, 1, 1, box_threshold=0.2)
    assert not negative.patches  # no positive evidence: no box
    with pytest.raises(ValueError, match="NaN"):
        plotting.show_cam(photos[0], np.full((4, 4), np.nan))
    with pytest.raises(ValueError, match=r"a 2-D map \(H, W\)"):
        plotting.show_cam(photos[0], np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match=r"k \(the result has 2 classes per image\) must be an "
                                         r"integer in 0\.\.1, got int 2"):
        plotting.plot_cam(result, photos, 0, 2)


def test_grids(result, photos):
    figure = plotting.plot_cam_classes(result, photos, image_index=0, ncols=3)
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    assert titles[0] == "photo" and titles[1].startswith("cat") and titles[2].startswith("dog")
    figure = plotting.plot_cam_images(result, photos, k=1, names=["first", "second"])
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    assert titles == ["first\n" + result.label(0, 1), "second\n" + result.label(1, 1)]
    with pytest.raises(ValueError, match="names must name each of the 2 images, got 1 names"):
        plotting.plot_cam_images(result, photos, names=["one"])


def test_draws_on_given_axes(result, photos):
    figure, axes = plt.subplots(1, 2)
    returned = plotting.plot_cam(result, photos, 1, 0, ax=axes[1], colorbar=False)
    assert returned is axes[1] and len(figure.axes) == 2


def test_display_image_scales():
    assert plotting.display_image(np.full((2, 2, 3), 255.0)).max() == 1.0
    assert plotting.display_image(np.full((2, 2, 3), 0.5)).max() == 0.5
    normalised = plotting.display_image(np.linspace(-1, 1, 12).reshape(2, 2, 3))
    assert normalised.min() == 0.0 and normalised.max() == 1.0
    with pytest.raises(ValueError, match="shape"):
        plotting.display_image(np.zeros((2, 2, 5)))


def test_signed_maps_mark_zero_on_the_colour_bar():
    photo = np.zeros((20, 30, 3), np.uint8)
    signed = np.linspace(-2.0, 5.0, 49, dtype=np.float32).reshape(7, 7)
    ax = plotting.show_cam(photo, signed)
    bar_axes = ax.figure.axes[-1]
    lines = [line for line in bar_axes.lines if np.allclose(line.get_ydata(), 0.0)]
    assert lines, "no line at zero on the colour bar of a signed map"
    assert 0.0 in [float(t) for t in bar_axes.get_yticks()]
    positive = plotting.show_cam(photo, signed + 3.0)  # all positive: nothing to mark
    assert not positive.figure.axes[-1].lines
    plt.close("all")


def test_plot_arguments_of_the_wrong_kind_are_named(result, photos):
    """Index types, a result given other photos, names given as one string, sizes, boxes:
    before, bare numpy/matplotlib errors, or a result of 2 drawn over the first 2 of 3 photos."""
    import matplotlib.pyplot as plt

    for bad, message in ((1.5, "image_index must be an integer"), (True, "image_index"),
                         ("1", "image_index")):
        with pytest.raises(ValueError, match=message):
            plotting.plot_cam(result, photos, bad)
    with pytest.raises(ValueError, match=r"images hold 3 photos, the result maps 2"):
        plotting.plot_cam_images(result, [*photos, photos[0]])
    with pytest.raises(TypeError, match="result must be a CAMResult"):
        plotting.plot_cam(photos, result)
    with pytest.raises(TypeError, match="names must be a list of strings"):
        plotting.plot_cam_images(result, photos, names="ab")
    for size in (-1, 0, 1e4):
        with pytest.raises(ValueError, match=r"size \(inches per panel\) must be a finite number"):
            plotting.plot_cam_images(result, photos, size=size)
    fig, ax = plt.subplots()
    for box, message in (((1, 2, 3), "one"), ((np.nan, 2, 3, 4), "NaN"), (np.zeros((2, 4)), "one"),
                         ("0,0,5,5", "one"), ((10, 10, 2, 2), "x1 < x0")):
        with pytest.raises(ValueError, match=message):
            plotting.draw_box(ax, box)
    with pytest.raises(TypeError, match="ax must be a matplotlib Axes"):
        plotting.draw_box((0, 0, 5, 5), ax)
    assert plotting.draw_box(ax, (0, 0, 5, 5)) is not None
    plt.close(fig)


def test_maps_are_drawn_diverging_when_signed_and_perceptually_uniform_otherwise():
    """No jet: a signed map (CAM, Grad-CAM in logit units) gets a diverging map with zero white
    and a symmetric scale; a non-negative one a perceptually uniform map; a cmap given wins."""
    import inspect

    import matplotlib.pyplot as plt

    from helpers.plots import cam as plots_cam
    from helpers.plots import localization as plots_localization

    photo = np.zeros((8, 8, 3), np.uint8)
    signed = np.linspace(-1.0, 3.0, 64, dtype=np.float32).reshape(8, 8)
    for cam_map, name, limits in ((signed, "RdBu_r", (-3.0, 3.0)),
                                  (np.abs(signed), "inferno", (0.0, 3.0))):
        ax = plotting.show_cam(photo, cam_map)
        heat = ax.get_images()[-1]
        assert heat.get_cmap().name == name
        assert heat.get_clim() == pytest.approx(limits, abs=0.02)
        plt.close(ax.figure)
    ax = plotting.show_cam(photo, signed, cmap="viridis")
    assert ax.get_images()[-1].get_cmap().name == "viridis"
    plt.close(ax.figure)
    for function in (plots_cam.show_cam, plots_cam.plot_cam,
                     plots_localization.plot_localization_gallery):
        default = inspect.signature(function).parameters["cmap"].default
        assert default in (None, "inferno"), (function.__name__, default)


def test_plot_cam_images_marks_the_misclassified_panels_in_red():
    """A map of a wrong class is the evidence for that class: with labels, its panel says so
    (notebook 05's first composite was a motorcycle titled "cat (0), p = 0.47")."""
    import keras

    inputs = keras.Input((8, 8, 3))
    features = keras.layers.Conv2D(4, 3, padding="same", name="features")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(features)))
    images = np.random.default_rng(0).uniform(0, 1, (4, 8, 8, 3)).astype(np.float32)
    result = cam.class_activation_maps(model, images)
    predicted = result.class_ids[:, 0]
    labels = predicted.copy()
    labels[1] = (predicted[1] + 1) % 3
    figure = plotting.plot_cam_images(result, images, labels=labels)
    titles = [ax.get_title() for ax in figure.axes if ax.get_title()]
    marked = [ax for ax in figure.axes if "MISCLASSIFIED" in ax.get_title()]
    assert len(marked) == 1 and f"true: {result.class_names[labels[1]]}" in marked[0].get_title()
    assert marked[0].title.get_color() == "red" and len(titles) == 4
    plt.close(figure)
    for bad in ([0, 1], [0.0, 1.0, 2.0, 0.0], [0, 1, 2, 3]):
        with pytest.raises((TypeError, ValueError), match="labels"):
            plotting.plot_cam_images(result, images, labels=bad)


def test_a_non_negative_map_is_coloured_from_zero_not_from_its_minimum():
    """The darkest colour of a sequential map means zero: a map in [0.3, 1] must not draw 0.3 as
    black (review of issue 25); a signed map stays symmetric about zero."""
    from helpers.plots.cam import DIVERGING_CMAP, SEQUENTIAL_CMAP, map_colors

    assert map_colors(np.linspace(0.3, 1.0, 16).reshape(4, 4)) == (SEQUENTIAL_CMAP, 0.0, 1.0)
    assert map_colors(-np.linspace(0.3, 1.0, 16).reshape(4, 4)) == (SEQUENTIAL_CMAP, -1.0, 0.0)
    assert map_colors(np.linspace(-0.5, 1.0, 16).reshape(4, 4)) == (DIVERGING_CMAP, -1.0, 1.0)
