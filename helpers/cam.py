"""Class activation maps (CAM, Zhou et al., CVPR 2016) and Grad-CAM, batched.

Introduced in notebook 03.

For a network whose head is ``GlobalAveragePooling2D → Dense``, with last feature map
``f_k(x, y)`` (``k`` = channel), the logit of class ``c`` is

    S_c = Σ_k w_k^c · mean_{x,y} f_k(x, y) + b_c = mean_{x,y} M_c(x, y) + b_c,
    M_c(x, y) = Σ_k w_k^c f_k(x, y).

:func:`class_activation_maps` computes ``M_c`` for many classes and images with **one** forward
pass (feature maps and logits together), one ``einsum`` at feature resolution for all requested
classes, and **one** bilinear resize to the input size (sum first, then upsample: the resize is
linear, so this equals upsampling every channel first, at a fraction of the cost).

Both run as compiled programs written once in ``keras.ops`` and compiled per backend
(``tf.function`` on TensorFlow, ``jax.jit`` on JAX with the weights passed in as arguments):
the network (built once per model and precision), then the class choice, weighting and
optional upsampling (one small program per kind of request), with the feature maps kept on the
device in between. The network runs with its BatchNormalization layers folded into the
convolutions before them (:func:`helpers.fold_batch_norm`: same weights, fewer passes over the
activations). ``dtype="mixed_bfloat16"`` / ``"mixed_float16"`` runs the network in Keras mixed
precision without copying the model. ``benchmarks/bench_cam.py`` times all of this.

The model can be a :class:`helpers.Classifier` or any Keras Functional/Sequential model whose head
is ``GlobalAveragePooling2D → Dense`` (possibly with Dropout/Flatten in between, a softmax after,
and with the head or the feature extractor inside nested models). Nested models are inlined once
into one flat graph (the layers, hence the weights, are shared, not copied), so the feature map
inside a pretrained base is reachable. The flat graph is built once per model and cached.

:func:`grad_cam` (Selvaraju et al., 2017) works for any convolutional classifier ending in a
``Dense`` layer (e.g. VGG-16, which has no GAP); on a GAP → Dense network it equals CAM / (h·w).
"""

from __future__ import annotations

import contextlib
import functools
import weakref
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import keras
import numpy as np

from helpers.graph import (
    _describe,
    _graph_endpoints,
    _producer,
    _rebuild,
    FoldedConvBatchNorm,
    fold_batch_norm,
)

__all__ = [
    "PRECISIONS",
    "CAMHead",
    "CAMResult",
    "class_activation_maps",
    "grad_cam",
    "find_cam_head",
    "normalize_cam",
    "upsample_maps",
]

#: Layers that are the identity at inference and may sit between the GAP and the Dense layer.
_PASS_THROUGH = (
    keras.layers.Dropout,
    keras.layers.SpatialDropout1D,
    keras.layers.SpatialDropout2D,
    keras.layers.SpatialDropout3D,
    keras.layers.GaussianDropout,
    keras.layers.GaussianNoise,
    keras.layers.AlphaDropout,
    keras.layers.ActivityRegularization,
    keras.layers.Identity,
)
#: Reshaping layers allowed after the GAP (e.g. ``keepdims=True`` then ``Flatten``).
_RESHAPES = (keras.layers.Flatten, keras.layers.Reshape)
#: Layers allowed after the final Dense: logits are taken before them.
_OUTPUT_ACTIVATIONS = (keras.layers.Activation, keras.layers.Softmax)

#: Memory budget (number of float32 values) for one chunk of upsampled maps.
_CHUNK_VALUES = 1 << 24


# --------------------------------------------------------------------------------------------
# Graph utilities: walk a Keras Functional graph by layer type, inline nested models
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _FlatGraph:
    """A model rebuilt as one graph with nested Functional/Sequential models inlined."""

    inputs: Any  # one symbolic input
    output: Any  # one symbolic output


def _flatten_model(model: keras.Model) -> _FlatGraph:
    endpoints = _graph_endpoints(model)
    if endpoints is None:
        raise ValueError(
            f"{type(model).__name__} {getattr(model, 'name', '')!r} is not a Functional or "
            "Sequential Keras model (no layer graph to search; a subclassed model, or a "
            "Sequential that was never built). Build it with keras.Input, or call it once on data."
        )
    inputs, outputs = endpoints
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(
            f"model {model.name!r} has {len(inputs)} inputs and {len(outputs)} outputs; "
            "class activation maps need one image input and one output (the class scores)"
        )
    template = inputs[0]
    new_input = keras.Input(batch_shape=tuple(template.shape), dtype=template.dtype, name="image")
    (new_output,) = _rebuild(model, [new_input], fold=False)
    return _FlatGraph(new_input, new_output)


def _walk_back(tensor: Any) -> Iterator[tuple[Any, Any, Any]]:
    """Breadth-first (operation, node, output tensor) pairs from ``tensor`` back to the inputs."""
    queue, seen = deque([tensor]), set()
    while queue:
        current = queue.popleft()
        operation, node, _ = _producer(current)
        if node is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield operation, node, current
        queue.extend(node.arguments.keras_tensors)


def _single_input(operation: Any, node: Any) -> Any:
    tensors = node.arguments.keras_tensors
    if len(tensors) != 1:
        raise ValueError(f"{_describe(operation)} has {len(tensors)} inputs")
    return tensors[0]


@dataclass(frozen=True, eq=False)
class _Head:
    """The final Dense layer and its input in the flat graph."""

    flat: _FlatGraph
    dense: keras.layers.Dense
    dense_input: Any  # symbolic (B, k)


def _find_dense(flat: _FlatGraph, model_name: str) -> _Head:
    """Walk back from the output through Activation/Softmax layers to the final Dense layer."""
    tensor = flat.output
    while True:
        operation, node, _ = _producer(tensor)
        if operation is None:
            raise ValueError(f"model {model_name!r}: its output is its input; no Dense head")
        if isinstance(operation, keras.layers.Dense):
            dense_input = _single_input(operation, node)
            if len(dense_input.shape) != 2:
                raise ValueError(
                    f"model {model_name!r}: the final {_describe(operation)} receives a tensor of "
                    f"shape {dense_input.shape}; expected (batch, features)"
                )
            return _Head(flat, operation, dense_input)
        if isinstance(operation, _OUTPUT_ACTIVATIONS):
            tensor = _single_input(operation, node)
            continue
        raise ValueError(
            f"model {model_name!r}: the output comes from {_describe(operation)}, not from a Dense "
            "layer (optionally followed by an Activation/Softmax layer); class scores must come "
            "from a Dense layer"
        )


# --------------------------------------------------------------------------------------------
# The CAM head: feature map → GAP → Dense
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class CAMHead:
    """Where the CAM pieces sit in a model (found by layer type and graph position).

    Introduced in notebook 03.

    Attributes
    ----------
    feature_layer
        Name of the layer whose output is the last feature map ``f`` (e.g. ``"top_relu"``).
    pooling
        The ``GlobalAveragePooling2D`` layer.
    dense
        The final ``Dense`` layer; its kernel ``(k, num_classes)`` holds the CAM weights ``w_k^c``.
        If it has an activation (e.g. softmax), logits are computed before it.
    feature_model
        Keras model: preprocessed images ``(B, H, W, 3)`` → feature maps ``(B, h, w, k)``
        (``(B, k, h, w)`` if ``channels_first``), sharing the original model's layers.
    channels_first
        Whether the GAP layer pools a channels-first map (transposed before weighting).
    """

    feature_layer: str
    pooling: keras.layers.GlobalAveragePooling2D
    dense: keras.layers.Dense
    feature_model: keras.Model
    channels_first: bool = False
    #: Compiled programs (network, weighting per plan), built on first use.
    _programs: dict[Any, Any] = field(default_factory=dict, init=False, repr=False)

    @property
    def weights(self) -> np.ndarray:
        """CAM weights ``w`` ``(k, num_classes)`` (the Dense kernel), as numpy."""
        return keras.ops.convert_to_numpy(self.dense.kernel).astype(np.float32)

    @property
    def bias(self) -> np.ndarray:
        """Dense bias ``b`` ``(num_classes,)`` (zeros if the layer has none)."""
        if self.dense.bias is None:
            return np.zeros(self.num_classes, dtype=np.float32)
        return keras.ops.convert_to_numpy(self.dense.bias).astype(np.float32)

    @property
    def num_classes(self) -> int:
        return int(self.dense.kernel.shape[-1])

    @property
    def feature_shape(self) -> tuple[int | None, ...]:
        """``(h, w, k)`` of the feature map (None where the model accepts any size)."""
        return tuple(self.feature_model.output_shape[1:])


_CAM_HEADS: weakref.WeakKeyDictionary[keras.Model, CAMHead] = weakref.WeakKeyDictionary()
_FLAT_GRAPHS: weakref.WeakKeyDictionary[keras.Model, _FlatGraph] = weakref.WeakKeyDictionary()


def _flat_graph(model: keras.Model) -> _FlatGraph:
    flat = _FLAT_GRAPHS.get(model)
    if flat is None:
        flat = _FLAT_GRAPHS[model] = _flatten_model(model)
    return flat


def _keras_model(model: Any) -> keras.Model:
    """The Keras model of a Classifier, or the model itself."""
    inner = getattr(model, "model", None)
    if isinstance(inner, keras.Model) and hasattr(model, "preprocess"):
        return inner
    if isinstance(model, keras.Model):
        return model
    raise TypeError(
        f"model must be a helpers.Classifier or a keras.Model, got {type(model).__name__}"
    )


def find_cam_head(model: Any) -> CAMHead:
    """Find the ``feature map → GlobalAveragePooling2D → Dense`` head of a model.

    Introduced in notebook 03.

    The search walks back from the model output by layer type: optional Activation/Softmax
    layers, then a ``Dense`` layer, then identity-at-inference layers (Dropout, GaussianNoise,
    Identity, Flatten, Reshape), then a ``GlobalAveragePooling2D`` whose input is the feature map.
    Nested Functional/Sequential models (a pretrained base inside a ``Sequential``, a base built
    with ``pooling="avg"``) are searched too. The result is cached per model.

    Parameters
    ----------
    model
        A :class:`helpers.Classifier` or a Keras Functional/Sequential model.

    Returns
    -------
    CAMHead

    Raises
    ------
    ValueError
        If the model has no GAP → Dense head; the message says what was found instead and points
        to :func:`grad_cam`, which works without GAP.
    """
    keras_model = _keras_model(model)
    cached = _CAM_HEADS.get(keras_model)
    if cached is not None:
        return cached
    head = _find_dense(_flat_graph(keras_model), keras_model.name)
    tensor = head.dense_input
    path = [_describe(head.dense)]
    while True:
        operation, node, _ = _producer(tensor)
        if operation is None:
            found = "the model input"
        elif isinstance(operation, keras.layers.GlobalAveragePooling2D):
            break
        elif isinstance(operation, _PASS_THROUGH + _RESHAPES):
            path.append(_describe(operation))
            tensor = _single_input(operation, node)
            continue
        else:
            found = _describe(operation)
        raise ValueError(
            f"model {keras_model.name!r} has no GlobalAveragePooling2D → Dense head: walking back "
            f"from the output ({' ← '.join(path)}) reached {found}. CAM needs the class scores "
            "to be a Dense layer applied to globally average-pooled feature maps. Use "
            "helpers.grad_cam(model, images), which works for any convolutional classifier "
            "(e.g. VGG-16)."
        )
    features = _single_input(operation, node)
    channels_first = getattr(operation, "data_format", "channels_last") == "channels_first"
    if len(features.shape) != 4:
        raise ValueError(
            f"{_describe(operation)} receives a tensor of shape {features.shape}; expected a 4-D "
            "feature map"
        )
    feature_op, _, _ = _producer(features)
    flat = head.flat
    cam_head = CAMHead(
        feature_layer=getattr(feature_op, "name", "input"),
        pooling=operation,
        dense=head.dense,
        feature_model=keras.Model(flat.inputs, features, name=f"{keras_model.name}_features"),
        channels_first=channels_first,
    )
    _CAM_HEADS[keras_model] = cam_head
    return cam_head


# --------------------------------------------------------------------------------------------
# Inputs: images and classes
# --------------------------------------------------------------------------------------------


def _prepare_images(model: Any, images: Any) -> np.ndarray:
    """Preprocessed float32 batch ``(B, H, W, C)`` for the Keras model."""
    if hasattr(model, "preprocess") and isinstance(getattr(model, "model", None), keras.Model):
        return np.asarray(model.preprocess(images), dtype=np.float32)
    keras_model = _keras_model(model)
    expected = tuple(keras_model.inputs[0].shape[1:]) if _graph_endpoints(keras_model) else None
    if isinstance(images, (list, tuple)):
        if len(images) == 0:
            raise ValueError("got an empty list of images; pass at least one (H, W, C) array")
        arrays = [np.asarray(image, dtype=np.float32) for image in images]
        for i, array in enumerate(arrays):
            if array.ndim != 3:
                raise ValueError(f"image {i} has shape {array.shape}; expected (H, W, C)")
        if expected is not None and expected[0] is not None and expected[1] is not None:
            size = (int(expected[0]), int(expected[1]))
            arrays = [
                array
                if array.shape[:2] == size
                else keras.ops.convert_to_numpy(
                    keras.ops.image.resize(array, size, interpolation="bilinear", antialias=True)
                )
                for array in arrays
            ]
        if len({array.shape for array in arrays}) != 1:
            raise ValueError(
                "images of different sizes need a model with a fixed input size, or a "
                f"helpers.Classifier; got shapes {sorted({a.shape for a in arrays})}"
            )
        batch = np.stack(arrays).astype(np.float32)
    else:
        batch = np.asarray(images, dtype=np.float32)
        if batch.ndim == 3:
            batch = batch[None]
        if batch.ndim != 4:
            raise ValueError(
                f"images have shape {batch.shape}; expected (B, H, W, C), (H, W, C) or a list "
                "of (H, W, C) arrays"
            )
    if batch.shape[0] == 0:
        raise ValueError("got a batch of zero images")
    if expected is not None:
        for axis, (got, want) in enumerate(zip(batch.shape[1:], expected)):
            if want is not None and got != want:
                raise ValueError(
                    f"images have shape {batch.shape[1:]}, model {keras_model.name!r} expects "
                    f"{tuple(expected)} (axis {axis + 1} differs). A bare Keras model gets images "
                    "already preprocessed; pass a list of arrays to have them resized, or use a "
                    "helpers.Classifier, which resizes and normalises."
                )
    if not np.all(np.isfinite(batch)):
        raise ValueError("images contain NaN or infinite values")
    return batch


def _is_integer(value: Any) -> bool:
    return not isinstance(value, (bool, np.bool_)) and isinstance(value, (int, np.integer))


@dataclass(frozen=True)
class _Classes:
    """The requested classes, resolved before the network runs (no logits needed)."""

    kind: str  # "top" (the top ``count`` by logit, chosen on the device), "given" or "all"
    count: int  # K, the number of maps per image
    ids: np.ndarray | None = None  # (B, K) int64 class ids when kind == "given"


def _resolve_classes(classes: Any, top_k: int | None, batch: int, num_classes: int) -> _Classes:
    """Check ``classes`` / ``top_k`` for ``batch`` images and ``num_classes`` classes."""
    if top_k is not None:
        if classes is not None:
            raise ValueError(
                f"pass either classes (got {classes!r}) or top_k (got {top_k!r}), not both"
            )
        if not _is_integer(top_k):
            raise TypeError(f"top_k must be an integer, got {type(top_k).__name__} {top_k!r}")
        if not 1 <= int(top_k) <= num_classes:
            raise ValueError(f"top_k must be in 1..{num_classes}, got {top_k}")
    if classes is None:
        return _Classes("top", 1 if top_k is None else int(top_k))
    if isinstance(classes, str):
        if classes != "all":
            raise ValueError(
                f"classes={classes!r} is not understood; accepted: None (top-1 or top_k), 'all', "
                "a sequence of class ids, or a (B, K) array of class ids per image"
            )
        return _Classes("all", num_classes)
    if _is_integer(classes):
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
    return _Classes("given", int(array.shape[1]), array.astype(np.int64))


def _class_names(model: Any, num_classes: int) -> tuple[str, ...]:
    if hasattr(model, "class_name") and getattr(model, "num_classes", None) == num_classes:
        return tuple(model.class_name(i) for i in range(num_classes))
    return tuple(f"class {i}" for i in range(num_classes))


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


def upsample_maps(low_res: Any, size: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of maps ``(..., h, w)`` to ``(..., H, W)``, in one resize call.

    Introduced in notebook 03. Half-pixel centres (as ``keras.ops.image.resize``); no
    antialiasing (it is an upsampling). The resize is linear, so upsampling a weighted sum of
    feature maps equals the weighted sum of the upsampled feature maps.

    Parameters
    ----------
    low_res
        Maps ``(..., h, w)``.
    size
        ``(H, W)``.

    Returns
    -------
    numpy.ndarray
        float32 ``(..., H, W)``.
    """
    low_res = np.asarray(low_res, dtype=np.float32)
    if low_res.ndim < 2:
        raise ValueError(f"maps must have at least 2 dimensions (h, w), got shape {low_res.shape}")
    height, width = (int(s) for s in size)
    if height < 1 or width < 1:
        raise ValueError(f"size must be positive (H, W), got {size}")
    lead, (h, w) = low_res.shape[:-2], low_res.shape[-2:]
    flat = low_res.reshape(-1, h, w, 1)
    out = np.empty((flat.shape[0], height, width), dtype=np.float32)
    chunk = max(1, _CHUNK_VALUES // (height * width))
    for start in range(0, flat.shape[0], chunk):  # chunks only bound memory ("all" classes)
        resized = keras.ops.image.resize(
            flat[start : start + chunk], (height, width), interpolation="bilinear", antialias=False
        )
        out[start : start + chunk] = keras.ops.convert_to_numpy(resized)[..., 0]
    return out.reshape(*lead, height, width)


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)


@dataclass(eq=False)
class CAMResult:
    """Maps for ``B`` images and ``K`` classes each, from :func:`class_activation_maps` or
    :func:`grad_cam`.

    Introduced in notebook 03.

    Attributes
    ----------
    low_res
        ``(B, K, h, w)`` maps at feature resolution. CAM: ``M_c = Σ_k w_k^c f_k`` (no bias, no
        ReLU, no normalisation), so ``low_res.mean(axis=(2, 3)) + bias == scores``. Grad-CAM:
        ``Σ_k α_k^c A_k`` before the ReLU.
    class_ids
        ``(B, K)`` int class ids, row ``b`` for image ``b``.
    logits
        ``(B, num_classes)`` class scores before any softmax.
    input_size
        ``(H, W)`` of the model input; :attr:`maps` have this size and cover the whole image.
    class_names
        ``num_classes`` names (ImageNet names for a Classifier, ``"class i"`` otherwise).
    method
        ``"cam"`` or ``"grad_cam"``.
    layer
        Name of the layer whose feature maps were weighted.
    bias
        ``(B, K)`` Dense bias of each class (CAM only; None for Grad-CAM).
    dtype
        Precision of the network pass: ``"float32"`` or a mixed-precision policy name.
    """

    low_res: np.ndarray
    class_ids: np.ndarray
    logits: np.ndarray
    input_size: tuple[int, int]
    class_names: tuple[str, ...] = field(repr=False)
    method: str = "cam"
    layer: str = ""
    bias: np.ndarray | None = field(default=None, repr=False)
    dtype: str = "float32"
    _maps: np.ndarray | None = field(default=None, repr=False)
    _probabilities: np.ndarray | None = field(default=None, repr=False)

    @property
    def maps(self) -> np.ndarray:
        """``(B, K, H, W)``: :attr:`low_res` bilinearly upsampled to :attr:`input_size`.

        Computed on first access (or by the compiled call itself with ``upsample=True``),
        then kept: with ``classes="all"`` this is
        ``B × num_classes × H × W`` floats (200 MB per image for 1000 classes at 224 × 224), so
        use :meth:`map` for a few maps.
        """
        if self._maps is None:
            self._maps = upsample_maps(self.low_res, self.input_size)
        return self._maps

    def map(self, image_index: int = 0, k: int = 0) -> np.ndarray:
        """One upsampled map ``(H, W)``: image ``image_index``, its ``k``-th requested class."""
        if self._maps is not None:
            return self._maps[image_index, k]
        return upsample_maps(self.low_res[image_index, k], self.input_size)

    @property
    def probabilities(self) -> np.ndarray:
        """``(B, num_classes)`` softmax of :attr:`logits`."""
        if self._probabilities is None:
            self._probabilities = _softmax(self.logits)
        return self._probabilities

    @property
    def scores(self) -> np.ndarray:
        """``(B, K)`` logits of the requested classes."""
        return np.take_along_axis(self.logits, self.class_ids, axis=1)

    @property
    def class_probabilities(self) -> np.ndarray:
        """``(B, K)`` softmax probabilities of the requested classes."""
        return np.take_along_axis(self.probabilities, self.class_ids, axis=1)

    @property
    def num_images(self) -> int:
        return int(self.low_res.shape[0])

    def class_name(self, class_id: int) -> str:
        """Name of class ``class_id``."""
        if not _is_integer(class_id) or not 0 <= int(class_id) < len(self.class_names):
            raise ValueError(
                f"class id must be an int in 0..{len(self.class_names) - 1}, got {class_id!r}"
            )
        return self.class_names[int(class_id)]

    def label(self, image_index: int = 0, k: int = 0) -> str:
        """``"Egyptian cat (285), p = 0.79"`` for image ``image_index``'s ``k``-th class
        (probability to two significant digits, so that small ones stay visible: 0.0041)."""
        class_id = int(self.class_ids[image_index, k])
        probability = float(self.probabilities[image_index, class_id])
        return f"{self.class_names[class_id]} ({class_id}), p = {probability:.2g}"


# --------------------------------------------------------------------------------------------
# Compiled programs, one per backend: tf.function on TensorFlow, jax.jit on JAX
# --------------------------------------------------------------------------------------------

#: Precisions of the network pass (``dtype=`` of :func:`class_activation_maps` and
#: :func:`grad_cam`): float32, or Keras mixed precision (float16/bfloat16 compute, float32
#: weights). The weighting of the maps and the logits are computed in float32 either way.
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")

#: Most float32 values that ``upsample=True`` computes in one call (1 GiB); more is refused.
_UPSAMPLE_LIMIT = 1 << 28


@dataclass(frozen=True)
class _Plan:
    """What a compiled weighting program computes (one program per plan, traced once)."""

    classes: str  # "top", "given" or "all" (see _Classes)
    count: int  # K
    size: tuple[int, int] | None  # upsample the maps to (H, W) in the program, or None
    precision: str  # one of PRECISIONS


def _check_precision(dtype: Any) -> str:
    if dtype is None:
        return "float32"
    if not isinstance(dtype, str) or dtype not in PRECISIONS:
        raise ValueError(
            f"dtype must be None (float32) or one of {', '.join(map(repr, PRECISIONS))}; "
            f"got {dtype!r}"
        )
    return dtype


def _check_upsample(upsample: Any, batch: int, count: int, size: tuple[int, int]) -> None:
    if not isinstance(upsample, (bool, np.bool_)):
        raise TypeError(f"upsample must be True or False, got {type(upsample).__name__}")
    values = batch * count * size[0] * size[1]
    if upsample and values > _UPSAMPLE_LIMIT:
        raise ValueError(
            f"upsample=True would compute {batch} × {count} maps of {size[0]} × {size[1]} "
            f"({values * 4 / 2**30:.1f} GiB); the limit is {_UPSAMPLE_LIMIT * 4 / 2**30:.0f} GiB. "
            "Leave upsample=False and use result.map(i, k) for the maps you show, or ask for "
            "fewer classes."
        )


def _layers_of(*models: keras.Model) -> list[Any]:
    """Every layer inside ``models`` (nested ones too), each once."""
    seen: set[int] = set()
    layers = []
    for model in models:
        for layer in model._flatten_layers(include_self=False, recursive=True):
            if id(layer) not in seen and not isinstance(layer, keras.layers.InputLayer):
                seen.add(id(layer))
                layers.append(layer)
    return layers


@contextlib.contextmanager
def _precision(layers: list[Any], precision: str) -> Iterator[None]:
    """Give float32 ``layers`` the dtype policy ``precision`` for the duration, then restore it.

    Used while a program is traced (TensorFlow and JAX trace once, then run the traced
    program): mixed precision without a copy of the model, so the weights stay shared and
    the model outside the program is unchanged. Layers with another policy are left alone.
    """
    changed = []
    if precision != "float32":
        for layer in layers:
            if isinstance(layer, FoldedConvBatchNorm):
                continue  # float32 by design; it computes in its convolution's dtype
            policy = layer.dtype_policy
            if policy.name == "float32":
                changed.append((layer, policy))
                layer.dtype_policy = precision
    try:
        yield
    finally:
        for layer, policy in changed:
            layer.dtype_policy = policy


def _traced(body: Any, layers: list[Any], precision: str, *args: Any) -> Any:
    with _precision(layers, precision):
        return body(*args)


def _compile(function: Any, variables: list[Any], signature: list[tuple[tuple, str]]) -> Any:
    """Compile ``function(*tensors)`` for the current Keras backend.

    TensorFlow: a ``tf.function`` with ``signature`` (``(shape, dtype)`` per argument, ``None``
    where free, so that one trace serves every batch size). JAX: ``jax.jit`` of a pure function
    that gets the current values of ``variables`` (every Keras variable ``function`` reads) as
    arguments, mapped in with a ``keras.StatelessScope``: weights are not baked into the
    program as constants, and weights changed by training are seen at the next call. JAX
    compiles once per input shape. Other backends: ``function`` itself, run eagerly.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        specs = [tf.TensorSpec(shape, dtype) for shape, dtype in signature]
        # `function` is a functools.partial (no __code__), so TensorFlow counts traces per
        # program, and one trace per program is not reported as a retracing problem.
        return tf.function(function, input_signature=specs)
    if backend == "jax":
        import jax

        variables = list(variables)
        jitted = jax.jit(functools.partial(_stateless, function, variables))
        return functools.partial(_call_with_values, jitted, variables)
    return function


def _stateless(function: Any, variables: list[Any], values: list[Any], *args: Any) -> Any:
    with keras.StatelessScope(state_mapping=list(zip(variables, values))):
        return function(*args)


def _call_with_values(jitted: Any, variables: list[Any], *args: Any) -> Any:
    return jitted([variable.value for variable in variables], *args)


_COMPILED: weakref.WeakKeyDictionary[keras.Model, Any] = weakref.WeakKeyDictionary()
_INFERENCE: weakref.WeakKeyDictionary[keras.Model, keras.Model] = weakref.WeakKeyDictionary()


def _inference_model(model: keras.Model) -> keras.Model:
    """The graph the compiled programs run: ``model`` with BatchNormalization folded into the
    convolutions before it (:func:`helpers.graph.fold_batch_norm`; same variables), built once
    per model. Models without a layer graph are run as they are."""
    folded = _INFERENCE.get(model)
    if folded is None:
        try:
            folded = fold_batch_norm(model)
        except (TypeError, ValueError):
            folded = model
        _INFERENCE[model] = folded
    return folded


def _compiled_call(model: keras.Model) -> Any:
    """``images → model outputs``, compiled once per model with :func:`_compile` (the forward
    pass of the folded inference graph: the benchmark's classification baseline uses it too)."""
    function = _COMPILED.get(model)
    if function is None:
        reference = weakref.ref(model)  # the cache must not keep its key alive
        function = _network_program(
            functools.partial(_call_referenced, reference), model, [], "float32"
        )
        _COMPILED[model] = function
    return function


def _call_referenced(reference: Any, batch: Any) -> Any:
    return _inference_model(reference())(batch, training=False)


def _network_program(
    network: Any, model: keras.Model, extra_variables: list[Any], precision: str
) -> Any:
    """Stage 1 of CAM and Grad-CAM, compiled: ``network(images)``, which runs ``model``'s folded
    inference graph (:func:`_inference_model`) in ``precision``; ``extra_variables`` are the
    other variables it reads (e.g. the Dense head's)."""
    layers = _layers_of(_inference_model(model))  # folded now, eagerly, not while tracing
    return _compile(
        functools.partial(_traced, network, layers, precision),
        [*model.variables, *extra_variables],
        [((None, *model.inputs[0].shape[1:]), "float32")],
    )


def _run_feature_model(feature_model: keras.Model, batch: np.ndarray, program: Any = None) -> Any:
    """The network call. Tests count calls to this.

    Without ``program``: preprocessed images → feature maps, as float32 numpy. With a compiled
    network program (stage 1 of CAM / Grad-CAM): its outputs, left on the device.
    """
    if program is None:
        outputs = _compiled_call(feature_model)(batch)
        return np.asarray(keras.ops.convert_to_numpy(outputs), dtype=np.float32)
    return program(batch)


def _numpy(outputs: dict[str, Any]) -> dict[str, np.ndarray]:
    return {name: np.asarray(keras.ops.convert_to_numpy(value)) for name, value in outputs.items()}


def _top_classes(logits: Any, count: int) -> Any:
    """Top ``count`` class ids by logit, best first (ties: the lower id first)."""
    return keras.ops.top_k(logits, count, sorted=True)[1]


def _upsample_in_program(low_res: Any, size: tuple[int, int]) -> Any:
    """``(B, K, h, w)`` → ``(B, K, H, W)``, bilinear, as :func:`upsample_maps` (one resize)."""
    ops = keras.ops
    shape = ops.shape(low_res)
    flat = ops.reshape(low_res, (-1, shape[2], shape[3], 1))
    maps = ops.image.resize(flat, size, interpolation="bilinear", antialias=False)
    return ops.reshape(maps, (-1, shape[1], size[0], size[1]))


def _class_ids_argument(chosen: _Classes, batch: int) -> np.ndarray:
    """The class-id input of a weighting program: the given ids, or an empty (B, 0) array."""
    return chosen.ids if chosen.ids is not None else np.zeros((batch, 0), dtype=np.int64)


def _result_class_ids(chosen: _Classes, outputs: dict[str, np.ndarray], batch: int) -> np.ndarray:
    if chosen.kind == "given":
        return chosen.ids
    if chosen.kind == "all":
        return np.tile(np.arange(chosen.count, dtype=np.int64), (batch, 1))
    return outputs["class_ids"].astype(np.int64)


# --------------------------------------------------------------------------------------------
# CAM
# --------------------------------------------------------------------------------------------


def _cam_network(head: CAMHead, images: Any) -> tuple[Any, Any]:
    """Stage 1, the network: images → feature maps ``(B, h, w, k)`` and logits ``(B, C)``,
    both float32 (the logits as GAP → Dense computes them, from the same feature maps)."""
    ops = keras.ops
    features = _inference_model(head.feature_model)(images, training=False)
    if head.channels_first:
        features = ops.transpose(features, (0, 2, 3, 1))
    features = ops.cast(features, "float32")
    kernel = ops.cast(head.dense.kernel, "float32")
    logits = ops.matmul(ops.mean(features, axis=(1, 2)), kernel)
    if head.dense.bias is not None:
        logits = logits + ops.cast(head.dense.bias, "float32")
    return features, logits


def _cam_weighting(head: CAMHead, plan: _Plan, features: Any, logits: Any, class_ids: Any) -> Any:
    """Stage 2: the class choice, ``M_c = Σ_k w_k^c f_k`` at feature resolution (one einsum),
    and optionally one bilinear resize; on the device, after stage 1 without a round trip."""
    ops = keras.ops
    kernel = ops.cast(head.dense.kernel, "float32")  # (k, C)
    if plan.classes == "all":  # one matrix for all images
        return _weighting_outputs(plan, ops.einsum("bhwk,kc->bchw", features, kernel), None)
    if plan.classes == "top":
        class_ids = _top_classes(logits, plan.count)
    weights = ops.take(ops.transpose(kernel), class_ids, axis=0)  # per image (B, K, k)
    return _weighting_outputs(plan, ops.einsum("bhwk,bck->bchw", features, weights), class_ids)


def _weighting_outputs(plan: _Plan, low_res: Any, class_ids: Any, **extra: Any) -> dict[str, Any]:
    """What a weighting program returns, for CAM and Grad-CAM alike: the maps at feature
    resolution, the class ids it chose (``"top"`` plans), and the maps resized in the program
    (plans with a ``size``)."""
    outputs = {"low_res": low_res, **extra}
    if plan.classes == "top":
        outputs["class_ids"] = class_ids
    if plan.size is not None:
        outputs["maps"] = _upsample_in_program(low_res, plan.size)
    return outputs


def _cam_programs(head: CAMHead, plan: _Plan) -> tuple[Any, Any]:
    """(network, weighting) compiled programs for one head and plan, built once and cached."""
    key = ("network", plan.precision)
    if key not in head._programs:
        head._programs[key] = _network_program(
            functools.partial(_cam_network, head), head.feature_model, head.dense.variables,
            plan.precision,
        )
    # The weighting reads float32 features whatever the network's precision: one program serves
    # every precision of the same request.
    weighting_key = replace(plan, precision="float32")
    if weighting_key not in head._programs:
        channels = head.feature_shape[0] if head.channels_first else head.feature_shape[-1]
        head._programs[weighting_key] = _compile(
            functools.partial(_cam_weighting, head, plan),
            head.dense.variables,
            [
                ((None, None, None, channels), "float32"),
                ((None, head.num_classes), "float32"),
                ((None, None), "int64"),
            ],
        )
    return head._programs[key], head._programs[weighting_key]


def class_activation_maps(
    model: Any,
    images: Any,
    classes: Any = None,
    top_k: int | None = None,
    *,
    upsample: bool = False,
    dtype: str | None = None,
) -> CAMResult:
    """Class activation maps ``M_c = Σ_k w_k^c f_k`` for a batch of images, in one forward pass.

    Introduced in notebook 03.

    The work runs as two compiled programs (``tf.function`` on TensorFlow, ``jax.jit`` on JAX,
    each built once per model): the network (feature maps and logits), then the class choice,
    the weighting and the optional upsampling, with the feature maps kept on the device.

    Parameters
    ----------
    model
        A :class:`helpers.Classifier` (its ``preprocess`` and class names are used) or any Keras
        Functional/Sequential model whose head is ``GlobalAveragePooling2D → Dense``, nested
        models included. A bare Keras model gets images already preprocessed for it (a list of
        arrays is resized to its input size, not normalised); class names are ``"class i"``.
        If the Dense layer has an activation (softmax), logits are taken before it.
    images
        RGB images: an array ``(B, H, W, 3)``, one image ``(H, W, 3)``, or a list of differently
        sized ``(H, W, 3)`` arrays (each resized whole to the input size, never cropped, then
        one network call for all).
    classes
        ``None`` (top-1, or the top ``top_k`` by logit), a sequence of class ids used for every
        image (``(K,)``), a ``(B, K)`` array of class ids per image, or ``"all"`` (every class in
        id order, in one pass).
    top_k
        With ``classes=None``: how many top classes per image (1..num_classes).
    upsample
        Also compute the upsampled maps ``(B, K, H, W)`` in the same compiled call (otherwise
        :attr:`CAMResult.maps` upsamples on first access). Refused above 1 GiB of maps.
    dtype
        ``None`` (float32), ``"mixed_bfloat16"`` or ``"mixed_float16"``: Keras mixed precision
        for the network (float32 weights, 16-bit compute; faster on GPUs, and for ResNet-50 on
        CPUs with bfloat16 instructions). The weighting and the logits stay float32, so the
        identity between the result's own maps and logits still holds to float32 precision,
        but the feature maps carry 16-bit rounding: maps and logits differ from float32's by
        about 1e-2 (bfloat16) or 1e-3 (float16), relative.

    Returns
    -------
    CAMResult
        ``low_res`` ``(B, K, h, w)``, ``maps`` ``(B, K, H, W)`` (computed on first access unless
        ``upsample=True``), ``class_ids`` ``(B, K)``, ``logits`` ``(B, num_classes)``, ``bias``
        ``(B, K)``; the identity ``low_res.mean(axis=(2, 3)) + bias == scores`` holds to
        float32 precision.

    Raises
    ------
    ValueError
        No GAP → Dense head (the message points to :func:`grad_cam`), bad images, class ids or
        dtype.
    TypeError
        Non-integer class ids, a model that is neither a Classifier nor a Keras model.
    """
    precision = _check_precision(dtype)
    head = find_cam_head(model)
    batch = _prepare_images(model, images)
    count, size = int(batch.shape[0]), (int(batch.shape[1]), int(batch.shape[2]))
    chosen = _resolve_classes(classes, top_k, count, head.num_classes)
    _check_upsample(upsample, count, chosen.count, size)
    plan = _Plan(chosen.kind, chosen.count, size if upsample else None, precision)
    network, weighting = _cam_programs(head, plan)
    features, logits = _run_feature_model(head.feature_model, batch, network)
    outputs = weighting(features, logits, _class_ids_argument(chosen, count))
    outputs = _numpy({**outputs, "logits": logits})
    class_ids = _result_class_ids(chosen, outputs, count)
    return CAMResult(
        low_res=outputs["low_res"].astype(np.float32, copy=False),
        class_ids=class_ids,
        logits=outputs["logits"].astype(np.float32, copy=False),
        input_size=size,
        class_names=_class_names(model, head.num_classes),
        method="cam",
        layer=head.feature_layer,
        bias=head.bias[class_ids],
        dtype=precision,
        _maps=outputs["maps"].astype(np.float32, copy=False) if "maps" in outputs else None,
    )


# --------------------------------------------------------------------------------------------
# Grad-CAM
# --------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _GradCAMHead:
    layer: str
    dense: keras.layers.Dense
    to_features: keras.Model  # images → A (B, h, w, k)
    to_pooled: keras.Model  # A → Dense input (B, d)
    _programs: dict[Any, Any] = field(default_factory=dict)  # compiled programs, per plan

    @property
    def num_classes(self) -> int:
        return int(self.dense.kernel.shape[-1])


_GRAD_HEADS: weakref.WeakKeyDictionary[keras.Model, dict[str | None, _GradCAMHead]] = (
    weakref.WeakKeyDictionary()
)


def _grad_cam_head(keras_model: keras.Model, layer: str | None) -> _GradCAMHead:
    per_model = _GRAD_HEADS.setdefault(keras_model, {})
    if layer in per_model:
        return per_model[layer]
    head = _find_dense(_flat_graph(keras_model), keras_model.name)
    target = None
    four_d: list[str] = []
    global_pooling = (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D)
    for operation, _node, tensor in _walk_back(head.dense_input):
        if layer is None and isinstance(operation, global_pooling):
            continue  # keepdims=True output (B, 1, 1, k): a pooled vector, not a feature map
        if len(tensor.shape) == 4:
            four_d.append(operation.name)
        if layer is None and len(tensor.shape) == 4:
            target = (operation, tensor)
            break
        if layer is not None and operation.name == layer:
            target = (operation, tensor)
            break
    if target is None:
        if layer is None:
            raise ValueError(
                f"model {keras_model.name!r}: no 4-D feature map (B, h, w, k) before the final "
                f"{_describe(head.dense)}; Grad-CAM needs a convolutional classifier"
            )
        raise ValueError(
            f"model {keras_model.name!r} has no layer named {layer!r} before its final Dense "
            f"layer; 4-D layers nearest the head: {four_d[:8]}"
        )
    operation, tensor = target
    if len(tensor.shape) != 4:
        raise ValueError(
            f"layer {layer!r} outputs shape {tensor.shape}; Grad-CAM needs a 4-D feature map "
            f"(B, h, w, k). 4-D layers nearest the head: {four_d[:8]}"
        )
    try:
        to_pooled = keras.Model(tensor, head.dense_input)
    except ValueError as error:
        raise ValueError(
            f"layer {operation.name!r} is not a cut point of model {keras_model.name!r}: the "
            "classifier head also uses tensors from before it (e.g. a skip connection around "
            f"it); choose a later layer ({error})"
        ) from error
    grad_head = _GradCAMHead(
        layer=operation.name,
        dense=head.dense,
        to_features=keras.Model(head.flat.inputs, tensor),
        to_pooled=to_pooled,
    )
    per_model[layer] = grad_head
    return grad_head


def _grad_network(head: _GradCAMHead, images: Any) -> Any:
    """Stage 1, the network: images → target-layer output ``A`` ``(B, h, w, k)``, float32."""
    features = _inference_model(head.to_features)(images, training=False)
    return keras.ops.cast(features, "float32")


def _grad_logits(head: _GradCAMHead, features: Any) -> Any:
    """Logits ``(B, C)`` from the target layer's output (the head after the cut)."""
    ops = keras.ops
    pooled = ops.cast(_inference_model(head.to_pooled)(features, training=False), "float32")
    logits = ops.matmul(pooled, ops.cast(head.dense.kernel, "float32"))
    if head.dense.bias is not None:
        logits = logits + ops.cast(head.dense.bias, "float32")
    return logits


def _select_classes(plan: _Plan, logits: Any, class_ids: Any) -> Any:
    """Class ids ``(B, K)`` (int32) for a plan, on the device."""
    ops = keras.ops
    if plan.classes == "top":
        return _top_classes(logits, plan.count)
    if plan.classes == "all":
        every = ops.expand_dims(ops.arange(plan.count, dtype="int32"), 0)
        return ops.broadcast_to(every, (ops.shape(logits)[0], plan.count))
    return ops.cast(class_ids, "int32")


def _tensorflow_alphas(head: _GradCAMHead, plan: _Plan, features: Any, class_ids: Any) -> Any:
    """``α`` ``(B, K, k)``, logits and class ids with ``tf.GradientTape``."""
    import tensorflow as tf

    # A spatially constant shift d (B, 1, 1, k) added to A: dS/dd_k = sum_xy dS/dA_k(x, y), so
    # the Jacobian with respect to d gives every class's pooled gradient at (B, K, k) memory.
    shift = tf.zeros_like(features[:, :1, :1, :])
    with tf.GradientTape() as tape:
        tape.watch(shift)
        logits = _grad_logits(head, features + shift)
        ids = _select_classes(plan, tf.stop_gradient(logits), class_ids)
        selected = tf.gather(logits, ids, batch_dims=1)
    jacobian = tape.batch_jacobian(selected, shift)  # (B, K, 1, 1, k), vectorised over K
    area = tf.cast(tf.shape(features)[1] * tf.shape(features)[2], tf.float32)
    return jacobian[:, :, 0, 0, :] / area, logits, ids


def _jax_alphas(head: _GradCAMHead, plan: _Plan, features: Any, class_ids: Any) -> Any:
    """``α`` ``(B, K, k)``, logits and class ids with ``jax.vjp`` (inside the jitted program)."""
    import jax
    import jax.numpy as jnp

    # The same constant shift as on TensorFlow; one forward pass of the head, then one
    # pull-back per requested class, vectorised with vmap (images are independent at
    # inference, so row b of a pull-back is image b's gradient).
    shift = jnp.zeros_like(features[:, :1, :1, :])
    logits, pullback = jax.vjp(lambda d: _grad_logits(head, features + d), shift)
    ids = _select_classes(plan, jax.lax.stop_gradient(logits), class_ids)
    cotangents = jax.nn.one_hot(jnp.swapaxes(ids, 0, 1), logits.shape[-1], dtype=logits.dtype)
    (gradients,) = jax.vmap(pullback)(cotangents)  # (K, B, 1, 1, k)
    area = features.shape[1] * features.shape[2]
    return jnp.swapaxes(gradients[:, :, 0, 0, :], 0, 1) / area, logits, ids


_GRADIENT_BACKENDS = {"tensorflow": _tensorflow_alphas, "jax": _jax_alphas}


def _grad_weighting(head: _GradCAMHead, plan: _Plan, features: Any, class_ids: Any) -> Any:
    """Stage 2: logits, class choice, ``α`` by automatic differentiation, ``Σ_k α_k^c A_k``."""
    alphas_of = _GRADIENT_BACKENDS[keras.backend.backend()]
    alphas, logits, ids = alphas_of(head, plan, features, class_ids)
    low_res = keras.ops.einsum("bhwk,bck->bchw", features, alphas)
    return _weighting_outputs(plan, low_res, ids, logits=logits)


def _grad_programs(head: _GradCAMHead, plan: _Plan) -> tuple[Any, Any]:
    """(network, weighting) compiled programs for one Grad-CAM head and plan, cached."""
    key = ("network", plan.precision)
    if key not in head._programs:
        head._programs[key] = _network_program(
            functools.partial(_grad_network, head), head.to_features, [], plan.precision
        )
    if plan not in head._programs:
        channels = head.to_features.outputs[0].shape[-1]
        head._programs[plan] = _compile(
            functools.partial(
                _traced, functools.partial(_grad_weighting, head, plan),
                _layers_of(_inference_model(head.to_pooled)), plan.precision,
            ),
            [*head.to_pooled.variables, *head.dense.variables],
            [((None, None, None, channels), "float32"), ((None, None), "int64")],
        )
    return head._programs[key], head._programs[plan]


def grad_cam(
    model: Any,
    images: Any,
    classes: Any = None,
    top_k: int | None = None,
    layer: str | None = None,
    *,
    upsample: bool = False,
    dtype: str | None = None,
) -> CAMResult:
    """Grad-CAM maps ``Σ_k α_k^c A_k`` (before ReLU) from the gradients of the **logits**.

    Introduced in notebook 03.

    ``α_k^c = mean_{x,y} ∂S_c / ∂A_k(x, y)``, where ``A`` is the target layer's output and
    ``S_c`` the logit (pre-softmax score) of class ``c``. On a GAP → Dense network with ``A`` the
    GAP input, ``α_k^c = w_k^c / (h·w)``, so Grad-CAM equals CAM / (h·w). Runs as two compiled
    programs, like :func:`class_activation_maps`: the network up to ``A``, then the head with
    its gradients (``tf.GradientTape`` on TensorFlow, ``jax.vjp`` on JAX) for all requested
    classes at once.

    Parameters
    ----------
    model, images, classes, top_k, upsample, dtype
        As in :func:`class_activation_maps`; the model needs a final ``Dense`` layer (optionally
        followed by Activation/Softmax), not a GAP.
    layer
        Name of the target layer (a 4-D output ``(B, h, w, k)``); default: the last 4-D tensor
        before the head, found by walking back from the final Dense layer (``"top_relu"`` for
        EfficientNet-Lite0, ``"block5_pool"`` for VGG-16).

    Returns
    -------
    CAMResult
        ``method="grad_cam"``, ``bias=None``; the other fields as for CAM.

    Raises
    ------
    NotImplementedError
        For a Keras backend other than TensorFlow and JAX.
    ValueError
        Unknown or unsuitable target layer, bad images, class ids or dtype.
    """
    backend = keras.backend.backend()
    if backend not in _GRADIENT_BACKENDS:
        raise NotImplementedError(
            f"grad_cam needs gradients and is implemented for the TensorFlow and JAX backends; "
            f"the current Keras backend is {backend!r}. Set KERAS_BACKEND=tensorflow or jax, or "
            "use class_activation_maps, which runs on every backend."
        )
    precision = _check_precision(dtype)
    keras_model = _keras_model(model)
    head = _grad_cam_head(keras_model, layer)
    batch = _prepare_images(model, images)
    count, size = int(batch.shape[0]), (int(batch.shape[1]), int(batch.shape[2]))
    chosen = _resolve_classes(classes, top_k, count, head.num_classes)
    _check_upsample(upsample, count, chosen.count, size)
    plan = _Plan(chosen.kind, chosen.count, size if upsample else None, precision)
    network, weighting = _grad_programs(head, plan)
    features = _run_feature_model(head.to_features, batch, network)
    outputs = _numpy(weighting(features, _class_ids_argument(chosen, count)))
    return CAMResult(
        low_res=outputs["low_res"].astype(np.float32, copy=False),
        class_ids=_result_class_ids(chosen, outputs, count),
        logits=outputs["logits"].astype(np.float32, copy=False),
        input_size=size,
        class_names=_class_names(model, head.num_classes),
        method="grad_cam",
        layer=head.layer,
        bias=None,
        dtype=precision,
        _maps=outputs["maps"].astype(np.float32, copy=False) if "maps" in outputs else None,
    )

# --------------------------------------------------------------------------------------------
# Display helpers
# --------------------------------------------------------------------------------------------


def normalize_cam(maps: Any) -> np.ndarray:
    """Min-max scale each map ``(..., H, W)`` to [0, 1] for display.

    Introduced in notebook 03. A constant map (max == min, e.g. a class with no evidence
    anywhere in a degenerate input) becomes all zeros instead of a division by zero.

    Raises
    ------
    ValueError
        If the maps contain NaN or infinite values, or have fewer than 2 dimensions.
    """
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim < 2:
        raise ValueError(f"maps must have shape (..., H, W), got {maps.shape}")
    if not np.all(np.isfinite(maps)):
        raise ValueError("maps contain NaN or infinite values")
    low = maps.min(axis=(-2, -1), keepdims=True)
    span = maps.max(axis=(-2, -1), keepdims=True) - low
    safe = np.where(span > 0, span, 1.0)
    return np.where(span > 0, (maps - low) / safe, 0.0).astype(np.float32)
