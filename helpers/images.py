"""What may be passed as "images": the form of the argument, checked once for every function.

Introduced in notebook 01 (the classifier) and used by the CAM functions of notebook 03.

:func:`as_images` looks only at the *form* of what was passed (which container, which dimensions,
which element type), never at the values: a classifier checks the RGB 0..255 range on top of it
(:func:`helpers.models.to_rgb_batch`), while a bare Keras model takes already preprocessed inputs
in any range.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

__all__ = ["as_images"]

#: numpy dtype kinds accepted as pixel values: unsigned and signed integers, floating point.
NUMERIC_KINDS = "uif"


def _refuse_path(value: Any, where: str) -> None:
    if isinstance(value, (str, bytes, os.PathLike)):
        raise TypeError(
            f"{where} is a {type(value).__name__} ({str(value)[:80]!r}), not pixels; read the file "
            "first (e.g. skimage.io.imread(path)) and pass the array, or pass "
            "helpers.sample_image(name) for a sample photo"
        )


def _asarray(value: Any, where: str) -> np.ndarray:
    try:
        return np.asarray(value)
    except ValueError as error:  # numpy refuses ragged nested lists
        raise TypeError(
            f"{where} is a {type(value).__name__} that is not one array (ragged or mixed "
            f"elements: {error}); pass numeric arrays"
        ) from None


def _numeric(array: np.ndarray, where: str) -> np.ndarray:
    if array.dtype.kind not in NUMERIC_KINDS:
        detail = " (ragged or mixed elements)" if array.dtype == object else ""
        raise TypeError(
            f"{where} has dtype {array.dtype}{detail}; images must hold numbers: an unsigned or "
            "signed integer or a floating-point dtype (e.g. uint8 or float32)"
        )
    return array


def _one_image(value: Any, where: str) -> np.ndarray:
    _refuse_path(value, where)
    if value is None:
        raise TypeError(f"{where} is None; expected an image array (H, W, C)")
    array = _numeric(_asarray(value, where), where)
    if array.ndim != 3:
        hint = ""
        if array.ndim == 2:
            hint = " (a grayscale image? add a channel axis, e.g. image[..., None])"
        elif array.ndim == 4:
            hint = " (a batch? pass the batch array itself, not inside a list)"
        raise ValueError(
            f"{where} has shape {array.shape}; each image of a list must be (H, W, C){hint}"
        )
    if min(array.shape) < 1:
        raise ValueError(f"{where} is empty: shape {array.shape}; expected (H, W, C) with H, W, C >= 1")
    return array


def as_images(images: Any) -> list[np.ndarray] | np.ndarray:
    """Accept the forms in which images may be passed; return arrays, values untouched.

    Parameters
    ----------
    images
        One of:

        * an array ``(B, H, W, C)``: a batch, returned as is (as a numpy array);
        * an array ``(H, W, C)``: one image, returned as a batch ``(1, H, W, C)``;
        * a list or tuple of arrays ``(H, W, C)`` (sizes may differ): returned as a list;
        * a dict (e.g. :func:`helpers.sample_images`): **its values, in the dict's order**, as a
          list; the keys are ignored;
        * any other iterable that is not an array (a generator, an iterator, ``dict.values()``):
          read once into a list.

        Arrays may be numpy arrays or anything ``numpy.asarray`` converts (a Keras or TensorFlow
        tensor, nested lists of numbers for one array).

    Returns
    -------
    numpy.ndarray or list[numpy.ndarray]
        ``(B, H, W, C)`` for array input, else a list of ``(H, W, C)`` arrays. Dtypes are kept (no
        copy where none is needed); **no value or range is checked** and nothing is rescaled.

    Raises
    ------
    TypeError
        ``images`` (or an element) is a path or string (read the file first), ``None``, not
        iterable, or holds non-numbers (a bool, complex, object or string dtype).
    ValueError
        An empty container, a batch of zero images, an image with a zero-sized axis, or an array
        whose number of dimensions is not that of an image or a batch.
    """
    _refuse_path(images, "images")
    if images is None:
        raise TypeError("images is None; expected an image (H, W, C), a batch (B, H, W, C) or a list")
    if isinstance(images, Mapping):
        values, form = list(images.values()), f"a dict with keys {list(images)[:5]!r}"
    elif isinstance(images, (list, tuple)):
        values, form = list(images), f"an empty {type(images).__name__}"
    elif isinstance(images, Iterable) and not hasattr(images, "__array__") and not hasattr(
        images, "shape"
    ):
        values, form = list(images), f"a {type(images).__name__} that yielded nothing"
    else:
        array = _asarray(images, "images")
        if array.ndim == 0:
            raise TypeError(
                f"images is a {type(images).__name__} ({images!r:.80}); expected an image "
                "(H, W, C), a batch (B, H, W, C) or a list of (H, W, C) arrays"
            )
        array = _numeric(array, "images")
        if array.ndim == 3:
            array = array[None]
        if array.ndim != 4:
            hint = " (a grayscale image? add a channel axis, e.g. image[..., None])" if array.ndim == 2 else ""
            raise ValueError(
                f"images have shape {array.shape}; expected one image (H, W, C), a batch "
                f"(B, H, W, C) or a list of (H, W, C) arrays{hint}"
            )
        if array.shape[0] == 0:
            raise ValueError(f"got a batch of zero images: shape {array.shape}; pass at least one")
        if min(array.shape[1:]) < 1:
            raise ValueError(f"the images are empty: batch shape {array.shape}; H, W and C must be >= 1")
        return array
    if not values:
        if isinstance(images, Mapping):
            form = "an empty dict"
        raise ValueError(f"got {form}; pass at least one image (H, W, C)")
    return [_one_image(value, f"image {index}") for index, value in enumerate(values)]
