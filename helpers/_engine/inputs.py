"""Input preparation: images to float32 batches, a chunk at a time; requested classes to a plan.

Part of the private CAM engine (:mod:`helpers._engine`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from helpers._engine.graph import all_layers, graph_endpoints
from helpers._engine.heads import is_classifier, keras_model_of
from helpers.checks import integer
from helpers.images import model_images, resize_images, to_rgb_batch

__all__ = ["Classes", "Images", "check_fits", "class_names", "image_source", "resolve_classes"]


@dataclass(frozen=True)
class Images:
    """The images of one call, checked once, and preprocessed a chunk at a time: ``images[a:b]``
    is the float32 batch of images ``a`` to ``b - 1``, resized (and, for a Classifier,
    normalised) now. One chunk at a time, because a float32 copy of every photo at once, with the
    resize's temporaries, would fill a small kernel's memory for a few hundred photos."""

    model: Any
    source: Sequence[np.ndarray]  # checked: an array (B, H, W, C) or a list of (H, W, C) arrays
    shape: tuple[int, ...]  # one preprocessed image (H, W, C)

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: slice) -> np.ndarray:
        part = self.source[index]
        if is_classifier(self.model):
            resized = resize_images(part, self.model.input_size)
            return np.asarray(self.model.normalize(resized), dtype=np.float32)
        if isinstance(part, list):
            resized = resize_images(part, self.shape[:2], clip=False) if self._fixed else part
            return np.stack(resized).astype(np.float32, copy=False)
        return np.asarray(part, dtype=np.float32)

    @property
    def _fixed(self) -> bool:
        return _fixed_size(self.model) is not None


def image_source(model: Any, images: Any) -> Images:
    """Check every image of ``images`` for ``model`` once, now (with the index of a bad image in
    the whole call), and return them to be preprocessed a chunk at a time.

    A Classifier gets RGB on 0..255 (:func:`helpers.images.to_rgb_batch`), resized whole to its
    input size and normalised. A bare Keras model gets its inputs as they are (they may be
    preprocessed already: any range, not clipped), in any form :func:`helpers.images.as_images`
    accepts; a list is resized to the model's input size."""
    _refuse_channels_first(model)
    if is_classifier(model):
        source = to_rgb_batch(images)
        return Images(model, source, (*model.input_size, 3))
    # A model that normalises RGB 0..255 itself (a transfer model) gets its photos checked as a
    # Classifier's are (a 0..1 batch would otherwise pass as nearly black photos); a classifier's
    # bare network refuses photos that were not preprocessed.
    source = model_images(keras_model_of(model), images)  # finite, within float32 too
    size = _fixed_size(model)
    expected = _expected_shape(model)
    if isinstance(source, list) and expected and expected[-1] is not None:
        for index, image in enumerate(source):
            if image.shape[-1] != expected[-1]:
                alpha = " (drop alpha with image[..., :3])" if image.shape[-1] == 4 else ""
                raise ValueError(
                    f"image {index} has {image.shape[-1]} channels, model "
                    f"{keras_model_of(model).name!r} takes {expected[-1]}{alpha}")
    if isinstance(source, list):
        shapes = {image.shape if size is None else image.shape[2:] for image in source}
        if len(shapes) > 1:
            raise ValueError(
                "images of different sizes need a model with a fixed input size, or a "
                f"helpers.Classifier; got shapes {sorted({image.shape for image in source})}"
            )
        shape = (*size, source[0].shape[2]) if size is not None else source[0].shape
    else:
        shape = tuple(source.shape[1:])
    for axis, (got, want) in enumerate(zip(shape, expected or ())):
        if want is not None and got != want:
            raise ValueError(
                f"images have shape {tuple(shape)}, model {keras_model_of(model).name!r} expects "
                f"{tuple(expected)} (axis {axis + 1} differs). A bare Keras model gets images "
                "already preprocessed; pass a list of arrays to have them resized, or use a "
                "helpers.Classifier, which resizes and normalises."
            )
    return Images(model, source, tuple(int(s) for s in shape))


def _refuse_channels_first(model: Any) -> None:
    """Images reach the network as ``(B, H, W, C)``; a channels-first network would read their
    rows as channels (and its maps come out with a wrong shape), so it is refused."""
    keras_model = keras_model_of(model)
    for layer in all_layers(keras_model):
        if getattr(layer, "data_format", None) == "channels_first":
            raise ValueError(
                f"model {keras_model.name!r} is channels-first (its layer {layer.name!r} has "
                f"data_format='channels_first'; input {tuple(keras_model.inputs[0].shape)}); helpers "
                "gives networks channels-last images (B, H, W, C). Build it channels-last, the "
                "Keras default (keras.config.set_image_data_format('channels_last') before building)."
            )


def _expected_shape(model: Any) -> tuple | None:
    keras_model = keras_model_of(model)
    return tuple(keras_model.inputs[0].shape[1:]) if graph_endpoints(keras_model) else None


def _fixed_size(model: Any) -> tuple[int, int] | None:
    """The bare model's input (H, W) when both are fixed, else None."""
    expected = _expected_shape(model)
    if expected is None or expected[0] is None or expected[1] is None:
        return None
    return int(expected[0]), int(expected[1])


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
        top_k = integer("top_k", top_k, 1, num_classes)
    if classes is None:
        return Classes("top", 1 if top_k is None else top_k)
    if isinstance(classes, str):
        if classes != "all":
            raise ValueError(
                f"classes={classes!r} is not understood; accepted: None (top-1 or top_k), 'all', "
                "a sequence of class ids, or a (B, K) array of class ids per image"
            )
        return Classes("all", num_classes)
    if isinstance(classes, (int, np.integer)) and not isinstance(classes, (bool, np.bool_)):
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


def check_fits(head: Any, shape: tuple[int, ...]) -> None:
    """Images of ``shape`` ``(H, W, C)`` reach ``head``'s feature map with at least one pixel:
    a model with free input sizes is traced for this shape once, symbolically, and an image
    smaller than its layers' reach is refused here, not inside the backend."""
    import keras

    dims = tuple(head.feature_model.inputs[0].shape[1:3])
    if all(d is not None for d in dims):
        return  # a fixed size: image_source checked the images against it
    try:
        out = head.feature_model.compute_output_spec(keras.KerasTensor((1, *shape), dtype="float32"))
        empty = any(d is not None and d < 1 for d in tuple(out.shape)[1:3])
    except ValueError:
        empty = True
    if empty:
        raise ValueError(
            f"images of {shape[0]} × {shape[1]} pixels are too small for this model: its layers "
            f"up to {head.feature_layer!r} (convolutions without padding, poolings) would leave "
            "a feature map with no position. Give larger images (resize them, or pad them).")
