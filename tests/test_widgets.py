"""The class explorer (helpers.widgets): driven through its widgets, it never runs the network
again after it is built."""

from __future__ import annotations

import numpy as np
import pytest

from helpers import _engine, cam
from helpers.localization import cam_to_box
from helpers.widgets import cam_explorer

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
    with pytest.raises(ValueError, match="2 image names for 1 images"):
        cam_explorer(lite0, samples["coffee"], image_names=["a", "b"])
