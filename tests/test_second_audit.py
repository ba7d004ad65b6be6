"""The second adversarial audit's defects (issue 22), one test each, by kind: silent wrong
answers and lost data, unbounded memory, unclear errors. Each failed on the code before."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import helpers
from helpers import cam
from helpers.evaluate.boxes import NO_BOX, box_iou, scale_box
from helpers.evaluate.localization import localization_report, pointing_game
from helpers.evaluate.max_box import max_box_accuracy

pytestmark = pytest.mark.jax


def _gap_model(size: int = 16, classes: int = 3, activation: str | None = None) -> keras.Model:
    inputs = keras.Input((size, size, 3))
    features = keras.layers.Conv2D(4, 3, padding="same", name="features")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    return keras.Model(inputs, keras.layers.Dense(classes, activation=activation)(pooled))


# -- silent wrong answers ---------------------------------------------------------------------


def test_a_true_box_that_is_no_box_is_refused_by_every_localisation_score():
    """The pointing game scored NO_BOX (-1, -1, -1, -1) as a real box in the corner: a peak
    near (0, 0) was a hit, while the IoU scores counted the same sample as a miss."""
    cams = np.zeros((2, 20, 20), np.float32)
    cams[:, 0, 0] = 1.0
    truth = [(5, 5, 9, 9), NO_BOX]
    for score in (lambda: pointing_game(cams, truth), lambda: localization_report(cams, truth),
                  lambda: max_box_accuracy(cams, truth)):
        with pytest.raises(ValueError, match="true box 1 is NO_BOX"):
            score()


def test_tied_box_thresholds_report_the_smallest_in_any_order():
    cams = np.zeros((1, 20, 20), np.float32)
    cams[0, 5:10, 5:10] = 1.0
    for order in ([0.9, 0.5, 0.1], [0.1, 0.9, 0.5]):
        result = max_box_accuracy(cams, [(5, 5, 9, 9)], 0.5, "zhou", thresholds=order)
        assert result.best_threshold == pytest.approx(0.1) and result.best == 1.0


def test_compile_classifier_finds_a_softmax_inside_a_nested_model():
    """The loss was taken from logits on a softmax that sat inside a wrapped model."""
    inner = _gap_model(activation="softmax")
    inputs = keras.Input((16, 16, 3))
    for outer in (keras.Model(inputs, inner(inputs)), keras.Sequential([keras.Input((16, 16, 3)),
                                                                         inner])):
        assert helpers.compile_classifier(outer).loss.from_logits is False
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf  # tf.nn.softmax is named softmax_v2

        model = _gap_model(activation=tf.nn.softmax)
        assert helpers.compile_classifier(model).loss.from_logits is False
        assert cam.class_activation_maps(model, np.ones((1, 16, 16, 3))).output_activation == \
            "softmax"


def test_compile_classifier_refuses_one_output():
    """build_small_cnn(num_classes=1) trained with all-zero labels had loss 0 and accuracy 1."""
    with pytest.raises(ValueError, match="one output"):
        helpers.compile_classifier(_gap_model(classes=1))


def test_save_to_folder_refuses_a_folder_that_holds_another_set(tmp_path):
    first = helpers.make_photo_composites(4, size=32, seed=1)
    first.save_to_folder(tmp_path / "set")
    with pytest.raises(ValueError, match="not empty"):
        helpers.make_photo_composites(2, size=32, seed=2).save_to_folder(tmp_path / "set")
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        first.save_to_folder(tmp_path / "file")


def test_images_beyond_float32_are_refused_not_made_infinite():
    model = _gap_model()
    with pytest.raises(ValueError, match="beyond float32"):
        cam.class_activation_maps(model, np.full((1, 16, 16, 3), 1e39))


def test_cam_refuses_a_layer_it_would_ignore():
    """layer="typo" returned the maps of the pooling's input without a word."""
    model = _gap_model()
    images = np.ones((1, 16, 16, 3), np.float32)
    for wrong in ("typo", model.layers[0].name):
        with pytest.raises(ValueError, match="CAM weights the feature map its global pooling"):
            cam.class_activation_maps(model, images, layer=wrong)
    assert cam.class_activation_maps(model, images, layer="features").layer == "features"


def test_sample_images_refuses_a_name_twice():
    with pytest.raises(ValueError, match="more than once"):
        helpers.sample_images(["chelsea", "coffee", "chelsea"])


# -- unbounded memory -------------------------------------------------------------------------


def test_guided_backprop_bounds_its_result_before_any_work():
    """classes="all" on 1000 classes: 574 MiB a 224-pixel photo, with no bound."""
    if keras.backend.backend() not in ("tensorflow", "jax"):
        pytest.skip("input gradients need TensorFlow or JAX")
    model = _gap_model(size=224, classes=1000)
    photos = np.zeros((3, 224, 224, 3), np.float32)
    for method in (helpers.guided_backprop, helpers.guided_grad_cam):
        with pytest.raises(ValueError, match="GiB"):
            method(model, photos, classes="all")


def test_the_explorer_upsamples_with_two_small_factors():
    """Its (h·w) × (H·W) operator was 590 MB for a 96 × 96 map; the factors give the same map."""
    from helpers.maps import upsample_maps, upsample_operator

    low = np.random.default_rng(0).normal(size=(96, 96)).astype(np.float32)
    rows, columns = upsample_operator(low.shape, (384, 384))
    assert rows.shape == (384, 96) and columns.shape == (384, 96)
    np.testing.assert_allclose(rows @ low @ columns.T, upsample_maps(low, (384, 384)), atol=1e-5)


def test_a_huge_photo_is_drawn_from_a_small_copy_in_its_own_pixels():
    """plot_cam drew a 24-megapixel photo whole (1.3 GB, seconds a figure)."""
    import matplotlib.pyplot as plt

    from helpers.plots.cam import DISPLAY_SIDE, show_cam

    photo = np.zeros((3000, 4000, 3), np.uint8)
    ax = show_cam(photo, np.ones((7, 7), np.float32), box_threshold=0.2)
    drawn = ax.get_images()[0]
    assert max(drawn.get_array().shape[:2]) <= DISPLAY_SIDE
    assert drawn.get_extent() == [0, 4000, 3000, 0]
    plt.close(ax.figure)


# -- unclear errors ---------------------------------------------------------------------------


def test_boxes_that_are_not_numbers_get_our_error():
    for bad in ({"x0": 1}, "1, 2, 3, 4", np.array([1 + 1j, 2, 3, 4])):
        with pytest.raises(TypeError, match="must be numbers"):
            box_iou(bad, (0, 0, 4, 4))
    with pytest.raises(TypeError, match="must be numbers"):
        scale_box("box", (7, 7), (224, 224))


def test_the_explorer_fits_a_small_model_and_checks_its_names():
    from helpers.plots.explorer import cam_explorer

    model = _gap_model(classes=2)
    photos = [np.zeros((16, 16, 3), np.uint8), np.full((16, 16, 3), 200, np.uint8)]
    explorer = cam_explorer(model, photos)  # the default top_k (5) was refused for 2 classes
    assert explorer.rank_slider.max == 2
    with pytest.raises(TypeError, match="image_names must be a list of strings"):
        cam_explorer(model, photos, image_names="ab")


def test_the_explorer_takes_an_upload_for_a_bare_model_at_any_size():
    """A bare model's upload was refused: "images have shape (300, 451, 3), model expects ..."."""
    from helpers.plots.explorer import cam_explorer

    model = _gap_model(classes=3)
    explorer = cam_explorer(model, [np.zeros((16, 16, 3), np.uint8)])
    index = explorer.add_photo(np.full((30, 45, 3), 90, np.uint8), name="wide")
    assert index == 1 and explorer.result.low_res.shape[0] == 2


def test_images_too_small_for_the_layers_are_refused_by_helpers():
    """TensorFlow's "Binding inputs to tf.function failed", with garbage values printed."""
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, name="a")(inputs)
    x = keras.layers.Conv2D(4, 3, name="b")(x)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x)))
    for shape in ((1, 2, 2, 3), (1, 1, 40, 3)):
        with pytest.raises(ValueError, match="too small for this model"):
            cam.class_activation_maps(model, np.ones(shape, np.float32))
    assert cam.class_activation_maps(model, np.ones((1, 5, 5, 3), np.float32)).low_res.shape == \
        (1, 1, 1, 1)


def test_transfer_functions_read_tensors_and_say_what_a_data_set_must_be(lite0):
    from helpers.models.transfer import pooled_features

    model = helpers.build_transfer_model(lite0, 2, seed=0)
    photos = helpers.make_photo_composites(2, classes=["cat", "rocket"], seed=0).images
    as_array = pooled_features(model, photos)[0]
    np.testing.assert_allclose(pooled_features(model, list(photos))[0], as_array, atol=1e-5)
    tensor = keras.ops.convert_to_tensor(photos)
    np.testing.assert_allclose(pooled_features(model, tensor)[0], as_array, atol=1e-5)
    helpers.fit_transfer_head(model, tensor, np.array([0, 1]), epochs=1)
    single_images = iter([(photos[0], np.int64(0))])
    with pytest.raises(ValueError, match="single images"):
        pooled_features(model, single_images)


def test_evaluate_localization_names_what_it_was_given():
    model = _gap_model(size=48, classes=10)
    data = helpers.make_digit_canvases(6, seed=0)
    with pytest.raises(TypeError, match="images, labels and boxes"):
        helpers.evaluate_localization(model, {"images": data.images})
    broken = helpers.data.digits.DigitCanvases(
        images=data.images, labels=data.labels[:5], boxes=data.boxes, sources=data.sources,
        digit_sizes=data.digit_sizes)
    with pytest.raises(ValueError, match="data.labels must be 6 integer classes"):
        helpers.evaluate_localization(model, broken)


def test_results_join_only_their_own_kind():
    model, other = _gap_model(classes=3), _gap_model(classes=5)
    images = np.ones((1, 16, 16, 3), np.float32)
    result = cam.class_activation_maps(model, images)
    with pytest.raises(TypeError, match="CAMResult"):
        result.joined(None)
    with pytest.raises(ValueError, match="cannot join"):
        result.joined(cam.class_activation_maps(other, images))


def test_maps_and_arguments_of_the_wrong_kind_get_our_errors():
    import matplotlib.pyplot as plt

    from helpers.maps import normalize_cam, upsample_maps
    from helpers.plots.cam import plot_cam, plot_cam_classes

    assert normalize_cam(np.array([[1e300, 0.0], [0.0, 0.0]])).max() == 1.0  # finite, not "NaN"
    for empty in (np.ones((2, 0)), np.ones((1, 0, 5))):
        with pytest.raises(ValueError, match="empty"):
            normalize_cam(empty)
        with pytest.raises(ValueError, match="empty"):
            upsample_maps(empty, (8, 8))
    model = _gap_model()
    images = np.ones((1, 16, 16, 3), np.float32)
    result = cam.class_activation_maps(model, images, top_k=2)
    with pytest.raises(TypeError, match="Axes"):
        plot_cam(result, images, ax="x")
    with pytest.raises(TypeError, match="show_photo must be True or False"):
        plot_cam_classes(result, images, show_photo=None)
    plt.close("all")
    with pytest.raises(TypeError, match="list of layer names"):
        with helpers.randomize_layers(model, None):
            pass
    inner = _gap_model()
    inputs = keras.Input((16, 16, 3))
    outer = keras.Model(inputs, inner(inputs))
    with pytest.raises(ValueError, match="inside a nested model"):
        with helpers.randomize_layers(outer, ["features"]):
            pass
    with pytest.raises(ValueError, match="not built"):
        helpers.parameter_breakdown(keras.Sequential([keras.layers.Dense(3)]))


def test_one_index_gives_a_set_of_one_and_sizes_may_be_arrays():
    data = helpers.make_photo_composites(4, size=32, seed=0)
    assert data.subset(3).images.shape == (1, 32, 32, 3)
    assert helpers.make_digit_canvases(4, seed=0).subset(np.int64(2)).images.shape[0] == 1
    assert scale_box((0, 0, 6, 6), np.array([7, 7]), (224, 224)) == (0, 0, 223, 223)


def test_complex_maps_are_refused_by_the_scores():
    cams = np.ones((1, 8, 8), np.complex64)
    with pytest.raises(TypeError, match="real numbers"):
        pointing_game(cams, [(0, 0, 3, 3)])
