"""The third adversarial audit's defects, one test each, numbered as in its report, by kind:
silent wrong answers and state leaks, unbounded resources, unclear errors. Each failed on the
code before."""

from __future__ import annotations

import tracemalloc

import keras
import numpy as np
import pytest

import helpers
from helpers.evaluate.boxes import NO_BOX, box_iou, cam_to_box, cams_to_boxes, choe_boxes
from helpers.evaluate.localization import localization_accuracy, zhou_accuracy
from helpers.evaluate.road import road
from helpers.evaluate.trust import deletion_insertion, randomize_layers
from helpers.models import Classifier

pytestmark = pytest.mark.jax


def _tiny_model(classes: int = 4, activation: str | None = None, name: str = "m") -> keras.Model:
    """Input (16, 16, 3) → Conv2D "c1" → Conv2D "c2" → GAP → Dense, as in the audit."""
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", name="c1")(inputs)
    x = keras.layers.Conv2D(4, 3, padding="same", name="c2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(classes, activation=activation)(x), name=name)


def _tiny_classifier() -> Classifier:
    return Classifier(name="tiny", model=_tiny_model(2), input_size=(16, 16), num_classes=2,
                      normalize=lambda x: x / 255.0)


def _photo() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)


# -- A. silent wrong answers and state leaks ----------------------------------------------------


def test_01_a_no_box_true_box_is_refused_by_localization_and_zhou_accuracy():
    with pytest.raises(ValueError, match="true box 0 is NO_BOX"):
        localization_accuracy([[0, 0, 2, 2]], [NO_BOX])
    maps = np.zeros((2, 8, 8), np.float32)
    maps[0, 1, 1] = maps[1, 6, 6] = 1
    with pytest.raises(ValueError, match="true box 0 is NO_BOX"):
        zhou_accuracy(maps, [NO_BOX, (5, 5, 7, 7)])


def test_02_complex_maps_are_refused_not_cast_to_real():
    cam = np.array([[0, 0], [0, 1]]) + 5j * np.array([[1, 0], [0, 0]])
    for call in (lambda: cam_to_box(cam), lambda: cams_to_boxes(cam[None]),
                 lambda: choe_boxes(cam), lambda: helpers.upsample_maps(cam, (2, 2))):
        with pytest.raises(TypeError, match="must be real numbers"):
            call()


def test_05_randomize_layers_refuses_a_set_of_names():
    model = _tiny_model()
    with pytest.raises(ValueError, match="in the order meant"):
        with randomize_layers(model, {"c1", "c2"}, seed=0):
            pass


def test_07_a_constant_map_is_refused_by_deletion_insertion_and_road():
    classifier, photo = _tiny_classifier(), _photo()
    maps = np.ones((2, 4, 4), np.float32)
    maps[0, 0, 0] = 2.0  # map 0 varies, map 1 is constant
    with pytest.raises(ValueError, match="map 1 is constant: it ranks no pixel"):
        deletion_insertion(classifier, [photo, photo], maps, [0, 0], steps=2)
    with pytest.raises(ValueError, match="map 1 is constant: it ranks no pixel"):
        road(classifier, [photo, photo], maps, [0, 0], fractions=(0.5,))


# -- B. unbounded resources -----------------------------------------------------------------------


def test_10_classifier_logits_preprocess_one_batch_at_a_time(monkeypatch):
    classifier = _tiny_classifier()
    seen = []
    preprocess = Classifier.preprocess

    def counting(self, images):
        seen.append(len(images))
        return preprocess(self, images)

    monkeypatch.setattr(Classifier, "preprocess", counting)
    logits = classifier.logits([_photo()] * 5, batch_size=2)
    assert logits.shape == (5, 2) and max(seen) <= 2


def test_12_choe_boxes_makes_the_threshold_masks_a_few_at_a_time():
    ramp = np.ones((400, 400)) * np.linspace(0, 1, 400)
    tracemalloc.start()
    try:
        boxes = choe_boxes(ramp)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(boxes) == 100
    assert peak < 30 * 2**20  # all 100 masks at once: about 80 MiB


def test_13_road_caps_the_number_of_fractions():
    with pytest.raises(ValueError, match="at most 100"):
        road(_tiny_classifier(), _photo(), np.eye(4)[None], [0], fractions=np.arange(0, 1, 0.001))


# -- C. unclear errors ------------------------------------------------------------------------


def test_14_string_and_ragged_maps_get_a_message_that_names_the_argument():
    calls = {
        "maps": [lambda: helpers.normalize_cam([["a", "b"], ["c", "d"]]),
                 lambda: helpers.normalize_cam([[1, 2], [3]]),
                 lambda: helpers.upsample_maps("ab", (4, 4))],
        "cam": [lambda: cam_to_box([[1, 2], [3]])],
        "cams": [lambda: cams_to_boxes([np.ones((3, 3)), np.ones((4, 4))])],
    }
    for name, functions in calls.items():
        for call in functions:
            with pytest.raises(TypeError, match=f"^{name} must be real numbers"):
                call()


def test_15_a_ragged_box_list_gets_the_boxes_message():
    with pytest.raises(TypeError, match="a must be numbers"):
        box_iou([(0, 0, 1, 1), (0, 0)], (0, 0, 1, 1))


def test_16_finite_maps_beyond_float32_are_not_called_infinite():
    with pytest.raises(ValueError, match="beyond float32's range"):
        helpers.upsample_maps(np.array([[1e39, 0], [0, 0]]), (4, 4))
    huge = np.zeros((1, 4, 4))
    huge[0, 0, 0] = 1e39  # only ranked: scaled into float32, the ranking kept
    curves = deletion_insertion(_tiny_classifier(), _photo(), huge, [0], steps=2)
    assert np.all(np.isfinite(curves.deletion_auc))
