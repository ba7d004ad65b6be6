"""Class maps of GAP and GMP heads through the one engine, and the evaluation on canvases."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from helpers.cam import class_activation_maps, find_cam_head, upsample_maps
from helpers.evaluate.localization import evaluate_localization
from helpers.models.small_cnn import build_small_cnn
from helpers.data.digits import make_digit_canvases

# Also run under KERAS_BACKEND=jax (make test-jax).
pytestmark = pytest.mark.jax


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((5, 24, 24, 1), dtype=np.float32)


@pytest.fixture(scope="module")
def models():
    return {head: build_small_cnn((24, 24, 1), 4, head=head, widths=(4, 8), poolings=1, seed=3)
            for head in ("gap", "gmp")}


def _features_and_head(model, images):
    features_layer = model.get_layer("features")
    features = keras.ops.convert_to_numpy(keras.Model(model.input, features_layer.output)(images))
    kernel, bias = model.get_layer("logits").get_weights()
    return features, kernel, bias


def test_gap_and_gmp_heads_go_through_the_one_engine(models, images):
    gap = class_activation_maps(models["gap"], images, top_k=2)
    assert gap.method == "cam" and gap.layer == "features" and gap.pooling == "average"
    assert gap.identity_holds
    assert gap.low_res.shape == (5, 2, 12, 12) and gap.maps.shape == (5, 2, 24, 24)
    # The CAM identity: mean of the map plus the bias is the logit.
    np.testing.assert_allclose(gap.low_res.mean(axis=(2, 3)) + gap.bias, gap.scores,
                               rtol=1e-5, atol=1e-6)


def test_gmp_maps_are_the_same_weighted_sum_but_the_identity_differs(models, images):
    model = models["gmp"]
    result = class_activation_maps(model, images, classes=np.tile(np.arange(4), (5, 1)))
    features, kernel, bias = _features_and_head(model, images)
    assert result.method == "cam" and result.layer == "features"
    assert result.pooling == "max" and not result.identity_holds
    # Maps: M_c = sum_k w_k^c f_k, exactly as for GAP.
    np.testing.assert_allclose(result.low_res, np.einsum("bhwk,kc->bchw", features, kernel),
                               rtol=1e-5, atol=1e-6)
    # Logits: each channel's own maximum, weighted, plus the bias; equal to the model's output.
    by_hand = features.max(axis=(1, 2)) @ kernel + bias
    np.testing.assert_allclose(result.logits, by_hand, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.logits, keras.ops.convert_to_numpy(model(images)),
                               rtol=1e-5, atol=1e-6)
    # Neither mean(M_c) + b_c nor max(M_c) + b_c is the logit of a GMP head.
    scale = np.abs(result.scores).max()
    for pooled in (result.low_res.mean(axis=(2, 3)), result.low_res.max(axis=(2, 3))):
        assert np.abs(pooled + result.bias - result.scores).max() > 1e-2 * scale


def test_gmp_classes_per_image_top_k_and_chunks(models, images, chunk_size):
    from helpers import _engine

    model = models["gmp"]
    labels = np.array([0, 1, 2, 3, 0])
    per_image = class_activation_maps(model, images, classes=labels[:, None])
    np.testing.assert_array_equal(per_image.class_ids[:, 0], labels)
    every = class_activation_maps(model, images, classes="all")
    np.testing.assert_allclose(per_image.low_res[:, 0], every.low_res[np.arange(5), labels],
                               rtol=1e-5, atol=1e-6)
    # Images go through the network in chunks bounded in memory: 2, 2 and 1 images here.
    chunk_size(2 * 24 * 24)
    calls = _engine.counters["network_calls"]
    top = class_activation_maps(model, images, top_k=3)
    assert _engine.counters["network_calls"] - calls == 3
    np.testing.assert_array_equal(top.class_ids[:, 0], every.logits.argmax(axis=1))
    np.testing.assert_allclose(top.logits, every.logits, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(top.low_res[:, 0], every.low_res[np.arange(5), top.class_ids[:, 0]],
                               rtol=1e-5, atol=1e-6)


def test_find_cam_head_finds_gap_and_gmp_by_type_and_position(models):
    head = find_cam_head(models["gmp"])
    assert isinstance(head.pooling, keras.layers.GlobalMaxPooling2D) and head.dense.name == "logits"
    assert head.feature_model.output_shape == (None, 12, 12, 8)
    assert find_cam_head(models["gmp"]) is head  # cached per model
    with pytest.raises(ValueError, match="Dense 'logits' ← Flatten 'flatten'.*reached .*grad_cam"):
        find_cam_head(build_small_cnn((24, 24, 1), 4, head="flatten", widths=(4, 8)))
    with pytest.raises(ValueError, match="reached Dense 'hidden'"):
        find_cam_head(build_small_cnn((24, 24, 1), 4, head="gap", widths=(4, 8), hidden=6))
    inputs = keras.Input((8, 8, 1))
    no_dense = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(inputs))
    with pytest.raises(ValueError, match="not from a Dense layer"):
        find_cam_head(no_dense)
    with pytest.raises(TypeError, match="keras.Model, got str"):
        find_cam_head("model")


def test_nan_and_wrong_size_images_are_refused_for_gmp_heads(models, images):
    bad = images.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        class_activation_maps(models["gmp"], bad)
    with pytest.raises(ValueError, match=r"expects \(24, 24, 1\)"):
        class_activation_maps(models["gmp"], images[:, :20, :20])


def _ink_model(num_classes: int = 10) -> keras.Model:
    """A 'network' whose only feature is the image itself: every class map is the image."""
    inputs = keras.Input((32, 32, 1), name="image")
    features = keras.layers.ReLU(name="features")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D(name="gap")(features)
    logits = keras.layers.Dense(num_classes, name="logits")(pooled)
    model = keras.Model(inputs, logits)
    model.get_layer("logits").set_weights([np.ones((1, num_classes)), np.zeros(num_classes)])
    return model


def test_evaluate_localization_scores_maps_in_the_canvas_frame():
    data = make_digit_canvases(40, canvas_size=32, digit_size=(10, 14), seed=5)
    report = evaluate_localization(_ink_model(), data, threshold=0.1)
    assert report.cams.shape == (40, 32, 32) and report.boxes.shape == (40, 4)
    # The map is the image, so its peak is always ink, and its box is the ink's box (up to
    # pieces of a digit that its largest 8-connected component leaves out).
    np.testing.assert_allclose(report.cams, data.images[..., 0], atol=1e-6)
    assert report.pointing == 1.0
    assert report.gt_known >= 0.9 and np.median(report.ious) == 1.0
    # All logits are equal, so the prediction is class 0: right for the tenth of canvases showing 0.
    np.testing.assert_array_equal(report.predicted, 0)
    assert report.classification == pytest.approx(np.mean(data.labels == 0))
    assert report.top1 == pytest.approx(np.mean(report.hits & (data.labels == 0)))


def test_evaluate_localization_upsamples_true_class_maps(models):
    data = make_digit_canvases(12, canvas_size=24, digit_size=(10, 12), seed=1, clutter=1)
    model = build_small_cnn((24, 24, 1), 10, head="gmp", widths=(4, 8), poolings=1, seed=3)
    report = evaluate_localization(model, data, thresholds=[0.2, 0.5], protocol="zhou")
    result = class_activation_maps(model, data.images, classes=data.labels[:, None])
    np.testing.assert_allclose(report.cams, upsample_maps(result.low_res[:, 0], (24, 24)),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(report.predicted, result.logits.argmax(axis=1))
    np.testing.assert_array_equal(report.max_box.thresholds, [0.2, 0.5])
    assert report.max_box.accuracies[0] == report.gt_known  # Zhou's sweep holds its tau = 0.2
    default = evaluate_localization(model, data)  # the field's: MaxBoxAccV2 (choe), 15 px
    assert default.max_box.protocol == "choe" and default.max_box.iou_thresholds == (0.3, 0.5, 0.7)
    assert default.pointing_tolerance == 15 and default.gt_known == report.gt_known
