"""Class activation maps and Grad-CAM (helpers.cam): the CAM identity, class selection, nested
models, the Grad-CAM equivalence, and clear errors for bad input."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import helpers
from helpers import _engine, cam

# Also run under KERAS_BACKEND=jax (make test-jax).
pytestmark = pytest.mark.jax


def _relative_error(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| / max |want|: the identity's error on the logits' scale."""
    return float(np.abs(np.asarray(got) - np.asarray(want)).max() / np.abs(want).max())


def _check_identity(result: cam.CAMResult, reference_logits: np.ndarray) -> None:
    """mean(M_c) + b_c == S_c, against logits computed by the model itself."""
    wanted = np.take_along_axis(reference_logits, result.class_ids, axis=1)
    assert _relative_error(result.low_res.mean(axis=(2, 3)) + result.bias, wanted) <= 1e-4
    assert _relative_error(result.logits, reference_logits) <= 1e-4


@pytest.fixture(scope="module")
def photos(samples):
    return list(samples.values())  # seven photos of different sizes


@pytest.fixture(scope="module")
def top3(lite0, photos):
    return cam.class_activation_maps(lite0, photos, top_k=3)


@pytest.fixture(scope="module")
def nested_models():
    """Transfer-learning shapes: a base inside a Sequential with its own GAP and Dense (softmax),
    a ResNet-50 base with pooling="avg" under a Dense, a classifier wrapped in a Functional."""
    keras.utils.set_random_seed(0)
    base = keras.Sequential(
        [
            keras.Input((48, 48, 3)),
            keras.layers.Conv2D(8, 3, activation="relu", name="conv_a"),
            keras.layers.Conv2D(16, 3, strides=2, activation="relu", name="conv_b"),
        ],
        name="base",
    )
    sequential = keras.Sequential(
        [
            keras.Input((48, 48, 3)),
            base,
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dropout(0.3),
            keras.layers.Dense(6, activation="softmax"),
        ],
        name="transfer",
    )
    resnet_base = keras.applications.ResNet50(
        include_top=False, weights=None, pooling="avg", input_shape=(64, 64, 3)
    )
    pooled_base = keras.Sequential(
        [keras.Input((64, 64, 3)), resnet_base, keras.layers.Dense(4)], name="resnet_avg"
    )
    inner = keras.Sequential(
        [
            keras.Input((48, 48, 3)),
            base,
            keras.layers.GlobalAveragePooling2D(keepdims=True),
            keras.layers.Flatten(),
            keras.layers.Dense(5),
        ],
        name="inner",
    )
    image = keras.Input((48, 48, 3))
    scores = keras.layers.Activation("softmax")(inner(keras.layers.Rescaling(0.5)(image)))
    wrapped = keras.Model(image, scores, name="wrapped")
    return {"sequential": sequential, "resnet_avg": pooled_base, "wrapped": wrapped}


def _random_images(shape, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# The identity mean(M_c) + b_c = S_c
# ---------------------------------------------------------------------------------------------


def test_identity_on_offline_model(lite0, photos, top3):
    assert top3.low_res.shape == (7, 3, 7, 7)
    assert top3.class_ids.shape == (7, 3) and top3.logits.shape == (7, 1000)
    assert top3.layer == "top_relu" and top3.method == "cam"
    _check_identity(top3, lite0.logits(photos))


@pytest.mark.slow
def test_identity_on_random_resnet50(samples):
    resnet = helpers.load_classifier("resnet50", weights=None)
    images = [samples["chelsea"], samples["coffee"]]
    result = cam.class_activation_maps(resnet, images, top_k=2)
    assert result.layer == "conv5_block3_out"
    assert result.low_res.shape == (2, 2, 7, 7)
    _check_identity(result, resnet.logits(images))


def test_head_is_found_by_type_and_cached(lite0):
    head = cam.find_cam_head(lite0)
    assert head.feature_layer == "top_relu"
    assert isinstance(head.pooling, keras.layers.GlobalAveragePooling2D)
    assert head.dense.name == "predictions"
    assert head.feature_shape == (7, 7, 1280)
    assert head.weights.shape == (1280, 1000) and head.bias.shape == (1000,)
    assert cam.find_cam_head(lite0.model) is head  # cached per Keras model


def _network_calls() -> int:
    return _engine.counters["network_calls"]


def test_one_forward_pass_per_call(lite0, samples):
    before = _network_calls()
    cam.class_activation_maps(lite0, [samples["chelsea"], samples["rocket"]], classes="all")
    assert _network_calls() - before == 1


def test_maps_cover_the_input_and_are_lazy(top3):
    result = cam.CAMResult(**{**top3.__dict__, "_maps": None})  # nothing upsampled yet
    one = result.map(2, 1)
    assert one.shape == (224, 224)
    assert result.maps.shape == (7, 3, 224, 224)
    np.testing.assert_allclose(result.maps[2, 1], one, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(result.maps, cam.upsample_maps(top3.low_res, (224, 224)))


def test_sum_then_upsample_equals_upsample_then_sum(lite0, samples):
    """Bilinear resizing is linear: resize(sum_k w_k f_k) == sum_k w_k resize(f_k)."""
    head = cam.find_cam_head(lite0)
    features = keras.ops.convert_to_numpy(
        head.feature_model(lite0.preprocess(samples["coffee"]), training=False))
    weights = head.weights[:, [967, 504]]  # espresso, coffee mug
    summed_first = cam.upsample_maps(np.einsum("bhwk,kc->bchw", features, weights), (224, 224))
    upsampled = keras.ops.image.resize(features, (224, 224), interpolation="bilinear")
    upsampled_first = np.einsum("bhwk,kc->bchw", keras.ops.convert_to_numpy(upsampled), weights)
    assert _relative_error(summed_first, upsampled_first) <= 1e-4


# ---------------------------------------------------------------------------------------------
# Choosing classes
# ---------------------------------------------------------------------------------------------


def test_top_k_is_sorted_by_logit(top3):
    assert np.array_equal(top3.class_ids[:, 0], top3.logits.argmax(axis=1))
    assert np.all(np.diff(top3.scores, axis=1) <= 0)
    assert top3.class_ids[0, 0] == 285  # chelsea: Egyptian cat


def test_default_is_top1(lite0, samples):
    result = cam.class_activation_maps(lite0, samples["coffee"])
    assert result.class_ids.tolist() == [[967]]
    assert result.label(0, 0).startswith("espresso (967), p = ")


def test_all_agrees_with_top_k(lite0, photos, top3):
    every = cam.class_activation_maps(lite0, photos, classes="all")
    assert every.low_res.shape == (7, 1000, 7, 7)
    assert np.array_equal(every.class_ids, np.tile(np.arange(1000), (7, 1)))
    picked = np.take_along_axis(every.low_res, top3.class_ids[:, :, None, None], axis=1)
    np.testing.assert_allclose(picked, top3.low_res, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(every.logits, top3.logits, rtol=1e-5, atol=1e-5)
    assert every._maps is None  # 7 x 1000 x 224 x 224 maps are not computed unless asked
    np.testing.assert_allclose(
        every.map(3, int(top3.class_ids[3, 1])), top3.map(3, 1), rtol=1e-5, atol=1e-5
    )


def test_per_image_class_ids(lite0, samples, top3):
    images = [samples["chelsea"], samples["coffee"]]
    ids = np.array([[285, 967, 3], [967, 281, 999]])
    result = cam.class_activation_maps(lite0, images, classes=ids)
    assert np.array_equal(result.class_ids, ids)
    for row in range(2):
        alone = cam.class_activation_maps(lite0, images[row], classes=list(ids[row]))
        np.testing.assert_allclose(result.low_res[row], alone.low_res[0], rtol=1e-5, atol=1e-4)
    same = cam.class_activation_maps(lite0, images, classes=[285, 967])
    assert same.class_ids.tolist() == [[285, 967], [285, 967]]
    np.testing.assert_allclose(same.low_res[0, 0], top3.low_res[0, 0], rtol=1e-5, atol=1e-4)
    single = cam.class_activation_maps(lite0, images, classes=np.int64(504))
    assert single.class_ids.tolist() == [[504], [504]]


def test_class_absent_from_the_image(lite0, samples, top3):
    absent = int(top3.logits[1].argmin())  # the least likely class for the coffee photo
    result = cam.class_activation_maps(lite0, samples["coffee"], classes=[absent])
    assert result.class_probabilities[0, 0] < 1e-4
    assert np.all(np.isfinite(result.maps))
    shown = cam.normalize_cam(result.maps)
    assert np.all(np.isfinite(shown)) and shown.min() >= 0.0 and shown.max() <= 1.0


@pytest.mark.parametrize(
    ("classes", "top_k", "error", "match"),
    [
        ([1000], None, ValueError, r"0\.\.999.*1000"),
        ([-1, 5], None, ValueError, r"0\.\.999.*-1"),
        ([2.5], None, TypeError, "integers"),
        (["cat"], None, TypeError, "integers"),
        ([True], None, TypeError, "integers"),
        ("cats", None, ValueError, "'all'"),
        ([], None, ValueError, "empty"),
        (np.zeros((3, 2), dtype=int), None, ValueError, "3 rows for 2 images"),
        (np.zeros((2, 2, 2), dtype=int), None, ValueError, r"\(K,\) or \(B, K\)"),
        ([[1, 2], [3]], None, TypeError, "class ids"),
        ([285], 3, ValueError, "not both"),
        ("all", 5, ValueError, "not both"),
        (None, 0, ValueError, r"1\.\.1000"),
        (None, 1001, ValueError, r"1\.\.1000"),
        (None, 2.0, TypeError, "integer"),
        (None, True, TypeError, "integer"),
    ],
)
def test_bad_classes_get_clear_errors(lite0, samples, classes, top_k, error, match):
    images = [samples["chelsea"], samples["coffee"]]
    with pytest.raises(error, match=match):
        cam.class_activation_maps(lite0, images, classes=classes, top_k=top_k)


# ---------------------------------------------------------------------------------------------
# Models: nested, bare, without GAP
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["sequential", "resnet_avg", "wrapped"])
def test_nested_transfer_learning_models(nested_models, name):
    model = nested_models[name]
    size = model.inputs[0].shape[1]
    images = _random_images((3, size, size, 3))
    result = cam.class_activation_maps(model, images, top_k=2)
    outputs = keras.ops.convert_to_numpy(model(images, training=False))
    if name == "resnet_avg":
        assert result.layer == "conv5_block3_out"  # inside the base, under its own GAP
        reference = outputs
    else:
        assert result.layer == "conv_b"  # inside the nested base
        # these models end in softmax: the result's logits are taken before it
        np.testing.assert_allclose(result.probabilities, outputs, atol=1e-6)
        reference = result.logits
    _check_identity(result, reference)
    assert result.class_names[0] == "class 0"  # a bare model has no class names
    assert result.input_size == (size, size)


def test_bare_model_image_checks(nested_models):
    model = nested_models["sequential"]
    with pytest.raises(ValueError, match=r"expects \(48, 48, 3\)"):
        cam.class_activation_maps(model, _random_images((2, 50, 48, 3)))
    resized = cam.class_activation_maps(
        model, [_random_images((60, 40, 3)), _random_images((48, 48, 3), seed=1)]
    )
    assert resized.low_res.shape == (2, 1, 22, 22)
    with pytest.raises(ValueError, match="NaN"):
        cam.class_activation_maps(model, np.full((1, 48, 48, 3), np.nan, dtype=np.float32))
    with pytest.raises(TypeError, match="Classifier or a keras.Model"):
        cam.class_activation_maps("resnet50", _random_images((1, 48, 48, 3)))


@pytest.fixture(scope="module")
def no_gap_model():
    """A small VGG-like classifier: conv blocks, Flatten, two Dense layers (no GAP)."""
    keras.utils.set_random_seed(1)
    image = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv1")(image)
    x = keras.layers.MaxPooling2D(name="pool1")(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(32, activation="relu", name="fc1")(x)
    scores = keras.layers.Dense(10, activation="softmax", name="predictions")(x)
    return keras.Model(image, scores, name="tiny_vgg")


def test_no_gap_head_points_to_grad_cam(no_gap_model):
    with pytest.raises(ValueError, match=r"no GlobalAveragePooling2D.*fc1.*grad_cam"):
        cam.class_activation_maps(no_gap_model, _random_images((1, 32, 32, 3)))
    pooled_then_dense = keras.Sequential(
        [keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3), keras.layers.MaxPooling2D(),
         keras.layers.Flatten(), keras.layers.Dense(3)]
    )
    with pytest.raises(ValueError, match="reached MaxPooling2D.*grad_cam"):
        cam.find_cam_head(pooled_then_dense)


def test_models_without_a_dense_output_or_graph():
    conv_only = keras.Sequential(
        [keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3), keras.layers.GlobalAveragePooling2D()]
    )
    with pytest.raises(ValueError, match="not from a Dense layer"):
        cam.find_cam_head(conv_only)

    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(3)

        def call(self, x):
            return self.dense(keras.ops.mean(x, axis=(1, 2)))

    with pytest.raises(ValueError, match="not a Functional or Sequential"):
        cam.find_cam_head(Subclassed())


# ---------------------------------------------------------------------------------------------
# Grad-CAM
# ---------------------------------------------------------------------------------------------


def test_grad_cam_equals_cam_over_area_on_offline_model(lite0, photos, top3):
    result = cam.grad_cam(lite0, photos, top_k=3)
    assert result.method == "grad_cam" and result.layer == "top_relu" and result.bias is None
    assert np.array_equal(result.class_ids, top3.class_ids)
    assert _relative_error(result.low_res * 7 * 7, top3.low_res) <= 1e-4


@pytest.mark.parametrize("name", ["sequential", "wrapped"])
def test_grad_cam_equals_cam_over_area_on_nested_models(nested_models, name):
    images = _random_images((2, 48, 48, 3), seed=3)
    by_cam = cam.class_activation_maps(nested_models[name], images, classes="all")
    by_gradient = cam.grad_cam(nested_models[name], images, classes="all")
    height, width = by_cam.low_res.shape[2:]
    assert _relative_error(by_gradient.low_res * height * width, by_cam.low_res) <= 1e-4


def _reference_gradients(model, images, class_ids):
    """Logits (before the softmax), the pool2 output A and dS_c/dA for each requested class,
    differentiated directly (tf.GradientTape or jax.grad, whichever backend runs)."""
    pool2 = model.get_layer("pool2").output
    predictions = model.get_layer("predictions")
    to_features = keras.Model(model.input, pool2)
    to_hidden = keras.Model(pool2, model.get_layer("fc1").output)

    def logits_of(features):
        return keras.ops.matmul(to_hidden(features), predictions.kernel) + predictions.bias

    features = to_features(images, training=False)
    if keras.backend.backend() == "jax":
        import jax
        import jax.numpy as jnp

        def picked(features, k):
            chosen = jnp.asarray(class_ids[:, k : k + 1])
            return jnp.take_along_axis(logits_of(features), chosen, axis=1).sum()

        gradients = [jax.grad(picked)(features, k) for k in range(class_ids.shape[1])]
        logits = logits_of(features)
    else:
        import tensorflow as tf

        with tf.GradientTape(persistent=True) as tape:
            tape.watch(features)
            logits = logits_of(features)
            picked = [
                tf.gather(logits, class_ids[:, k], batch_dims=1)
                for k in range(class_ids.shape[1])
            ]
        gradients = [tape.gradient(p, features) for p in picked]
    numpy = keras.ops.convert_to_numpy
    return numpy(logits), numpy(features), [numpy(g) for g in gradients]


def test_grad_cam_on_a_model_without_gap(no_gap_model):
    """Against a direct autodiff computation of alpha = mean_xy dS_c/dA (from logits)."""
    images = _random_images((3, 32, 32, 3), seed=4)
    # The default target is the last convolution, not the pooling after it (as VGG-16's
    # block5_conv3 in the Grad-CAM authors' code); the reference here differentiates pool2.
    assert cam.grad_cam(no_gap_model, images).layer == "conv2"
    result = cam.grad_cam(no_gap_model, images, top_k=2, layer="pool2")
    assert result.layer == "pool2" and result.low_res.shape == (3, 2, 8, 8)
    assert np.all(np.isfinite(result.low_res))
    logits, features, gradients = _reference_gradients(no_gap_model, images, result.class_ids)
    np.testing.assert_allclose(logits, result.logits, rtol=1e-5, atol=1e-6)
    for k in range(2):
        alpha = gradients[k].mean(axis=(1, 2))
        expected = np.einsum("bhwk,bk->bhw", features, alpha)
        assert _relative_error(result.low_res[:, k], expected) <= 1e-4


def test_grad_cam_layer_choice(no_gap_model, nested_models):
    images = _random_images((1, 32, 32, 3))
    assert cam.grad_cam(no_gap_model, images, layer="conv2").low_res.shape == (1, 1, 16, 16)
    with pytest.raises(ValueError, match="no layer named 'conv9'.*pool2"):
        cam.grad_cam(no_gap_model, images, layer="conv9")
    with pytest.raises(ValueError, match="4-D"):
        cam.grad_cam(no_gap_model, images, layer="fc1")
    with pytest.raises(ValueError, match="not a cut point"):  # a skip connection goes around it
        cam.grad_cam(
            nested_models["resnet_avg"], _random_images((1, 64, 64, 3)),
            layer="conv5_block3_2_relu",
        )


def test_grad_cam_says_which_backends_it_supports(no_gap_model, monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "torch")
    with pytest.raises(NotImplementedError, match="TensorFlow and JAX backends.*'torch'"):
        cam.grad_cam(no_gap_model, _random_images((1, 32, 32, 3)))


# ---------------------------------------------------------------------------------------------
# The compiled fast path: top-k on the device, upsampling in the call, mixed precision,
# programs compiled once per model, weights read at every call
# ---------------------------------------------------------------------------------------------


def test_top_k_on_the_device_equals_a_stable_sort(top3):
    assert np.array_equal(top3.class_ids, np.argsort(-top3.logits, axis=1, kind="stable")[:, :3])


def test_upsample_in_the_call_equals_the_lazy_maps(lite0, photos, top3):
    result = cam.class_activation_maps(lite0, photos, top_k=3, upsample=True)
    assert result._maps is not None and result.maps.shape == (7, 3, 224, 224)
    assert np.array_equal(result.class_ids, top3.class_ids)
    np.testing.assert_allclose(result.low_res, top3.low_res, rtol=1e-5, atol=1e-5)
    assert _relative_error(result.maps, cam.upsample_maps(top3.low_res, (224, 224))) <= 1e-5
    grad = cam.grad_cam(lite0, photos[:2], classes=[285, 967], upsample=True)
    assert grad.maps.shape == (2, 2, 224, 224)
    assert _relative_error(grad.maps, cam.upsample_maps(grad.low_res, (224, 224))) <= 1e-5


def test_upsample_arguments_are_checked(lite0, samples, monkeypatch):
    from helpers import maps

    monkeypatch.setattr(maps, "UPSAMPLE_LIMIT", 224 * 224 * 10)
    with pytest.raises(ValueError, match=r"upsample=True would make 1 × 1000 maps of 224 × 224.*"
                                         r"result\.map"):
        cam.class_activation_maps(lite0, samples["coffee"], classes="all", upsample=True)
    # The same work asked of the lazy maps (before: 1.31 GiB where upsample=True refused it),
    # or of upsample_maps, is refused alike; one map at a time is not.
    result = cam.class_activation_maps(lite0, samples["coffee"], classes="all")
    with pytest.raises(ValueError, match=r"result\.maps would make 1 × 1000 maps of 224 × 224"):
        _ = result.maps
    with pytest.raises(ValueError, match=r"upsample_maps would make 1 × 1000 maps"):
        cam.upsample_maps(result.low_res, (224, 224))
    assert result.map(0, 999).shape == (224, 224)
    with pytest.raises(TypeError, match="upsample must be True or False, got str"):
        cam.class_activation_maps(lite0, samples["coffee"], upsample="yes")


def test_one_forward_pass_for_images_of_different_sizes(lite0, photos):
    """Seven photos of seven sizes: resized one by one, then one network call (CAM and
    Grad-CAM alike), and each image's maps are the ones it gets alone."""
    assert len({photo.shape for photo in photos}) > 1
    before = _network_calls()
    together = cam.class_activation_maps(lite0, photos, classes=[285])
    assert _network_calls() - before == 1
    cam.grad_cam(lite0, photos)
    assert _network_calls() - before == 2
    alone = cam.class_activation_maps(lite0, photos[4], classes=[285])
    np.testing.assert_allclose(together.low_res[4], alone.low_res[0], rtol=1e-4, atol=1e-4)


def test_mixed_precision_keeps_the_identity_and_the_model(lite0, photos, top3):
    result = cam.class_activation_maps(lite0, photos, classes=top3.class_ids,
                                       dtype="mixed_bfloat16")
    assert result.dtype == "mixed_bfloat16" and top3.dtype == "float32"
    # The identity holds to float32 precision against the result's own logits (the same
    # bfloat16 feature maps, weighted in float32) ...
    identity = result.low_res.mean(axis=(2, 3)) + result.bias
    assert _relative_error(identity, result.scores) <= 1e-4
    # ... and bfloat16's 8-bit mantissa keeps maps and logits within a few percent of float32.
    assert _relative_error(result.low_res, top3.low_res) <= 5e-2
    assert _relative_error(result.logits, top3.logits) <= 5e-2
    assert not np.array_equal(result.logits, top3.logits)  # it did compute in bfloat16
    # The model itself is unchanged: float32 policies, float32 logits.
    assert {layer.dtype_policy.name for layer in lite0.model.layers} == {"float32"}
    _check_identity(cam.class_activation_maps(lite0, photos, top_k=3), lite0.logits(photos))


@pytest.mark.parametrize("dtype", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_on_nested_models_and_grad_cam(nested_models, dtype):
    model = nested_models["wrapped"]
    images = _random_images((2, 48, 48, 3), seed=5)
    exact = cam.class_activation_maps(model, images, classes="all")
    mixed = cam.class_activation_maps(model, images, classes="all", dtype=dtype)
    gradient = cam.grad_cam(model, images, classes="all", dtype=dtype)
    assert _relative_error(mixed.low_res, exact.low_res) <= 5e-2
    height, width = exact.low_res.shape[2:]
    assert _relative_error(gradient.low_res * height * width, mixed.low_res) <= 5e-2
    assert gradient.dtype == dtype


def test_bad_dtype_is_refused(lite0, samples):
    with pytest.raises(ValueError, match=r"dtype must be None \(float32\).*'mixed_bfloat16'.*"
                                         r"got 'float64'"):
        cam.class_activation_maps(lite0, samples["coffee"], dtype="float64")
    with pytest.raises(ValueError, match="dtype must be None"):
        cam.grad_cam(lite0, samples["coffee"], dtype="bfloat16")


def _small_gap_model(seed):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3), keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3),
    ])


def test_network_is_compiled_once_per_model():
    model = _small_gap_model(seed=7)
    counters = _engine.counters
    builds, traces = counters["builds"], counters["traces"]
    cam.class_activation_maps(model, _random_images((1, 16, 16, 3)), top_k=1)
    # the network and its folded graph (nothing to fold here), the top-1 program and the
    # folded graph of the head it runs
    assert counters["builds"] - builds == 4
    assert counters["traces"] - traces == 2  # each program traced once
    for count, top_k in ((2, 2), (5, 2), (3, 1)):
        cam.class_activation_maps(model, _random_images((count, 16, 16, 3)), top_k=top_k)
    cam.class_activation_maps(model, _random_images((4, 16, 16, 3)), classes="all")
    # one network program for every request, one small program per kind: top-1, top-2, all
    assert counters["builds"] - builds == 4 + 2
    if keras.backend.backend() == "tensorflow":  # one trace serves every batch size
        assert counters["traces"] - traces == 2 + 2
    # Another precision needs its own network program, but the method program reads float32
    # features either way: the top-2 program is reused.
    cam.class_activation_maps(model, _random_images((2, 16, 16, 3)), top_k=2,
                              dtype="mixed_bfloat16")
    assert counters["builds"] - builds == 4 + 2 + 1


def test_programs_read_the_current_weights():
    """Weights are arguments of the compiled programs (JAX) or variables (TensorFlow), never
    constants baked in: changing them after a first call changes the maps."""
    model = _small_gap_model(seed=2)
    images = _random_images((2, 16, 16, 3), seed=6)
    before = cam.class_activation_maps(model, images, classes="all")
    conv, dense = model.layers[0], model.layers[-1]
    conv.kernel.assign(-2.0 * conv.kernel)
    dense.kernel.assign(dense.kernel + 1.0)
    after = cam.class_activation_maps(model, images, classes="all")
    assert not np.allclose(after.low_res, before.low_res)
    _check_identity(after, keras.ops.convert_to_numpy(model(images, training=False)))
    by_gradient = cam.grad_cam(model, images, classes="all")
    assert _relative_error(by_gradient.low_res * 14 * 14, after.low_res) <= 1e-4


# ---------------------------------------------------------------------------------------------
# Small functions
# ---------------------------------------------------------------------------------------------


def test_normalize_cam():
    maps = np.stack([np.arange(12.0).reshape(3, 4) - 5, np.full((3, 4), 2.5)])
    shown = cam.normalize_cam(maps)
    assert shown[0].min() == 0.0 and shown[0].max() == 1.0
    assert np.array_equal(shown[1], np.zeros((3, 4)))  # constant map: zeros, not 0/0
    with pytest.raises(ValueError, match="NaN"):
        cam.normalize_cam(np.array([[np.nan, 1.0]]))
    with pytest.raises(ValueError, match=r"\(\.\.\., H, W\)"):
        cam.normalize_cam(np.ones(4))


def test_upsample_maps():
    low = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    up = cam.upsample_maps(low, (8, 10))
    assert up.shape == (2, 3, 8, 10) and up.dtype == np.float32
    np.testing.assert_allclose(up.mean(), low.mean(), rtol=1e-5)  # bilinear x2 keeps the mean
    with pytest.raises(ValueError, match="positive"):
        cam.upsample_maps(low, (0, 10))


def test_normalize_cam_of_extreme_finite_values_is_finite():
    """max - min of finite float32 maps can overflow float32: still no NaN."""
    shown = cam.normalize_cam(np.array([[-3e38, 3e38], [0.0, 0.0]], dtype=np.float32))
    assert np.all(np.isfinite(shown))
    np.testing.assert_allclose(shown, [[0.0, 1.0], [0.5, 0.5]], atol=1e-6)


def test_a_single_logit_sigmoid_head_gets_sigmoid_probabilities():
    """A softmax over one logit is always 1: a Dense(1, "sigmoid") head's
    probabilities are the sigmoid of its logit, and so are a multi-label sigmoid head's."""
    keras.utils.set_random_seed(3)
    images = _random_images((3, 16, 16, 3), seed=8)
    for units in (1, 4):
        model = keras.Sequential([
            keras.Input((16, 16, 3)), keras.layers.Conv2D(4, 3),
            keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(units, activation="sigmoid"),
        ])
        result = cam.class_activation_maps(model, images, classes="all")
        outputs = keras.ops.convert_to_numpy(model(images, training=False))
        np.testing.assert_allclose(result.probabilities, outputs, atol=1e-6)
        assert result.output_activation == "sigmoid"
        if units == 1:
            assert not np.allclose(result.class_probabilities, 1.0)


def test_a_channels_first_model_is_refused_not_mapped_with_a_wrong_shape():
    """Before: a (3, 32, 32) model read (32, 32, 3) photos' rows as channels and gave maps of
    shape (B, K, 3, 32)."""
    model = keras.Sequential([
        keras.Input((3, 32, 32)),
        keras.layers.Conv2D(4, 3, data_format="channels_first", name="conv"),
        keras.layers.GlobalAveragePooling2D(data_format="channels_first"),
        keras.layers.Dense(2),
    ], name="planar")
    photos = np.zeros((2, 32, 32, 3), np.float32)
    for method in ("cam", "grad_cam"):
        with pytest.raises(ValueError, match=r"model 'planar' is channels-first \(its layer 'conv' "
                                             r"has data_format='channels_first'.*channels-last"):
            cam.activation_maps(model, photos, method=method)


def test_a_1d_pooling_head_is_told_that_no_method_applies():
    """Before: CAM sent a GlobalAveragePooling1D head to grad_cam, which refused it too."""
    model = keras.Sequential([keras.Input((20, 3)), keras.layers.Conv1D(4, 3, name="conv1d"),
                              keras.layers.GlobalAveragePooling1D(), keras.layers.Dense(2)],
                             name="sequence")
    for method in ("cam", "grad_cam", "score_cam"):
        with pytest.raises(ValueError, match=r"model 'sequence' has no 2-D feature map .*none "
                                             r"applies to this model"):
            cam.activation_maps(model, np.zeros((1, 20, 3), np.float32), method=method)


@pytest.mark.parametrize("head, name", [
    (lambda x: keras.layers.Dense(3, activation="relu")(x), "relu"),
    (lambda x: keras.layers.Activation("tanh")(keras.layers.Dense(3)(x)), "tanh"),
    (lambda x: keras.layers.Softmax()(keras.layers.Dense(3, activation="sigmoid")(x)),
     "sigmoid→softmax"),
])
def test_a_head_whose_output_is_not_a_probability_gives_scores_not_p(head, name):
    """Before: a softmax of the Dense scores was shown as "p = ..." though the model outputs
    relu(scores) or tanh(scores)."""
    image = keras.Input((8, 8, 3))
    features = keras.layers.Conv2D(4, 3, name="conv")(image)
    model = keras.Model(image, head(keras.layers.GlobalAveragePooling2D()(features)))
    result = cam.class_activation_maps(model, np.random.default_rng(0).uniform(0, 1, (1, 8, 8, 3)))
    assert result.output_activation == name
    with pytest.raises(ValueError, match=rf"outputs {name}\(Dense scores\).*result\.logits"):
        _ = result.probabilities
    assert ", score = " in result.label(0, 0)


def test_result_indices_are_checked():
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3),
                              keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(5)])
    result = cam.class_activation_maps(model, np.zeros((2, 8, 8, 3)), top_k=3)
    for bad, message in (((True, True), "image_index must be an integer"),
                         ((0, 3), r"k \(the result has 3 classes per image\) must be an integer in 0\.\.2"),
                         ((2, 0), r"image_index must be an integer in 0\.\.1"), ((1.0, 0), "image_index"),
                         ((0, -1), "k ")):
        with pytest.raises(ValueError, match=message):
            result.map(*bad)
        with pytest.raises(ValueError, match=message):
            result.label(*bad)
    assert result.map(1, 2).shape == (8, 8)
    for size, message in (((10.7, 10.2), "two positive"), (10, "two positive"),
                          ((10, 10, 3), "two positive"), ("10", "two positive"), ((0, 4), "two positive")):
        with pytest.raises(ValueError, match=message):
            cam.upsample_maps(result.low_res, size)
    with pytest.raises(ValueError, match="NaN"):
        cam.upsample_maps(np.full((2, 2), np.nan), (4, 4))


def test_a_classifiers_bare_network_refuses_photos_that_were_not_preprocessed(lite0):
    """``clf.model`` takes preprocessed images ((x - 127) / 128 for Lite0): photos on 0..255
    passed to it were mapped as if they were preprocessed, without a word."""
    photo = helpers.sample_images()["chelsea"]
    for call in (lambda: helpers.class_activation_maps(lite0.model, photo[None]),
                 lambda: helpers.grad_cam(lite0.model, [photo])):
        with pytest.raises(ValueError, match=r"clf, not clf\.model.*clf\.preprocess"):
            call()
    preprocessed = lite0.preprocess(photo)
    np.testing.assert_allclose(helpers.class_activation_maps(lite0.model, preprocessed).low_res,
                               helpers.class_activation_maps(lite0, photo).low_res, atol=1e-5)
    # The same network cloned with its weights, saved and loaded, or wrapped in another model is
    # known by its weights; photos on 0..1 (inside [-0.99, 1], but never negative) are refused.
    clone = keras.models.clone_model(lite0.model)
    clone.set_weights(lite0.model.get_weights())
    inputs = keras.Input((224, 224, 3))
    wrapped = keras.Model(inputs, lite0.model(inputs))
    resized = helpers.images.resize_images(photo[None], (224, 224)).astype(np.float32)
    for network in (clone, wrapped):
        for photos, reading in ((resized, "clf, not clf.model"), (resized / 255, "look like photos")):
            with pytest.raises(ValueError, match=reading):
                helpers.class_activation_maps(network, photos)
    np.testing.assert_allclose(helpers.class_activation_maps(wrapped, preprocessed).low_res,
                               helpers.class_activation_maps(lite0, photo).low_res, atol=1e-4)


def test_a_saved_and_loaded_classifier_network_still_refuses_photos(lite0, tmp_path):
    path = tmp_path / "lite0.keras"
    lite0.model.save(path)
    loaded = keras.saving.load_model(path)
    photo = helpers.images.resize_images(helpers.sample_images(["coffee"])["coffee"][None],
                                         (224, 224)).astype(np.float32)
    with pytest.raises(ValueError, match="clf, not clf.model"):
        helpers.class_activation_maps(loaded, photo)
