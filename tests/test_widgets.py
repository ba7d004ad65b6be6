"""The class explorer (helpers.plots.explorer): driven through its widgets, it never runs the network
again after it is built."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import _engine, cam
from helpers.evaluate.boxes import cam_to_box
from helpers.plots.explorer import cam_explorer

JPEG_SIGNATURE = b"\xff\xd8\xff"


class _NetworkCalls:
    """Forward passes made by the engine since the fixture was set up."""

    def __init__(self) -> None:
        self.start = _engine.counters["network_calls"]

    def __len__(self) -> int:
        return _engine.counters["network_calls"] - self.start


@pytest.fixture()
def network_calls():
    return _NetworkCalls()


@pytest.fixture()
def explorer(lite0, samples, network_calls):
    return cam_explorer(
        lite0, [samples["chelsea"], samples["astronaut"]], top_k=4,
        image_names=["chelsea", "astronaut"],
    )


def test_built_with_one_forward_pass(explorer, network_calls):
    assert len(network_calls) == 1
    assert explorer.result.low_res.shape == (2, 1000, 7, 7)  # every class kept at 7x7
    assert explorer.class_id == 285  # chelsea's top-1: Egyptian cat
    assert explorer.class_search.value == "Egyptian cat (285)"
    assert explorer.current_map.shape == (224, 224)
    assert bytes(explorer.image_widget.value).startswith(JPEG_SIGNATURE)
    assert explorer.rank_slider.max == 4


def test_sliders_change_the_picture_without_the_network(explorer, network_calls):
    order = np.argsort(-explorer.result.logits[0])
    first_map, first_picture = explorer.current_map.copy(), bytes(explorer.image_widget.value)

    explorer.rank_slider.value = 2
    assert explorer.class_id == int(order[1])
    assert explorer.class_search.value.endswith(f"({order[1]})")  # search box follows the slider
    assert not np.allclose(explorer.current_map, first_map)
    assert bytes(explorer.image_widget.value) != first_picture
    assert str(order[1]) in explorer.info.value and "rank 2 of 1000" in explorer.info.value

    explorer.class_search.value = "space shuttle (812)"
    assert explorer.class_id == 812
    explorer.class_search.value = "space shu"  # partial text while typing: ignored
    assert explorer.class_id == 812

    explorer.opacity_slider.value = 0.2
    assert explorer._heat_artist.get_alpha() == pytest.approx(0.2)

    explorer.image_selector.value = 1  # the astronaut: back to the slider's rank
    astronaut_order = np.argsort(-explorer.result.logits[1])
    assert explorer.class_id == int(astronaut_order[1])
    assert explorer._photo_artist.get_array().shape[:2] == (512, 512)

    assert len(network_calls) == 1  # built once; nothing after


def test_shown_map_is_the_upsampled_cam(explorer):
    explorer.rank_slider.value = 3
    upsampled = explorer.result.map(0, explorer.class_id)  # lazily upsampled with keras
    np.testing.assert_allclose(explorer.current_map, cam.normalize_cam(upsampled), atol=1e-5)


def test_threshold_box(explorer):
    explorer.threshold_slider.value = 0.5
    box = explorer.box
    expected = cam_to_box(explorer.result.map(0, explorer.class_id), 0.5)
    assert box is not None and expected is not None
    height, width = 300, 451  # chelsea
    assert 0 <= box[0] <= box[2] < width and 0 <= box[1] <= box[3] < height
    assert box[0] == int(np.floor(expected[0] * width / 224))
    explorer.threshold_slider.value = 0.9
    tighter = explorer.box
    assert (tighter[2] - tighter[0]) * (tighter[3] - tighter[1]) < (box[2] - box[0]) * (
        box[3] - box[1]
    )
    explorer.threshold_slider.value = 0.0
    assert explorer.box is None and not explorer._box_artist.get_visible()


def test_one_image_and_bad_arguments(lite0, samples):
    single = cam_explorer(lite0, samples["coffee"], top_k=3)
    assert single.class_id == 967
    assert single.image_selector.layout.display == "none"  # nothing to choose
    with pytest.raises(ValueError, match="top_k"):
        cam_explorer(lite0, samples["coffee"], top_k=0)
    with pytest.raises(ValueError, match="opacity"):
        cam_explorer(lite0, samples["coffee"], opacity=1.5)
    with pytest.raises(ValueError, match="image_names must name each of the 1 images, got 2 names"):
        cam_explorer(lite0, samples["coffee"], image_names=["a", "b"])


# -- ipywidgets 7.7 and 8, the upload, the display bundle, the size ------------------------------
# This file runs under both: `make test` (the venv's ipywidgets 8) and `make test-widgets7`
# (ipywidgets 7.7.1 laid over the same venv).

import base64  # noqa: E402
import io  # noqa: E402
import logging  # noqa: E402
import re  # noqa: E402

import ipywidgets  # noqa: E402
from PIL import Image as PILImage  # noqa: E402

from helpers.plots.explorer import KERNEL_GONE, uploaded_files  # noqa: E402

IPYWIDGETS_MAJOR = int(ipywidgets.__version__.split(".")[0])
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def _png_bytes(image):
    buffer = io.BytesIO()
    PILImage.fromarray(image).save(buffer, format="png")
    return buffer.getvalue()


def _pick_file(upload, name, content):
    """Do what the front end does when the reader picks one file, in this ipywidgets."""
    if IPYWIDGETS_MAJOR >= 8:  # the browser sends the value; the kernel deserialises it
        upload.set_state({"value": [{"name": name, "type": "image/png", "size": len(content),
                                     "content": memoryview(content), "last_modified": 0}]})
    else:  # 7.x: the browser sends metadata and data, then a counter that builds the value
        upload.set_state({"metadata": [{"name": name, "type": "image/png", "size": len(content),
                                        "lastModified": 0}], "data": [memoryview(content)]})
        upload.set_state({"_counter": upload._counter + 1})


def test_uploaded_files_reads_both_shapes():
    content = b"\x89PNG..."
    seven = {"a.png": {"metadata": {"name": "a.png"}, "content": content}}
    eight = ({"name": "a.png", "content": memoryview(content)},)
    assert uploaded_files(seven) == uploaded_files(eight) == [("a.png", content)]
    assert uploaded_files(()) == uploaded_files({}) == []


def test_an_upload_joins_the_list_and_runs_the_network_once(explorer, samples, network_calls):
    assert isinstance(explorer.upload, ipywidgets.FileUpload)
    explorer.rank_slider.value = 2  # an upload opens at its own top class, not at this rank
    _pick_file(explorer.upload, "my coffee.png", _png_bytes(samples["coffee"]))
    assert len(network_calls) == 2  # built, then the one upload
    assert explorer.result.low_res.shape == (3, 1000, 7, 7)
    assert [label for label, _ in explorer.image_selector.options] == [
        "chelsea", "astronaut", "my coffee"]
    assert explorer.image_index == 2 and explorer.class_id == 967  # espresso, shown at once
    assert explorer.image_selector.layout.display != "none"
    explorer.image_selector.value = 0  # the others are still there, and need no network
    assert explorer.class_id == 285
    assert len(network_calls) == 2


def test_a_large_upload_is_drawn_from_a_small_copy_and_named_apart(explorer, samples):
    """A phone photo (4000 × 3000) is drawn from a copy of at most 1024 pixels a side, over the
    photo's full extent, so slider moves cost what they cost for a sample and the box stays in
    the photo's pixels; an upload named like a sample is told apart, not a second "chelsea"."""
    from PIL import Image

    phone = np.asarray(Image.fromarray(samples["chelsea"]).resize((4000, 3000)))
    explorer.add_photo(phone, name="chelsea.jpg")
    assert [label for label, _ in explorer.image_selector.options] == [
        "chelsea", "astronaut", "chelsea (2)"]
    drawn = explorer._photo_artist.get_array()
    assert max(drawn.shape[:2]) == 1024 and drawn.shape[:2] == (768, 1024)
    assert explorer._photo_artist.get_extent() == [0, 4000, 3000, 0]
    explorer.threshold_slider.value = 0.2
    x0, y0, x1, y1 = explorer.box
    assert 0 <= x0 < x1 <= 3999 and 0 <= y0 < y1 <= 2999 and x1 > 1024  # photo pixels
    scaled = explorer.box
    explorer.image_selector.value = 0
    first = explorer.box  # the same cat at 451 × 300 pixels: the same box, scaled
    assert abs(scaled[2] / 4000 - (first[2] + 1) / samples["chelsea"].shape[1]) < 0.02


def test_an_upload_without_a_name_before_its_suffix_is_named_by_its_place(explorer, samples):
    for name in (".png", " .jpg", ""):
        explorer.add_photo(samples["coffee"], name=name)
    assert [label for label, _ in explorer.image_selector.options] == [
        "chelsea", "astronaut", "photo 2", "photo 3", "photo 4"]


def test_an_unreadable_upload_is_reported_in_the_widget(explorer, network_calls):
    _pick_file(explorer.upload, "notes.png", b"not a picture")
    assert "cannot read" in explorer.upload_error
    # In full, wrapped: a Label cut it at its width ("...(780 byte").
    assert "notes.png" in explorer.message.value and "overflow-wrap: anywhere" in explorer.message.value
    import html

    assert html.escape(explorer.upload_error) in explorer.message.value
    assert len(explorer.image_selector.options) == 2 and len(network_calls) == 1


def test_display_bundle_has_the_widget_and_a_picture_for_no_kernel(explorer):
    bundle = explorer._repr_mimebundle_()
    assert bundle[WIDGET_VIEW]["model_id"] == explorer.widget.model_id
    fallback = bundle["text/html"]
    assert KERNEL_GONE in fallback
    assert KERNEL_GONE == ("The kernel behind this explorer is not running: rerun the cell to "
                           "move the sliders again.")
    picture = re.search(r'<img src="data:image/jpeg;base64,([^"]+)"', fallback).group(1)
    assert base64.b64decode(picture) == bytes(explorer.image_widget.value)  # the current picture


def test_the_picture_is_sent_at_the_size_it_is_shown(explorer):
    width, height = explorer.picture_size
    assert PILImage.open(io.BytesIO(bytes(explorer.image_widget.value))).size == (width, height)
    assert explorer.image_widget.layout.width == f"{width}px"
    assert explorer.image_widget.layout.height == f"{height}px"
    # Controls (330 px) beside the picture fit a 1366 x 768 screen with room for the page.
    assert 330 + width <= 1000 and height <= 450


def test_titles_are_wrapped_not_clipped(explorer):
    explorer.image_selector.value = 1  # the square astronaut
    explorer.class_search.value = explorer._labels[
        max(range(1000), key=lambda i: len(explorer.result.class_names[i]))]  # the longest name
    explorer._canvas.draw()
    renderer = explorer._canvas.get_renderer()
    title_box = explorer._title.get_window_extent(renderer)
    width, height = explorer.picture_size
    assert 0 <= title_box.x0 and title_box.x1 <= width and title_box.y1 <= height
    axes_box = explorer._ax.get_window_extent(renderer)
    assert title_box.y0 >= axes_box.y1 - 1  # above the photo, not over it


def test_ipython_displays_the_widget_and_the_fallback(explorer, caplog):
    """What a notebook does with the cell's last expression (the 7.x AttributeError was here).
    With ipywidgets 7.x a display callback that fails is only logged here (in a kernel it prints
    a traceback into the cell's output): none may fail."""
    from IPython.core.formatters import DisplayFormatter

    with caplog.at_level(logging.WARNING):
        data, _ = DisplayFormatter().format(explorer)
    assert not [r for r in caplog.records if "callback" in r.getMessage().lower()], caplog.text
    assert data[WIDGET_VIEW]["model_id"] == explorer.widget.model_id
    assert KERNEL_GONE in data["text/html"] and data["text/plain"].startswith("CAM explorer")


def test_the_explorer_always_says_what_to_do_when_its_kernel_is_gone(explorer):
    """After a kernel restart the front end keeps the sliders and they still move; the line under
    the picture is what tells the reader to rerun the cell."""
    from helpers.plots.explorer import KERNEL_GONE

    def texts(widget):
        yield getattr(widget, "value", "") if isinstance(getattr(widget, "value", ""), str) else ""
        for child in getattr(widget, "children", ()):
            yield from texts(child)

    shown = " ".join(texts(explorer.widget))
    assert "rerun the cell to move the sliders again" in shown
    assert explorer.kernel_hint in explorer.widget.children[1].children
    assert KERNEL_GONE.split(": ")[1] in shown
