"""BatchNormalization folding (helpers._engine.graph): the folded graph computes what the model computes,
folds only what may be folded, follows changed weights, and is what the CAM engine runs."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from helpers import _engine, cam
from helpers._engine import graph

# Also run under KERAS_BACKEND=jax (make test-jax).
pytestmark = pytest.mark.jax


def _randomize_batch_norm(model: keras.Model, seed: int = 0) -> None:
    """Moving statistics and affine parameters far from their initial 0/1, so folding is tested."""
    rng = np.random.default_rng(seed)
    for layer in graph.all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization):
            for variable in (layer.moving_mean, layer.beta):
                if variable is not None:
                    variable.assign(rng.normal(0.0, 0.5, variable.shape).astype("float32"))
            for variable in (layer.moving_variance, layer.gamma):
                if variable is not None:
                    variable.assign(rng.uniform(0.3, 2.0, variable.shape).astype("float32"))


def _bn(name: str, **kwargs) -> keras.layers.BatchNormalization:
    return keras.layers.BatchNormalization(name=name, **kwargs)


@pytest.fixture(scope="module")
def mixed_model():
    """Every case in one small network: foldable pairs (Conv2D without and with bias,
    DepthwiseConv2D with a multiplier, a residual block, BN without scale/center) and pairs that
    must stay apart (an activation inside the conv, a conv output read twice, BN over width,
    BN after Dense)."""
    keras.utils.set_random_seed(1)
    layers = keras.layers
    inputs = keras.Input((16, 16, 3))
    x = layers.Conv2D(8, 3, padding="same", use_bias=False, name="c1")(inputs)
    x = layers.ReLU()(_bn("bn1")(x))  # folded
    y = layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, name="dw")(x)
    y = _bn("bn_dw", scale=False, center=False)(y)  # folded, no γ/β
    y = layers.Conv2D(8, 1, name="c2")(y)
    y = _bn("bn2")(y)  # folded, conv with bias
    x = layers.ReLU()(layers.Add()([x, y]))  # residual block
    z = layers.Conv2D(8, 3, padding="same", activation="relu", name="c_act")(x)
    z = _bn("bn_after_activation")(z)  # not folded: conv → ReLU → BN
    shared = layers.Conv2D(8, 3, padding="same", name="c_shared")(z)
    read_twice = _bn("bn_shared")(shared)  # not folded: the conv output is also added below
    z = layers.Add()([read_twice, shared])
    w = layers.Conv2D(8, 3, padding="same", name="c_width")(z)
    w = _bn("bn_width", axis=2)(w)  # not folded: normalises the width axis, not channels
    pooled = layers.GlobalAveragePooling2D()(w)
    dense = _bn("bn_dense")(layers.Dense(6, name="hidden")(pooled))  # not folded: not a conv
    outputs = layers.Dense(4, name="logits")(dense)
    model = keras.Model(inputs, outputs, name="mixed")
    _randomize_batch_norm(model)
    return model


def test_folds_exactly_the_foldable_pairs(mixed_model):
    folded = graph.fold_batch_norm(mixed_model)
    names = sorted(l.name for l in folded.layers if isinstance(l, graph.FoldedConvBatchNorm))
    assert names == ["bn1_folded", "bn2_folded", "bn_dw_folded"]
    assert graph.count_folded(folded) == 3
    kept = {l.name for l in folded.layers if isinstance(l, keras.layers.BatchNormalization)}
    assert kept == {"bn_after_activation", "bn_shared", "bn_width", "bn_dense"}


def test_folded_model_computes_the_same_outputs(mixed_model):
    folded = graph.fold_batch_norm(mixed_model)
    x = np.random.default_rng(2).normal(size=(5, 16, 16, 3)).astype("float32")
    want = keras.ops.convert_to_numpy(mixed_model(x, training=False))
    got = keras.ops.convert_to_numpy(folded(x, training=False))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    # the variables are the model's own, not copies
    assert {id(v) for v in folded.variables} <= {id(v) for v in mixed_model.variables}


def test_folded_model_follows_changed_weights(mixed_model):
    folded = graph.fold_batch_norm(mixed_model)
    x = np.random.default_rng(3).normal(size=(2, 16, 16, 3)).astype("float32")
    norm = mixed_model.get_layer("bn1")
    saved = norm.moving_mean.numpy().copy()
    try:
        norm.moving_mean.assign(saved + 1.0)
        want = keras.ops.convert_to_numpy(mixed_model(x, training=False))
        got = keras.ops.convert_to_numpy(folded(x, training=False))
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    finally:
        norm.moving_mean.assign(saved)


def test_nested_models_are_folded_and_plain_models_returned_as_they_are():
    keras.utils.set_random_seed(4)
    base = keras.Sequential(
        [keras.Input((12, 12, 3)), keras.layers.Conv2D(4, 3), _bn("inner_bn"), keras.layers.ReLU()],
        name="base",
    )
    outer = keras.Sequential([keras.Input((12, 12, 3)), base, keras.layers.Flatten()], name="outer")
    _randomize_batch_norm(outer)
    folded = graph.fold_batch_norm(outer)
    assert graph.count_folded(folded) == 1
    x = np.random.default_rng(5).normal(size=(3, 12, 12, 3)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(folded(x)), keras.ops.convert_to_numpy(outer(x)),
        rtol=1e-4, atol=1e-5,
    )
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    assert graph.fold_batch_norm(plain) is plain


def test_fold_refuses_models_without_a_graph():
    with pytest.raises(TypeError, match="needs a keras.Model"):
        graph.fold_batch_norm("resnet50")

    class Subclassed(keras.Model):
        def call(self, x):
            return x

    with pytest.raises(ValueError, match="no layer graph"):
        graph.fold_batch_norm(Subclassed())


def test_mixed_precision_folded_pass_stays_close(mixed_model):
    x = np.random.default_rng(6).normal(size=(4, 16, 16, 3)).astype("float32")
    result32 = cam.grad_cam(mixed_model, x, layer="c_width", classes=[0, 1])
    result16 = cam.grad_cam(mixed_model, x, layer="c_width", classes=[0, 1], dtype="mixed_bfloat16")
    scale = np.abs(result32.low_res).max()
    assert np.abs(result16.low_res - result32.low_res).max() < 0.1 * scale
    assert mixed_model.get_layer("c1").dtype_policy.name == "float32"  # restored after tracing


@pytest.mark.slow
def test_cam_engine_runs_the_folded_graph_and_matches_the_unfolded_model(lite0, samples):
    photos = list(samples.values())
    head = cam.find_cam_head(lite0)
    folded = graph.fold_batch_norm(head.feature_model)
    assert graph.count_folded(folded) == 49  # every conv → BN pair of EfficientNet-Lite0
    result = cam.class_activation_maps(lite0, photos, classes=[285, 967])
    with _engine.folding(False):  # the engine can run the model as it is, too
        unfolded = cam.class_activation_maps(lite0, photos, classes=[285, 967])
    assert not np.array_equal(result.low_res, unfolded.low_res)  # a different computation ...
    assert np.abs(result.low_res - unfolded.low_res).max() <= 1e-4 * np.abs(result.low_res).max()
    # Reference: the unfolded feature model, eagerly, and the CAM weighting by hand.
    features = keras.ops.convert_to_numpy(
        head.feature_model(lite0.preprocess(photos), training=False)
    )
    want = np.einsum("bhwk,kc->bchw", features, head.weights[:, [285, 967]])
    assert np.abs(result.low_res - want).max() <= 1e-4 * np.abs(want).max()
    logits = keras.ops.convert_to_numpy(lite0.model(lite0.preprocess(photos), training=False))
    assert np.abs(result.logits - logits).max() <= 1e-4 * np.abs(logits).max()


@pytest.mark.slow
def test_resnet50_is_folded_everywhere():
    model = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classes=5)
    _randomize_batch_norm(model, seed=7)
    folded = graph.fold_batch_norm(model)
    assert graph.count_folded(folded) == 53  # every BatchNormalization of ResNet-50
    x = np.random.default_rng(8).normal(size=(2, 64, 64, 3)).astype("float32")
    want = keras.ops.convert_to_numpy(model(x, training=False))
    got = keras.ops.convert_to_numpy(_engine.compiled_forward(model)(x))
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-5)


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="AutoGraph is TensorFlow's")
def test_folding_happens_before_tracing(caplog):
    """The graph is folded eagerly, never inside tf.function (AutoGraph cannot convert it and
    would print a warning into the reader's notebook)."""
    import logging

    keras.utils.set_random_seed(9)
    model = keras.Sequential(
        [keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3), _bn("bn"), keras.layers.Flatten()]
    )
    with caplog.at_level(logging.WARNING, logger="tensorflow"):
        _engine.compiled_forward(model)(np.zeros((1, 8, 8, 3), "float32"))
    assert "AutoGraph" not in caplog.text


def test_one_batch_norm_layer_after_two_convolutions_folds_twice():
    """A BatchNormalization layer shared by two branches gives two folded layers (unique names),
    each with its own convolution."""
    keras.utils.set_random_seed(10)
    shared = _bn("shared_bn")
    inputs = keras.Input((10, 10, 2))
    left = shared(keras.layers.Conv2D(4, 3, padding="same", name="left")(inputs))
    right = shared(keras.layers.Conv2D(4, 1, name="right")(inputs))
    model = keras.Model(inputs, keras.layers.Add()([left, right]))
    _randomize_batch_norm(model, seed=11)
    folded = graph.fold_batch_norm(model)
    names = sorted(l.name for l in folded.layers if isinstance(l, graph.FoldedConvBatchNorm))
    assert names == ["shared_bn_folded", "shared_bn_folded_2"]
    x = np.random.default_rng(12).normal(size=(2, 10, 10, 2)).astype("float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(folded(x)), keras.ops.convert_to_numpy(model(x)),
        rtol=1e-4, atol=1e-5,
    )


def test_a_nested_layer_named_like_an_outer_one_is_a_clear_error():
    """Before: Keras's 'The name "conv" is used 2 times in the model' from inside the engine."""
    from helpers import cam

    base = keras.Sequential([keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3, name="conv")],
                            name="base")
    image = keras.Input((16, 16, 3))
    features = keras.layers.Conv2D(4, 3, name="conv")(base(image))
    model = keras.Model(image, keras.layers.Dense(2)(
        keras.layers.GlobalAveragePooling2D()(features)), name="twice")
    for method in ("cam", "score_cam"):
        with pytest.raises(ValueError, match=r"model 'twice' has two layers named 'conv' \(one "
                                             r"inside a nested model\).*another name="):
            cam.activation_maps(model, np.zeros((1, 16, 16, 3), np.float32), method=method)
