"""Classifiers: offline predictions, preprocessing, the weights cache, offline failures."""

from __future__ import annotations

import os
import socket
import stat
import tempfile
import threading
import tracemalloc
import warnings

import numpy as np
import pytest

import helpers
from helpers.models import applications, lite0, weights_cache

# Also run under KERAS_BACKEND=jax (make test-jax).
pytestmark = pytest.mark.jax


def _top(classifier, image, k=5):
    return [p.class_id for p in classifier.predict(image, top=k)[0]]


def test_lite0_architecture():
    model = lite0.build_efficientnet_lite0()
    assert model.count_params() == 4_694_024
    assert model.get_layer("top_relu").output.shape[1:] == (7, 7, 1280)
    assert type(model.get_layer("avg_pool")).__name__ == "GlobalAveragePooling2D"


@pytest.mark.parametrize("num_classes, error", [(0, ValueError), (10.0, TypeError)])
def test_lite0_num_classes_is_checked(num_classes, error):
    with pytest.raises(error, match="num_classes must be an integer >= 1"):
        lite0.build_efficientnet_lite0(num_classes)


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
    names = helpers.models.imagenet.imagenet_class_names()
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
    connections = _count_connections(monkeypatch)
    with pytest.raises(helpers.OfflineError, match="efficientnet_lite0"):
        helpers.load_classifier(name)
    assert connections == []  # failed without trying the network (no timing involved)


def _count_connections(monkeypatch):
    attempts = []

    def refuse(address, *args, **kwargs):
        attempts.append(address)
        raise OSError("no network in this test")

    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


@pytest.mark.parametrize("name", ["resnet50", "vgg16"])
def test_partial_keras_download_offline_fails_fast_and_is_kept(name, monkeypatch, tmp_path):
    # A partial download where Keras looks: Keras would delete it and try the network anyway.
    file_name = f"{name}_weights_tf_dim_ordering_tf_kernels.h5"
    partial = tmp_path / "models" / file_name
    partial.parent.mkdir()
    partial.write_bytes(b"\x89HDF\r\n" + b"\0" * 1000)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    monkeypatch.setenv("GAPCAM_OFFLINE", "1")
    connections = _count_connections(monkeypatch)
    with pytest.raises(helpers.OfflineError, match=r"incomplete or corrupt.*efficientnet_lite0"):
        helpers.load_classifier(name)
    assert connections == [] and partial.is_file()


def test_network_probe_answers_false_on_unreachable_or_hanging_hosts(monkeypatch):
    # A closed port on this machine's loopback: refused.
    assert applications._network_reachable(("127.0.0.1", 9), timeout=2.0) is False
    # A connection that never answers: the probe gives up at its timeout instead of hanging.
    never = threading.Event()

    def hang(*args, **kwargs):
        never.wait()
        raise OSError("released at the end of the test")

    monkeypatch.setattr(socket, "create_connection", hang)
    assert applications._network_reachable(("192.0.2.1", 443), timeout=0.05) is False
    never.set()


def test_random_weight_architectures():
    resnet = helpers.load_classifier("resnet50", weights=None)
    assert resnet.model.count_params() == 25_636_712
    assert resnet.input_size == (224, 224) and resnet.num_classes == 1000
    assert resnet.model.get_layer("predictions").activation.__name__ == "linear"


@pytest.mark.slow
def test_cache_is_built_verified_and_rebuilt(monkeypatch, tmp_path, samples):
    monkeypatch.setenv("GAPCAM_CACHE_DIR", str(tmp_path))
    path = helpers.prepare_offline_model()
    assert path.parent == tmp_path and path.is_file()
    modified = path.stat().st_mtime_ns
    assert helpers.prepare_offline_model() == path
    assert path.stat().st_mtime_ns == modified  # valid cache: not rebuilt

    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # truncate it
    assert not weights_cache.cache_is_valid(path)
    helpers.prepare_offline_model()
    assert weights_cache.cache_is_valid(path)
    classifier = helpers.load_classifier("efficientnet_lite0")
    assert classifier.predict(samples["coffee"], top=1)[0][0].class_id == 967


def _unit_scale(image):
    return image.astype(np.float32) / 255.0


def test_unit_scale_image_slightly_above_one_is_refused_not_read_as_0_255(lite0, samples):
    # Before: a 0..1 photo with one pixel at 1.02 was read as 0..255 (the cat became a nematode).
    image = _unit_scale(samples["chelsea"])
    image[0, 0, 0] = 1.02
    with pytest.raises(ValueError, match=r"not guessed.*np\.clip\(image, 0, 1\) \* 255"):
        lite0.predict(image)
    many = _unit_scale(samples["coffee"])
    many[:100] = 1.5  # overshoot on a large share of pixels, still at most 2
    with pytest.raises(ValueError, match=r"not guessed"):
        lite0.preprocess(many)
    speck = _unit_scale(samples["coffee"])
    speck[0, 0] = 40.0  # one outlier far above 1: fewer than 1% of the values above 1
    with pytest.raises(ValueError, match=r"0\.00% of them above 1"):
        lite0.preprocess(speck)
    # What the message says to pass gives the photo's own prediction.
    fixed = np.clip(image, 0, 1) * 255
    assert lite0.predict(fixed, top=1)[0][0].class_id == lite0.predict(samples["chelsea"], top=1)[0][0].class_id


def test_scale_is_decided_per_image_of_a_stacked_batch(lite0, samples):
    # Before: a batch stacked from a 0..1 and a 0..255 image was scaled as one (max 255).
    photo = samples["coffee"].astype(np.float32)
    with pytest.raises(ValueError, match=r"image 0 of the batch .*0\.\.1 scale"):
        lite0.preprocess(np.stack([photo / 255.0, photo]))
    with pytest.raises(ValueError, match=r"image 1 of the batch .*0\.\.1 scale"):
        lite0.preprocess(np.stack([photo, photo / 255.0]))
    batch = lite0.preprocess(np.stack([photo, photo]))  # two 0..255 images still work
    np.testing.assert_allclose(batch[0], lite0.preprocess(samples["coffee"])[0], atol=1e-5)


def test_integer_mask_is_not_called_a_float_image(lite0):
    mask = np.zeros((32, 32, 3), np.int64)
    mask[8:24, 8:24] = 1
    with pytest.raises(ValueError, match=r"int64 image whose values are only 0 and 1") as error:
        lite0.preprocess(mask)
    assert "float" not in str(error.value)
    assert lite0.preprocess(mask * 255).shape == (1, 224, 224, 3)  # an int 0..255 image is fine


def test_images_may_be_a_dict_or_a_generator_but_not_a_path(lite0, samples, tmp_path):
    two = {"coffee": samples["coffee"], "chelsea": samples["chelsea"]}
    expected = lite0.logits([samples["coffee"], samples["chelsea"]])
    np.testing.assert_allclose(lite0.logits(two), expected, atol=1e-4)  # values, in order
    np.testing.assert_allclose(lite0.logits(v for v in two.values()), expected, atol=1e-4)
    for bad in (str(tmp_path / "cat.jpg"), tmp_path / "cat.jpg"):
        with pytest.raises(TypeError, match=r"not pixels; read the file first"):
            lite0.predict(bad)
    with pytest.raises(TypeError, match=r"dtype <U7"):
        lite0.predict(np.full((2, 2, 3), "chelsea"))
    with pytest.raises(ValueError, match=r"empty dict"):
        lite0.predict({})


@pytest.mark.parametrize("keyword, value, error", [("top", 0, ValueError), ("top", 2.5, TypeError),
                                                     ("top", True, TypeError)])
def test_predict_arguments_are_checked(lite0, samples, keyword, value, error):
    with pytest.raises(error, match=f"{keyword} must be an integer in 1..1000"):
        lite0.predict(samples["coffee"], **{keyword: value})
    with pytest.raises(error, match="batch_size must be an integer >= 1"):
        lite0.logits(samples["coffee"], batch_size=value)


def test_resize_matches_keras_antialiased_bilinear(lite0):
    import keras

    rng = np.random.default_rng(0)
    for shape in [(300, 500, 3), (451, 227, 3), (100, 150, 3), (7, 3, 3)]:  # down, up, mixed
        image = rng.integers(0, 256, shape).astype(np.uint8)
        reference = keras.ops.image.resize(
            image[None].astype(np.float32), (224, 224), interpolation="bilinear", antialias=True)
        expected = lite0.normalize(np.clip(keras.ops.convert_to_numpy(reference), 0, 255))
        np.testing.assert_allclose(lite0.preprocess(image), expected, atol=1e-4)


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_large_photo_is_resized_without_a_whole_float_copy(lite0, dtype):
    # Before: the whole photo was converted to float32 first (4x its uint8 bytes) and resized at once.
    photo = np.random.default_rng(0).integers(0, 256, (2000, 2500, 3), dtype=np.uint8)
    photo = photo.astype(dtype, copy=False)
    float_copy_bytes = photo.size * 4  # 60 MB
    tracemalloc.start()
    try:
        batch = lite0.preprocess(photo)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert batch.shape == (1, 224, 224, 3)
    assert peak < float_copy_bytes / 4, (peak, float_copy_bytes)


# The weights cache ------------------------------------------------------------------------------


def test_cache_files_are_readable_by_other_users(monkeypatch, tmp_path):
    # Before: mkstemp made the cache 0600, so a cache prepared by one user failed for every other.
    monkeypatch.setenv("GAPCAM_CACHE_DIR", str(tmp_path))
    path = helpers.prepare_offline_model()
    for written in (path, path.with_name(path.name + ".json")):
        assert stat.S_IMODE(written.stat().st_mode) & 0o044 == 0o044, oct(written.stat().st_mode)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp-")] == []

    # A manifest that is valid JSON but not an object: healed, not an AttributeError.
    manifest = path.with_name(path.name + ".json")
    manifest.write_text("[1, 2, 3]")
    assert not weights_cache.cache_is_valid(path)
    assert helpers.prepare_offline_model() == path and weights_cache.cache_is_valid(path)

    # A killed conversion's leftovers are removed once clearly abandoned; a fresh one is kept.
    stale, fresh = (tmp_path / f"{weights_cache.TEMPORARY_PREFIX}{n}.weights.h5" for n in "ab")
    stale.write_bytes(b"half")
    fresh.write_bytes(b"in progress")
    os.utime(stale, (1_000_000_000, 1_000_000_000))  # 2001
    assert helpers.prepare_offline_model() == path
    assert not stale.exists() and fresh.exists()


def test_unwritable_cache_falls_back_per_user_then_in_memory(monkeypatch, tmp_path, samples):
    # GAPCAM_CACHE_DIR names a file: before, FileExistsError / NotADirectoryError after converting.
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("GAPCAM_CACHE_DIR", str(blocker))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    with pytest.warns(RuntimeWarning, match=r"cannot be used.*using .*gap-cam-"):
        path = helpers.prepare_offline_model()
    assert path.parent == weights_cache.fallback_cache_dir() and weights_cache.cache_is_valid(path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once, not on every load
        assert helpers.prepare_offline_model() == path

    # Neither writable: a clear OSError before converting; load_classifier converts in memory.
    monkeypatch.setattr(tempfile, "tempdir", str(blocker))
    with pytest.raises(OSError, match=r"cannot be used.*nor can the fallback.*GAPCAM_CACHE_DIR"):
        helpers.prepare_offline_model()
    with pytest.warns(RuntimeWarning, match=r"in memory"):
        classifier = helpers.load_classifier("efficientnet_lite0")
    assert classifier.predict(samples["coffee"], top=1)[0][0].class_id == 967


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root writes into read-only directories")
def test_read_only_cache_directory_falls_back(monkeypatch, tmp_path):
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o555)
    monkeypatch.setenv("GAPCAM_CACHE_DIR", str(read_only))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.warns(RuntimeWarning, match="cannot be used"):
        assert helpers.prepare_offline_model().parent == weights_cache.fallback_cache_dir()
