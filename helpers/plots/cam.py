"""Figures for class activation maps: a heat map over its photo, grids of classes and of images.

Introduced in notebook 03. Every function draws with matplotlib's object API, returns the
``Axes`` or ``Figure`` it drew on, takes ``ax=`` where one picture is drawn, and never changes
global settings (``rcParams``, styles).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from helpers.checks import flag, instance, integer, number
from helpers.checks import labels as checked_labels
from helpers.checks import maps as check_maps
from helpers.checks import names as checked_names
from helpers.evaluate.boxes import NO_BOX, as_boxes, cam_to_box, scale_box
from helpers.images import as_images
from helpers.maps import CAMResult

__all__ = [
    "box_bounds", "display_image", "draw_box", "image_at", "mark_zero", "plot_cam", "plot_cam_classes",
    "plot_cam_images", "show_cam",
]

#: Colour bar labels by method.
_MAP_LABELS = {
    "cam": r"$M_c$ (logit units)",
    "grad_cam": r"Grad-CAM $\sum_k \alpha_k^c A_k$",
    "grad_cam_plus_plus": r"Grad-CAM++ $\sum_k w_k^c A_k$",
    "score_cam": r"Score-CAM $\sum_k w_k^c A_k$",
    "score_cam_softmax": r"Score-CAM (softmax over channels) $\sum_k w_k^c A_k$",
    "hires_cam": r"HiResCAM $\sum_k \partial_{A_k} S_c \odot A_k$",
    "layer_cam": r"LayerCAM $\sum_k \mathrm{relu}(\partial_{A_k} S_c) \odot A_k$",
}


def display_image(image: Any) -> np.ndarray:
    """An image ready for ``imshow``: uint8 as is, floats scaled to [0, 1].

    Introduced in notebook 03. Floats in [0, 1] are kept, floats in [0, 255] are divided by 255,
    other ranges (e.g. preprocessed inputs in [-1, 1]) are min-max scaled.

    Parameters
    ----------
    image
        ``(H, W, 3)`` or ``(H, W)``.

    Raises
    ------
    ValueError
        Wrong shape, or NaN/infinite values.
    """
    array = np.asarray(image)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (1, 3, 4)):
        raise ValueError(f"image has shape {array.shape}; expected (H, W, 3) or (H, W)")
    if array.dtype == np.uint8:
        return array
    array = array.astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise ValueError("image contains NaN or infinite values")
    low, high = float(array.min()), float(array.max())
    if low >= 0.0 and high <= 1.0:
        return array
    if low >= 0.0 and high <= 255.0:
        return array / 255.0
    return (array - low) / (high - low) if high > low else np.zeros_like(array)


#: The longest side, in pixels, of the copy of a photo that figures and the explorer draw (about
#: twice a picture's size: sharp on a high-density screen; a phone photo draws as fast as a sample).
DISPLAY_SIDE = 1024


def display_copy(image: Any, longest_side: int) -> tuple[np.ndarray, tuple[int, int]]:
    """``(copy for imshow, (H, W) of the photo)``: :func:`display_image`, downscaled once
    (antialiased) when its longest side exceeds ``longest_side``; draw it with
    ``extent=(0, W, H, 0)`` so that coordinates stay in the photo's pixels."""
    from PIL import Image

    shown = display_image(image)
    size = shown.shape[:2]
    if max(size) <= longest_side:
        return shown, size
    scale = longest_side / max(size)
    as_uint8 = shown if shown.dtype == np.uint8 else np.round(shown * 255).astype(np.uint8)
    # Only a single channel is dropped (Pillow's grayscale): a photo 1 pixel high stays RGB.
    small = Image.fromarray(as_uint8[..., 0] if as_uint8.ndim == 3 and as_uint8.shape[2] == 1
                            else as_uint8).resize(
        (max(1, round(size[1] * scale)), max(1, round(size[0] * scale))), Image.Resampling.BOX)
    return np.asarray(small), size


def image_at(images: Any, index: int) -> np.ndarray:
    """Image ``index`` of anything the map methods take as ``images`` (a batch, one image, a
    list, a dict: :func:`helpers.images.as_images`)."""
    batch = as_images(images)
    if not 0 <= index < len(batch):
        raise IndexError(f"image {index} asked for, of {len(batch)} images (0..{len(batch) - 1})")
    return np.asarray(batch[index])


def box_bounds(box: Any, offset: float = -0.5) -> tuple[float, float, float, float]:
    """``(x, y, width, height)`` of the rectangle around an inclusive pixel box
    ``(x0, y0, x1, y1)``, where pixel ``x`` spans ``[x + offset, x + offset + 1]``: ``-0.5`` for an
    ``imshow`` with the default extent, ``0`` for ``extent=(0, W, H, 0)`` (as :func:`show_cam`)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return x0 + offset, y0 + offset, x1 - x0 + 1, y1 - y0 + 1


def draw_box(ax: Axes, box: Any, *, color: str = "white", linewidth: float = 1.5,
             linestyle: str = "-", offset: float = -0.5) -> Rectangle | None:
    """Draw an inclusive pixel box ``(x0, y0, x1, y1)``: the rectangle encloses every pixel of
    the box (see :func:`box_bounds` for ``offset``).

    Introduced in notebook 04. ``None`` or :data:`helpers.evaluate.boxes.NO_BOX` draws nothing and
    returns None.
    """
    if not hasattr(ax, "add_patch"):
        raise TypeError(f"ax must be a matplotlib Axes (the arguments are ax, box), got "
                        f"{type(ax).__name__}")
    if box is None:
        return None
    if isinstance(box, str) or np.shape(box) != (4,):
        raise ValueError(f"box must be one (x0, y0, x1, y1), got {box!r:.80}")
    box = as_boxes(box, "box")  # finite, x0 <= x1 and y0 <= y1 (or NO_BOX)
    if tuple(box) == NO_BOX:
        return None
    x, y, width, height = box_bounds(box, offset)
    patch = Rectangle((x, y), width, height, fill=False, edgecolor=color, linewidth=linewidth,
                      linestyle=linestyle)
    ax.add_patch(patch)
    return patch


#: The colour maps of maps: perceptually uniform for a map without negative values, and
#: diverging, centred on zero (white), for a signed one. Never jet, whose bright bands read as
#: edges that are not in the map.
SEQUENTIAL_CMAP, DIVERGING_CMAP = "inferno", "RdBu_r"


def _color_limits(cam_map: np.ndarray) -> tuple[float, float]:
    low, high = float(cam_map.min()), float(cam_map.max())
    if high > low:
        return low, high
    return low - 0.5, high + 0.5  # a constant map: a valid scale, no division by zero


def map_colors(cam_map: np.ndarray, cmap: str | None = None) -> tuple[str, float, float]:
    """``(colour map, vmin, vmax)`` for drawing ``cam_map``: a signed map (values below and above
    zero) gets :data:`DIVERGING_CMAP` on a scale symmetric about zero, so that zero is white and
    equal values of either sign are equally strong; any other map :data:`SEQUENTIAL_CMAP` from
    zero to its maximum (or from its minimum to zero, if it has no positive value), so that zero
    sits at an end of the scale (the darkest colour for a non-negative map), not the map's
    smallest value. A ``cmap`` given is used as it is, on
    the map's own range."""
    low, high = _color_limits(cam_map)
    if cmap is not None:
        return cmap, low, high
    if low < 0.0 < high:
        bound = max(-low, high)
        return DIVERGING_CMAP, -bound, bound
    if low >= 0.0 and high > 0.0:
        return SEQUENTIAL_CMAP, 0.0, high
    if high <= 0.0 and low < 0.0:
        return SEQUENTIAL_CMAP, low, 0.0
    return SEQUENTIAL_CMAP, low, high


def show_cam(
    image: Any,
    cam_map: Any,
    *,
    ax: Axes | None = None,
    alpha: float = 0.5,
    cmap: str | None = None,
    title: str | None = None,
    colorbar: bool = True,
    colorbar_label: str = "class activation",
    box_threshold: float | None = None,
) -> Axes:
    """Draw a class activation map over its photo, stretched to cover the whole photo.

    Introduced in notebook 03.

    Parameters
    ----------
    image
        The photo ``(H0, W0, 3)`` at any size (uint8 or float).
    cam_map
        ``(H, W)`` map covering the whole image (any resolution: it is stretched to the photo,
        as the model saw the whole photo resized).
    ax
        Axes to draw on; a new figure if None.
    alpha
        Opacity of the heat map, 0..1.
    cmap
        Matplotlib colour map name; by default diverging about zero for a signed map, perceptually
        uniform otherwise (:func:`map_colors`).
    title
        Axes title (e.g. class name and probability).
    colorbar
        Add a colour bar with the map's values.
    colorbar_label
        Its label.
    box_threshold
        If given (0..1), draw the box of :func:`helpers.cam_to_box`: the largest 8-connected
        region where the map is at least ``box_threshold × max`` (the paper uses 0.2); no box
        when the map's maximum is not positive.

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    ValueError
        A map that is not 2-D or contains NaN/inf; ``alpha`` outside 0..1.
    """
    # A copy at most DISPLAY_SIDE pixels a side, drawn over the photo's own pixel frame: a
    # 24-megapixel photo drawn whole took 1.3 GB and seconds a figure.
    photo, (height, width) = display_copy(image, DISPLAY_SIDE)
    cam_map = check_maps("cam_map", cam_map, ndim=2, float32=True).astype(np.float32)
    alpha = number("alpha", alpha, 0.0, 1.0)
    if ax is not None and not hasattr(ax, "imshow"):
        raise TypeError(f"ax must be matplotlib Axes (e.g. from plt.subplots), got "
                        f"{type(ax).__name__}")
    if ax is None:
        import matplotlib.pyplot as plt  # imported here: importing helpers stays light

        _, ax = plt.subplots(figsize=(4.5, 4.0), layout="constrained")
    extent = (0, width, height, 0)
    ax.imshow(photo, extent=extent, cmap="gray" if photo.ndim == 2 else None)
    cmap, low, high = map_colors(cam_map, cmap)
    heat = ax.imshow(
        cam_map, cmap=cmap, alpha=float(alpha), extent=extent, vmin=low, vmax=high,
        interpolation="bilinear",
    )
    if box_threshold is not None:
        box = scale_box(cam_to_box(cam_map, box_threshold), cam_map.shape, (height, width))
        draw_box(ax, box, linewidth=2, offset=0.0)  # pixel x covers [x, x + 1] in the extent
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=10)
    if colorbar:
        bar = ax.figure.colorbar(heat, ax=ax, fraction=0.046, pad=0.03, label=colorbar_label)
        mark_zero(bar, low, high)
    return ax


def mark_zero(bar: Any, low: float, high: float) -> None:
    """On a colour bar of a signed map (``low < 0 < high``), a black line and a tick at 0:
    CAM and Grad-CAM values are logit units, and below zero a position argues *against* the
    class. Introduced in notebook 02."""
    if low < 0.0 < high:
        bar.ax.axhline(0.0, color="black", linewidth=1.5)
        ticks = [float(t) for t in bar.get_ticks() if low <= t <= high]
        if 0.0 not in ticks:
            bar.set_ticks(sorted(ticks + [0.0]))


def plot_cam(
    result: CAMResult,
    images: Any,
    image_index: int = 0,
    k: int = 0,
    *,
    ax: Axes | None = None,
    alpha: float = 0.5,
    cmap: str | None = None,
    colorbar: bool = True,
    box_threshold: float | None = None,
) -> Axes:
    """Overlay of one map of a :class:`~helpers.cam.CAMResult` on its photo, titled with the class
    name, id and probability.

    Introduced in notebook 03.

    Parameters
    ----------
    result
        From :func:`helpers.class_activation_maps` or :func:`helpers.grad_cam`.
    images
        The photos given to it (array ``(B, H, W, 3)`` or list).
    image_index, k
        Which image, and which of its ``K`` requested classes.

    Returns
    -------
    matplotlib.axes.Axes
    """
    images = _check_indices(result, image_index, k, images)  # read once (a generator too)
    return show_cam(
        image_at(images, image_index),
        result.map(image_index, k),
        ax=ax,
        alpha=alpha,
        cmap=cmap,
        title=result.label(image_index, k),
        colorbar=colorbar,
        colorbar_label=_MAP_LABELS.get(result.method, "class activation"),
        box_threshold=box_threshold,
    )


def _check_indices(result: Any, image_index: Any, k: Any, images: Any = None) -> Any:
    """The result is a CAMResult, the indices are in range, and ``images`` (when given) are as
    many as the result's: maps drawn over other photos would look right and be wrong. Returns
    ``images`` read once (:func:`as_images`; a generator too), for every panel to take from."""
    instance("result", result, CAMResult, "a CAMResult from helpers.class_activation_maps or "
             "helpers.grad_cam (the arguments are result, images, ...)")
    batch, classes = result.class_ids.shape
    integer("image_index", image_index, 0, batch - 1)
    integer(f"k (the result has {classes} classes per image)", k, 0, classes - 1)
    if images is None:
        return None
    images = as_images(images)
    if len(images) != batch:
        raise ValueError(f"images hold {len(images)} photos, the result maps {batch}: "
                         "pass the photos the result was computed from")
    return images


def _grid(count: int, ncols: int, size: float) -> tuple[Figure, np.ndarray]:
    if count < 1:
        raise ValueError("nothing to draw")
    ncols = integer("ncols", ncols, 1)
    size = number("size (inches per panel)", size, 0, 20, low_open=True)
    import matplotlib.pyplot as plt

    ncols = min(ncols, count)
    nrows = -(-count // ncols)
    figure, axes = plt.subplots(
        nrows, ncols, figsize=(size * 1.2 * ncols, size * nrows), layout="constrained",
        squeeze=False,
    )
    for ax in axes.ravel()[count:]:
        ax.set_axis_off()
    return figure, axes.ravel()


def plot_cam_classes(
    result: CAMResult,
    images: Any,
    image_index: int = 0,
    *,
    ncols: int = 3,
    size: float = 3.0,
    alpha: float = 0.5,
    show_photo: bool = True,
    box_threshold: float | None = None,
) -> Figure:
    """One photo, each of its ``K`` requested classes in its own panel (paper's Figure 4).

    Introduced in notebook 03.

    Parameters
    ----------
    result, images
        As in :func:`plot_cam`.
    image_index
        Which image.
    ncols
        Panels per row.
    size
        Panel height in inches.
    show_photo
        Start with the photo alone.

    Returns
    -------
    matplotlib.figure.Figure
    """
    images = _check_indices(result, image_index, 0, images)  # read once (a generator too)
    show_photo = flag("show_photo", show_photo)
    classes = result.class_ids.shape[1]
    figure, axes = _grid(classes + int(show_photo), ncols, size)
    panels = iter(axes)
    if show_photo:
        ax = next(panels)
        photo, (height, width) = display_copy(image_at(images, image_index), DISPLAY_SIDE)
        ax.imshow(photo, extent=(0, width, height, 0), cmap="gray" if photo.ndim == 2 else None)
        ax.set_title("photo", fontsize=10)
        ax.set_axis_off()
    for k in range(classes):
        plot_cam(result, images, image_index, k, ax=next(panels), alpha=alpha,
                 box_threshold=box_threshold)
    return figure


def plot_cam_images(
    result: CAMResult,
    images: Any,
    k: int = 0,
    *,
    ncols: int = 4,
    size: float = 3.0,
    alpha: float = 0.5,
    names: Sequence[str] | None = None,
    labels: Any = None,
    box_threshold: float | None = None,
) -> Figure:
    """Every image with its ``k``-th requested class (top-1 by default).

    Introduced in notebook 03.

    Parameters
    ----------
    result, images
        As in :func:`plot_cam`.
    k
        Which of each image's requested classes.
    names
        Optional image names, prefixed to the titles.
    labels
        Optional true class ids ``(B,)``: a panel whose drawn class is not its label is titled
        in red, "MISCLASSIFIED" with the true class, so that its map is read as the evidence for
        a wrong class (as notebook 02 marks them).

    Returns
    -------
    matplotlib.figure.Figure
    """
    images = _check_indices(result, 0, k, images)  # read once (a generator too)
    batch = result.num_images
    if names is not None:
        names = checked_names("names", names, batch)
    if labels is not None:
        labels = checked_labels("labels", labels, batch, result.logits.shape[1])
    figure, axes = _grid(batch, ncols, size)
    for index in range(batch):
        ax = plot_cam(result, images, index, k, ax=axes[index], alpha=alpha,
                      box_threshold=box_threshold)
        # Two lines: one long line runs into the neighbouring colour bar in small panels.
        title = result.label(index, k) if names is None else f"{names[index]}\n{result.label(index, k)}"
        wrong = labels is not None and int(result.class_ids[index, k]) != int(labels[index])
        if wrong:
            true_name = result.class_names[labels[index]]
            title += f"\nMISCLASSIFIED (true: {true_name})"
        if names is not None or wrong:
            ax.set_title(title, fontsize=9, color="red" if wrong else "black")
    return figure
