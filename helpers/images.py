"""Images, from what was passed to what the network gets: one path, each step once.

Introduced in notebook 01 (the classifier) and used by every map method of notebook 03.

1. :func:`as_images` accepts the *form* of the argument (which container, which dimensions,
   which element type), never looking at the values;
2. :func:`to_rgb_batch` adds what a classifier needs: RGB on the 0..255 scale, decided for
   each image alone (a bare Keras model takes preprocessed inputs in any range, so it skips
   this step);
3. :func:`resize_images` resizes each checked image whole to the network's input size
   (bilinear with antialiasing, as ``tf.image.resize(..., antialias=True)``), a few rows at a
   time so that a large photo is never copied whole to float.

:meth:`helpers.Classifier.preprocess` and the map engine run these three steps, once per image
and call. :func:`helpers.load_images` reads your own photos into the accepted form.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

__all__ = ["as_images", "declare_preprocessed_input", "declare_rgb_input", "model_images",
           "resize_image", "resize_images", "takes_rgb_input", "to_rgb_batch"]

#: numpy dtype kinds accepted as pixel values: unsigned and signed integers, floating point.
NUMERIC_KINDS = "uif"


def _refuse_path(value: Any, where: str) -> None:
    if isinstance(value, (str, bytes, os.PathLike)):
        raise TypeError(
            f"{where} is a {type(value).__name__} ({str(value)[:80]!r}), not pixels; read the file "
            "first (e.g. skimage.io.imread(path)) and pass the array, or pass "
            "helpers.data.sample_image(name) for a sample photo"
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
        if values and isinstance(values[0], tuple) and len(values[0]) == 2:
            raise TypeError(
                f"images is a {type(images).__name__} of (images, labels) pairs, e.g. a data set "
                "from keras.utils.image_dataset_from_directory; the map methods take images: "
                "e.g. images, labels = next(iter(dataset)), then pass images")
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


# -- values: RGB on 0..255 -----------------------------------------------------------------


#: Work arrays of the value checks and the resize hold about this many float32 numbers (2 MiB),
#: so an 8000 x 8000 photo is never copied whole to float.
CHUNK_ELEMENTS = 1 << 19
#: A float image whose maximum is at most this, or with fewer than :data:`MIN_SHARE_ABOVE_ONE` of
#: its values above 1, is not clearly on the 0..255 scale: it is refused, never guessed.
AMBIGUOUS_MAX = 2.0
MIN_SHARE_ABOVE_ONE = 0.01


def _row_chunks(image: np.ndarray) -> Any:
    """Yield consecutive row blocks of an ``(H, W, C)`` image, each about :data:`CHUNK_ELEMENTS`."""
    rows = max(1, CHUNK_ELEMENTS // max(1, image.shape[1] * image.shape[2]))
    for start in range(0, image.shape[0], rows):
        yield start, image[start : start + rows]


def _check_one_image(array: np.ndarray, position: str) -> np.ndarray:
    """Check that one ``(H, W, C)`` numeric array is an RGB image on the 0..255 scale.

    Returns the array unchanged (no copy); the scale is decided for this image alone.
    """
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(
            f"{position} has shape {array.shape}; expected an RGB image (H, W, 3). "
            "Convert grayscale with skimage.color.gray2rgb and drop an alpha channel with image[..., :3]."
        )
    if array.dtype == np.uint8:
        return array
    is_float = array.dtype.kind == "f"
    low, high, above_one, finite = np.inf, -np.inf, 0, True
    for _, chunk in _row_chunks(array):  # chunked: no float copy of a whole large photo
        if is_float and not np.all(np.isfinite(chunk)):
            finite = False
            break
        low, high = min(low, float(chunk.min())), max(high, float(chunk.max()))
        above_one += int(np.count_nonzero(chunk > 1))
    kind = f"a {array.dtype} image"
    if not finite:
        raise ValueError(f"{position} ({kind}) contains NaN or infinite values; expected finite 0..255")
    if low < 0.0 or high > 255.0:
        raise ValueError(
            f"{position} ({kind}) has values in [{low:.3g}, {high:.3g}]; expected 0..255 (uint8, "
            "or an integer or float array in that range)"
        )
    if high == 0.0:
        return array  # black: the same on any scale
    if high <= 1.0:
        if not is_float:
            raise ValueError(
                f"{position} is {kind} whose values are only 0 and 1 (a mask, or the 0..1 scale); "
                "this library takes RGB 0..255. Multiply by 255 and pass uint8."
            )
        raise ValueError(
            f"{position} is {kind} with values in [{low:.3g}, {high:.3g}], which looks like "
            "the 0..1 scale; this library takes 0..255 (as keras.applications does). "
            "Multiply by 255 (or use skimage.util.img_as_ubyte)."
        )
    share = above_one / array.size
    if is_float and (high <= AMBIGUOUS_MAX or share < MIN_SHARE_ABOVE_ONE):
        raise ValueError(
            f"{position} is {kind} with values in [{low:.3g}, {high:.3g}] and {share:.2%} of them "
            "above 1: a 0..1 image that overshoots 1 (after resizing or augmentation), or a nearly "
            "black 0..255 image? The scale is not guessed. For the 0..1 scale pass "
            "np.clip(image, 0, 1) * 255; for 0..255 pass np.round(image).astype(np.uint8) (uint8 "
            f"is always read as 0..255). A float image is read as 0..255 when its maximum exceeds "
            f"{AMBIGUOUS_MAX:g} and at least {MIN_SHARE_ABOVE_ONE:.0%} of its values exceed 1."
        )
    return array


def _checked_images(images: Any) -> list[np.ndarray] | np.ndarray:
    """:func:`as_images` plus the RGB and 0..255 checks, per image; no conversion."""
    shape = getattr(images, "shape", None)
    if shape is not None and len(shape) == 2:
        raise ValueError(
            f"images have shape {tuple(shape)}, a grayscale image? Expected an RGB image (H, W, 3), "
            "a batch (B, H, W, 3) or a list of (H, W, 3) arrays; convert grayscale with "
            "skimage.color.gray2rgb"
        )
    if shape is not None and len(shape) not in (3, 4):
        raise ValueError(
            f"images have shape {tuple(shape)}; expected (B, H, W, 3), (H, W, 3) or a list of "
            "(H, W, 3) arrays"
        )
    batch = as_images(images)
    if isinstance(batch, list):
        return [_check_one_image(image, f"image {i}") for i, image in enumerate(batch)]
    if len(batch) == 1:
        _check_one_image(batch[0], "the image")
    else:  # each image of a stacked batch gets its own scale decision
        for i, image in enumerate(batch):
            _check_one_image(image, f"image {i} of the batch")
    return batch


#: The attribute a Keras model carries when it was *declared* to take RGB photos on 0..255
#: (:func:`declare_rgb_input`). It lives on the Python object only: ``model.save`` and
#: ``keras.models.clone_model`` drop it, so helpers' own models say it with a layer instead.
RGB_INPUT_ATTRIBUTE = "_gapcam_takes_rgb_0_255"
#: The class attribute of a layer that takes RGB photos on 0..255 and normalises them
#: (:class:`helpers.models.transfer.PhotoNormalization`): a model holding one takes photos, and
#: that survives saving, loading and cloning, because the layer does.
RGB_LAYER_ATTRIBUTE = "takes_rgb_0_255"


def declare_rgb_input(model: Any) -> Any:
    """Mark a Keras model as taking RGB photos on 0..255 (it normalises them itself), so that
    every function given it checks its images' scale (a 0..1 batch is refused, not read as
    nearly black photos); returns the model. The mark is lost when the model is saved or
    cloned; a model whose first step is a :class:`helpers.models.transfer.PhotoNormalization`
    layer needs no mark."""
    object.__setattr__(model, RGB_INPUT_ATTRIBUTE, True)  # not a tracked Keras attribute
    return model


def takes_rgb_input(model: Any) -> bool:
    """Whether ``model`` takes RGB photos on 0..255: it holds a photo-normalising layer (at any
    depth of nesting), or was marked with :func:`declare_rgb_input`."""
    if getattr(model, RGB_INPUT_ATTRIBUTE, False):
        return True
    pending, seen = [model], set()
    while pending:
        layer = pending.pop()
        if id(layer) in seen:
            continue
        seen.add(id(layer))
        if getattr(type(layer), RGB_LAYER_ATTRIBUTE, False):
            return True
        pending.extend(getattr(layer, "layers", None) or ())  # a nested model's layers
    return False


#: The attribute of a classifier's bare network (``clf.model``): the range ``(low, high)`` its
#: preprocessed inputs span (the classifier's normalisation of 0..255). Photos given to it
#: directly are refused, not mapped as if they were preprocessed.
PREPROCESSED_RANGE_ATTRIBUTE = "_gapcam_preprocessed_range"


#: The networks declared with :func:`declare_preprocessed_input`, by their first weights (see
#: :func:`_fingerprint`): a clone with the same weights, the network saved and loaded, or a
#: model that wraps it is the same network and takes the same inputs.
_PREPROCESSED_NETWORKS: dict[tuple, tuple[float, float]] = {}


def _fingerprint(model: Any) -> tuple | None:
    """A key of ``model``'s first weight tensor (shape and a hash of its values; the stem
    convolution of a classifier's network), or None for a model without weights."""
    import hashlib

    weights = getattr(model, "weights", None)
    if not weights:
        return None
    values = np.ascontiguousarray(np.asarray(weights[0]))
    return values.shape, hashlib.sha256(values.tobytes()).hexdigest()


def declare_preprocessed_input(model: Any, low: float, high: float) -> Any:
    """Mark a Keras model as taking preprocessed images with values in ``[low, high]`` (what its
    classifier's normalisation makes of 0..255), so that photos passed to it by mistake are
    refused with a pointer to the classifier; returns the model. The network is known by its
    weights, so a clone with the same weights, a saved and loaded copy, or a model wrapping it
    is checked too."""
    object.__setattr__(model, PREPROCESSED_RANGE_ATTRIBUTE, (float(low), float(high)))
    key = _fingerprint(model)
    if key is not None:
        _PREPROCESSED_NETWORKS[key] = (float(low), float(high))
    return model


def _preprocessed_range(model: Any) -> tuple[float, float] | None:
    limits = getattr(model, PREPROCESSED_RANGE_ATTRIBUTE, None)
    if limits is None and _PREPROCESSED_NETWORKS:
        limits = _PREPROCESSED_NETWORKS.get(_fingerprint(model))
    return limits


def _finite_for_float32(image: np.ndarray) -> None:
    """Networks compute in float32: NaN, infinite values and finite values beyond float32's
    range (infinite there) are refused, for every model and every path to it."""
    if not np.issubdtype(image.dtype, np.integer) and not np.all(np.isfinite(image)):
        raise ValueError("images contain NaN or infinite values")
    largest = float(np.finfo(np.float32).max)
    if image.dtype.itemsize > 4 and image.size and float(np.abs(image).max()) > largest:
        raise ValueError(
            f"images hold values up to {float(np.abs(image).max()):.3g}, beyond float32's "
            f"range (±{largest:.3g}): the network computes in float32, where they would be "
            "infinite. Scale them first.")


def model_images(model: Any, images: Any) -> list[np.ndarray] | np.ndarray:
    """``images`` checked for a Keras ``model``, no conversion: RGB on 0..255
    (:func:`to_rgb_batch`) for a model that takes photos (:func:`takes_rgb_input`); otherwise
    in any form :func:`as_images` accepts, and, for a classifier's bare network, preprocessed:
    within the range of its preprocessed inputs, and not photos (a network whose inputs are
    negative where a photo is dark refuses images with no negative value: photos on 0..255 or
    0..1, read as preprocessed, would be mapped without a word)."""
    if takes_rgb_input(model):
        return to_rgb_batch(images)
    source = as_images(images)
    for image in source:  # one image at a time: no copy of a batch
        _finite_for_float32(image)
    limits = _preprocessed_range(model)
    if limits is not None:
        low, high = limits
        parts = [source] if isinstance(source, np.ndarray) else source  # no copy of a list
        if all(part.size for part in parts):
            smallest = min(float(np.min(part)) for part in parts)
            largest = max(float(np.max(part)) for part in parts)
            margin = 0.01 * (high - low)
            outside = smallest < low - margin or largest > high + margin
            if outside or (low < 0.0 and smallest >= 0.0):
                reason = (f"the network {getattr(model, 'name', '?')!r} takes preprocessed "
                          f"images in [{low:.4g}, {high:.4g}] (photos on 0..255 after its "
                          "classifier's normalisation)" if outside else
                          f"they have no value below 0, and the network "
                          f"{getattr(model, 'name', '?')!r} takes preprocessed images, negative "
                          f"wherever the photo is dark (its range is [{low:.4g}, {high:.4g}]): "
                          "these look like photos (0..255 or 0..1)")
                raise ValueError(
                    f"images have values in [{smallest:.4g}, {largest:.4g}], but {reason}. Pass "
                    "the helpers.Classifier itself (clf, not clf.model), which resizes and "
                    "normalises photos, or clf.preprocess(photos)."
                )
    return source


def to_rgb_batch(images: Any) -> list[np.ndarray] | np.ndarray:
    """Validate RGB images on the 0..255 scale, one image at a time.

    Parameters
    ----------
    images
        Any form :func:`helpers.images.as_images` accepts: one array ``(B, H, W, 3)``, one image
        ``(H, W, 3)``, a list or tuple of images, a dict (its values in order, e.g.
        :func:`helpers.sample_images`), or a generator of images.

    Returns
    -------
    numpy.ndarray or list[numpy.ndarray]
        The batch array (a single image gets a batch axis) or a list of ``(H, W, 3)`` arrays,
        in their own dtype (no copy: :func:`resize_images` converts a few rows at a time).

    Raises
    ------
    ValueError, TypeError
        With what was given and what is accepted. Each image's scale is decided alone: a float
        image in 0..1 (maximum at most 1), or one that is not clearly 0..255 (maximum at most 2,
        or under 1% of its values above 1: e.g. a 0..1 image with one pixel at 1.02) is refused
        with the conversion to use; integer images holding only 0 and 1 likewise.
    """
    return _checked_images(images)


# -- the one resize ----------------------------------------------------------------------------


def _resize_matrix(in_size: int, out_size: int) -> Any:
    """Sparse ``(out_size, in_size)`` weights of TensorFlow's antialiased bilinear resize.

    The triangle kernel of ``tf.image.resize(..., antialias=True)`` (``scale_and_translate``),
    widened by the downscaling factor; each row sums to 1.
    """
    from scipy import sparse

    inverse_scale = in_size / out_size
    kernel_scale = max(inverse_scale, 1.0)
    centers = (np.arange(out_size) + 0.5) * inverse_scale
    first = np.clip(np.ceil(centers - kernel_scale - 0.5), 0, in_size - 1).astype(np.int64)
    last = np.clip(np.floor(centers + kernel_scale - 0.5), 0, in_size - 1).astype(np.int64) + 1
    sources = first[:, None] + np.arange(int((last - first).max()))[None]
    valid = sources < last[:, None]
    weights = np.maximum(0.0, 1.0 - np.abs((sources + 0.5 - centers[:, None]) / kernel_scale))
    weights = np.where(valid, weights, 0.0)
    weights /= np.maximum(weights.sum(axis=1, keepdims=True), 1e-30)
    rows = np.broadcast_to(np.arange(out_size)[:, None], sources.shape)
    return sparse.csr_matrix(
        (weights[valid].astype(np.float32), (rows[valid], sources[valid])),
        shape=(out_size, in_size),
    )


def resize_image(image: np.ndarray, size: tuple[int, int], *, clip: bool = True) -> np.ndarray:
    """Resize one ``(H, W, C)`` image to ``size`` (bilinear, antialiased as TensorFlow's): float32
    ``(h, w, C)``, clipped to 0..255 unless ``clip=False`` (preprocessed inputs of any range).

    Only one block of rows is converted to float32 at a time, so a large photo (8000 x 8000) costs
    a few MiB beyond its own bytes, not a float copy of it.
    """
    out_h, out_w = size
    height, width, channels = image.shape
    if (height, width) == (out_h, out_w):
        return image.astype(np.float32)
    across = _resize_matrix(width, out_w)  # (out_w, W)
    down = _resize_matrix(height, out_h).tocsc()  # (out_h, H), sliced by columns
    out = np.zeros((out_h, out_w * channels), dtype=np.float32)
    for start, block in _row_chunks(image):
        rows = block.shape[0]
        columns = block.astype(np.float32).transpose(1, 0, 2).reshape(width, rows * channels)
        narrow = np.asarray(across @ columns, dtype=np.float32)  # (out_w, rows * C)
        narrow = narrow.reshape(out_w, rows, channels).transpose(1, 0, 2).reshape(rows, -1)
        out += np.asarray(down[:, start : start + rows] @ narrow, dtype=np.float32)
    out = out.reshape(out_h, out_w, channels)
    return np.clip(out, 0.0, 255.0) if clip else out


def resize_images(images: list[np.ndarray] | np.ndarray, size: tuple[int, int], *,
                  clip: bool = True) -> np.ndarray:
    """Resize images already checked (:func:`as_images` or :func:`to_rgb_batch`) to ``size``:
    float32 ``(B, h, w, C)``, each image resized alone in its own dtype (no float copy of the
    batch); clipped to 0..255 unless ``clip=False``. Checks nothing: a caller checks once."""
    return np.stack([resize_image(image, size, clip=clip) for image in images])
