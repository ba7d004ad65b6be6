"""Sanity checks and faithfulness (helpers.evaluate.trust, notebook 06) on models with a known answer."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from helpers import cam
from helpers.models import Classifier
from helpers.evaluate.trust import deletion_insertion, randomize_layers

# Also run under KERAS_BACKEND=jax (make test-jax).
pytestmark = pytest.mark.jax


def _redness_classifier() -> Classifier:
    """Class 0's logit is the mean redness (R − G) of the image, class 1's its opposite: the
    evidence for class 0 is exactly where the image is red."""
    image = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(2, 1, use_bias=False, name="redness")(image)
    x = keras.layers.GlobalAveragePooling2D()(x)
    logits = keras.layers.Dense(2, use_bias=False, name="logits")(x)
    model = keras.Model(image, logits, name="redness")
    model.get_layer("redness").set_weights([np.array([[[[1.0, -1.0], [-1.0, 1.0], [0, 0]]]])])
    model.get_layer("logits").set_weights([np.eye(2) * 4.0])
    return Classifier(name="redness", model=model, input_size=(16, 16), num_classes=2,
                      normalize=lambda x: x / 255.0)


def _red_patch_photo() -> np.ndarray:
    photo = np.full((16, 16, 3), 128, np.uint8)
    photo[2:8, 3:11] = (250, 20, 20)  # the evidence
    return photo


def test_deletion_and_insertion_reward_the_map_that_ranks_the_evidence_first():
    classifier, photo = _redness_classifier(), _red_patch_photo()
    truth = np.zeros((16, 16), np.float32)
    truth[2:8, 3:11] = 1.0
    rng = np.random.default_rng(0)
    maps = np.stack([truth + 0.01 * rng.random((16, 16)), 1.0 - truth, rng.random((16, 16))])
    curves = deletion_insertion(classifier, [photo] * 3, maps, [0, 0, 0], steps=8, blur_sigma=2)
    assert curves.deletion.shape == curves.insertion.shape == (3, 9)
    np.testing.assert_allclose(curves.fractions, np.linspace(0, 1, 9))
    # Step 0 is the photo itself (deletion) and the blurred photo (insertion); the last
    # deletion step is all black, the last insertion step the photo again.
    assert np.allclose(curves.deletion[:, 0], curves.deletion[0, 0])
    assert np.allclose(curves.insertion[:, -1], curves.deletion[0, 0])
    good, reversed_, random_ = range(3)
    assert curves.deletion_auc[good] < curves.deletion_auc[random_] < curves.deletion_auc[reversed_]
    assert curves.insertion_auc[good] > curves.insertion_auc[random_] > curves.insertion_auc[reversed_]


def _redness_probability(image: np.ndarray) -> float:
    """The redness classifier's class-0 probability by hand: softmax of (4r, −4r), r the mean
    of (R − G) / 255."""
    redness = (image[..., 0].astype(np.float64) - image[..., 1]).mean() / 255.0
    return float(1 / (1 + np.exp(-8 * redness)))


@pytest.mark.parametrize("baseline", [None, "black", "grey", "blur"])
def test_each_baseline_is_what_deletion_ends_on_and_insertion_starts_from(baseline):
    """Deletion's last step is the baseline image, insertion's first step too; the default
    pairs black (deletion) with a blur (insertion). "grey" is the ImageNet mean colour."""
    from scipy.ndimage import gaussian_filter

    classifier, photo = _redness_classifier(), _red_patch_photo()
    maps = np.random.default_rng(0).random((2, 16, 16))
    curves = deletion_insertion(classifier, [photo] * 2, maps, [0, 0], steps=4, blur_sigma=2,
                                baseline=baseline)
    blurred = gaussian_filter(photo.astype(np.float32), sigma=(2, 2, 0), mode="nearest")
    grey = np.broadcast_to(np.array([0.485, 0.456, 0.406]) * 255, photo.shape)
    black = np.zeros(photo.shape)
    substrate = {"black": black, "grey": grey, "blur": blurred}
    deleted = substrate[baseline or "black"]
    start = substrate[baseline or "blur"]
    np.testing.assert_allclose(curves.deletion[:, -1], _redness_probability(deleted), rtol=1e-5)
    np.testing.assert_allclose(curves.insertion[:, 0], _redness_probability(start), rtol=1e-5)
    np.testing.assert_allclose(curves.deletion[:, 0], _redness_probability(photo), rtol=1e-5)
    assert curves.deletion_auc.shape == curves.insertion_auc.shape == (2,)  # per image
    assert curves.baseline == (baseline or "black/blur")


def test_deletion_insertion_refuses_bad_arguments():
    classifier, photo = _redness_classifier(), _red_patch_photo()
    maps = np.ones((1, 4, 4), np.float32)
    with pytest.raises(TypeError, match="helpers.Classifier"):
        deletion_insertion(classifier.model, [photo], maps, [0])
    with pytest.raises(ValueError, match=r"maps must be \(B, h, w\) with B = 1"):
        deletion_insertion(classifier, [photo], np.ones((2, 4, 4)), [0])
    with pytest.raises(ValueError, match="NaN"):
        deletion_insertion(classifier, [photo], maps * np.nan, [0])
    with pytest.raises(ValueError, match=r"class ids must be in 0\.\.1"):
        deletion_insertion(classifier, [photo], maps, [2])
    with pytest.raises(ValueError, match="steps must be an int"):
        deletion_insertion(classifier, [photo], maps, [0], steps=0)
    with pytest.raises(ValueError, match="baseline must be one of 'black', 'grey', 'blur'"):
        deletion_insertion(classifier, [photo], maps, [0], baseline="white")


def _small_cnn() -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((12, 12, 3)),
        keras.layers.Conv2D(4, 3, name="conv"),
        keras.layers.BatchNormalization(name="bn"),
        keras.layers.ReLU(),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3, name="logits"),
    ])


def test_randomize_layers_changes_the_maps_inside_and_restores_the_model_after():
    model = _small_cnn()
    model.get_layer("bn").moving_mean.assign(np.full(4, 0.7, np.float32))
    images = np.random.default_rng(1).uniform(-1, 1, (2, 12, 12, 3)).astype(np.float32)
    before = [w.copy() for w in model.get_weights()]
    trained = cam.class_activation_maps(model, images, classes="all")
    with randomize_layers(model, ["logits", "bn", "conv"], seed=3) as changed:
        assert changed == ["logits", "bn", "conv"]
        inside = cam.class_activation_maps(model, images, classes="all")
        bn = model.get_layer("bn")
        assert np.all(keras.ops.convert_to_numpy(bn.moving_mean) == 0.0)  # initial values
        assert np.all(keras.ops.convert_to_numpy(model.get_layer("logits").bias) == 0.0)
    assert not np.allclose(inside.low_res, trained.low_res)
    for restored, original in zip(model.get_weights(), before):
        np.testing.assert_array_equal(restored, original)
    again = cam.class_activation_maps(model, images, classes="all")
    np.testing.assert_allclose(again.low_res, trained.low_res, rtol=1e-6, atol=1e-6)
    with randomize_layers(model, ["logits"], seed=3):
        first = model.get_layer("logits").get_weights()[0]
    with randomize_layers(model, ["logits"], seed=3):
        np.testing.assert_array_equal(model.get_layer("logits").get_weights()[0], first)


def test_a_layer_named_twice_is_refused_and_the_model_is_left_as_it_was():
    """Before: the second save held the first random draw, so the block's end "restored" it
    and the model stayed random for the rest of the session."""
    model = _small_cnn()
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError, match=r"layers names \['conv'\] more than once"):
        with randomize_layers(model, ["conv", "logits", "conv"]):
            pass
    for restored, original in zip(model.get_weights(), before):
        np.testing.assert_array_equal(restored, original)


def test_every_variable_of_a_layer_is_redrawn_and_restored():
    """A SeparableConv2D's depthwise and pointwise kernels (before: reported re-initialised,
    both kept their values); a layer with a variable no initializer drew is refused whole."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 3)),
                              keras.layers.SeparableConv2D(4, 3, name="separable"),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    layer = model.get_layer("separable")
    for variable in (layer.depthwise_kernel, layer.pointwise_kernel, layer.bias):
        variable.assign(keras.ops.ones(variable.shape))
    with randomize_layers(model, ["separable"], seed=1) as changed:
        assert changed == ["separable"]
        depthwise, pointwise, bias = (keras.ops.convert_to_numpy(v) for v in layer.weights)
        assert not np.any(depthwise == 1) and not np.any(pointwise == 1) and np.all(bias == 0)
    assert all(np.all(keras.ops.convert_to_numpy(v) == 1) for v in layer.weights)

    class Scaled(keras.layers.Layer):  # a variable added without an initializer attribute
        def build(self, shape):
            self.w = self.add_weight(shape=(), initializer="ones", name="w")

        def call(self, x):
            return x * self.w

    custom = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(2, 3, name="conv"),
                               Scaled(name="scaled"), keras.layers.GlobalAveragePooling2D(),
                               keras.layers.Dense(2)])
    kernel = custom.get_layer("conv").get_weights()[0].copy()
    with pytest.raises(ValueError, match=r"layer 'scaled': its variable 'w' has no initializer"):
        with randomize_layers(custom, ["conv", "scaled"]):
            pass
    np.testing.assert_array_equal(custom.get_layer("conv").get_weights()[0], kernel)


def test_randomize_layers_restores_after_an_error_and_refuses_bad_names():
    model = _small_cnn()
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(RuntimeError, match="inside"):
        with randomize_layers(model, ["conv"]):
            raise RuntimeError("inside")
    for restored, original in zip(model.get_weights(), before):
        np.testing.assert_array_equal(restored, original)
    with pytest.raises(ValueError, match=r"no layers named \['conv9'\]"):
        with randomize_layers(model, ["conv9"]):
            pass
    with pytest.raises(ValueError, match="list of layer names, got the str"):
        with randomize_layers(model, "conv"):
            pass


def test_deletion_insertion_makes_its_steps_a_batch_at_a_time(monkeypatch):
    """steps=1000 held 2,002 copies of the photo (+1.2 GB); now at most one forward batch of
    them is made at a time, and the curve is what the eagerly made images give."""
    from helpers.evaluate import trust

    classifier, photo = _redness_classifier(), _red_patch_photo()
    maps = np.random.default_rng(1).uniform(0, 1, (1, 16, 16))
    made = []
    getitem = trust.LazyImages.__getitem__

    def recording(self, part):
        images = getitem(self, part)
        made.append(len(images))
        return images

    monkeypatch.setattr(trust.LazyImages, "__getitem__", recording)
    curves = trust.deletion_insertion(classifier, [photo], maps, [0], steps=100)
    assert sum(made) == 2 * 101 and max(made) <= trust.FORWARD_BATCH
    order = np.argsort(-maps.reshape(-1), kind="stable")
    counts = np.round(curves.fractions * 256).astype(int)
    flat = photo.reshape(-1, 3)
    eager = []
    for count in counts:
        step = flat.copy()
        step[order[:count]] = 0
        eager.append(step.reshape(16, 16, 3))
    expected, _ = trust.class_probabilities(classifier, np.stack(eager), 0)
    np.testing.assert_allclose(curves.deletion[0], expected, rtol=1e-6, atol=1e-7)


def test_permute_shuffles_each_variable_keeps_its_values_and_restores_them():
    model = _small_cnn()
    model.get_layer("bn").moving_mean.assign(np.arange(4, dtype=np.float32))
    before = [w.copy() for w in model.get_weights()]
    images = np.random.default_rng(1).uniform(-1, 1, (2, 12, 12, 3)).astype(np.float32)
    trained = cam.class_activation_maps(model, images, classes="all")
    with randomize_layers(model, ["logits", "bn", "conv"], seed=3, mode="permute") as changed:
        assert changed == ["logits", "bn", "conv"]
        inside = [w.copy() for w in model.get_weights()]
        shuffled = cam.class_activation_maps(model, images, classes="all")
    for permuted, original in zip(inside, before):  # the same values, in another order
        np.testing.assert_array_equal(np.sort(permuted, axis=None), np.sort(original, axis=None))
    kernel = model.get_layer("conv").get_weights()[0]
    assert not np.array_equal(inside[0], kernel)
    assert not np.allclose(shuffled.low_res, trained.low_res)
    for restored, original in zip(model.get_weights(), before):
        np.testing.assert_array_equal(restored, original)
    with randomize_layers(model, ["conv"], seed=3, mode="permute"):
        first = model.get_layer("conv").get_weights()[0]
    with randomize_layers(model, ["conv"], seed=3, mode="permute"):
        np.testing.assert_array_equal(model.get_layer("conv").get_weights()[0], first)
    with randomize_layers(model, ["conv"], seed=4, mode="permute"):
        assert not np.array_equal(model.get_layer("conv").get_weights()[0], first)


def test_permute_needs_no_initializer_and_an_unknown_mode_is_refused():
    class Scaled(keras.layers.Layer):  # no initializer attribute: reinit refuses it, permute not
        def build(self, shape):
            self.w = self.add_weight(shape=(2,), initializer="ones", name="w")

        def call(self, x):
            return x * self.w[0]

    custom = keras.Sequential([keras.Input((8, 8, 3)), Scaled(name="scaled"),
                               keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    custom.get_layer("scaled").w.assign(np.array([1.0, 2.0], np.float32))
    with randomize_layers(custom, ["scaled"], seed=0, mode="permute"):
        values = keras.ops.convert_to_numpy(custom.get_layer("scaled").w)
        assert sorted(values.tolist()) == [1.0, 2.0]
    with pytest.raises(ValueError, match="mode"):
        with randomize_layers(custom, ["scaled"], mode="shuffle"):
            pass
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(custom.get_layer("scaled").w), [1, 2])


@pytest.mark.parametrize("seed", [1.7, -1, "0", None, True])
def test_randomize_layers_refuses_a_seed_that_is_not_a_non_negative_integer(seed):
    model = _small_cnn()
    before = [keras.ops.convert_to_numpy(w).copy() for w in model.weights]
    with pytest.raises(ValueError, match=r"seed must be an integer in 0\.\.4294967295, got"):
        with randomize_layers(model, [model.layers[-1].name], seed=seed):
            pass
    for saved, weight in zip(before, model.weights):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(weight), saved)
