"""Grad-CAM++, Score-CAM, HiResCAM and LayerCAM (notebook 06) on cases with a known answer,
and against hand computations written as pytorch-grad-cam writes them (layout (B, k, h, w), numpy)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from helpers import _engine, cam

# Also run under KERAS_BACKEND=jax (make test-jax).
pytestmark = pytest.mark.jax

needs_tensorflow = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the hand computation takes gradients with tf.GradientTape (TensorFlow only)",
)


def _tape_gradients(model, layer, images, targets):
    """``(gradients, activations)`` ``(B, k, h, w)`` of each target's logit at ``layer``, by hand
    with ``tf.GradientTape`` (the reference the engine's gradients are checked against)."""
    import tensorflow as tf

    cut = model.get_layer(layer).output
    activations = tf.convert_to_tensor(keras.Model(model.inputs, cut)(images))
    rest = keras.Model(cut, model.outputs[0])
    for target in targets:
        with tf.GradientTape() as tape:
            tape.watch(activations)
            score = tf.reduce_sum(rest(activations)[:, target])
        yield (np.moveaxis(tape.gradient(score, activations).numpy(), -1, 1),
               np.moveaxis(activations.numpy(), -1, 1))


def _gap_model(channels: int = 6, seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((12, 12, 3)),
        keras.layers.Conv2D(channels, 3, strides=2, activation="relu", name="features"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(4, name="logits"),
    ], name=f"gap_{channels}")


def _images(count: int = 3, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (count, 12, 12, 3)).astype(np.float32)


def _features(model: keras.Model, images: np.ndarray) -> np.ndarray:
    head = cam.find_cam_head(model)
    return keras.ops.convert_to_numpy(head.feature_model(images, training=False))


def test_grad_cam_plus_plus_on_a_gap_network_is_a_closed_form_of_the_dense_weights():
    """On GAP → Dense, g = ∂S_c/∂f_k(x, y) = w_k^c / (h·w) everywhere, so
    w_k^c = h·w · α · relu(g) with α = g² / (2g² + s_k g³ + 1e-6)."""
    model, images = _gap_model(), _images()
    result = cam.grad_cam_plus_plus(model, images, classes="all")
    features = _features(model, images)  # (B, h, w, k)
    h, w = features.shape[1:3]
    kernel = cam.find_cam_head(model).weights  # (k, C)
    g = kernel.T[None] / (h * w)  # (1, C, k)
    s = features.sum(axis=(1, 2))[:, None, :]  # (B, 1, k)
    alpha = np.where(g != 0, g**2 / (2 * g**2 + s * g**3 + 1e-6), 0.0)
    weights = h * w * alpha * np.maximum(g, 0)  # (B, C, k)
    want = np.einsum("bhwk,bck->bchw", features, weights)
    np.testing.assert_allclose(result.low_res, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    assert result.method == "grad_cam_plus_plus" and result.bias is None


def test_score_cam_softmax_with_one_channel_is_that_channel():
    """One channel: a softmax over one channel's score is 1, so the map is the channel itself."""
    model, images = _gap_model(channels=1, seed=2), _images()
    result = cam.score_cam(model, images, top_k=2, weighting="softmax")
    features = _features(model, images)[..., 0]  # (B, h, w)
    assert result.method == "score_cam_softmax"
    for k in range(2):
        np.testing.assert_allclose(result.low_res[:, k], features, rtol=1e-5, atol=1e-6)


def _relu_gap_model() -> keras.Model:
    """The feature map is relu(image) itself (3 channels at input size, so up() is the identity),
    then GAP → Dense with known weights: every Score-CAM weight is computable by hand."""
    image = keras.Input((5, 5, 3))
    features = keras.layers.ReLU(name="features")(image)
    logits = keras.layers.Dense(2, name="logits")(keras.layers.GlobalAveragePooling2D()(features))
    model = keras.Model(image, logits, name="relu_gap")
    model.get_layer("logits").set_weights([np.array([[2.0, -1.0], [0.5, 1.0], [-1.0, 3.0]]),
                                            np.array([0.1, -0.2])])
    return model


def test_score_cam_weights_by_hand_on_a_relu_gap_network():
    """A = relu(x); channel k's mask m_k = norm(A_k); the masked input's logits are
    W^T mean(relu(x ⊙ m_k)) + b. The authors' weight is softmax over classes (a probability),
    pytorch-grad-cam's a softmax over channels; a constant channel gets 0 from the authors."""
    model = _relu_gap_model()
    images = np.random.default_rng(3).uniform(-1, 1, (2, 5, 5, 3)).astype(np.float32)
    images[1, :, :, 2] = -0.5  # image 1: channel 2 is relu(-0.5) = 0 everywhere, a constant map
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in model.get_layer("logits").weights)
    features = np.maximum(images, 0)  # (B, H, W, k)
    low, high = features.min(axis=(1, 2)), features.max(axis=(1, 2))  # (B, k)
    masks = (features - low[:, None, None]) / (high - low + 1e-8)[:, None, None]  # (B, H, W, k)
    masked = images[:, None] * np.moveaxis(masks, -1, 1)[..., None]  # (B, k, H, W, 3)
    logits = np.maximum(masked, 0).mean(axis=(2, 3)) @ kernel + bias  # (B, k, C)
    probabilities = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    authors = np.moveaxis(probabilities, -1, 1) * (high > low)[:, None, :]  # (B, C, k)
    peers = np.exp(np.moveaxis(logits, -1, 1))
    peers /= peers.sum(-1, keepdims=True)
    for weighting, weights, name in (("probability", authors, "score_cam"),
                                     ("softmax", peers, "score_cam_softmax")):
        result = cam.score_cam(model, images, classes="all", weighting=weighting)
        want = np.einsum("bhwk,bck->bchw", features, weights)
        assert result.method == name
        np.testing.assert_allclose(result.low_res, want, rtol=1e-5, atol=1e-6)
    assert authors[1, :, 2].max() == 0 and peers[1, :, 2].min() > 0


def _score_cam_by_hand(model, images, class_ids, weighting):
    """The two reference loops, step by step, in numpy (eager model calls): the authors'
    ScoreCAM.forward (haofanwang/Score-CAM) and pytorch-grad-cam's ScoreCAM.get_cam_weights.
    Returns the maps at input size (B, K, H, W) before ReLU."""
    activations = np.moveaxis(_features(model, images), -1, 1)  # (B, k, h, w)
    size = images.shape[1:3]
    up = keras.ops.convert_to_numpy(keras.ops.image.resize(
        activations.reshape(-1, *activations.shape[2:], 1), size, interpolation="bilinear",
        antialias=False)).reshape(*activations.shape[:2], *size)
    maps = np.zeros((*class_ids.shape, *size), np.float32)
    for b, targets in enumerate(class_ids):
        if weighting == "probability":  # the authors: one channel at a time
            for i in range(up.shape[1]):
                saliency = up[b, i]
                if saliency.max() == saliency.min():
                    continue
                norm = (saliency - saliency.min()) / (saliency.max() - saliency.min())
                output = keras.ops.convert_to_numpy(model(images[b][None] * norm[..., None]))[0]
                probability = np.exp(output - output.max()) / np.exp(output - output.max()).sum()
                maps[b] += probability[targets][:, None, None] * saliency
        else:  # pytorch-grad-cam: all channels, then a softmax over them
            maxs = up[b].reshape(up.shape[1], -1).max(-1)[:, None, None]
            mins = up[b].reshape(up.shape[1], -1).min(-1)[:, None, None]
            norm = (up[b] - mins) / (maxs - mins + 1e-8)
            logits = keras.ops.convert_to_numpy(model(images[b][None] * norm[..., None]))  # (k, C)
            scores = logits[:, targets].T  # (K, k)
            e = np.exp(scores - scores.max(axis=-1, keepdims=True))
            maps[b] = np.einsum("ck,khw->chw", e / e.sum(axis=-1, keepdims=True), up[b])
    return maps


@pytest.mark.parametrize("weighting", ["probability", "softmax"])
def test_score_cam_equals_the_reference_loop(weighting):
    model, images = _gap_model(seed=3), _images(seed=4)
    class_ids = np.array([[0, 2], [1, 3], [3, 3]])
    result = cam.score_cam(model, images, classes=class_ids, weighting=weighting)
    want = _score_cam_by_hand(model, images, class_ids, weighting)
    np.testing.assert_allclose(result.maps, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    if weighting == "probability":  # the authors' final map: ReLU, then min-max
        final = cam.normalize_cam(np.maximum(result.maps, 0))
        want = np.maximum(want, 0)
        want = (want - want.min(axis=(2, 3), keepdims=True)) / np.ptp(want, axis=(2, 3), keepdims=True)
        np.testing.assert_allclose(final, want, atol=1e-4)


def test_score_cam_refuses_an_unknown_weighting():
    from helpers.checks import ArgumentError

    with pytest.raises(ArgumentError, match="weighting must be one of 'probability', 'softmax'"):
        cam.score_cam(_gap_model(), _images(count=1), weighting="logit")


def test_score_cam_runs_one_forward_pass_per_channel_in_bounded_batches(monkeypatch, chunk_size):
    model, images = _gap_model(seed=5), _images(count=2)
    chunk_size(4 * 12 * 12 * 3)  # 4 masked images a call
    before = _engine.counters["network_calls"]
    chunked = cam.score_cam(model, images, classes="all")
    # one call for the feature maps, then 2 images × ceil(6 channels / 4) masked batches
    assert _engine.counters["network_calls"] - before == 1 + 2 * 2
    monkeypatch.undo()
    whole = cam.score_cam(model, images, classes="all")
    np.testing.assert_allclose(chunked.low_res, whole.low_res, rtol=1e-5, atol=1e-6)


@needs_tensorflow
def test_grad_cam_plus_plus_equals_the_hand_computation_with_gradient_tape():
    """pytorch-grad-cam's GradCAMPlusPlus.get_cam_weights on tf.GradientTape gradients, at an
    intermediate layer of a network without GAP (ReLU, max pooling and Dense after the cut)."""

    keras.utils.set_random_seed(6)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(5, 3, activation="relu", name="conv_a")(inputs)
    x = keras.layers.Conv2D(6, 3, name="conv_b")(x)
    x = keras.layers.MaxPooling2D()(keras.layers.ReLU()(x))
    outputs = keras.layers.Dense(3)(keras.layers.Dense(8, activation="relu")(
        keras.layers.Flatten()(x)))
    model = keras.Model(inputs, outputs)
    images = np.random.default_rng(7).uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
    result = cam.grad_cam_plus_plus(model, images, classes=[2, 0], layer="conv_b")

    expected = []
    for grads, acts in _tape_gradients(model, "conv_b", images, (2, 0)):
        grads_power_2 = grads**2
        grads_power_3 = grads_power_2 * grads
        sum_activations = np.sum(acts, axis=(2, 3))
        aij = grads_power_2 / (2 * grads_power_2
                               + sum_activations[:, :, None, None] * grads_power_3 + 0.000001)
        aij = np.where(grads != 0, aij, 0)
        weights = np.sum(np.maximum(grads, 0) * aij, axis=(2, 3))  # (B, k)
        expected.append(np.einsum("bkhw,bk->bhw", acts, weights))
    want = np.stack(expected, axis=1)
    np.testing.assert_allclose(result.low_res, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


def test_per_position_gradients_of_many_classes_are_refused_with_a_reason(monkeypatch):
    from helpers._engine import runner

    monkeypatch.setattr(runner, "GRADIENT_VALUES", 10)
    with pytest.raises(ValueError, match="grad_cam_plus_plus needs the gradient at every position"
                                         ".*ask for fewer classes"):
        cam.grad_cam_plus_plus(_gap_model(), _images(), classes="all")


# -- HiResCAM and LayerCAM: per-position gradient weights --------------------------------------


def test_hires_cam_on_a_gap_network_is_cam_over_hw_signed():
    """On GAP → Dense, ∂S_c/∂f_k(x, y) = w_k^c / (h·w) everywhere, so HiResCAM = Σ_k w_k^c f_k /
    (h·w) = CAM / (h·w), negative values included (no ReLU inside)."""
    model, images = _gap_model(seed=8), _images(seed=9)
    result = cam.hires_cam(model, images, classes="all")
    features = _features(model, images)  # (B, h, w, k)
    kernel = keras.ops.convert_to_numpy(model.get_layer("logits").kernel)  # (k, C)
    h, w = features.shape[1:3]
    want = np.einsum("bhwk,kc->bchw", features.astype(np.float64), kernel) / (h * w)
    assert result.method == "hires_cam" and result.low_res.shape == want.shape
    assert want.min() < 0 < want.max(), "the case must have negative values to show they are kept"
    np.testing.assert_allclose(result.low_res, want, rtol=1e-4, atol=1e-6 * np.abs(want).max())
    cams = cam.class_activation_maps(model, images, classes="all")
    np.testing.assert_allclose(result.low_res * h * w, cams.low_res, rtol=1e-4,
                               atol=1e-5 * np.abs(cams.low_res).max())


def test_layer_cam_on_a_gap_network_keeps_only_positive_dense_weights():
    """On GAP → Dense, relu(∂S_c/∂f_k) = relu(w_k^c) / (h·w): LayerCAM is Σ_k relu(w_k^c) f_k /
    (h·w), which differs from CAM / (h·w) wherever a class has a negative weight."""
    model, images = _gap_model(seed=3), _images(count=2)
    result = cam.activation_maps(model, images, classes=[0, 2], method="layer_cam")
    features = _features(model, images).astype(np.float64)  # (B, h, w, k)
    kernel = keras.ops.convert_to_numpy(model.get_layer("logits").kernel)[:, [0, 2]]  # (k, K)
    assert kernel.min() < 0, "the case must have a negative weight to test the ReLU"
    height, width = features.shape[1:3]
    want = np.einsum("bhwk,kc->bchw", features, np.maximum(kernel, 0.0)) / (height * width)
    assert result.method == "layer_cam" and result.low_res.shape == want.shape
    np.testing.assert_allclose(result.low_res, want, rtol=1e-4, atol=1e-6 * np.abs(want).max())
    signed = np.einsum("bhwk,kc->bchw", features, kernel) / (height * width)
    assert np.abs(result.low_res - signed).max() > 1e-3 * np.abs(signed).max()


@needs_tensorflow
@pytest.mark.parametrize("name", ["hires_cam", "layer_cam"])
def test_hires_and_layer_cam_equal_the_hand_computation_with_gradient_tape(name):
    """pytorch-grad-cam's get_cam_image of HiResCAM ((grads * activations).sum(1)) and LayerCAM
    ((np.maximum(grads, 0) * activations).sum(1)), before BaseCAM's final ReLU, on
    tf.GradientTape gradients at a layer without ReLU, in a network without GAP."""

    keras.utils.set_random_seed(10)
    inputs = keras.Input((14, 14, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv_a")(inputs)
    x = keras.layers.Conv2D(5, 3, name="conv_b")(x)  # signed activations
    x = keras.layers.MaxPooling2D()(keras.layers.ReLU()(x))
    outputs = keras.layers.Dense(3)(keras.layers.Dense(6, activation="tanh")(
        keras.layers.Flatten()(x)))
    model = keras.Model(inputs, outputs)
    images = np.random.default_rng(11).uniform(-1, 1, (2, 14, 14, 3)).astype(np.float32)
    result = cam.activation_maps(model, images, classes=[1, 2], layer="conv_b", method=name)

    expected = []
    for grads, acts in _tape_gradients(model, "conv_b", images, (1, 2)):
        weights = grads if name == "hires_cam" else np.maximum(grads, 0)
        expected.append((weights * acts).sum(axis=1))
    want = np.stack(expected, axis=1)
    # Where conv_b is negative the ReLU after it zeroes the gradient, so LayerCAM is >= 0 here;
    # HiResCAM keeps negative evidence (negative gradients at positive activations).
    assert want.max() > 0 and (want.min() < 0) == (name == "hires_cam")
    np.testing.assert_allclose(result.low_res, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


def test_the_named_aliases_are_activation_maps_with_the_method_set():
    model, images = _gap_model(seed=12), _images(count=2)
    for name in ("hires_cam", "layer_cam"):
        alias = getattr(cam, name)
        assert alias.keywords == {"method": name} and name in cam.METHODS
        assert cam.METHODS[name].inputs == ("gradients",)
        got = alias(model, images, top_k=2)
        want = cam.activation_maps(model, images, top_k=2, method=name)
        np.testing.assert_array_equal(got.low_res, want.low_res)
    import helpers

    assert "hires_cam" not in helpers.__all__ and "layer_cam" not in helpers.__all__
    got = helpers.activation_maps(model, images, method="hires_cam")
    assert got.method == "hires_cam"


# -- a method is one function and one entry ---------------------------------------------------


def positive_gradient_weights(gradients):
    """LayerCAM's weights, written again outside the package: each position weighted by its
    positive gradient."""
    return keras.ops.relu(gradients)


def test_a_method_is_one_function_and_one_entry(monkeypatch):
    """A method added as the docstring of helpers.cam says (one weights function, one entry in
    METHODS) runs through the generic entry point and gives the built-in LayerCAM."""
    monkeypatch.setitem(cam.METHODS, "my_layer_cam",
                        cam.Method("my_layer_cam", positive_gradient_weights))
    model, images = _gap_model(seed=3), _images(count=2)
    result = cam.activation_maps(model, images, classes=[0, 2], method="my_layer_cam")
    built_in = cam.layer_cam(model, images, classes=[0, 2])
    assert result.method == "my_layer_cam"
    np.testing.assert_allclose(result.low_res, built_in.low_res, rtol=1e-6, atol=1e-7)


def test_weighted_sum_takes_channel_or_per_position_weights():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(2, 3, 4, 5)).astype(np.float32)
    channel = rng.normal(size=(2, 6, 5)).astype(np.float32)
    per_position = np.broadcast_to(channel[:, :, None, None, :], (2, 6, 3, 4, 5)).copy()
    want = np.einsum("bhwk,bck->bchw", features, channel)
    for weights in (channel, per_position):
        got = keras.ops.convert_to_numpy(cam.weighted_sum(features, weights))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    shared = keras.ops.convert_to_numpy(cam.weighted_sum(features, channel[0]))
    np.testing.assert_allclose(shared, np.einsum("bhwk,ck->bchw", features, channel[0]),
                               rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"\(K, k\), \(B, K, k\) or \(B, K, h, w, k\)"):
        cam.weighted_sum(features, np.zeros((2, 6, 3, 5), np.float32))


def test_a_misnamed_parameter_is_refused_with_the_names_the_engine_provides():
    def weights(A, class_ids):  # the docstring's letter, not the engine's name
        return A

    with pytest.raises(ValueError, match="'A'") as error:
        cam.Method("mine", weights)
    for name in ("features", "kernel", "class_ids", "logits", "pooled_gradients", "gradients",
                 "masked_logits"):
        assert name in str(error.value)
    with pytest.raises(ValueError, match="needs masks="):
        cam.Method("masked", lambda masked_logits: masked_logits)
    with pytest.raises(ValueError, match="unknown method 'layercam'"):
        cam.activation_maps(_gap_model(seed=1), _images(count=1), method="layercam")
