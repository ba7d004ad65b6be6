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


def test_03_load_image_refuses_a_float_tiff_with_nan_or_negative_values():
    import io

    from PIL import Image

    for values in (np.where(np.eye(16) > 0, np.nan, 0.5), np.where(np.eye(16) > 0, np.inf, 0.5),
                   np.full((16, 16), -3.0)):
        buffer = io.BytesIO()
        Image.fromarray(values.astype(np.float32), mode="F").save(buffer, format="TIFF")
        with pytest.raises(ValueError, match="uploaded bytes .* holds (NaN|negative)"):
            helpers.load_image(buffer.getvalue())


def test_04_pooled_features_and_fit_transfer_head_refuse_nan_and_huge_images():
    from helpers.models.transfer import pooled_features

    model = _tiny_model()
    x = np.random.default_rng(0).random((2, 16, 16, 3)).astype(np.float32)
    x[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        pooled_features(model, x)
    with pytest.raises(ValueError, match="NaN or infinite"):
        helpers.fit_transfer_head(model, x, np.array([0, 1]), epochs=1)
    huge = np.ones((2, 16, 16, 3)) * 1e39
    with pytest.raises(ValueError, match="beyond float32's range"):
        helpers.fit_transfer_head(model, huge, np.array([0, 1]), epochs=1)


def test_05_randomize_layers_refuses_a_set_of_names():
    model = _tiny_model()
    with pytest.raises(ValueError, match="in the order meant"):
        with randomize_layers(model, {"c1", "c2"}, seed=0):
            pass


def test_06_joined_refuses_another_models_result_and_another_dtype():
    x = np.random.default_rng(0).random((2, 16, 16, 3)).astype(np.float32)
    first, second = _tiny_model(), _tiny_model()  # one architecture, same layer names
    a = helpers.class_activation_maps(first, x)
    with pytest.raises(ValueError, match="two different models"):
        a.joined(helpers.class_activation_maps(second, x))
    with pytest.raises(ValueError, match="mixed_bfloat16"):
        a.joined(helpers.class_activation_maps(first, x, dtype="mixed_bfloat16"))
    assert a.joined(helpers.class_activation_maps(first, x)).num_images == 4


def test_07_a_constant_map_is_refused_by_deletion_insertion_and_road():
    classifier, photo = _tiny_classifier(), _photo()
    maps = np.ones((2, 4, 4), np.float32)
    maps[0, 0, 0] = 2.0  # map 0 varies, map 1 is constant
    with pytest.raises(ValueError, match="map 1 is constant: it ranks no pixel"):
        deletion_insertion(classifier, [photo, photo], maps, [0, 0], steps=2)
    with pytest.raises(ValueError, match="map 1 is constant: it ranks no pixel"):
        road(classifier, [photo, photo], maps, [0, 0], fractions=(0.5,))


def test_08_fit_transfer_head_repeats_and_leaves_the_global_random_state():
    import random

    model = _tiny_model(2)
    x = np.random.default_rng(0).random((6, 16, 16, 3)).astype(np.float32)
    labels = np.array([0, 1] * 3)
    np.random.seed(123)
    random.seed(123)
    expected = np.random.random(), random.random()
    np.random.seed(123)
    random.seed(123)
    first = helpers.fit_transfer_head(model, x, labels, epochs=3).history["loss"]
    assert (np.random.random(), random.random()) == expected
    second = helpers.fit_transfer_head(model, x, labels, epochs=3).history["loss"]
    np.testing.assert_allclose(second, first, rtol=1e-5)  # not training on from the first run


# -- B. unbounded resources -----------------------------------------------------------------------


def test_09_make_digit_canvases_bounds_clutter():
    tracemalloc.start()
    try:
        helpers.make_digit_canvases(2, clutter=4000, digit_size=24)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 12 * 2**20  # every piece kept: about 27 MiB
    with pytest.raises(ValueError, match="clutter=10000000"):  # after: it was allocated (GBs)
        helpers.make_digit_canvases(2, clutter=10**7, digit_size=24)


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


def test_11_a_huge_num_classes_is_refused_before_keras_draws_the_kernel():
    with pytest.raises(ValueError, match="num_classes=1,000,000,000"):
        helpers.build_head((7, 7, 512), 10**9)
    with pytest.raises(ValueError, match="num_classes=1,000,000,000"):
        helpers.build_small_cnn((16, 16, 1), 10**9, widths=(4,))


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


def test_17_layer_given_as_a_list_or_dict_is_refused_by_name():
    model, x = _tiny_model(), np.zeros((1, 16, 16, 3), np.float32)
    for layer in (["c1"], {"c1": 1}):
        for method in (helpers.grad_cam, helpers.guided_backprop, helpers.guided_grad_cam):
            with pytest.raises(TypeError, match=r"layer must be a layer name \(str\) or None"):
                method(model, x, layer=layer)


def test_18_an_image_with_another_channel_count_is_named():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"image 1 has 4 channels, model 'm' takes 3.*alpha"):
        helpers.class_activation_maps(_tiny_model(), [rng.random((20, 20, 3)),
                                                      rng.random((20, 20, 4))])


def test_19_a_data_set_of_image_label_batches_gets_a_hint():
    x = np.zeros((2, 16, 16, 3), np.float32)
    batches = iter([(x, np.array([0, 1]))])  # what a tf.data data set of batches yields
    with pytest.raises(TypeError, match=r"\(images, labels\) pairs.*next\(iter\(dataset\)\)"):
        helpers.class_activation_maps(_tiny_model(), batches)


def test_23_subset_refuses_indices_out_of_range_by_name():
    for data in (helpers.make_digit_canvases(5), helpers.make_photo_composites(5, size=32)):
        with pytest.raises(ValueError, match=r"indices must be in 0\.\.4 \(or a boolean mask of 5"):
            data.subset(99)
        with pytest.raises(ValueError, match="boolean mask of 5"):
            data.subset(np.ones(3, bool))
        assert len(data.subset(-1).labels) == 1 and len(data.subset(data.labels >= 0).labels) == 5


def test_20_plot_functions_read_a_generator_of_images_once():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from helpers.plots.cam import plot_cam, plot_cam_classes, plot_cam_images

    x = np.random.default_rng(0).random((2, 16, 16, 3)).astype(np.float32)
    result = helpers.class_activation_maps(_tiny_model(), x, top_k=2)
    for plot in (lambda: plot_cam(result, (image for image in x)),
                 lambda: plot_cam_classes(result, (image for image in x)),
                 lambda: plot_cam_images(result, (image for image in x))):
        plot()
        plt.close("all")


def test_21_the_doctor_reports_a_mistyped_keras_backend_in_its_own_words(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    environment = {**os.environ, "KERAS_BACKEND": "tensorflw", "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-m", "helpers", "doctor"], cwd=tmp_path,
                          env=environment, capture_output=True, text=True, timeout=300)
    assert "KERAS_BACKEND='tensorflw' is not a Keras backend" in done.stdout
    assert "export KERAS_BACKEND=tensorflow" in done.stdout
    assert "Traceback" not in done.stderr and done.returncode == 1


def test_22_the_explorer_shows_scores_for_a_head_without_probabilities():
    pytest.importorskip("ipywidgets")
    from helpers.plots.explorer import cam_explorer

    x = np.random.default_rng(0).random((1, 16, 16, 3)).astype(np.float32)
    explorer = cam_explorer(_tiny_model(activation="relu"), x)
    assert "score = " in explorer.info.value


def test_24_the_explorer_numbers_repeated_image_names():
    pytest.importorskip("ipywidgets")
    from helpers.plots.explorer import cam_explorer

    x = np.random.default_rng(0).random((2, 16, 16, 3)).astype(np.float32)
    explorer = cam_explorer(_tiny_model(), x, image_names=["a", "a"])
    assert explorer._names == ["a", "a (2)"]


# -- the fourth audit's defects in the same kinds -------------------------------------------


def test_a_photo_one_pixel_high_keeps_its_colours_when_downscaled_for_display():
    """A (1, 5000, 3) red photo was squeezed to (5000, 3) and drawn as grey stripes."""
    from helpers.plots.cam import display_copy

    wide = np.zeros((1, 5000, 3), np.uint8)
    wide[..., 0] = 255
    shown, size = display_copy(wide, 1024)
    assert size == (1, 5000) and shown.shape == (1, 1024, 3)
    assert np.all(shown[..., 0] == 255) and np.all(shown[..., 1:] == 0)
    gray = display_copy(np.full((2000, 10, 1), 7, np.uint8), 1024)[0]
    assert gray.shape[:2] == (1024, 5)


def test_load_image_refuses_a_path_that_is_not_a_regular_file(tmp_path):
    """A FIFO hung load_image for ever inside Image.open."""
    import os

    fifo = tmp_path / "photo.jpg"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="not a regular file"):
        helpers.load_image(fifo)


def test_randomize_layers_bounds_its_seed_before_anything_is_drawn():
    """seed=2**63 reached TensorFlow, whose message named no argument."""
    model = _tiny_model()
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match="seed"):
        with helpers.randomize_layers(model, ["c1"], seed=2**63):
            pass
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_a_sweep_bounds_its_box_and_iou_thresholds():
    """10,000 box thresholds took 9 s for one 48x48 map, 10**5 IoU thresholds 98 s."""
    from helpers.evaluate.max_box import max_box_accuracy

    maps, boxes = np.random.default_rng(0).random((2, 8, 8)), np.array([[1, 1, 4, 4], [2, 2, 6, 6]])
    with pytest.raises(ValueError, match="at most 1000"):
        max_box_accuracy(maps, boxes, thresholds=np.linspace(0, 1, 10_000))
    with pytest.raises(ValueError, match="at most 100"):
        max_box_accuracy(maps, boxes, iou_threshold=tuple(np.linspace(0.01, 1, 1000)))
    assert 0 <= max_box_accuracy(maps, boxes, thresholds=np.linspace(0, 1, 1000)).best <= 1


def test_a_network_that_outputs_nan_is_refused_not_mapped():
    """A diverged network (a NaN bias) gave NaN maps and probabilities, and a "top" class."""
    model = _tiny_model(classes=3)
    dense = model.layers[-1]
    kernel, bias = dense.get_weights()
    dense.set_weights([kernel, np.array([np.nan, 0, 0], np.float32)])
    images = np.random.default_rng(0).random((2, 16, 16, 3)).astype(np.float32)
    for method in (helpers.class_activation_maps, helpers.grad_cam):
        with pytest.raises(ValueError, match="NaN or infinite values for image 0"):
            method(model, images)


@pytest.mark.parametrize("bad, match", [
    (np.ones((4, 4)) * 1j, "real numbers"), ([["a", "b"], ["c", "d"]], "real numbers"),
    ([[1.0, 2.0], [3.0]], "real numbers"), (np.full((4, 4), 1e39), "float32"),
    (np.zeros((0, 4)), "empty"), (np.ones(4), "2-D"),
])
def test_show_cam_checks_its_map_as_every_map_function_does(bad, match):
    """show_cam drew complex and string maps and gave NumPy's messages for ragged or empty ones."""
    from helpers.plots.cam import show_cam

    with pytest.raises((TypeError, ValueError), match=match):
        show_cam(np.zeros((8, 8, 3), np.uint8), bad)
