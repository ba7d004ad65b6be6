"""The engine runs what helpers.cam says: every method's compiled, folded result equals its
readable function run eagerly on the unfolded model; new methods need only a weights function."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from helpers import _engine, cam

# Also run under KERAS_BACKEND=jax (make test-jax).
pytestmark = pytest.mark.jax

needs_tensorflow = pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="the eager reference takes gradients with tf.GradientTape (TensorFlow only)",
)


def _nested_model() -> keras.Model:
    """A base with BatchNormalization inside a Sequential, GAP, Dropout, Dense with softmax."""
    keras.utils.set_random_seed(3)
    base = keras.Sequential([
        keras.Input((20, 20, 3)),
        keras.layers.Conv2D(6, 3, name="conv_a"),
        keras.layers.BatchNormalization(name="bn_a"),
        keras.layers.ReLU(),
        keras.layers.Conv2D(8, 3, strides=2, name="conv_b"),
        keras.layers.BatchNormalization(name="bn_b"),
        keras.layers.ReLU(name="relu_b"),
    ], name="base")
    model = keras.Sequential([
        keras.Input((20, 20, 3)), base, keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dropout(0.2), keras.layers.Dense(5, activation="softmax"),
    ], name="nested")
    rng = np.random.default_rng(4)
    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 0.3, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, layer.moving_variance.shape))
    return model


@pytest.fixture(scope="module")
def model():
    return _nested_model()


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(5).uniform(-1, 1, (3, 20, 20, 3)).astype(np.float32)


def _eager_inputs(head, images, class_ids):
    """What the engine gives a method, computed eagerly on the unfolded model with
    tf.GradientTape: the feature map, the logits, the gradients of the chosen logits."""
    import tensorflow as tf

    features = tf.convert_to_tensor(head.feature_model(images, training=False))
    with tf.GradientTape() as tape:
        tape.watch(features)
        pooled = head.head_model(features, training=False)
        logits = tf.matmul(pooled, head.dense.kernel) + head.dense.bias
        selected = tf.gather(logits, class_ids, batch_dims=1)
    gradients = tape.batch_jacobian(selected, features)  # (B, K, h, w, k)
    # Score-CAM's input: the logits of the image masked by each normalised, upsampled channel.
    masked_logits = []
    for b in range(len(images)):
        channels = tf.transpose(features[b], (2, 0, 1))[..., None]  # (k, h, w, 1)
        up = tf.image.resize(channels, images.shape[1:3])  # bilinear
        low = tf.reduce_min(up, axis=(1, 2, 3), keepdims=True)
        high = tf.reduce_max(up, axis=(1, 2, 3), keepdims=True)
        masked = images[b][None] * (up - low) / (high - low + 1e-8)  # (k, H, W, C)
        pooled = head.head_model(head.feature_model(masked, training=False), training=False)
        masked_logits.append(tf.matmul(pooled, head.dense.kernel) + head.dense.bias)  # (k, C)
    return {
        "features": features, "logits": logits, "class_ids": tf.constant(class_ids),
        "kernel": head.dense.kernel, "gradients": gradients,
        "pooled_gradients": tf.reduce_sum(gradients, axis=(2, 3)),
        "masked_logits": tf.stack(masked_logits),  # (B, k, C)
    }


@needs_tensorflow
@pytest.mark.parametrize("name", sorted(cam.METHODS))
def test_every_method_equals_its_readable_function_run_eagerly(model, images, name):
    method = cam.METHODS[name]
    class_ids = np.array([[0, 3], [1, 2], [4, 4]])
    result = _engine.run(method, model, images, classes=class_ids)
    head = _engine.find_head(model, pooling=method.pooling_head)
    want = keras.ops.convert_to_numpy(method.maps(_eager_inputs(head, images, class_ids)))
    assert result.low_res.shape == want.shape == (3, 2, 8, 8)
    np.testing.assert_allclose(result.low_res, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    assert _engine.count_folded(_engine.fold_batch_norm(head.feature_model)) == 2  # it was folded


def test_a_new_method_is_one_weights_function(model, images):
    """Grad-CAM written from per-position gradients (as Grad-CAM++ needs them) gives Grad-CAM;
    the engine computes exactly the inputs the weights function names."""

    def mean_gradient_weights(gradients):
        return keras.ops.mean(gradients, axis=(2, 3))

    per_position = cam.Method("grad_cam_per_position", mean_gradient_weights)
    assert per_position.inputs == ("gradients",)
    got = _engine.run(per_position, model, images, classes="all")
    want = cam.grad_cam(model, images, classes="all")
    np.testing.assert_allclose(got.low_res, want.low_res, rtol=1e-4,
                               atol=1e-5 * np.abs(want.low_res).max())
    assert got.method == "grad_cam_per_position" and got.bias is None


def test_counters_count_traces_not_calls(images):
    model = _nested_model()
    counters = _engine.counters
    traces, calls = counters["traces"], counters["network_calls"]
    for _ in range(3):
        cam.class_activation_maps(model, images, top_k=2)
    assert counters["network_calls"] - calls == 3
    assert counters["traces"] - traces == 2  # the network and the CAM program, once each


def test_switching_folding_off_runs_the_model_as_it_is(model, images):
    with _engine.folding(False):
        plain = cam.class_activation_maps(model, images, classes="all")
    folded = cam.class_activation_maps(model, images, classes="all")
    np.testing.assert_allclose(plain.low_res, folded.low_res, rtol=1e-4,
                               atol=1e-5 * np.abs(plain.low_res).max())
    reference = keras.ops.convert_to_numpy(model(images, training=False))
    np.testing.assert_allclose(plain.probabilities, reference, atol=1e-6)


def test_chunks_are_small_on_the_cpu_and_large_on_an_accelerator(monkeypatch, images):
    """On the CPU a call's images go through the network 16 photos at a time (host memory: Binder
    gives 1-2 GB); on a GPU, 256 (the device's memory, and a GPU needs large batches)."""
    from helpers._engine import devices

    photo = 224 * 224 * 3
    monkeypatch.setattr(devices, "HAS_ACCELERATOR", {})
    monkeypatch.setattr(devices, "accelerators", lambda: [])
    assert devices.chunk_input_values() == 16 * photo
    monkeypatch.setattr(devices, "HAS_ACCELERATOR", {})
    monkeypatch.setattr(devices, "accelerators", lambda: ["/physical_device:GPU:0"])
    assert devices.chunk_input_values() == 256 * photo
    monkeypatch.setattr(devices, "CHUNK_INPUT_VALUES", 10**9)  # the CPU's: all in one call
    monkeypatch.setattr(devices, "ACCELERATOR_CHUNK_INPUT_VALUES", int(np.prod(images.shape[1:])))
    before = _engine.counters["network_calls"]
    model = keras.Sequential([keras.Input(images.shape[1:]), keras.layers.Conv2D(3, 3),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(2)])
    cam.class_activation_maps(model, images)
    assert _engine.counters["network_calls"] - before == len(images)  # one image per call


def test_a_model_the_reader_drops_is_freed_with_everything_built_for_it(images):
    """The caches hold models weakly, and nothing they keep holds its key: before, each
    load_classifier() + CAM kept a head's sub-models and their folded copies for good
    (12 rounds: +276 MiB)."""
    import gc
    import weakref

    from helpers._engine import compile as compiling
    from helpers._engine.heads import find_head

    def use_and_drop():
        model = _nested_model()
        for method in ("cam", "grad_cam", "score_cam") if keras.backend.backend() in (
                "tensorflow", "jax") else ("cam", "score_cam"):
            cam.activation_maps(model, images, method=method, upsample=True)
        compiling.compiled_forward(model)(images)
        head = find_head(model)
        assert _engine.count_folded(compiling.inference_model(head.feature_model, head.folded))
        return [weakref.ref(m) for m in (model, head.feature_model, head.head_model)]

    entries = len(compiling._CACHE)
    first = use_and_drop()
    gc.collect()
    assert first[0]() is None, "the model itself is kept"
    second = use_and_drop()
    gc.collect()
    # Everything of the first round is gone; of the latest only the model is sure to be (the
    # backend keeps its last traced function's graph, and so that head's sub-models, until
    # the next one: one round's worth, never more).
    assert [reference() is None for reference in first] == [True, True, True]
    assert second[0]() is None
    assert len(compiling._CACHE) <= entries  # (models of earlier tests may go too)


def test_two_threads_on_one_model_build_its_programs_once(images):
    import threading

    model = _nested_model()
    builds = _engine.counters["builds"]
    results, errors = [], []

    def run():
        try:
            results.append(cam.activation_maps(model, images, classes="all").low_res)
        except Exception as error:  # noqa: BLE001 - reported by the assert below
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert errors == [] and len(results) == 2
    np.testing.assert_array_equal(results[0], results[1])
    once = _engine.counters["builds"] - builds
    cam.activation_maps(model, images, classes="all")
    assert _engine.counters["builds"] - builds == once, "a program was built again"
    alone = _nested_model()
    before = _engine.counters["builds"]
    cam.activation_maps(alone, images, classes="all")
    assert _engine.counters["builds"] - before == once, "two threads built more than one does"


def test_a_loop_over_requests_keeps_a_bounded_number_of_programs(images):
    """One program is made per distinct request (here each ``top_k``); before, every one was
    kept for as long as the model lived. The least recently used go; what is used stays."""
    from helpers._engine import compile as compiling

    limit = compiling.MAX_PROGRAMS_PER_MODEL
    inputs = keras.Input((20, 20, 3))
    features = keras.layers.Conv2D(4, 3, name="features")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(limit + 8)(
        keras.layers.GlobalAveragePooling2D()(features)))
    before = compiling.counters["evictions"]
    for top_k in range(1, limit + 8):
        assert cam.activation_maps(model, images, top_k=top_k).low_res.shape[1] == top_k
    assert compiling.cached_count(model) <= limit
    assert compiling.counters["evictions"] > before
    builds = compiling.counters["builds"]
    cam.activation_maps(model, images, top_k=limit + 7)
    assert compiling.counters["builds"] == builds  # the latest request is still cached
