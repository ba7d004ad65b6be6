"""Classifiers: offline predictions, preprocessing, the weights cache, offline failures."""

from __future__ import annotations

import time

import numpy as np
import pytest

import helpers
from helpers import models


def _top(classifier, image, k=5):
    return [p.class_id for p in classifier.predict(image, top=k)[0]]


def test_lite0_architecture():
    model = models.build_efficientnet_lite0()
    assert model.count_params() == 4_694_024
    assert model.get_layer("top_relu").output.shape[1:] == (7, 7, 1280)
    assert type(model.get_layer("avg_pool")).__name__ == "GlobalAveragePooling2D"


def test_chelsea_is_a_cat(lite0, samples):
    best = lite0.predict(samples["chelsea"], top=1)[0][0]
    assert 281 <= best.class_id <= 285, best
    assert best.probability >= 0.5, best


def test_coffee_is_espresso(lite0, samples):
    assert _top(lite0, samples["coffee"], 1) == [967]


def test_motorcycle_in_top_two(lite0, samples):
    assert {665, 670} & set(_top(lite0, samples["motorcycle"], 2))


def test_model_outputs_logits_not_probabilities(lite0, samples):
    logits = lite0.logits(samples["coffee"])
    assert logits.shape == (1, 1000)
    assert logits.max() > 1.0 or logits.min() < 0.0  # softmax output would lie in [0, 1]
    assert not np.isclose(logits.sum(), 1.0)


def test_batch_and_list_inputs_agree(lite0, samples):
    images = [samples["chelsea"], samples["coffee"], samples["astronaut"]]
    from_list = lite0.logits(images)
    one_by_one = np.concatenate([lite0.logits(image) for image in images])
    np.testing.assert_allclose(from_list, one_by_one, rtol=1e-4, atol=1e-4)
    same_size = np.stack([samples["china"], samples["flower"]])  # both 427x640
    np.testing.assert_allclose(
        lite0.logits(same_size), lite0.logits(list(same_size)), rtol=1e-4, atol=1e-4
    )


def test_preprocess_resizes_whole_image(lite0, samples):
    batch = lite0.preprocess([samples["chelsea"], samples["rocket"]])
    assert batch.shape == (2, 224, 224, 3) and batch.dtype == np.float32
    assert -1.0 <= batch.min() and batch.max() <= 1.0
    # A left-right split image stays split at the middle: nothing was cropped away.
    image = np.zeros((100, 300, 3), np.uint8)
    image[:, 150:] = 255
    row = lite0.preprocess(image)[0, 112, :, 0]
    assert row[:100].max() < -0.9 and row[124:].min() > 0.9


def test_float_and_uint8_inputs_agree(lite0, samples):
    image = samples["coffee"]
    np.testing.assert_allclose(
        lite0.logits(image), lite0.logits(image.astype(np.float32)), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((32, 32), np.uint8), r"grayscale image\? Expected an RGB image \(H, W, 3\)"),
        (np.zeros((32, 32, 4), np.uint8), r"alpha channel"),
        (np.full((32, 32, 3), 0.5, np.float32), r"0\.\.1 scale"),
        (np.full((32, 32, 3), np.nan, np.float32), r"NaN"),
        (np.full((32, 32, 3), 300.0), r"expected 0\.\.255"),
        ([], r"empty list"),
        (np.zeros((5, 2, 3, 3, 3), np.uint8), r"expected \(B, H, W, 3\)"),
    ],
)
def test_bad_images_get_clear_errors(lite0, bad, message):
    with pytest.raises(ValueError, match=message):
        lite0.preprocess(bad)


def test_class_names(lite0):
    assert lite0.class_name(285) == "Egyptian cat"
    assert lite0.class_name(967) == "espresso"
    names = helpers.imagenet.imagenet_class_names()
    assert len(names) == 1000 and names[0] == "tench" and names[999] == "toilet tissue"
    with pytest.raises(ValueError, match="0..999"):
        lite0.class_name(1000)
    with pytest.raises(TypeError, match="integer"):
        lite0.class_name("285")


def test_unknown_model_and_weights():
    with pytest.raises(ValueError, match="efficientnet_lite0"):
        helpers.load_classifier("mobilenet")
    with pytest.raises(ValueError, match="'imagenet' or None"):
        helpers.load_classifier("resnet50", weights="/some/file.h5")


@pytest.mark.parametrize("name", ["resnet50", "vgg16"])
def test_download_weights_fail_fast_offline(name, monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # nothing cached
    monkeypatch.setenv("GAPCAM_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(helpers.OfflineError, match="efficientnet_lite0"):
        helpers.load_classifier(name)
    assert time.perf_counter() - start < 10


def test_network_probe_fails_fast_on_unreachable_host(monkeypatch, tmp_path):
    # A closed port on this machine's loopback: the probe must answer False, quickly.
    start = time.perf_counter()
    assert models._network_reachable(("127.0.0.1", 9), timeout=2.0) is False
    assert time.perf_counter() - start < 3


def test_random_weight_architectures():
    resnet = helpers.load_classifier("resnet50", weights=None)
    assert resnet.model.count_params() == 25_636_712
    assert resnet.input_size == (224, 224) and resnet.num_classes == 1000
    assert resnet.model.get_layer("predictions").activation.__name__ == "linear"


def test_cache_is_built_verified_and_rebuilt(monkeypatch, tmp_path, samples):
    monkeypatch.setenv("GAPCAM_CACHE_DIR", str(tmp_path))
    path = helpers.prepare_offline_model()
    assert path.parent == tmp_path and path.is_file()
    modified = path.stat().st_mtime_ns
    assert helpers.prepare_offline_model() == path
    assert path.stat().st_mtime_ns == modified  # valid cache: not rebuilt

    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # truncate it
    assert not models._cache_is_valid(path)
    helpers.prepare_offline_model()
    assert models._cache_is_valid(path)
    classifier = helpers.load_classifier("efficientnet_lite0")
    assert classifier.predict(samples["coffee"], top=1)[0][0].class_id == 967
