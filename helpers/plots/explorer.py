"""An interactive class explorer for class activation maps (ipywidgets).

Introduced in notebook 03. The network runs **once**, when the explorer is built: the maps of all
classes are kept at feature resolution (``7 × 7`` per class for EfficientNet-Lite0, 200 KB per
image for 1000 classes). Moving a slider then only upsamples one map (a cached linear operator,
exactly the bilinear resize of :func:`helpers.upsample_maps`), updates the existing matplotlib
artists (``set_data``, ``set_alpha``) and renders the figure into an ``ipywidgets.Image``, sent at
the pixel size it is shown; it works with any matplotlib backend, ipympl not needed. An upload
button adds your own photo (one more forward pass, for that photo only).

Works with ipywidgets 7.7.x and 8.x, and leaves a picture and a sentence behind in a saved
notebook (:mod:`helpers.plots._widgets`).
"""

from __future__ import annotations

import html
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from helpers.cam import class_activation_maps, find_cam_head
from helpers.checks import integer, number
from helpers.checks import names as checked_names
from helpers.data.files import load_image, unique_name
from helpers.evaluate.boxes import cam_to_box, scale_box
from helpers.maps import CAMResult, normalize_cam, upsample_operator
from helpers.images import as_images
from helpers.plots._widgets import (
    KERNEL_GONE, KERNEL_HINT, fallback_html, jpeg, mimebundle, two_lines, uploaded_files,
)
from helpers.plots.cam import DISPLAY_SIDE, box_bounds, display_copy

__all__ = ["CAMExplorer", "KERNEL_GONE", "cam_explorer", "uploaded_files"]

#: Width of the controls' labels, so that none is clipped ("box ≥ t·max").
_DESCRIPTION_WIDTH = "88px"
#: Characters per line of the picture's title (wrapped, at most two lines: never clipped).
_TITLE_CHARACTERS = 58


class CAMExplorer:
    """Class activation maps of one or more photos, explored with sliders.

    Introduced in notebook 03. Build it with :func:`cam_explorer`; display it as the last
    expression of a cell. The controls are attributes, so code can drive them too
    (``explorer.rank_slider.value = 2``).

    Attributes
    ----------
    result
        :class:`helpers.cam.CAMResult` with every class (``classes="all"``) for every image.
    image_selector
        Dropdown over the images (hidden for one image).
    rank_slider
        Rank among the image's top-``k`` classes (1 = most probable).
    class_search
        Searchable choice among all classes (type part of a name, e.g. ``"helmet"``).
    opacity_slider
        Heat-map opacity, 0..1.
    threshold_slider
        Box threshold, 0..1: the box surrounds the largest region where the map is at least
        ``threshold × max`` (0 hides the box).
    upload
        ``ipywidgets.FileUpload``: a photo uploaded here joins the image list (the network runs
        once, on it) and is shown.
    figure
        The matplotlib ``Figure`` (not attached to pyplot: no global state).
    image_widget
        ``ipywidgets.Image`` showing the rendered figure (JPEG), at :attr:`picture_size`.
    picture_size
        ``(width, height)`` in pixels of the picture, rendered and shown at that size.
    kernel_hint
        A line under the picture, always shown: if the sliders stop changing the picture (after
        a kernel restart the front end keeps them, and they still move), rerun the cell.
    widget
        The whole UI (``ipywidgets.HBox``: the controls beside the picture).
    last_update_seconds
        Duration of the latest update (upsample, artists, rendering).
    """

    def __init__(
        self,
        model: Any,
        images: Any,
        *,
        top_k: int | None = None,
        image_names: Sequence[str] | None = None,
        opacity: float = 0.5,
        threshold: float = 0.2,
        size: float = 4.8,
        dpi: int = 80,
    ) -> None:
        import ipywidgets as widgets
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
        from matplotlib.patches import Rectangle

        if isinstance(images, Mapping) and image_names is None:  # e.g. helpers.sample_images()
            image_names = list(images)
        images = as_images(images)
        # (display copy, full size): a copy downscaled once, drawn over the photo's full extent,
        # so a slider move costs the same for any photo and boxes stay in photo pixels.
        self._photos = [display_copy(image, DISPLAY_SIDE) for image in images]
        names = (checked_names("image_names", list(image_names) if isinstance(image_names, tuple)
                               else image_names, len(self._photos))
                 if image_names is not None else [f"image {i}" for i in range(len(self._photos))])
        unique: list[str] = []
        for name in names:  # ("a", "a") -> ("a", "a (2)"), as add_photo and load_images do
            unique.append(unique_name(name, unique))
        num_classes = find_cam_head(model).num_classes  # checks the model before the network runs
        # The rank slider's range: five classes by default, or all a smaller model has.
        top_k = min(5, num_classes) if top_k is None else integer("top_k", top_k, 1, num_classes)
        self._model = model
        self._names = unique
        self.result: CAMResult = class_activation_maps(model, images, classes="all")
        self._order = np.argsort(-self.result.logits, axis=1, kind="stable")  # (B, C) ranks
        self._operator = upsample_operator(self.result.low_res.shape[2:], self.result.input_size)
        self._labels = [f"{name} ({i})" for i, name in enumerate(self.result.class_names)]
        self._label_to_id = {label: i for i, label in enumerate(self._labels)}
        self._syncing = False
        self._box: tuple[int, int, int, int] | None = None
        self.last_update_seconds = 0.0
        #: The message of the last upload that could not be read ("" when none).
        self.upload_error = ""

        # The picture is rendered at exactly the pixel size it is shown (no browser rescaling).
        self.figure = Figure(figsize=(size * 1.25, size), dpi=dpi, layout="constrained")
        width, height = (int(round(v)) for v in self.figure.get_size_inches() * dpi)
        self.picture_size = (width, height)

        label_style = {"description_width": _DESCRIPTION_WIDTH}

        def control() -> Any:  # one Layout per control: a shared one would change them all
            return widgets.Layout(width="320px")

        self.image_selector = widgets.Dropdown(
            options=[(name, i) for i, name in enumerate(names)], value=0, description="image",
            style=label_style,
            layout=widgets.Layout(width="320px", display="none" if len(names) == 1 else "flex"),
        )
        self.upload = widgets.FileUpload(
            accept="image/*", multiple=False, description="your photo", layout=control(),
        )
        self.rank_slider = widgets.IntSlider(
            value=1, min=1, max=int(top_k), description="top-k rank", continuous_update=True,
            style=label_style, layout=control(),
        )
        self.class_search = widgets.Combobox(
            options=self._labels, placeholder="type a class name", description="any class",
            ensure_option=True, style=label_style, layout=control(),
        )
        self.opacity_slider = widgets.FloatSlider(
            value=float(opacity), min=0.0, max=1.0, step=0.05, description="opacity",
            style=label_style, layout=control(),
        )
        self.threshold_slider = widgets.FloatSlider(
            value=float(threshold), min=0.0, max=1.0, step=0.05, description="box ≥ t·max",
            style=label_style, layout=control(),
        )
        self.info = widgets.Label(layout=widgets.Layout(width=f"{width}px"))
        #: A rejected upload's message, in full and wrapped (a Label would cut it at its width).
        self.message = widgets.HTML(layout=widgets.Layout(width=f"{width}px"))
        self.kernel_hint = widgets.HTML(KERNEL_HINT, layout=widgets.Layout(width=f"{width}px"))
        self.image_widget = widgets.Image(
            format="jpeg", width=str(width), height=str(height),
            layout=widgets.Layout(width=f"{width}px", height=f"{height}px", flex="0 0 auto"),
        )

        self._ax = self.figure.add_subplot()
        self._ax.set_axis_off()
        self._photo_artist = self._ax.imshow(self._photos[0][0])
        self._heat_artist = self._ax.imshow(
            np.zeros(self.result.input_size, dtype=np.float32), cmap="inferno", vmin=0.0, vmax=1.0,
            alpha=float(opacity), interpolation="nearest",
        )
        self._box_artist = Rectangle((0, 0), 0, 0, fill=False, edgecolor="white", linewidth=2)
        self._ax.add_patch(self._box_artist)
        self.figure.colorbar(
            self._heat_artist, ax=self._ax, fraction=0.046, pad=0.03,
            label="class activation (min-max per map)",
        )
        # Two title lines are reserved by the one constrained layout; titles are wrapped to fit.
        self._title = self.figure.suptitle("title\nsecond line", fontsize=10)
        self._canvas = FigureCanvasAgg(self.figure)
        self._class_id = int(self._order[0, 0])
        self.class_search.value = self._labels[self._class_id]
        self._set_photo(0)
        self._canvas.draw()  # lay out once (constrained), then keep the positions: faster draws
        self.figure.set_layout_engine("none")

        self.image_selector.observe(self._on_image, names="value")
        self.upload.observe(self._on_upload, names="value")
        self.rank_slider.observe(self._on_rank, names="value")
        self.class_search.observe(self._on_search, names="value")
        self.opacity_slider.observe(self._on_display, names="value")
        self.threshold_slider.observe(self._on_display, names="value")
        # Controls beside the picture: both fit a 1366 x 768 screen together.
        controls = widgets.VBox(
            [self.image_selector, self.rank_slider, self.class_search, self.opacity_slider,
             self.threshold_slider, self.upload],
            layout=widgets.Layout(width="330px", flex="0 0 auto"),
        )
        self.widget = widgets.HBox(
            [controls, widgets.VBox([self.image_widget, self.info, self.message,
                                     self.kernel_hint])],
            layout=widgets.Layout(align_items="flex-start"),
        )
        self._show_class(self._class_id)

    # -- state ---------------------------------------------------------------------------------

    @property
    def image_index(self) -> int:
        """Index of the image shown."""
        return int(self.image_selector.value)

    @property
    def class_id(self) -> int:
        """Class shown."""
        return self._class_id

    @property
    def current_map(self) -> np.ndarray:
        """The map shown ``(H, W)`` at the model input size, min-max normalised to [0, 1]."""
        return np.asarray(self._heat_artist.get_array(), dtype=np.float32)

    @property
    def box(self) -> tuple[int, int, int, int] | None:
        """Box ``(x0, y0, x1, y1)`` (inclusive, photo pixels) of :func:`helpers.cam_to_box`, or
        None when hidden or when the map has no positive value."""
        return self._box

    def rank_of(self, class_id: int) -> int:
        """Rank (1 = most probable) of ``class_id`` for the current image."""
        return int(np.flatnonzero(self._order[self.image_index] == class_id)[0]) + 1

    # -- events --------------------------------------------------------------------------------

    def _on_image(self, change: dict) -> None:
        self._set_photo(int(change["new"]))
        self._select_rank(self.rank_slider.value)

    def _on_upload(self, change: dict) -> None:
        files = uploaded_files(change["new"])
        for name, content in files:
            try:
                self.add_photo(content, name=name)
            except (TypeError, ValueError) as error:  # shown in the widget, not in a log
                self.upload_error = str(error)
                self.message.value = (f'<div style="color: #b00020; white-space: normal; '
                                      f'overflow-wrap: anywhere">could not use '
                                      f"{html.escape(name)}: {html.escape(str(error))}</div>")
            else:
                self.upload_error, self.message.value = "", ""
        if files:
            self._clear_upload()

    def _clear_upload(self) -> None:
        """Empty the upload button (8.x allows it; in 7.x the value is read-only and is replaced
        by the next upload)."""
        if isinstance(self.upload.value, tuple):
            self.upload.value = ()

    def add_photo(self, photo: Any, name: str | None = None) -> int:
        """Add a photo (a path, the bytes of a file, or an RGB array ``(H, W, 3)``), run the
        network on it once, and show it; returns its index in the image list.

        The upload button calls it with the file's bytes and name. Raises what
        :func:`helpers.load_image` raises for a file that is not a photo."""
        image = photo if isinstance(photo, np.ndarray) else load_image(photo)
        # As a list of one: a bare Keras model resizes a list to its input size, as it does the
        # constructor's photos (one array would have to be its input size already).
        self.result = self.result.joined(class_activation_maps(self._model, [image], classes="all"))
        self._order = np.argsort(-self.result.logits, axis=1, kind="stable")
        self._photos.append(display_copy(image, DISPLAY_SIDE))
        index = len(self._photos) - 1
        stem = name.rsplit(".", 1)[0].strip() if name else ""  # ".png" has no stem
        self._names.append(unique_name(stem or f"photo {index}", self._names))
        self.image_selector.options = [(n, i) for i, n in enumerate(self._names)]
        self.image_selector.layout.display = "flex"
        self.rank_slider.value = 1  # a new photo opens at its own top class
        self.image_selector.value = index  # shows it (through _on_image)
        return index

    def _on_rank(self, change: dict) -> None:
        self._select_rank(int(change["new"]))

    def _on_search(self, change: dict) -> None:
        if self._syncing:
            return
        class_id = self._label_to_id.get(change["new"])
        if class_id is not None:  # ignore partial text while the reader types
            self._show_class(class_id)

    def _on_display(self, change: dict) -> None:
        self._show_class(self._class_id)

    def _select_rank(self, rank: int) -> None:
        class_id = int(self._order[self.image_index, rank - 1])
        self._syncing = True
        try:
            self.class_search.value = self._labels[class_id]
        finally:
            self._syncing = False
        self._show_class(class_id)

    # -- drawing -------------------------------------------------------------------------------

    def _set_photo(self, index: int) -> None:
        photo, (height, width) = self._photos[index]
        extent = (0, width, height, 0)
        self._photo_artist.set_data(photo)
        self._photo_artist.set_extent(extent)
        self._heat_artist.set_extent(extent)
        self._ax.set_xlim(0, width)
        self._ax.set_ylim(height, 0)

    def _show_class(self, class_id: int) -> None:
        """Upsample one kept map, update the artists and render: no network call."""
        start = time.perf_counter()
        index = self.image_index
        self._class_id = int(class_id)
        rows, columns = self._operator
        cam_map = rows @ self.result.low_res[index, class_id] @ columns.T  # upsample_maps, exactly
        shown = normalize_cam(cam_map)
        self._heat_artist.set_data(shown)
        self._heat_artist.set_alpha(float(self.opacity_slider.value))
        photo_height, photo_width = self._photos[index][1]
        threshold = float(self.threshold_slider.value)
        box = cam_to_box(cam_map, threshold) if threshold > 0 else None
        self._box = scale_box(box, cam_map.shape, (photo_height, photo_width))
        if self._box is None:
            self._box_artist.set_visible(False)
        else:  # inclusive pixel box; pixel x covers [x, x + 1] in the image extent
            self._box_artist.set_bounds(*box_bounds(self._box, offset=0.0))
            self._box_artist.set_visible(True)
        # As result.label: "p = 0.79", or "score = 0.322" for a head that gives no probabilities
        # (Dense(activation="relu")); the result maps every class, so k is the class id.
        title = self.result.label(index, class_id)
        self._title.set_text(two_lines(title, _TITLE_CHARACTERS))
        self.info.value = (
            f"{title}; rank {self.rank_of(class_id)} of {len(self._labels)}; "
            f"logit {self.result.logits[index, class_id]:.2f}"
        )
        self.image_widget.value = jpeg(self._canvas)
        self.last_update_seconds = time.perf_counter() - start

    # -- display -------------------------------------------------------------------------------

    def fallback_html(self) -> str:
        """What a front end without a live widget shows: the current picture and
        :data:`KERNEL_GONE`."""
        return fallback_html(bytes(self.image_widget.value), self.picture_size, self.info.value)

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        """The widget view (ipywidgets 7.x and 8.x alike) plus a ``text/html`` fallback."""
        return mimebundle(self.widget, f"CAM explorer: {self.info.value}. {KERNEL_GONE}",
                          self.fallback_html(), **kwargs)


def cam_explorer(
    model: Any,
    images: Any,
    *,
    top_k: int | None = None,
    image_names: Sequence[str] | None = None,
    opacity: float = 0.5,
    threshold: float = 0.2,
) -> CAMExplorer:
    """An ipywidgets UI to explore the class activation maps of one or more photos.

    Introduced in notebook 03. A slider runs over each photo's top-``k`` classes, a searchable
    box reaches any class, an opacity slider fades the heat map, and a threshold slider draws a
    box around the largest region above that fraction of the map's maximum (the paper's
    localisation uses 20 %). The network runs once, here; moving a control only upsamples one
    kept map and redraws. An upload button adds your own photo (the network runs once more, on
    it alone). Controls and picture sit side by side (about 850 × 420 pixels), and the picture is
    sent at the size it is shown. Works with ipywidgets 7.7.x and 8.x.

    When no kernel is behind it (a saved notebook), front ends that cannot render the live
    widget show its ``text/html`` fallback: the current picture and :data:`KERNEL_GONE`.

    Parameters
    ----------
    model
        A :class:`helpers.Classifier` or a Keras model with a GAP → Dense head (as in
        :func:`helpers.class_activation_maps`).
    images
        RGB photos: an array ``(B, H, W, 3)``, one ``(H, W, 3)`` image, a list, or a dict
        ``{name: image}`` (:func:`helpers.sample_images`, :func:`helpers.load_images`; its keys
        name the images unless ``image_names`` is given).
    top_k
        Range of the rank slider: by default 5, or the model's number of classes when smaller.
    image_names
        Names in the image selector.
    opacity, threshold
        Initial slider values, in [0, 1].

    Returns
    -------
    CAMExplorer
        Display it (last expression of a cell); drive it through its slider attributes.
    """
    opacity, threshold = number("opacity", opacity, 0, 1), number("threshold", threshold, 0, 1)
    return CAMExplorer(
        model, images, top_k=top_k, image_names=image_names, opacity=opacity, threshold=threshold
    )
