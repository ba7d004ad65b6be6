"""Transfer learning with a GAP head: a frozen pretrained base and a new Dense layer, trained fast.

Introduced in notebook 05.

:func:`build_transfer_model` cuts a pretrained classifier at its last feature map (for
EfficientNet-Lite0 ``top_relu``, ``7 × 7 × 1280``), freezes it, and puts a new
``GlobalAveragePooling2D → Dense(num_classes)`` head on it; the model takes RGB images in 0..255
(the classifier's normalisation is its first layer), so :func:`helpers.class_activation_maps`,
:func:`helpers.evaluate_localization` and a ``keras.utils.image_dataset_from_directory`` data set
feed it directly.

:func:`fit_transfer_head` trains only the new Dense layer. With the base frozen and GAP without
weights, what the Dense layer sees of an image is its pooled feature vector (1280 numbers), and
that never changes during training: it is computed **once** per image, and the Dense layer is
trained on those vectors, which takes seconds instead of a full forward pass per image and
epoch. The trained layer is the model's own layer, so the model is trained too.
"""

from __future__ import annotations

import random
import weakref
from collections.abc import Mapping
from os import PathLike
from typing import Any

import keras
import numpy as np

from helpers.cam import find_cam_head, forward
from helpers.checks import ArgumentError, instance, integer, number
from helpers.env import set_seed
from helpers.images import declare_rgb_input, model_images, resize_images, takes_rgb_input
from helpers.models.classifier import Classifier
from helpers.models.small_cnn import dense_kernel_bytes

__all__ = ["PhotoNormalization", "build_transfer_model", "fit_transfer_head", "pooled_features"]


#: Per-channel ``(scale, offset, reverse_channels)`` of each classifier's input normalisation:
#: EfficientNet-Lite0's ``(x - 127) / 128``; Keras's "caffe" mode for ResNet-50 and VGG-16
#: (RGB to BGR, minus the ImageNet means), as ``keras.applications.*.preprocess_input``.
_NORMALIZATIONS = {
    "efficientnet_lite0": ((1 / 128.0,) * 3, (-127 / 128.0,) * 3, False),
    "resnet50": ((1.0,) * 3, (-103.939, -116.779, -123.68), True),
    "vgg16": ((1.0,) * 3, (-103.939, -116.779, -123.68), True),
}


@keras.saving.register_keras_serializable(package="helpers")
class PhotoNormalization(keras.layers.Layer):
    """RGB photos on 0..255 → a pretrained network's input scale, per channel:
    ``x[..., ::-1]`` if ``reverse_channels``, then ``x * scale + offset``.

    A model that holds this layer takes photos, and every helpers function given it checks
    that they are RGB on 0..255 (:func:`helpers.images.takes_rgb_input`). The layer is saved,
    loaded and cloned with the model, so the check is too."""

    takes_rgb_0_255 = True  # read by helpers.images.takes_rgb_input

    def __init__(self, scale: Any, offset: Any, reverse_channels: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        self.scale = [float(value) for value in scale]
        self.offset = [float(value) for value in offset]
        self.reverse_channels = bool(reverse_channels)
        if len(self.scale) != 3 or len(self.offset) != 3:
            raise ValueError(f"scale and offset must have 3 values (R, G, B); got "
                             f"{len(self.scale)} and {len(self.offset)}")

    def call(self, images: Any) -> Any:
        if self.reverse_channels:
            images = keras.ops.flip(images, axis=-1)
        scale = keras.ops.convert_to_tensor(self.scale, dtype=images.dtype)
        offset = keras.ops.convert_to_tensor(self.offset, dtype=images.dtype)
        return images * scale + offset

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "scale": self.scale, "offset": self.offset,
                "reverse_channels": self.reverse_channels}


def _normalization_layer(classifier: Classifier) -> keras.layers.Layer:
    """The classifier's input normalisation as a layer: 0..255 RGB → what its model expects."""
    if classifier.name in _NORMALIZATIONS:
        scale, offset, reverse = _NORMALIZATIONS[classifier.name]
        return PhotoNormalization(scale, offset, reverse, name="normalize")
    return keras.layers.Lambda(classifier.normalize, name="normalize")  # marked, see below


def build_transfer_model(
    classifier: Classifier,
    num_classes: int,
    *,
    seed: int = 0,
    name: str = "transfer_gap",
) -> keras.Model:
    """A new classifier: the frozen pretrained base, then ``GlobalAveragePooling2D → Dense``.

    Introduced in notebook 05.

    The layers: ``image`` (RGB, 0..255, the classifier's input size) → ``normalize`` (the
    classifier's preprocessing; for EfficientNet-Lite0 ``(x - 127) / 128``) → ``base`` (the
    classifier's model up to its last feature map, a nested model, **frozen**) → ``gap``
    (``GlobalAveragePooling2D``) → ``classes`` (``Dense(num_classes)``, logits, no activation).
    Only ``classes`` is trainable: ``k · num_classes + num_classes`` weights (6,405 for
    EfficientNet-Lite0's ``k = 1280`` and five classes).

    Parameters
    ----------
    classifier
        A :class:`helpers.Classifier` whose head is GAP → Dense (``"efficientnet_lite0"``,
        offline; ``"resnet50"``). Its layers are shared, not copied, and are set to non-trainable.
    num_classes
        Number of new classes, >= 2.
    seed
        Seed of the Dense layer's initial weights (Glorot uniform; the bias starts at 0).
    name
        The model's name.

    Returns
    -------
    keras.Model
        Images ``(B, H, W, 3)`` in 0..255 → logits ``(B, num_classes)``. Its CAM head
        (:func:`helpers.find_cam_head`) is ``base``'s last feature map → ``gap`` → ``classes``.

    Raises
    ------
    TypeError
        ``classifier`` is not a :class:`helpers.Classifier`, or an argument has the wrong type.
    ValueError
        The classifier has no GAP → Dense head (VGG-16), or ``num_classes < 2``, or so many
        classes that the Dense kernel would exceed :data:`helpers.checks.MAX_ARRAY_BYTES`.
    """
    if not isinstance(classifier, Classifier):
        raise TypeError(
            "classifier must be a helpers.Classifier, e.g. "
            f"helpers.load_classifier('efficientnet_lite0'); got {type(classifier).__name__}"
        )
    num_classes = integer("num_classes", num_classes, 2)
    seed = integer("seed", seed, 0)
    head = find_cam_head(classifier)  # ValueError for a classifier without a GAP head
    if head.pooling_kind != "average":
        raise ValueError(f"{classifier.name} has a {head.pooling_kind}-pooling head, not GAP")
    source = classifier.model
    base = keras.Model(source.input, source.get_layer(head.feature_layer).output, name="base")
    base.trainable = False

    height, width = classifier.input_size
    images = keras.Input((height, width, 3), name="image")
    features = base(_normalization_layer(classifier)(images))  # f: (B, h, w, k)
    pooled = keras.layers.GlobalAveragePooling2D(name="gap")(features)  # F: (B, k)
    dense_kernel_bytes(pooled, num_classes, "num_classes")  # before Keras draws it
    logits = keras.layers.Dense(
        num_classes,
        kernel_initializer=keras.initializers.GlorotUniform(seed=int(seed)),
        name="classes",
    )(pooled)  # S = F w + b: (B, num_classes)
    model = keras.Model(images, logits, name=name)
    # Photos' scale is checked: said by the PhotoNormalization layer (kept by save, load and
    # clone), or by a mark on this object for another classifier's Lambda layer.
    return model if takes_rgb_input(model) else declare_rgb_input(model)


_DENSE_INPUT_MODELS: weakref.WeakKeyDictionary[keras.Model, keras.Model] = (
    weakref.WeakKeyDictionary()
)


def _dense_input_model(model: keras.Model, head: Any) -> keras.Model:
    """``model``'s input → its Dense layer's input, built once per model (so compiled once)."""
    if model not in _DENSE_INPUT_MODELS:
        _DENSE_INPUT_MODELS[model] = keras.Model(
            head.feature_model.inputs, head.head_model(head.feature_model.outputs[0]),
            name="pooled_features",
        )
    return _DENSE_INPUT_MODELS[model]


def _head_model(model: Any, caller: str) -> keras.Model:
    """``model`` if it is a Keras model (its GAP → Dense head is found by the caller); a
    Classifier is refused by name: its head is the pretrained one, not a new one to train."""
    if isinstance(model, Classifier):
        raise ArgumentError(
            f"{caller} takes the Keras model with the new head, built by "
            "helpers.build_transfer_model(classifier, num_classes), not the Classifier itself "
            "(whose head is the pretrained ImageNet one)")
    return instance("model", model, keras.Model,
                    "a Keras model with a GAP → Dense head (helpers.build_transfer_model's)")


def pooled_features(
    model: keras.Model, images: Any, batch_size: int = 16
) -> tuple[np.ndarray, np.ndarray | None]:
    """What the Dense layer of a GAP head sees: the pooled feature vector of each image.

    Introduced in notebook 05. Runs the model up to the input of its head's Dense layer
    (:func:`helpers.find_cam_head`: the base, the pooling and any Dropout between them, in
    inference mode).

    Parameters
    ----------
    model
        A Keras model with a GAP (or GMP) → Dense head, e.g. :func:`build_transfer_model`'s.
    images
        A numpy array ``(N, H, W, 3)`` of images as the model takes them, or an iterable of
        ``(images, labels)`` batches such as a ``tf.data.Dataset`` from
        ``keras.utils.image_dataset_from_directory``
        (read **once**: a shuffling data set gives features and labels in the same order).
    batch_size
        Images per forward pass, for an array. Activations, not images, fill memory, so the
        default matches the CAM engine's chunks (README, "Memory").

    Returns
    -------
    features : np.ndarray
        ``(N, k)`` float32.
    labels : np.ndarray or None
        ``(N,)`` the batches' labels as int64 for a data set; None for an array.
    """
    model = _head_model(model, "pooled_features")
    batch_size = integer("batch_size", batch_size, 1)
    if isinstance(images, (str, bytes, PathLike)):
        raise TypeError(
            f"images is a path ({images!r:.80}); read the folder first, e.g. "
            "keras.utils.image_dataset_from_directory(folder, image_size=(224, 224))"
        )
    images = _as_array_if_tensor(images)
    if isinstance(images, Mapping) or (isinstance(images, (list, tuple)) and not _is_batches(images)):
        images = _as_batch(model, images)  # photos: each resized whole to the input size
    head = find_cam_head(model)
    dense_input = _dense_input_model(model, head)
    network = forward(dense_input)  # compiled once per model, BatchNorm folded
    expected = tuple(model.inputs[0].shape[1:])

    def run(batch: np.ndarray) -> np.ndarray:
        model_images(model, batch)  # RGB 0..255 for a model that normalises; preprocessed else
        fits = batch.ndim == 4 and all(e in (None, d) for e, d in zip(expected, batch.shape[1:]))
        if not fits:
            raise ValueError(
                f"images of shape {batch.shape[1:]} for a model that takes {expected}; read "
                f"folders with image_size={expected[:2]} (image_dataset_from_directory's default "
                "is (256, 256))"
            )
        return np.asarray(keras.ops.convert_to_numpy(network(batch.astype(np.float32))))

    if isinstance(images, np.ndarray):
        if images.ndim != 4:
            raise ValueError(f"images must be a batch (N, H, W, C), got shape {images.shape}")
        if len(images) == 0:
            raise ValueError("images is empty: got 0 images")
        features = [run(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
        return np.concatenate(features).astype(np.float32), None
    feature_batches, label_batches = [], []
    for batch in images:
        if not isinstance(batch, (tuple, list)) or len(batch) != 2:
            raise ValueError(
                "a data set must yield (images, labels) batches, as image_dataset_from_directory "
                "does with its default labels='inferred'"
            )
        batch_images, batch_labels = (np.asarray(part) for part in batch)
        if batch_images.ndim == len(expected):
            raise ValueError(
                f"the data set yields single images {batch_images.shape}, not batches: batch it "
                "first (dataset.batch(32); image_dataset_from_directory batches already)")
        feature_batches.append(run(batch_images))
        label_batches.append(batch_labels)
    if not feature_batches:
        raise ValueError("the data set is empty: no batch was read")
    labels = np.concatenate(label_batches)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ValueError(
            f"labels must be integer class indices (N,), got {labels.dtype} {labels.shape}; "
            "read the folder with label_mode='int' (image_dataset_from_directory's default)"
        )
    return np.concatenate(feature_batches), labels.astype(np.int64)


def _as_array_if_tensor(images: Any) -> Any:
    """A tensor (TensorFlow, JAX, torch) of images as a numpy array; a data set (it has an
    ``element_spec``) or anything else as it is."""
    if (not isinstance(images, (np.ndarray, list, tuple, Mapping)) and hasattr(images, "__array__")
            and not hasattr(images, "element_spec")):
        return np.asarray(images)
    return images


def _is_batches(images: Any) -> bool:
    """A list or tuple of ``(images, labels)`` pairs: batches, as a data set yields them."""
    return isinstance(images, (list, tuple)) and all(
        isinstance(item, (list, tuple)) and len(item) == 2 for item in images)


def _as_batch(model: keras.Model, images: Any) -> np.ndarray:
    """Photos in any form :func:`helpers.images.as_images` takes (a list, a dict, one photo),
    each resized whole to the model's input size: one array ``(N, H, W, 3)``."""
    source = model_images(model, images)
    if isinstance(source, np.ndarray):
        return source
    height, width = tuple(model.inputs[0].shape[1:3])
    if height is None or width is None:
        raise ValueError("photos of different sizes need a model with a fixed input size")
    return resize_images(source, (int(height), int(width)))


def fit_transfer_head(
    model: keras.Model,
    images: Any,
    labels: Any = None,
    *,
    epochs: int = 30,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    seed: int = 0,
    verbose: int = 0,
) -> keras.callbacks.History:
    """Train only the Dense layer of a GAP head, on pooled features computed once.

    Introduced in notebook 05, whose section 3 explains the steps:

    1. ``features = pooled_features(model, images)``: one forward pass per image, ``(N, k)``;
    2. a small model ``k numbers → the model's own Dense layer`` (the same layer object);
    3. Adam with ``learning_rate``, sparse categorical cross-entropy on the logits, ``epochs``
       epochs of shuffled batches of ``batch_size`` features.

    Everything before the Dense layer is left as it is (frozen, whatever its ``trainable``
    flag), and a Dropout between the pooling and the Dense layer is skipped: to train those,
    fine-tune the whole model with ``model.fit``.

    Each call starts afresh: the Dense layer's weights are drawn again from its initializers,
    seeded by ``seed`` (for :func:`build_transfer_model`'s layer with the same seed, the weights
    it was built with), and the batches are shuffled with ``seed``, so running a cell again
    repeats its curve instead of training on from where the last run ended. The shuffling is
    seeded through :func:`helpers.set_seed`; the caller's Python and NumPy random states are
    restored afterwards (the backend's global seed, e.g. TensorFlow's, stays set to ``seed``).

    Parameters
    ----------
    model
        A Keras model with a GAP → Dense head whose Dense layer outputs logits (no activation),
        e.g. :func:`build_transfer_model`'s.
    images
        With ``labels``: ``(N, H, W, 3)`` images as the model takes them (RGB 0..255 for
        :func:`build_transfer_model`'s, whose photos are checked: a 0..1 batch is refused), or
        photos in any form :func:`helpers.images.as_images` takes (a list, a dict), each resized
        whole to the model's input size. With ``labels=None``: a data set of ``(images,
        labels)`` batches (``keras.utils.image_dataset_from_directory(folder,
        image_size=(224, 224))``), read once.
    labels
        ``(N,)`` integer classes in ``0..num_classes - 1`` for an array; None for a data set.
    epochs, batch_size, learning_rate, seed, verbose
        Training settings; ``verbose`` as in ``keras.Model.fit``.

    Returns
    -------
    keras.callbacks.History
        ``.history["loss"]`` and ``.history["accuracy"]`` per epoch, on the training features.

    Raises
    ------
    ValueError
        Labels missing, given twice, out of range or of the wrong shape; a Dense layer with an
        activation; an empty data set.
    """
    model = _head_model(model, "fit_transfer_head")
    epochs = integer("epochs", epochs, 1)
    batch_size = integer("batch_size", batch_size, 1)
    learning_rate = number("learning_rate", learning_rate, 0.0, low_open=True)
    seed = integer("seed", seed, 0)
    head = find_cam_head(model)
    if head.dense.activation not in (None, keras.activations.linear):
        raise ValueError(
            f"the Dense layer {head.dense.name!r} has the activation "
            f"{getattr(head.dense.activation, '__name__', head.dense.activation)!r}; "
            "fit_transfer_head trains Dense layers that output logits (no activation)"
        )
    images = _as_array_if_tensor(images)
    photos = isinstance(images, (np.ndarray, list, tuple, Mapping))
    if labels is not None and not photos:
        raise TypeError(
            f"images is a {type(images).__name__}, read as a data set of (images, labels) "
            "batches, which carries its own labels, and labels were given too. Pass labels=None "
            "with a data set, or pass the photos (an array (N, H, W, 3), a list or a dict) with "
            "their labels (N,)"
        )
    if labels is None and photos and not _is_batches(images):
        raise ValueError(
            f"images is a {type(images).__name__} of photos: pass their labels too, an integer "
            "array (N,); labels=None is for a data set of (images, labels) batches"
        )
    is_array = labels is not None or isinstance(images, np.ndarray)
    if is_array and not isinstance(images, np.ndarray):  # a list or dict of photos, with labels
        images = _as_batch(model, images)

    features, dataset_labels = pooled_features(model, images)  # its own batches, not batch_size
    targets = np.asarray(labels) if is_array else dataset_labels
    if targets.shape != (len(features),) or targets.dtype.kind not in "iu":
        raise ValueError(
            f"labels must be {len(features)} integer classes (N,), got {targets.dtype} "
            f"{targets.shape}"
        )
    if targets.min() < 0 or targets.max() >= head.num_classes:
        raise ValueError(
            f"labels must lie in 0..{head.num_classes - 1} (the Dense layer's classes), got "
            f"{targets.min()}..{targets.max()}"
        )

    _reinitialise(head.dense, seed)  # a repeat call starts where the first did, not where it ended
    pooled = keras.Input((features.shape[1],), name="pooled")
    head_only = keras.Model(pooled, head.dense(pooled), name="dense_head")  # the same layer
    head_only.compile(
        optimizer=keras.optimizers.Adam(float(learning_rate)),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    saved = random.getstate(), np.random.get_state()  # the caller's random state is theirs
    set_seed(seed)  # the shuffling of the batches
    try:
        return head_only.fit(
            features, targets.astype(np.int64), epochs=epochs, batch_size=batch_size,
            shuffle=True, verbose=verbose,
        )
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])


def _reinitialise(dense: keras.layers.Dense, seed: int) -> None:
    """Draw ``dense``'s weights afresh from its own initializers, seeded by ``seed`` (for
    :func:`build_transfer_model`'s layer, with the same seed, the weights it was built with)."""
    for variable in dense.weights:
        name = str(variable.name).split("/")[-1].split(":")[0]  # "kernel", "bias"
        initializer = getattr(dense, f"{name}_initializer", None)
        if initializer is None:
            raise ValueError(f"cannot re-initialise the Dense layer {dense.name!r}: its variable "
                             f"{name!r} has no initializer")
        config = initializer.get_config()
        if "seed" in config:
            initializer = type(initializer).from_config({**config, "seed": seed})
        variable.assign(initializer(tuple(variable.shape), dtype=variable.dtype))
