"""The classifier object and :func:`load_classifier`: an ImageNet model with what it needs around it.

Introduced in notebook 01.

* ``"efficientnet_lite0"``: pretrained ImageNet weights that work **offline**
  (:mod:`helpers.models.lite0`).
* ``"resnet50"``, ``"vgg16"``: ``keras.applications`` with ``classifier_activation=None``
  (:mod:`helpers.models.applications`). ``weights="imagenet"`` downloads where a network exists
  (Binder, Colab); offline it fails in seconds with a message that names ``efficientnet_lite0``.
  ``weights=None`` builds the architecture.

Every classifier's ``.model`` maps preprocessed images to **logits** (no softmax), and its
``.preprocess`` resizes the whole image (never crops), so maps line up with the full photo.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from helpers.checks import integer
from helpers.images import declare_preprocessed_input, resize_images, to_rgb_batch
from helpers.models.applications import KERAS_APPLICATIONS, OfflineError, load_keras_application
from helpers.models.imagenet import imagenet_class_name
from helpers.models.lite0 import load_efficientnet_lite0, normalize_lite0

__all__ = ["AVAILABLE_MODELS", "Classifier", "OfflineError", "Prediction", "load_classifier"]

AVAILABLE_MODELS = ("efficientnet_lite0", "resnet50", "vgg16")


@dataclass(frozen=True)
class Prediction:
    """One class of a top-k prediction."""

    class_id: int
    name: str
    probability: float



@dataclass(frozen=True, eq=False)
class Classifier:
    """A Keras ImageNet classifier with its preprocessing and class names.

    Attributes
    ----------
    name
        ``"efficientnet_lite0"``, ``"resnet50"`` or ``"vgg16"``.
    model
        Keras model: preprocessed images ``(B, H, W, 3)`` → logits ``(B, num_classes)``.
    input_size
        ``(H, W)`` the model expects, e.g. ``(224, 224)``.
    num_classes
        Number of output classes (1000).
    normalize
        Maps resized RGB floats in 0..255 to the model's input scale.
    """

    name: str
    model: keras.Model
    input_size: tuple[int, int]
    num_classes: int
    normalize: Callable[[np.ndarray], np.ndarray] = field(repr=False)

    def preprocess(self, images: Any) -> np.ndarray:
        """Resize whole images to ``input_size`` and normalise them for :attr:`model`.

        Parameters
        ----------
        images
            RGB uint8 or float (0..255): one array ``(B, H, W, 3)``, one image ``(H, W, 3)``, or a
            list of differently sized ``(H, W, 3)`` arrays.

        Returns
        -------
        numpy.ndarray
            ``(B, input_size[0], input_size[1], 3)`` float32.
        """
        return self.normalize(resize_images(to_rgb_batch(images), self.input_size)).astype(np.float32)

    def class_name(self, index: int) -> str:
        """Short ImageNet name of class ``index``, e.g. ``class_name(285) == "Egyptian cat"``."""
        return imagenet_class_name(index)

    def logits(self, images: Any, batch_size: int = 32) -> np.ndarray:
        """Logits ``(B, num_classes)`` for raw RGB images (preprocessing included).

        ``batch_size`` (a positive int) is how many images are preprocessed and go through the
        model at once (it bounds the memory the float32 copies take).
        """
        batch_size = integer("batch_size", batch_size, 1)
        photos = to_rgb_batch(images)  # checked (and a generator read) once, not yet copied
        # One batch preprocessed at a time: a float32 copy of every photo at once would fill a
        # small kernel's memory for a few hundred photos. predict_on_batch, not an eager
        # self.model(x): the same logits, but TensorFlow's eager call keeps far more memory in
        # the kernel afterwards (README, "Memory").
        outputs = [
            np.asarray(self.model.predict_on_batch(self.preprocess(photos[i : i + batch_size])))
            for i in range(0, len(photos), batch_size)
        ]
        return np.concatenate(outputs, axis=0)

    def predict(self, images: Any, top: int = 5) -> list[list[Prediction]]:
        """Top-``top`` classes with softmax probabilities, one list per image."""
        top = integer("top", top, 1, self.num_classes)
        logits = self.logits(images)
        probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(logits, axis=-1))
        order = np.argsort(-probabilities, axis=-1)[:, : int(top)]
        return [
            [Prediction(int(c), self.class_name(int(c)), float(p[c])) for c in row]
            for row, p in zip(order, probabilities)
        ]



def load_classifier(name: str = "efficientnet_lite0", weights: str | None = "imagenet") -> Classifier:
    """Load an ImageNet classifier whose model outputs logits.

    Parameters
    ----------
    name
        ``"efficientnet_lite0"`` (pretrained weights available offline), ``"resnet50"`` or
        ``"vgg16"`` (pretrained weights need a download).
    weights
        ``"imagenet"`` for pretrained weights, ``None`` for random initialisation.

    Returns
    -------
    Classifier

    Raises
    ------
    ValueError
        Unknown ``name`` or ``weights``.
    OfflineError
        ``weights="imagenet"`` for a model whose weights must be downloaded, with no network.
    """
    if name not in AVAILABLE_MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(AVAILABLE_MODELS)}")
    if weights not in ("imagenet", None):
        raise ValueError(f"weights must be 'imagenet' or None, got {weights!r}")
    if name == "efficientnet_lite0":
        model = load_efficientnet_lite0(weights)
        normalize: Callable[[np.ndarray], np.ndarray] = normalize_lite0
    else:
        model = load_keras_application(name, weights)
        normalize = KERAS_APPLICATIONS[name][3]
    height, width = (int(d) for d in model.input_shape[1:3])
    extremes = normalize(np.array([[[[0.0, 0.0, 0.0], [255.0, 255.0, 255.0]]]], np.float32))
    declare_preprocessed_input(model, float(np.min(extremes)), float(np.max(extremes)))
    return Classifier(
        name=name,
        model=model,
        input_size=(height, width),
        num_classes=int(model.output_shape[-1]),
        normalize=normalize,
    )
