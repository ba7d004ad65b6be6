"""Input preparation: images to float32 batches, a chunk at a time; requested classes to a plan.

Part of the private CAM engine (:mod:`helpers._engine`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from helpers._engine.graph import graph_endpoints
from helpers._engine.heads import keras_model_of
from helpers.images import as_images
from helpers.models import resize_image, to_rgb_batch

__all__ = ["Classes", "Images", "class_names", "image_source", "is_integer", "prepare_images",
           "resolve_classes"]


def prepare_images(model: Any, images: Any) -> np.ndarray:
    """Preprocessed float32 batch ``(B, H, W, C)`` for the Keras model.

    A Classifier preprocesses (checks RGB 0..255, resizes, normalises). A bare Keras model gets
    its inputs as they are, in any form :func:`helpers.images.as_images` accepts; a list is
    resized to the model's input size (values not clipped: they may be preprocessed already).
    """
    if _is_classifier(model):
        return np.asarray(model.preprocess(images), dtype=np.float32)  # it refuses NaN itself
    batch = _bare_batch(as_images(images), _expected_shape(model), keras_model_of(model).name)
    if not np.all(np.isfinite(batch)):
        raise ValueError("images contain NaN or infinite values")
    return batch


def _is_classifier(model: Any) -> bool:
    return hasattr(model, "preprocess") and isinstance(getattr(model, "model", None), keras.Model)


@dataclass(frozen=True)
class Images:
    """The images of one call, checked, and preprocessed a chunk at a time: ``images[a:b]`` is
    the float32 batch of images ``a`` to ``b - 1``. (A float32 copy of every image at once, with
    the resizing's temporaries, added 330 MiB to notebook 05's kernel for 200 photos; Binder
    gives a session 1-2 GB.)"""

    model: Any
    source: Sequence[np.ndarray]  # an array (B, H, W, C) or a list of (H, W, C) arrays
    shape: tuple[int, ...]  # one preprocessed image (H, W, C)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: slice) -> np.ndarray:
        return prepare_images(self.model, self.source[index])


def image_source(model: Any, images: Any) -> Images:
    """Check every image of ``images`` for ``model`` now (what :func:`prepare_images` would
    refuse, with the index of the image in the whole call), and return them to be preprocessed
    a chunk at a time."""
    if _is_classifier(model):
        source = to_rgb_batch(images)  # RGB on 0..255, each image's scale decided alone
    else:
        source = as_images(images)
        expected = _expected_shape(model)
        fixed = expected is not None and expected[0] is not None and expected[1] is not None
        if isinstance(source, list) and not fixed and len({image.shape for image in source}) > 1:
            raise ValueError(
                "images of different sizes need a model with a fixed input size, or a "
                f"helpers.Classifier; got shapes {sorted({image.shape for image in source})}"
            )
        for image in source:
            if not np.issubdtype(image.dtype, np.integer) and not np.all(np.isfinite(image)):
                raise ValueError("images contain NaN or infinite values")
    return Images(model, source, tuple(prepare_images(model, source[:1]).shape[1:]))


def _expected_shape(model: Any) -> tuple | None:
    keras_model = keras_model_of(model)
    return tuple(keras_model.inputs[0].shape[1:]) if graph_endpoints(keras_model) else None


def _bare_batch(images: Any, expected: tuple | None, name: str) -> np.ndarray:
    if isinstance(images, list):
        if expected is not None and expected[0] is not None and expected[1] is not None:
            size = (int(expected[0]), int(expected[1]))
            images = [resize_image(image, size, clip=False) for image in images]
        if len({image.shape for image in images}) != 1:
            raise ValueError(
                "images of different sizes need a model with a fixed input size, or a "
                f"helpers.Classifier; got shapes {sorted({image.shape for image in images})}"
            )
        images = np.stack(images)
    batch = np.asarray(images, dtype=np.float32)
    if expected is not None:
        for axis, (got, want) in enumerate(zip(batch.shape[1:], expected)):
            if want is not None and got != want:
                raise ValueError(
                    f"images have shape {batch.shape[1:]}, model {name!r} expects "
                    f"{tuple(expected)} (axis {axis + 1} differs). A bare Keras model gets images "
                    "already preprocessed; pass a list of arrays to have them resized, or use a "
                    "helpers.Classifier, which resizes and normalises."
                )
    return batch


def is_integer(value: Any) -> bool:
    return not isinstance(value, (bool, np.bool_)) and isinstance(value, (int, np.integer))


@dataclass(frozen=True)
class Classes:
    """The requested classes, resolved before the network runs (no logits needed)."""

    kind: str  # "top" (the top ``count`` by logit, chosen on the device), "given" or "all"
    count: int  # K, the number of maps per image
    ids: np.ndarray | None = None  # (B, K) int64 class ids when kind == "given"


def resolve_classes(classes: Any, top_k: int | None, batch: int, num_classes: int) -> Classes:
    """Check ``classes`` / ``top_k`` for ``batch`` images and ``num_classes`` classes."""
    if top_k is not None:
        if classes is not None:
            raise ValueError(
                f"pass either classes (got {classes!r}) or top_k (got {top_k!r}), not both"
            )
        if not is_integer(top_k):
            raise TypeError(f"top_k must be an integer, got {type(top_k).__name__} {top_k!r}")
        if not 1 <= int(top_k) <= num_classes:
            raise ValueError(f"top_k must be in 1..{num_classes}, got {top_k}")
    if classes is None:
        return Classes("top", 1 if top_k is None else int(top_k))
    if isinstance(classes, str):
        if classes != "all":
            raise ValueError(
                f"classes={classes!r} is not understood; accepted: None (top-1 or top_k), 'all', "
                "a sequence of class ids, or a (B, K) array of class ids per image"
            )
        return Classes("all", num_classes)
    if is_integer(classes):
        classes = [classes]
    try:
        array = np.asarray(classes)
    except (TypeError, ValueError) as error:  # ragged lists
        raise TypeError(
            f"classes must be None, 'all', a sequence of int class ids or a (B, K) array; could "
            f"not read {classes!r} ({error})"
        ) from error
    if array.size == 0:
        raise ValueError("classes is empty; pass at least one class id (or None for the top-1)")
    if array.dtype == object or not (
        np.issubdtype(array.dtype, np.integer) and array.dtype != np.bool_
    ):
        raise TypeError(
            f"class ids must be integers, got {array.dtype} values {classes!r}; accepted: None, "
            "'all', a sequence of ints, or a (B, K) int array"
        )
    if array.ndim == 1:
        array = np.tile(array, (batch, 1))
    elif array.ndim == 2:
        if array.shape[0] != batch:
            raise ValueError(
                f"classes has shape {array.shape}: {array.shape[0]} rows for {batch} images; a "
                "2-D array needs one row of class ids per image"
            )
    else:
        raise ValueError(f"classes has shape {array.shape}; expected (K,) or (B, K) class ids")
    bad = array[(array < 0) | (array >= num_classes)]
    if bad.size:
        raise ValueError(
            f"class ids must be in 0..{num_classes - 1}; got {sorted(set(bad.tolist()))[:10]}"
        )
    return Classes("given", int(array.shape[1]), array.astype(np.int64))


def class_names(model: Any, num_classes: int) -> tuple[str, ...]:
    if hasattr(model, "class_name") and getattr(model, "num_classes", None) == num_classes:
        return tuple(model.class_name(i) for i in range(num_classes))
    return tuple(f"class {i}" for i in range(num_classes))
