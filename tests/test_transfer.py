"""Photo composites (helpers.photo_composites) and transfer learning with a GAP head
(helpers.models.transfer): notebook 05."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import helpers
from helpers.images import resize_image, resize_images
from helpers.data.composites import BACKGROUNDS, OBJECT_CROPS, object_crop
from helpers.models.transfer import pooled_features

# Also run under KERAS_BACKEND=jax (make test-jax).
pytestmark = pytest.mark.jax

SMALL = 64  # composites for the data tests; the model tests need the classifier's 224


# --------------------------------------------------------------------------------------------
# Composites
# --------------------------------------------------------------------------------------------


def test_composites_are_deterministic_from_the_seed():
    first = helpers.make_photo_composites(12, size=SMALL, seed=3)
    again = helpers.make_photo_composites(12, size=SMALL, seed=3)
    other = helpers.make_photo_composites(12, size=SMALL, seed=4)
    for name in ("images", "labels", "boxes", "backgrounds", "flipped"):
        assert np.array_equal(getattr(first, name), getattr(again, name)), name
    assert not np.array_equal(first.images, other.images)
    assert not np.array_equal(first.boxes, other.boxes)


def test_shapes_types_and_balanced_classes():
    data = helpers.make_photo_composites(23, size=SMALL, seed=0)
    assert data.images.shape == (23, SMALL, SMALL, 3) and data.images.dtype == np.uint8
    assert data.labels.shape == (23,) and data.labels.dtype == np.int64
    assert data.boxes.shape == (23, 4) and data.boxes.dtype == np.int64
    assert data.class_names == tuple(OBJECT_CROPS) == tuple(sorted(OBJECT_CROPS))
    counts = np.bincount(data.labels, minlength=len(data.class_names))
    assert counts.max() - counts.min() <= 1
    assert len(data) == 23 and data.image_size == SMALL
    part = data.subset(data.labels == 0)
    assert len(part) == counts[0] and np.all(part.labels == 0)


def test_each_box_is_exactly_the_pasted_object():
    """Inside every box: the class's object, resized to the box (and mirrored when flipped),
    pixel for pixel; the box lies inside the image and its longer side follows object_scale."""
    size, scale = 96, (0.3, 0.6)
    data = helpers.make_photo_composites(20, size=size, object_scale=scale, seed=5)
    assert data.flipped.any() and not data.flipped.all()
    for image, label, box, flipped in zip(data.images, data.labels, data.boxes, data.flipped):
        x0, y0, x1, y1 = (int(v) for v in box)
        assert 0 <= x0 <= x1 < size and 0 <= y0 <= y1 < size
        height, width = y1 - y0 + 1, x1 - x0 + 1
        assert scale[0] * size - 1 <= max(height, width) <= scale[1] * size + 1
        expected = np.round(resize_image(object_crop(data.class_names[label]), (height, width)))
        expected = expected.astype(np.uint8)[:, ::-1] if flipped else expected.astype(np.uint8)
        assert np.array_equal(image[y0 : y1 + 1, x0 : x1 + 1], expected)


def test_object_pixels_stop_at_the_box():
    """Outside the box the pixels are the background's: the same composite drawn with another
    object (same seed, same class order, so same background and placement draws) differs
    only inside the boxes."""
    cats = helpers.make_photo_composites(8, size=SMALL, classes=["cat", "flower"], seed=9)
    flowers = helpers.make_photo_composites(8, size=SMALL, classes=["flower", "cat"], seed=9)
    for index in range(8):
        outside = np.ones((SMALL, SMALL), dtype=bool)
        for data in (cats, flowers):
            x0, y0, x1, y1 = data.boxes[index]
            outside[y0 : y1 + 1, x0 : x1 + 1] = False
        assert np.array_equal(cats.images[index][outside], flowers.images[index][outside])


def test_train_and_test_differ_in_backgrounds_and_placements():
    train = helpers.make_photo_composites(30, size=SMALL, split="train", seed=0)
    test = helpers.make_photo_composites(30, size=SMALL, split="test", seed=0)
    assert not set(train.background_names) & set(test.background_names)
    assert train.background_names == BACKGROUNDS["train"]
    assert not np.array_equal(train.boxes, test.boxes)
    objects = {photo for photo, _ in OBJECT_CROPS.values()}
    assert not objects & (set(BACKGROUNDS["train"]) | set(BACKGROUNDS["test"]))


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"count": 0}, ValueError),
        ({"count": 2.0}, TypeError),
        ({"count": 4, "seed": -1}, ValueError),
        ({"count": 4, "seed": None}, TypeError),
        ({"count": 4, "split": "validation"}, ValueError),
        ({"count": 4, "classes": "cat"}, TypeError),
        ({"count": 4, "classes": ["cat"]}, ValueError),
        ({"count": 4, "classes": ["cat", "dog"]}, ValueError),
        ({"count": 4, "object_scale": (0.6, 0.3)}, ValueError),
        ({"count": 4, "object_scale": 0.5}, TypeError),
        ({"count": 4, "size": 16}, ValueError),
    ],
)
def test_composites_refuse_bad_arguments(kwargs, error):
    count = kwargs.pop("count")
    with pytest.raises(error):
        helpers.make_photo_composites(count, **kwargs)


def _tiny_folder(tmp_path, size=SMALL):
    """2 classes x 3 images, written as <class>/<index>.png."""
    data = helpers.make_photo_composites(6, size=size, classes=["cat", "flower"], seed=1)
    folder = data.save_to_folder(tmp_path / "my_photos")
    return data, folder


def test_a_saved_folder_reads_back_with_image_dataset_from_directory(tmp_path):
    data, folder = _tiny_folder(tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == ["cat", "flower"]
    assert sum(1 for _ in folder.glob("*/*.png")) == 6
    dataset = keras.utils.image_dataset_from_directory(
        folder, image_size=(SMALL, SMALL), batch_size=4, shuffle=False)
    assert dataset.class_names == ["cat", "flower"]
    images = np.concatenate([np.asarray(x) for x, _ in dataset])
    labels = np.concatenate([np.asarray(y) for _, y in dataset])
    order = np.argsort(data.labels, kind="stable")  # folder order: class, then file name
    assert np.array_equal(labels, data.labels[order])
    assert np.array_equal(images, data.images[order].astype(np.float32))  # PNG: lossless


# --------------------------------------------------------------------------------------------
# The transfer model
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def transfer_model(lite0):
    return helpers.build_transfer_model(lite0, 3, seed=0)


def test_transfer_model_is_a_frozen_base_under_a_new_gap_head(transfer_model):
    head = helpers.find_cam_head(transfer_model)
    assert head.feature_layer == "top_relu" and head.feature_shape == (7, 7, 1280)
    assert head.pooling_kind == "average" and head.dense.name == "classes"
    trainable = sum(int(np.prod(w.shape)) for w in transfer_model.trainable_weights)
    assert trainable == 1280 * 3 + 3
    assert not transfer_model.get_layer("base").trainable
    assert transfer_model.input_shape == (None, 224, 224, 3)


def test_transfer_model_normalizes_as_the_classifier_does(lite0, transfer_model):
    """The model takes 0..255 images: its features are the classifier's on preprocessed ones."""
    images = helpers.make_photo_composites(2, seed=0).images
    ours = keras.Model(transfer_model.input, transfer_model.get_layer("gap").output)
    theirs = keras.Model(lite0.model.input, lite0.model.get_layer("top_relu").output)
    pooled_theirs = keras.ops.convert_to_numpy(theirs(lite0.preprocess(images))).mean(axis=(1, 2))
    pooled_ours = keras.ops.convert_to_numpy(ours(images.astype(np.float32)))
    assert np.allclose(pooled_ours, pooled_theirs, atol=1e-4)
    features, labels = pooled_features(transfer_model, images)  # the compiled, folded pass
    assert labels is None and np.allclose(features, pooled_ours, atol=1e-3)


def test_cam_identity_holds_on_the_transfer_model(transfer_model):
    images = helpers.make_photo_composites(4, seed=2).images
    result = helpers.class_activation_maps(transfer_model, images, classes="all")
    assert result.layer == "top_relu" and result.low_res.shape == (4, 3, 7, 7)
    assert result.identity_holds
    identity = result.low_res.mean(axis=(2, 3)) + result.bias - result.scores
    assert np.abs(identity).max() <= 1e-4 * max(1.0, np.abs(result.scores).max())
    logits = keras.ops.convert_to_numpy(transfer_model(images.astype(np.float32)))
    assert np.allclose(result.logits, logits, atol=1e-4)


@pytest.mark.slow
def test_fit_from_a_folder_equals_fit_from_arrays_and_trains_only_the_head(lite0, tmp_path):
    data, folder = _tiny_folder(tmp_path, size=224)
    dataset = keras.utils.image_dataset_from_directory(folder, image_size=(224, 224),
                                                       batch_size=4, shuffle=False)
    from_folder = helpers.build_transfer_model(lite0, 2, seed=0)
    base_before = [np.array(w) for w in from_folder.get_layer("base").get_weights()[:4]]
    dense_before = np.array(from_folder.get_layer("classes").get_weights()[0])
    history = helpers.fit_transfer_head(from_folder, dataset, epochs=40, batch_size=2,
                                        learning_rate=1e-2, seed=0)
    assert history.history["accuracy"][-1] == 1.0
    assert history.history["loss"][-1] < history.history["loss"][0]
    for before, after in zip(base_before, from_folder.get_layer("base").get_weights()[:4]):
        assert np.array_equal(before, after), "the base must not change"
    assert not np.allclose(dense_before, from_folder.get_layer("classes").get_weights()[0])

    order = np.argsort(data.labels, kind="stable")  # the folder's order
    from_arrays = helpers.build_transfer_model(lite0, 2, seed=0)
    helpers.fit_transfer_head(from_arrays, data.images[order], data.labels[order], epochs=40,
                              batch_size=2, learning_rate=1e-2, seed=0)
    for ours, theirs in zip(from_folder.get_layer("classes").get_weights(),
                            from_arrays.get_layer("classes").get_weights()):
        assert np.allclose(ours, theirs, atol=1e-5)
    predicted = from_folder.predict(data.images.astype(np.float32), verbose=0).argmax(axis=1)
    assert np.array_equal(predicted, data.labels)


def test_fit_transfer_head_refuses_what_it_cannot_train(lite0, transfer_model):
    images = helpers.make_photo_composites(3, classes=["cat", "rocket"], seed=0).images
    with pytest.raises(ValueError, match="labels"):
        helpers.fit_transfer_head(transfer_model, images)
    with pytest.raises(ValueError, match="0..2"):
        helpers.fit_transfer_head(transfer_model, images, np.array([0, 1, 3]))
    with pytest.raises(ValueError, match="integer"):
        helpers.fit_transfer_head(transfer_model, images, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match="epochs"):
        helpers.fit_transfer_head(transfer_model, images, np.array([0, 1, 2]), epochs=0)
    with pytest.raises(TypeError, match="image_dataset_from_directory"):
        helpers.fit_transfer_head(transfer_model, "my_photos")
    small = helpers.make_photo_composites(3, size=SMALL, seed=0).images
    with pytest.raises(ValueError, match="image_size"):  # a folder read at the wrong size
        helpers.fit_transfer_head(transfer_model, small, np.array([0, 1, 2]))
    inputs = keras.Input((224, 224, 3))
    features = transfer_model.get_layer("base")(inputs)
    pooled = keras.layers.GlobalAveragePooling2D()(features)
    softmax_model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(pooled))
    with pytest.raises(ValueError, match="activation"):
        helpers.fit_transfer_head(softmax_model, images, np.array([0, 1, 0]))
    with pytest.raises(ValueError, match=r"seed must be an integer >= 0, got float 1\.7"):
        helpers.fit_transfer_head(transfer_model, images, np.array([0, 1, 0]), seed=1.7)


def test_the_transfer_functions_name_the_model_they_take(lite0, transfer_model):
    """The Classifier itself (its pretrained head) or something else: a clear error, not an
    AttributeError from inside."""
    from helpers.models.transfer import pooled_features

    images = helpers.make_photo_composites(2, classes=["cat", "rocket"], seed=0).images
    for call in (lambda m: helpers.fit_transfer_head(m, images, np.array([0, 1])),
                 lambda m: pooled_features(m, images)):
        with pytest.raises(TypeError, match=r"takes the Keras model with the new head, built by "
                                            r"helpers.build_transfer_model"):
            call(lite0)
        with pytest.raises(TypeError, match=r"model must be a Keras model with a GAP → Dense "
                                            r"head .*got tuple"):
            call((1, 2))


def test_a_transfer_model_refuses_photos_on_the_0_1_scale(transfer_model):
    """It normalises 0..255 RGB itself; before, images / 255 trained and mapped without a word
    (0.20 test accuracy against about 0.9)."""
    images = helpers.make_photo_composites(3, classes=["cat", "rocket"], seed=0).images
    unit = images.astype(np.float32) / 255
    for call in (lambda: pooled_features(transfer_model, unit),
                 lambda: helpers.fit_transfer_head(transfer_model, unit, np.array([0, 1, 0])),
                 lambda: helpers.class_activation_maps(transfer_model, unit),
                 lambda: helpers.grad_cam(transfer_model, list(unit))):
        with pytest.raises(ValueError, match=r"0\.\.1.*255"):
            call()
    # The promise is the PhotoNormalization layer's, so a model built from it keeps it ...
    built_by_hand = keras.Model(transfer_model.input, transfer_model.output)
    with pytest.raises(ValueError, match=r"0\.\.1.*255"):
        helpers.class_activation_maps(built_by_hand, unit)
    # ... and a model without it takes preprocessed inputs: Lite0's network, known by its
    # weights, takes them in [-0.99, 1] and refuses the photos on 0..1 as photos.
    after_normalize = keras.Input((224, 224, 3))
    outputs = after_normalize
    for layer in transfer_model.layers[2:]:  # base, gap, classes
        outputs = layer(outputs)
    no_promise = keras.Model(after_normalize, outputs)
    with pytest.raises(ValueError, match="look like photos"):
        helpers.class_activation_maps(no_promise, unit)
    preprocessed = (images.astype(np.float32) - 127) / 128
    assert helpers.class_activation_maps(no_promise, preprocessed).low_res.shape == (3, 1, 7, 7)


def test_the_photo_check_survives_save_load_and_clone(transfer_model, tmp_path):
    """Before, the check was a mark on the Python object: a saved and loaded (or cloned)
    transfer model mapped images / 255 without a word. The layer carries it now."""
    from helpers.images import takes_rgb_input

    path = tmp_path / "transfer.keras"
    transfer_model.save(path)
    loaded = keras.saving.load_model(path)
    cloned = keras.models.clone_model(transfer_model)
    images = helpers.make_photo_composites(2, classes=["cat", "rocket"], seed=0).images
    for model in (loaded, cloned):
        assert takes_rgb_input(model)
        with pytest.raises(ValueError, match=r"0\.\.1.*255"):
            helpers.class_activation_maps(model, images.astype(np.float32) / 255)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(images.astype(np.float32))),
        keras.ops.convert_to_numpy(transfer_model(images.astype(np.float32))), atol=1e-5)


@pytest.mark.parametrize("name", ["efficientnet_lite0", "resnet50", "vgg16"])
def test_photo_normalization_is_the_classifiers_preprocessing(name):
    """The layer's per-channel scale, offset and channel order are each classifier's own
    normalisation (Keras's caffe mode for ResNet-50 and VGG-16), on every pixel value."""
    from helpers.models.applications import KERAS_APPLICATIONS
    from helpers.models.lite0 import normalize_lite0
    from helpers.models.transfer import _NORMALIZATIONS, PhotoNormalization

    normalize = normalize_lite0 if name == "efficientnet_lite0" else KERAS_APPLICATIONS[name][3]
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 5, 7, 3)).astype(np.float32)
    pixels[0, 0, 0], pixels[0, 0, 1] = 0, 255
    layer = PhotoNormalization(*_NORMALIZATIONS[name])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(layer(pixels)),
                               normalize(pixels.copy()), atol=1e-4)


def test_fit_transfer_head_says_which_labels_go_with_which_images(lite0, transfer_model):
    """A data set carries its labels; photos need theirs. Before: a data set with labels was
    read as photos, and photos without labels as a data set ("pass labels=None")."""
    photos = list(helpers.sample_images().values())[:2]
    dataset = iter([(resize_images(photos, (224, 224)),
                     np.array([0, 1]))])
    with pytest.raises(TypeError, match=r"data set of \(images, labels\).*labels=None"):
        helpers.fit_transfer_head(transfer_model, dataset, np.array([0, 1]))
    for unlabelled in (photos, dict(zip("ab", photos))):
        with pytest.raises(ValueError, match="pass their labels too"):
            helpers.fit_transfer_head(transfer_model, unlabelled)


def test_fit_transfer_head_takes_a_list_of_photos_with_labels(lite0):
    """Before: "pass labels=None" for a list. Each photo is resized whole to the input size;
    the features are those of the stacked, resized array."""
    from helpers.images import resize_images

    photos = list(helpers.sample_images().values())[:3]  # three sizes
    model = helpers.build_transfer_model(lite0, 2, seed=1)
    by_list = helpers.fit_transfer_head(model, photos, np.array([0, 1, 0]), epochs=2)
    stacked = resize_images(photos, (224, 224))
    model_again = helpers.build_transfer_model(lite0, 2, seed=1)
    by_array = helpers.fit_transfer_head(model_again, stacked, np.array([0, 1, 0]), epochs=2)
    np.testing.assert_allclose(by_list.history["loss"], by_array.history["loss"], rtol=1e-5)
    with pytest.raises(ValueError, match="labels must be 3 integer classes"):
        helpers.fit_transfer_head(model, photos, np.array([0, 1]))


def test_build_transfer_model_refuses_bad_arguments(lite0):
    with pytest.raises(TypeError, match="Classifier"):
        helpers.build_transfer_model(lite0.model, 3)
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
        helpers.build_transfer_model(lite0, 1)
    with pytest.raises(TypeError):
        helpers.build_transfer_model(lite0, 2.0)


def test_a_resnet50_base_gets_its_own_normalization():
    """Any classifier with a GAP head works: ResNet-50's caffe-style preprocessing becomes the
    model's first layer (random weights: no download)."""
    resnet = helpers.load_classifier("resnet50", weights=None)
    model = helpers.build_transfer_model(resnet, 2)
    assert helpers.find_cam_head(model).feature_layer == "conv5_block3_out"
    images = helpers.make_photo_composites(2, seed=0).images
    ours = keras.Model(model.input, model.get_layer("gap").output)(images.astype(np.float32))
    theirs = keras.Model(resnet.model.input, resnet.model.get_layer("conv5_block3_out").output)(
        resnet.preprocess(images))
    assert np.allclose(keras.ops.convert_to_numpy(ours),
                       keras.ops.convert_to_numpy(theirs).mean(axis=(1, 2)), atol=1e-4)
