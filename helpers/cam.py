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

The model can be a :class:`helpers.Classifier` or any Keras Functional/Sequential model whose head
is ``GlobalAveragePooling2D → Dense`` (possibly with Dropout/Flatten in between, a softmax after,
and with the head or the feature extractor inside nested models). Nested models are inlined once
into one flat graph (the layers, hence the weights, are shared, not copied), so the feature map
inside a pretrained base is reachable. The flat graph is built once per model and cached.

:func:`grad_cam` (Selvaraju et al., 2017) works for any convolutional classifier ending in a
``Dense`` layer (e.g. VGG-16, which has no GAP); on a GAP → Dense network it equals CAM / (h·w).
"""

from __future__ import annotations

import functools
import weakref
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

__all__ = [
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


def _producer(tensor: Any) -> tuple[Any, Any, int]:
    """(operation, node, output index) that produced a symbolic tensor; (None, None, 0) at inputs."""
    history = getattr(tensor, "_keras_history", None)
    if history is None or history.operation is None:
        return None, None, 0
    operation = history.operation
    if isinstance(operation, keras.layers.InputLayer):
        return None, None, 0
    return operation, operation._inbound_nodes[history.node_index], history.tensor_index


def _graph_endpoints(model: Any) -> tuple[list[Any], list[Any]] | None:
    """Symbolic inputs and outputs of a Functional/Sequential model; None for other models."""
    if not isinstance(model, keras.Model):
        return None
    try:
        inputs, outputs = model.inputs, model.outputs
    except (AttributeError, ValueError):
        return None
    if not inputs or not outputs:
        return None
    inputs, outputs = list(keras.tree.flatten(inputs)), list(keras.tree.flatten(outputs))
    if not all(getattr(t, "_keras_history", None) is not None for t in outputs):
        return None
    return inputs, outputs


def _describe(operation: Any) -> str:
    return f"{type(operation).__name__} {getattr(operation, 'name', '?')!r}"


@dataclass(frozen=True, eq=False)
class _FlatGraph:
    """A model rebuilt as one graph with nested Functional/Sequential models inlined."""

    inputs: Any  # one symbolic input
    output: Any  # one symbolic output


def _topological_nodes(outputs: list[Any]) -> list[tuple[Any, Any]]:
    """(operation, node) pairs needed for ``outputs``, inputs first (iterative DFS)."""
    order: list[tuple[Any, Any]] = []
    done: set[int] = set()
    stack: list[tuple[Any, bool]] = [(t, False) for t in reversed(outputs)]
    while stack:
        tensor, expanded = stack.pop()
        operation, node, _ = _producer(tensor)
        if node is None or id(node) in done:
            continue
        if expanded:
            done.add(id(node))
            order.append((operation, node))
            continue
        stack.append((tensor, True))
        for parent in node.arguments.keras_tensors:
            parent_op, parent_node, _ = _producer(parent)
            if parent_node is not None and id(parent_node) not in done:
                stack.append((parent, False))
    return order


def _inline(model: keras.Model, new_inputs: list[Any]) -> list[Any]:
    """Re-call every leaf layer of ``model`` on ``new_inputs``, descending into nested models.

    Returns the new symbolic outputs. Layers are called again (same objects, shared weights).
    """
    endpoints = _graph_endpoints(model)
    if endpoints is None:  # an opaque (subclassed) model: call it whole
        return list(keras.tree.flatten(model(*new_inputs)))
    inputs, outputs = endpoints
    if len(inputs) != len(new_inputs):
        raise ValueError(f"model {model.name!r} takes {len(inputs)} inputs, got {len(new_inputs)}")
    memo: dict[int, Any] = {id(old): new for old, new in zip(inputs, new_inputs)}

    def substitute(value: Any) -> Any:
        if isinstance(value, keras.KerasTensor):
            if id(value) not in memo:
                raise ValueError(
                    f"model {model.name!r}: tensor {value.name} is not connected to its inputs"
                )
            return memo[id(value)]
        return value

    for operation, node in _topological_nodes(outputs):
        args = keras.tree.map_structure(substitute, node.arguments.args)
        kwargs = keras.tree.map_structure(substitute, node.arguments.kwargs)
        if _graph_endpoints(operation) is not None:
            flat_args = [a for a in keras.tree.flatten(args) if isinstance(a, keras.KerasTensor)]
            results = _inline(operation, flat_args)
        else:
            results = list(keras.tree.flatten(operation(*args, **kwargs)))
        for old, new in zip(node.outputs, results):
            memo[id(old)] = new
    return [memo[id(t)] for t in outputs]


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
    (new_output,) = _inline(model, [new_input])
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


def _resolve_classes(
    classes: Any, top_k: int | None, logits: np.ndarray
) -> tuple[np.ndarray, bool]:
    """Class ids ``(B, K)`` and whether they are every class in order (``classes="all"``)."""
    batch, num_classes = logits.shape
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
        k = 1 if top_k is None else int(top_k)
        order = np.argsort(-logits, axis=-1, kind="stable")[:, :k]
        return order.astype(np.int64), False
    if isinstance(classes, str):
        if classes != "all":
            raise ValueError(
                f"classes={classes!r} is not understood; accepted: None (top-1 or top_k), 'all', "
                "a sequence of class ids, or a (B, K) array of class ids per image"
            )
        return np.tile(np.arange(num_classes, dtype=np.int64), (batch, 1)), True
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
    return array.astype(np.int64), False


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
    """

    low_res: np.ndarray
    class_ids: np.ndarray
    logits: np.ndarray
    input_size: tuple[int, int]
    class_names: tuple[str, ...] = field(repr=False)
    method: str = "cam"
    layer: str = ""
    bias: np.ndarray | None = field(default=None, repr=False)
    _maps: np.ndarray | None = field(default=None, repr=False)
    _probabilities: np.ndarray | None = field(default=None, repr=False)

    @property
    def maps(self) -> np.ndarray:
        """``(B, K, H, W)``: :attr:`low_res` bilinearly upsampled to :attr:`input_size`.

        Computed on first access, then kept: with ``classes="all"`` this is
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
# CAM
# --------------------------------------------------------------------------------------------


_COMPILED: weakref.WeakKeyDictionary[keras.Model, Any] = weakref.WeakKeyDictionary()


def _compiled_call(model: keras.Model) -> Any:
    """``images → outputs`` compiled once per model: a ``tf.function`` with a batch-agnostic
    signature on TensorFlow (traced once, whatever the batch size), ``predict_on_batch``
    (jit-compiled by Keras) on other backends."""
    function = _COMPILED.get(model)
    if function is None:
        reference = weakref.ref(model)  # the cache must not keep its key alive
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            spec = tf.TensorSpec((None, *model.inputs[0].shape[1:]), tf.float32)
            # A partial, not a closure: TensorFlow counts traces per code object, and one trace
            # per model is expected here, not a retracing problem to warn about.
            function = tf.function(
                functools.partial(_call_referenced, reference), input_signature=[spec]
            )
        else:
            function = lambda x: reference().predict_on_batch(x)  # noqa: E731
        _COMPILED[model] = function
    return function


def _call_referenced(reference: Any, batch: Any) -> Any:
    return reference()(batch, training=False)


def _run_feature_model(feature_model: keras.Model, batch: np.ndarray) -> np.ndarray:
    """The network call: preprocessed images → feature maps. Tests count calls to this."""
    outputs = _compiled_call(feature_model)(batch)
    return np.asarray(keras.ops.convert_to_numpy(outputs), dtype=np.float32)


def class_activation_maps(
    model: Any,
    images: Any,
    classes: Any = None,
    top_k: int | None = None,
) -> CAMResult:
    """Class activation maps ``M_c = Σ_k w_k^c f_k`` for a batch of images, in one forward pass.

    Introduced in notebook 03.

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
        sized ``(H, W, 3)`` arrays (resized whole to the input size, never cropped).
    classes
        ``None`` (top-1, or the top ``top_k`` by logit), a sequence of class ids used for every
        image (``(K,)``), a ``(B, K)`` array of class ids per image, or ``"all"`` (every class in
        id order, in one pass).
    top_k
        With ``classes=None``: how many top classes per image (1..num_classes).

    Returns
    -------
    CAMResult
        ``low_res`` ``(B, K, h, w)``, ``maps`` ``(B, K, H, W)`` (computed on first access),
        ``class_ids`` ``(B, K)``, ``logits`` ``(B, num_classes)``, ``bias`` ``(B, K)``; the
        identity ``low_res.mean(axis=(2, 3)) + bias == scores`` holds to float32 precision.

    Raises
    ------
    ValueError
        No GAP → Dense head (the message points to :func:`grad_cam`), bad images or class ids.
    TypeError
        Non-integer class ids, a model that is neither a Classifier nor a Keras model.
    """
    head = find_cam_head(model)
    batch = _prepare_images(model, images)
    features = _run_feature_model(head.feature_model, batch)
    if head.channels_first:
        features = features.transpose(0, 2, 3, 1)
    ops = keras.ops
    features_t = ops.convert_to_tensor(features)
    kernel = ops.cast(head.dense.kernel, "float32")  # (k, C)
    bias = ops.cast(head.dense.bias, "float32") if head.dense.bias is not None else None
    pooled = ops.mean(features_t, axis=(1, 2))  # what GAP computes
    logits_t = ops.matmul(pooled, kernel)
    if bias is not None:
        logits_t = logits_t + bias
    logits = ops.convert_to_numpy(logits_t).astype(np.float32)
    class_ids, every_class = _resolve_classes(classes, top_k, logits)
    if every_class:  # one matrix for all images
        low_res = ops.einsum("bhwk,kc->bchw", features_t, kernel)
    else:  # per-image class weights (B, K, k)
        class_weights = ops.take(ops.transpose(kernel), ops.convert_to_tensor(class_ids), axis=0)
        low_res = ops.einsum("bhwk,bck->bchw", features_t, class_weights)
    bias_np = head.bias[class_ids]
    return CAMResult(
        low_res=ops.convert_to_numpy(low_res).astype(np.float32),
        class_ids=class_ids,
        logits=logits,
        input_size=(int(batch.shape[1]), int(batch.shape[2])),
        class_names=_class_names(model, logits.shape[1]),
        method="cam",
        layer=head.feature_layer,
        bias=bias_np,
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
    compiled: dict[str, Any] = field(default_factory=dict)  # backend → compiled functions


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


def _tf_logits(head: _GradCAMHead, features: Any) -> Any:
    import tensorflow as tf

    pooled = tf.cast(head.to_pooled(features, training=False), tf.float32)
    logits = tf.matmul(pooled, tf.cast(head.dense.kernel, tf.float32))
    if head.dense.bias is not None:
        logits = logits + tf.cast(head.dense.bias, tf.float32)
    return logits


def _tf_alphas(head: _GradCAMHead, features: Any, class_ids: Any) -> Any:
    """Grad-CAM weights ``(B, K, k)``: spatial means of d logit / d A for each requested class."""
    import tensorflow as tf

    # A spatially constant shift d (B, 1, 1, k) added to A: dS/dd_k = sum_xy dS/dA_k(x, y), so
    # the Jacobian with respect to d gives every class's pooled gradient at (B, K, k) memory.
    shift = tf.zeros_like(features[:, :1, :1, :])
    with tf.GradientTape() as tape:
        tape.watch(shift)
        selected = tf.gather(_tf_logits(head, features + shift), class_ids, batch_dims=1)
    jacobian = tape.batch_jacobian(selected, shift)  # (B, K, 1, 1, k), vectorised over K
    area = tf.cast(tf.shape(features)[1] * tf.shape(features)[2], tf.float32)
    return jacobian[:, :, 0, 0, :] / area


def _tensorflow_functions(head: _GradCAMHead) -> tuple[Any, Any]:
    """Compiled (tf.function) logits and Grad-CAM weights for one head, traced once."""
    if "tensorflow" in head.compiled:
        return head.compiled["tensorflow"]
    import tensorflow as tf

    feature_spec = tf.TensorSpec((None, *head.to_features.output.shape[1:]), tf.float32)
    ids_spec = tf.TensorSpec((None, None), tf.int64)

    # Partials (not closures) so that TensorFlow does not count one trace per head as retracing.
    logits_fn = tf.function(functools.partial(_tf_logits, head), input_signature=[feature_spec])
    alphas_fn = tf.function(
        functools.partial(_tf_alphas, head), input_signature=[feature_spec, ids_spec]
    )
    head.compiled["tensorflow"] = (logits_fn, alphas_fn)
    return logits_fn, alphas_fn


def _grad_cam_tensorflow(
    head: _GradCAMHead, features: np.ndarray, classes: Any, top_k: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(alphas (B, K, k), class ids (B, K), logits (B, C)) with tf.GradientTape."""
    logits_fn, alphas_fn = _tensorflow_functions(head)
    logits = logits_fn(features).numpy()
    class_ids, _ = _resolve_classes(classes, top_k, logits)
    return alphas_fn(features, class_ids).numpy(), class_ids, logits


def grad_cam(
    model: Any,
    images: Any,
    classes: Any = None,
    top_k: int | None = None,
    layer: str | None = None,
) -> CAMResult:
    """Grad-CAM maps ``Σ_k α_k^c A_k`` (before ReLU) from the gradients of the **logits**.

    Introduced in notebook 03.

    ``α_k^c = mean_{x,y} ∂S_c / ∂A_k(x, y)``, where ``A`` is the target layer's output and
    ``S_c`` the logit (pre-softmax score) of class ``c``. On a GAP → Dense network with ``A`` the
    GAP input, ``α_k^c = w_k^c / (h·w)``, so Grad-CAM equals CAM / (h·w).

    Parameters
    ----------
    model, images, classes, top_k
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
        For a Keras backend other than TensorFlow.
    ValueError
        Unknown or unsuitable target layer, bad images or class ids.
    """
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise NotImplementedError(
            f"grad_cam needs gradients and is implemented for the TensorFlow backend; the current "
            f"Keras backend is {backend!r}. Set KERAS_BACKEND=tensorflow, or use "
            "class_activation_maps, which runs on every backend."
        )
    keras_model = _keras_model(model)
    head = _grad_cam_head(keras_model, layer)
    batch = _prepare_images(model, images)
    features = _run_feature_model(head.to_features, batch)
    alphas, class_ids, logits = _grad_cam_tensorflow(head, features, classes, top_k)
    low_res = np.einsum("bhwk,bck->bchw", features, alphas, optimize=True)
    return CAMResult(
        low_res=low_res.astype(np.float32),
        class_ids=class_ids,
        logits=logits.astype(np.float32),
        input_size=(int(batch.shape[1]), int(batch.shape[2])),
        class_names=_class_names(model, logits.shape[1]),
        method="grad_cam",
        layer=head.layer,
        bias=None,
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
