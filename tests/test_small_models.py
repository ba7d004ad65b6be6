"""Small CNN builders (helpers.models.small_cnn): heads, parameter counts, names, a training step."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from helpers.models.small_cnn import (
    HEADS,
    build_head,
    build_small_cnn,
    compile_classifier,
    head_parameter_counts,
)


def _weights(model: keras.Model, layer: str) -> list[np.ndarray]:
    return [np.asarray(w) for w in model.get_layer(layer).get_weights()]


def test_vgg16_heads_by_formula():
    # Flatten -> Dense(4096) on VGG-16's 7x7x512 map is its fc1: 25,088 * 4096 + 4096.
    assert head_parameter_counts((7, 7, 512), 4096) == {
        "flatten": 102_764_544,
        "gap": 2_101_248,
        "gmp": 2_101_248,
    }
    with_hidden = head_parameter_counts((7, 7, 512), 1000, hidden=4096)
    assert with_hidden["flatten"] == 102_764_544 + 4096 * 1000 + 1000
    assert with_hidden["gap"] == 512 * 4096 + 4096 + 4096 * 1000 + 1000


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize(("feature_shape", "num_classes", "hidden"),
                         [((7, 7, 512), 1000, None), ((6, 6, 64), 10, None), ((3, 5, 8), 4, 16)])
def test_formula_matches_keras(head, feature_shape, num_classes, hidden):
    model = build_head(feature_shape, num_classes, head, hidden=hidden)
    assert model.count_params() == head_parameter_counts(feature_shape, num_classes, hidden)[head]
    assert model.output_shape == (None, num_classes)


@pytest.mark.parametrize("head", HEADS)
def test_small_cnn_structure(head):
    model = build_small_cnn((48, 48, 1), 10, head=head, widths=(8, 16, 16, 32))
    assert model.name == f"small_cnn_{head}"
    assert model.output_shape == (None, 10)
    features = model.get_layer("features")
    assert isinstance(features, keras.layers.ReLU)
    assert tuple(features.output.shape[1:]) == (6, 6, 32)
    head_layer = model.get_layer(head)
    expected_type = {
        "flatten": keras.layers.Flatten,
        "gap": keras.layers.GlobalAveragePooling2D,
        "gmp": keras.layers.GlobalMaxPooling2D,
    }[head]
    assert isinstance(head_layer, expected_type)
    logits = model.get_layer("logits")
    assert isinstance(logits, keras.layers.Dense)
    assert logits.activation is keras.activations.linear, "outputs must be logits"
    # Graph position: features -> head layer -> logits, nothing in between.
    assert head_layer.input is features.output
    assert logits.input is head_layer.output
    assert model.layers[-1] is logits
    # The head's parameters are those of the formula on the features' shape.
    counts = head_parameter_counts(tuple(features.output.shape[1:]), 10)
    assert logits.count_params() == counts[head]


def test_heads_share_the_backbone_and_its_initial_weights():
    models = {head: build_small_cnn(head=head, seed=7) for head in HEADS}
    backbone = [layer.name for layer in models["gap"].layers if layer.name.startswith("block")]
    assert backbone == [layer.name for layer in models["flatten"].layers
                        if layer.name.startswith("block")]
    for name in backbone:
        for head in ("flatten", "gmp"):
            for ours, theirs in zip(_weights(models["gap"], name), _weights(models[head], name)):
                np.testing.assert_array_equal(ours, theirs)
    other = build_small_cnn(head="gap", seed=8)
    assert not np.array_equal(_weights(other, "block1_conv")[0],
                              _weights(models["gap"], "block1_conv")[0])
    counts = {head: model.count_params() for head, model in models.items()}
    assert counts["gap"] == counts["gmp"] < counts["flatten"]
    flatten_extra = counts["flatten"] - counts["gap"]
    formula = head_parameter_counts((6, 6, 64), 10)
    assert flatten_extra == formula["flatten"] - formula["gap"]


def test_batch_norm_dropout_and_hidden_options():
    plain = build_small_cnn(head="gap", batch_norm=False)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in plain.layers)
    assert plain.get_layer("block1_conv").use_bias
    normed = build_small_cnn(head="gap", batch_norm=True)
    assert isinstance(normed.get_layer("block1_bn"), keras.layers.BatchNormalization)
    assert not normed.get_layer("block1_conv").use_bias
    dropped = build_small_cnn(head="gap", dropout=0.3)
    # Dropout acts on the feature map, so GAP still feeds the logits layer directly.
    assert dropped.get_layer("dropout").input is dropped.get_layer("features").output
    assert dropped.get_layer("logits").input is dropped.get_layer("gap").output
    hidden = build_small_cnn(head="flatten", hidden=32)
    assert hidden.get_layer("hidden").units == 32
    feature_shape = tuple(hidden.get_layer("features").output.shape[1:])
    head_params = sum(hidden.get_layer(name).count_params() for name in ("hidden", "logits"))
    assert head_params == head_parameter_counts(feature_shape, 10, hidden=32)["flatten"]


@pytest.mark.parametrize("batch_norm", [False, True])
def test_a_few_training_steps_lower_the_loss(batch_norm):
    from helpers.data.digits import make_digit_canvases

    data = make_digit_canvases(64, canvas_size=32, digit_size=(12, 16), seed=0)
    model = compile_classifier(
        build_small_cnn((32, 32, 1), 10, head="gap", widths=(8, 16), batch_norm=batch_norm),
        learning_rate=3e-3,
    )
    keras.utils.set_random_seed(0)  # fit shuffles with the global generator
    before = model.evaluate(data.images, data.labels, verbose=0)[0]
    history = model.fit(data.images, data.labels, epochs=5, batch_size=32, verbose=0)
    after = model.evaluate(data.images, data.labels, verbose=0)[0]
    losses = history.history["loss"]
    assert np.isfinite(losses).all()
    assert losses[-1] < losses[0]  # training-mode loss falls
    if not batch_norm:
        # With BatchNorm, inference uses moving statistics that lag behind after five tiny
        # epochs, so only the model without it is compared in inference mode.
        assert after < before
    assert model.predict(data.images[:3], verbose=0).shape == (3, 10)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: build_small_cnn(head="avg"), ValueError, r"head must be one of .*'avg'"),
        (lambda: build_small_cnn((44, 44, 1)), ValueError, r"\(44, 44, 1\).*divisible by 8"),
        (lambda: build_small_cnn((48, 48)), ValueError, r"input_shape must be \(height, width"),
        (lambda: build_small_cnn(widths=()), ValueError, r"widths must be a non-empty"),
        (lambda: build_small_cnn(widths=(8, 0)), ValueError, r"each of widths must be an integer >= 1"),
        (lambda: build_small_cnn(dropout=1.0), ValueError, r"dropout \(a rate\) must be a finite number in \[0, 1\)"),
        (lambda: build_small_cnn(batch_norm="yes"), TypeError, r"batch_norm must be True or False"),
        (lambda: build_small_cnn(seed=0.5), TypeError, r"seed must be an integer >= 0"),
        (lambda: build_small_cnn(num_classes=0), ValueError, r"num_classes must be an integer >= 1"),
        (lambda: head_parameter_counts((7, 7), 10), ValueError, r"feature_shape must be"),
        (lambda: head_parameter_counts((7, 7, 512), 10, hidden=0), ValueError, r"hidden must be"),
        (lambda: build_head((7, 7, 512), 10, head="max"), ValueError, r"head must be one of"),
        (lambda: compile_classifier("model"), TypeError, r"expected a keras.Model, got str"),
        (lambda: compile_classifier(build_head((2, 2, 2), 2), learning_rate=0), ValueError,
         r"learning_rate must be a finite number > 0, got int 0"),
        # Before: the four below failed inside Python or Keras, or were accepted.
        (lambda: build_head(7, 10), ValueError, r"feature_shape must be \(height, width, channels\)"),
        (lambda: build_small_cnn(48), ValueError, r"input_shape must be \(height, width"),
        (lambda: build_small_cnn(seed=-3), ValueError, r"seed must be an integer >= 0"),
        (lambda: compile_classifier(build_head((2, 2, 2), 2), learning_rate=float("inf")),
         ValueError, r"learning_rate must be a finite number > 0, got float inf"),
    ],
)
def test_bad_arguments_are_explained(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_poolings_keeps_a_finer_feature_map():
    default = build_small_cnn((48, 48, 1), 10, head="gap")
    explicit = build_small_cnn((48, 48, 1), 10, head="gap", poolings=3)
    names = [layer.name for layer in default.layers]
    assert names == [layer.name for layer in explicit.layers]  # the default is k - 1 poolings
    pools = [name for name in names if name.endswith("_pool")]
    assert pools == ["block1_pool", "block2_pool", "block3_pool"]
    finer = build_small_cnn((48, 48, 1), 10, head="gmp", poolings=2)
    assert [layer.name for layer in finer.layers if layer.name.endswith("_pool")] == [
        "block1_pool", "block2_pool"]
    assert tuple(finer.get_layer("features").output.shape[1:]) == (12, 12, 64)
    assert finer.get_layer("gmp").input is finer.get_layer("features").output
    assert finer.count_params() == default.count_params()  # pooling has no parameters
    none = build_small_cnn((20, 20, 1), 3, widths=(4, 4), poolings=0)
    assert tuple(none.get_layer("features").output.shape[1:]) == (20, 20, 4)
    # Divisibility follows the poolings actually used: 44 = 4 * 11 works with two.
    assert build_small_cnn((44, 44, 1), poolings=2).output_shape == (None, 10)


@pytest.mark.parametrize("poolings", [4, -1, True, 1.0])
def test_poolings_out_of_range_is_explained(poolings):
    with pytest.raises(ValueError, match=r"poolings \(for 4 widths\) must be an integer in 0\.\.3"):
        build_small_cnn(poolings=poolings)


@pytest.mark.parametrize("ending", ["logits", "Dense softmax", "Softmax layer", "Activation"])
def test_compile_classifier_takes_the_cross_entropy_from_what_the_model_outputs(ending):
    """Logits: from_logits=True; a softmax (as a Dense activation, a Softmax or an Activation
    layer): from probabilities, so the loss is the true cross-entropy either way."""
    inputs = keras.Input((3,))
    dense = keras.layers.Dense(4, activation="softmax" if ending == "Dense softmax" else None)
    outputs = dense(inputs)
    if ending == "Softmax layer":
        outputs = keras.layers.Softmax()(outputs)
    elif ending == "Activation":
        outputs = keras.layers.Activation("softmax")(outputs)
    model = compile_classifier(keras.Model(inputs, outputs))
    x = np.random.default_rng(0).normal(size=(5, 3)).astype("float32")
    y = np.array([0, 1, 2, 3, 0])
    logits = keras.ops.convert_to_numpy(dense(x)) if ending != "Dense softmax" else None
    probabilities = keras.ops.convert_to_numpy(model(x))
    if logits is not None and ending == "logits":
        probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = -np.mean(np.log(probabilities[np.arange(5), y]))
    assert model.evaluate(x, y, verbose=0)[0] == pytest.approx(expected, rel=1e-4)


def test_compile_classifier_refuses_other_final_activations():
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(4, activation="sigmoid")(inputs))
    with pytest.raises(ValueError, match="ends in a 'sigmoid' activation; compile_classifier"):
        compile_classifier(model)
