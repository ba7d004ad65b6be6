"""Guided Backpropagation and Guided Grad-CAM (helpers.guided, notebook 06): a known answer by
hand, a tf.GradientTape computation with explicit guided ReLUs, and the product with Grad-CAM."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from helpers import cam, guided

# Also run under KERAS_BACKEND=jax (make test-jax).
pytestmark = pytest.mark.jax

needs_tensorflow = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the hand computation takes gradients with tf.GradientTape (TensorFlow only)",
)

RELUS = {  # how the hidden activation is written, and its cap
    "Conv2D(activation='relu')": None,
    "ReLU()": None,
    "Activation('relu')": None,
    "ReLU(max_value=6)": 6.0,
    "Activation('relu6')": 6.0,
}


def _dense_relu_dense(kind: str) -> keras.Model:
    """x (2, 2, 3) → 1×1 conv (a Dense over the colours at each pixel) → ReLU → Flatten → Dense."""
    image = keras.Input((2, 2, 3))
    conv = keras.layers.Conv2D(4, 1, activation="relu" if kind.startswith("Conv2D") else None,
                               name="hidden")
    x = conv(image)
    if kind == "ReLU()":
        x = keras.layers.ReLU()(x)
    elif kind == "ReLU(max_value=6)":
        x = keras.layers.ReLU(max_value=6.0)(x)
    elif kind.startswith("Activation"):
        x = keras.layers.Activation("relu6" if "relu6" in kind else "relu")(x)
    logits = keras.layers.Dense(2, name="logits")(keras.layers.Flatten()(x))
    model = keras.Model(image, logits)
    rng = np.random.default_rng(0)
    conv.set_weights([rng.normal(size=(1, 1, 3, 4)) * 3, rng.normal(size=4)])
    model.get_layer("logits").set_weights([rng.normal(size=(16, 2)), np.zeros(2)])
    return model


@pytest.mark.parametrize("kind", sorted(RELUS))
def test_guided_backprop_by_hand_zeroes_negative_upstream_gradients(kind):
    """pre = x W1 + b1 at each pixel; the upstream gradient at the ReLU output is W2's column of
    class c (as Flatten lays it out); the guided rule keeps relu(upstream) where 0 < pre < cap,
    and the input gradient is that times W1ᵀ."""
    model, cap = _dense_relu_dense(kind), RELUS[kind]
    images = np.random.default_rng(1).normal(size=(3, 2, 2, 3)).astype(np.float32) * 2
    w1, b1 = (keras.ops.convert_to_numpy(w) for w in model.get_layer("hidden").weights)
    w2 = keras.ops.convert_to_numpy(model.get_layer("logits").kernel)  # (16, 2)
    pre = images @ w1[0, 0] + b1  # (B, 2, 2, 4)
    gate = (pre > 0) & (pre < (np.inf if cap is None else cap))
    result = guided.guided_backprop(model, images, classes=[1, 0])
    for k, c in enumerate((1, 0)):
        upstream = w2[:, c].reshape(2, 2, 4)
        want = (np.maximum(upstream, 0) * gate) @ w1[0, 0].T  # (B, 2, 2, 3)
        plain = (upstream * gate) @ w1[0, 0].T
        np.testing.assert_allclose(result.maps[:, k], want, rtol=1e-5, atol=1e-6)
        assert not np.allclose(want, plain)  # the rule changed something: the test can fail
    assert result.maps.shape == (3, 2, 2, 2, 3) and result.method == "guided_backprop"
    assert result.relus == 1 and result.class_ids.tolist() == [[1, 0]] * 3
    if cap is not None:
        assert (pre > cap).any()  # some inputs sit on the cap, where no gradient flows


def test_the_model_keeps_its_relus_and_leaky_relus_are_not_swapped():
    image = keras.Input((4, 4, 3))
    x = keras.layers.Conv2D(3, 1, activation="relu", name="conv")(image)
    x = keras.layers.ReLU(max_value=6.0, name="relu6")(x)
    x = keras.layers.ReLU(negative_slope=0.1, name="leaky")(x)
    model = keras.Model(image, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(x)))
    images = np.random.default_rng(2).normal(size=(2, 4, 4, 3)).astype(np.float32)
    before = cam.grad_cam(model, images, classes=[0]).low_res
    result = guided.guided_backprop(model, images, classes=[0])
    assert result.relus == 2  # conv's relu and ReLU(6); the leaky ReLU keeps its own gradient
    assert model.get_layer("conv").activation is keras.activations.relu
    assert "call" not in vars(model.get_layer("relu6"))
    np.testing.assert_array_equal(cam.grad_cam(model, images, classes=[0]).low_res, before)
    np.testing.assert_allclose(result.logits, keras.ops.convert_to_numpy(model(images)), rtol=1e-5,
                               atol=1e-6)


def _small_conv_net() -> keras.Model:
    keras.utils.set_random_seed(3)
    image = keras.Input((10, 10, 3))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="c1")(image)
    x = keras.layers.Conv2D(5, 3, use_bias=False, name="c2")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.ReLU(max_value=6.0, name="relu6")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(6, 1, name="c3")(x)
    x = keras.layers.Activation("relu", name="c3_relu")(x)
    logits = keras.layers.Dense(3, name="logits")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(image, logits)
    rng = np.random.default_rng(4)
    bn = model.get_layer("bn")
    bn.set_weights([rng.uniform(0.5, 2, 5), rng.normal(size=5), rng.normal(size=5) * 0.3,
                    rng.uniform(0.5, 2, 5)])
    model.get_layer("c1").set_weights([rng.normal(size=(3, 3, 3, 4)), rng.normal(size=4) * 0.5])
    return model


@needs_tensorflow
def test_guided_backprop_equals_gradient_tape_with_explicit_guided_relus():
    """The same network written out with tf.nn ops and a tf.custom_gradient guided ReLU (the
    BatchNormalization as its formula: the engine runs it folded into c2)."""
    import tensorflow as tf

    def guided_relu(cap):
        @tf.custom_gradient
        def relu(x):
            def grad(dy):
                gate = (x > 0) if cap is None else (x > 0) & (x < cap)
                return tf.nn.relu(dy) * tf.cast(gate, dy.dtype)
            return (tf.nn.relu(x) if cap is None else tf.clip_by_value(x, 0.0, cap)), grad
        return relu

    model = _small_conv_net()
    layer = model.get_layer
    images = tf.constant(np.random.default_rng(5).normal(size=(2, 10, 10, 3)).astype(np.float32))
    bn = layer("bn")

    def logits_of(x):
        h = guided_relu(None)(tf.nn.conv2d(x, layer("c1").kernel, 1, "VALID") + layer("c1").bias)
        h = tf.nn.conv2d(h, layer("c2").kernel, 1, "VALID")
        h = bn.gamma * (h - bn.moving_mean) / tf.sqrt(bn.moving_variance + bn.epsilon) + bn.beta
        h = tf.nn.max_pool2d(guided_relu(6.0)(h), 2, 2, "VALID")
        h = guided_relu(None)(tf.nn.conv2d(h, layer("c3").kernel, 1, "VALID") + layer("c3").bias)
        return tf.reduce_mean(h, axis=(1, 2)) @ layer("logits").kernel + layer("logits").bias

    result = guided.guided_backprop(model, images.numpy(), classes=[2, 0])
    for k, c in enumerate((2, 0)):
        with tf.GradientTape() as tape:
            tape.watch(images)
            score = tf.reduce_sum(logits_of(images)[:, c])
        want = tape.gradient(score, images).numpy()
        np.testing.assert_allclose(result.maps[:, k], want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    assert result.relus == 3


def test_guided_grad_cam_is_guided_backprop_times_the_upsampled_relu_of_grad_cam():
    model = _small_conv_net()
    images = np.random.default_rng(6).normal(size=(2, 10, 10, 3)).astype(np.float32)
    result = guided.guided_grad_cam(model, images, top_k=2, layer="c2")
    backprop = guided.guided_backprop(model, images, top_k=2)
    grad_cam = cam.grad_cam(model, images, classes=backprop.class_ids, layer="c2")
    localisation = cam.upsample_maps(np.maximum(grad_cam.low_res, 0), (10, 10))  # (B, K, H, W)
    want = backprop.maps * localisation[..., None]
    assert result.method == "guided_grad_cam" and result.grad_cam.layer == "c2"
    np.testing.assert_array_equal(result.class_ids, backprop.class_ids)
    np.testing.assert_allclose(result.maps, want, rtol=1e-5, atol=1e-7)
    assert (localisation == 0).any() and (localisation > 0).any()  # the ReLU matters here


def test_guided_functions_check_their_arguments():
    model = _small_conv_net()
    images = np.zeros((1, 10, 10, 3), np.float32)
    with pytest.raises(ValueError, match="top_k must be an integer in 1..3"):
        guided.guided_backprop(model, images, top_k=4)
    with pytest.raises(ValueError, match=r"class ids must be in 0\.\.2"):
        guided.guided_grad_cam(model, images, classes=[3])


def test_the_pass_back_to_the_input_goes_a_few_photos_at_a_time_on_the_cpu(monkeypatch):
    """A backward pass to the input keeps every layer's activations of its chunk, so on the CPU
    it takes BACKWARD_CHUNK_INPUT_VALUES (4 photos), not the forward passes' 16, and the maps do
    not depend on the chunking."""
    from helpers import _engine
    from helpers._engine import devices

    model = _dense_relu_dense("ReLU()")
    images = np.random.default_rng(2).normal(size=(9, 2, 2, 3)).astype(np.float32)
    monkeypatch.setattr(devices, "HAS_ACCELERATOR", {keras.backend.backend(): False})
    assert devices.chunk_input_values(backward=True) == 4 * 224 * 224 * 3
    whole = guided.guided_backprop(model, images, classes=[0] * 9).maps
    monkeypatch.setattr(devices, "BACKWARD_CHUNK_INPUT_VALUES", 4 * 2 * 2 * 3)
    monkeypatch.setattr(devices, "CHUNK_INPUT_VALUES", 10**9)  # forward passes: one call
    before = _engine.counters["network_calls"]
    chunked = guided.guided_backprop(model, images, classes=[0] * 9).maps
    assert _engine.counters["network_calls"] - before == 3  # 4 + 4 + 1 photos
    np.testing.assert_allclose(chunked, whole, rtol=1e-6, atol=1e-7)
