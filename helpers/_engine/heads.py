"""The one head finder: where the feature map, the pooling and the class scores sit in a model.

Part of the private CAM engine (:mod:`helpers._engine`). Everything is found by layer type and
graph position, never by index, walking back from the model's output in one flat graph (nested
models inlined, layers shared):

    output ← [Activation | Softmax]* ← Dense ← [Dropout, Identity, Flatten, Reshape, …]*
           ← GlobalAveragePooling2D | GlobalMaxPooling2D ← feature map A     (a pooling head)

or, for gradient methods, any 4-D tensor ``A`` before the final Dense layer that the head can be
cut at (the last one by default, or a layer named by the caller).
"""

from __future__ import annotations

import weakref
import threading
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from helpers._engine.graph import describe, flatten_model, producer, single_input, walk_back
from helpers.checks import ArgumentError

__all__ = ["CAMHead", "find_head", "is_classifier", "keras_model_of"]

#: Layers that are the identity at inference and may sit between the pooling and the Dense layer.
PASS_THROUGH = (
    keras.layers.Dropout,
    keras.layers.SpatialDropout1D,
    keras.layers.SpatialDropout2D,
    keras.layers.SpatialDropout3D,
    keras.layers.GaussianDropout,
    keras.layers.GaussianNoise,
    keras.layers.AlphaDropout,
    keras.layers.ActivityRegularization,
    keras.layers.Identity,
    keras.layers.Flatten,  # after a keepdims=True pooling
    keras.layers.Reshape,
)
#: Layers allowed after the final Dense: logits are taken before them.
OUTPUT_ACTIVATIONS = (keras.layers.Activation, keras.layers.Softmax)
#: Global pooling layers a CAM head may use, and what the result calls them.
POOLINGS = {keras.layers.GlobalAveragePooling2D: "average", keras.layers.GlobalMaxPooling2D: "max"}
#: Layers whose output is not a default Grad-CAM target: the default is the last 4-D tensor
#: before the head that no pooling layer produced (VGG-16: ``block5_conv3``, 14 × 14, as in the
#: Grad-CAM authors' code, not ``block5_pool``).
_POOLING_LAYERS = (
    keras.layers.MaxPooling2D, keras.layers.AveragePooling2D, keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalMaxPooling2D,
)


@dataclass(frozen=True, eq=False)
class CAMHead:
    """Where the CAM pieces sit in a model (found by layer type and graph position).

    Introduced in notebook 03 (GAP heads) and notebook 04 (GMP heads).

    Attributes
    ----------
    feature_layer
        Name of the layer whose output is the feature map ``f`` (``A`` for Grad-CAM) that the
        maps weight, e.g. ``"top_relu"``.
    pooling
        The ``GlobalAveragePooling2D`` or ``GlobalMaxPooling2D`` layer between the feature map
        and the Dense layer, or None when a gradient method cuts the network elsewhere.
    dense
        The final ``Dense`` layer; its kernel ``(k, num_classes)`` holds the CAM weights ``w_k^c``.
        Logits are taken before its activation (and before any Activation/Softmax layer after it).
    feature_model
        Keras model: the model's input ``(B, H, W, C)`` → feature map ``(B, h, w, k)``
        (``(B, k, h, w)`` if :attr:`channels_first`), sharing the original model's layers.
    head_model
        Keras model: feature map → the Dense layer's input (the pooling and whatever sits
        between it and the Dense layer), sharing the original layers.
    channels_first
        Whether the feature map is channels-first (the engine transposes it before weighting).
    output_activation
        ``"softmax"``, ``"sigmoid"`` or ``"linear"``: what turns the logits into the model's
        output (used for the result's probabilities).
    """

    feature_layer: str
    pooling: keras.layers.Layer | None
    dense: keras.layers.Dense
    feature_model: keras.Model
    head_model: keras.Model
    channels_first: bool = False
    output_activation: str = "linear"
    #: Folded copies of :attr:`feature_model` and :attr:`head_model`
    #: (:func:`helpers._engine.compile.inference_model`): kept here, they go with the head.
    folded: dict = field(default_factory=dict, repr=False)

    @property
    def pooling_kind(self) -> str | None:
        """``"average"`` (GAP), ``"max"`` (GMP) or None (a cut for gradient methods)."""
        return None if self.pooling is None else POOLINGS[type(self.pooling)]

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
        """``(h, w, k)`` of the feature map as the layer outputs it (None where free)."""
        return tuple(self.feature_model.output_shape[1:])

    @property
    def channels(self) -> int:
        """``k``, the number of feature channels."""
        shape = self.feature_shape
        return int(shape[0] if self.channels_first else shape[-1])


def is_classifier(model: Any) -> bool:
    """Whether ``model`` is a :class:`helpers.Classifier`, or anything shaped like one: a Keras
    ``model``, its ``input_size`` ``(H, W)`` and ``normalize`` (RGB 0..255 to the model's scale).
    (By shape, so that the engine does not depend on :mod:`helpers.models`.)"""
    return (isinstance(getattr(model, "model", None), keras.Model)
            and hasattr(model, "input_size") and callable(getattr(model, "normalize", None)))


def keras_model_of(model: Any) -> keras.Model:
    """The one way to get the Keras model: a Classifier's ``model``, or the model itself."""
    if is_classifier(model):
        return model.model
    if isinstance(model, keras.Model):
        return model
    raise TypeError(
        f"model must be a helpers.Classifier or a keras.Model, got {type(model).__name__}"
    )


_FLAT: weakref.WeakKeyDictionary[keras.Model, tuple[Any, Any]] = weakref.WeakKeyDictionary()
_HEADS: weakref.WeakKeyDictionary[keras.Model, dict[Any, CAMHead]] = weakref.WeakKeyDictionary()
#: Two threads asking for the same model's head get the same one.
_LOCK = threading.RLock()


def _activation_name(activation: Any) -> str:
    """``"softmax"``, ``"sigmoid"``, ``"linear"`` (logits), or the name of another activation
    (``"relu"``, ``"tanh"``: the output is then not a probability of any kind)."""
    name = getattr(activation, "__name__", None) or str(activation)
    name = {"softmax_v2": "softmax"}.get(name, name)  # tf.nn.softmax's name
    return "linear" if name in ("linear", "None") else name


def _composed(first: str, then: str) -> str:
    """The name of ``then`` applied after ``first`` (e.g. ``"sigmoid→softmax"``: no longer a
    probability the engine knows how to give)."""
    if first == "linear" or then == "linear":
        return then if first == "linear" else first
    return f"{first}→{then}"


def _find_dense(output: Any, model_name: str) -> tuple[Any, Any, str]:
    """Walk back from the output through Activation/Softmax layers to the final Dense layer:
    ``(dense, dense input, output activation)``."""
    tensor, activation = output, "linear"
    while True:
        operation, node, _ = producer(tensor)
        if operation is None:
            raise ValueError(f"model {model_name!r}: its output is its input; no Dense head")
        if isinstance(operation, keras.layers.Dense):
            dense_input = single_input(operation, node)
            if len(dense_input.shape) != 2:
                raise ValueError(
                    f"model {model_name!r}: the final {describe(operation)} receives a tensor of "
                    f"shape {dense_input.shape}; expected (batch, features)"
                )
            return operation, dense_input, _composed(_activation_name(operation.activation),
                                                      activation)
        if isinstance(operation, OUTPUT_ACTIVATIONS):
            applied = ("softmax" if isinstance(operation, keras.layers.Softmax)
                       else _activation_name(operation.activation))
            activation = _composed(applied, activation)  # walking back: ``applied`` comes first
            tensor = single_input(operation, node)
            continue
        raise ValueError(
            f"model {model_name!r}: the output comes from {describe(operation)}, not from a Dense "
            "layer (optionally followed by an Activation/Softmax layer); class scores must come "
            "from a Dense layer"
        )


def _find_pooling(dense: Any, dense_input: Any) -> tuple[Any, Any, list[str], str]:
    """Walk back from the Dense input through pass-through layers to a global pooling layer:
    ``(pooling layer or None, its input, the path walked, what stopped the walk)``."""
    tensor, path = dense_input, [describe(dense)]
    while True:
        operation, node, _ = producer(tensor)
        if operation is None:
            return None, None, path, "the model input"
        if type(operation) in POOLINGS:
            return operation, single_input(operation, node), path, describe(operation)
        if not isinstance(operation, PASS_THROUGH):
            return None, None, path, describe(operation)
        path.append(describe(operation))
        tensor = single_input(operation, node)


def _cut_at(dense_input: Any, layer: str | None, model_name: str) -> tuple[Any, Any]:
    """The 4-D tensor a gradient method weights: the output of ``layer``, or the last 4-D tensor
    before the Dense layer that no pooling layer produced."""
    four_d: list[str] = []
    for operation, _node, tensor in walk_back(dense_input):
        if layer is None and isinstance(operation, _POOLING_LAYERS):
            continue
        if len(tensor.shape) == 4:
            four_d.append(operation.name)
        if (layer is None and len(tensor.shape) == 4) or (layer is not None and
                                                          operation.name == layer):
            break
    else:
        if layer is None:
            raise ValueError(
                f"model {model_name!r}: no 4-D feature map (B, h, w, k) before its final Dense "
                "layer; Grad-CAM needs a convolutional classifier"
            )
        raise ValueError(
            f"model {model_name!r} has no layer named {layer!r} before its final Dense layer; "
            f"4-D layers nearest the head: {four_d[:8]}"
        )
    if len(tensor.shape) != 4:
        raise ValueError(
            f"layer {layer!r} outputs shape {tensor.shape}; Grad-CAM needs a 4-D feature map "
            f"(B, h, w, k). 4-D layers nearest the head: {four_d[:8]}"
        )
    return operation, tensor


def find_head(model: Any, layer: str | None = None, *, pooling: bool = True) -> CAMHead:
    """The head of ``model`` (a Classifier or Keras model), cached per model and request.

    ``pooling=True``: the feature map feeding a GAP/GMP → Dense head (CAM); ValueError, pointing
    to Grad-CAM, if there is none. ``pooling=False``: a cut for gradient methods at ``layer``
    (default: the GAP/GMP input when there is one, else the last 4-D tensor before the Dense
    layer that no pooling layer produced).
    """
    if layer is not None and not isinstance(layer, str):  # every method looks layers up here
        raise ArgumentError(f"layer must be a layer name (str) or None, got "
                            f"{type(layer).__name__} {layer!r:.60}")
    keras_model = keras_model_of(model)
    key = ("pooling", None) if pooling else ("cut", layer)
    with _LOCK:
        per_model = _HEADS.setdefault(keras_model, {})
        if key not in per_model:
            per_model[key] = _build_head(keras_model, None if pooling else layer, pooling)
        head = per_model[key]
    if pooling and layer is not None and layer != head.feature_layer:
        raise ValueError(
            f"layer={layer!r}: CAM weights the feature map its global pooling reads, "
            f"{head.feature_layer!r} in model {keras_model.name!r}, and no other. Pass layer=None "
            f"(or {head.feature_layer!r}), or use a gradient method (e.g. helpers.grad_cam) "
            "to map another layer")
    return head


def _build_head(keras_model: keras.Model, layer: str | None, pooling: bool) -> CAMHead:
    if keras_model not in _FLAT:
        _FLAT[keras_model] = flatten_model(keras_model)
    flat_input, flat_output = _FLAT[keras_model]
    name = keras_model.name
    dense, dense_input, activation = _find_dense(flat_output, name)
    pooling_layer, features, path, found = _find_pooling(dense, dense_input)
    if pooling_layer is None and not any(len(t.shape) == 4 for _, _, t in walk_back(dense_input)):
        raise ValueError(
            f"model {name!r} has no 2-D feature map (B, h, w, k) before its final Dense layer "
            f"(walking back from the output: {' ← '.join(path)}, then {found}): CAM, Grad-CAM "
            "and every other method here weight the feature maps of an image network, so none "
            "applies to this model (e.g. 1-D sequences, or features already flat)."
        )
    if pooling and pooling_layer is None:
        raise ValueError(
            f"model {name!r} has no GlobalAveragePooling2D/GlobalMaxPooling2D → Dense head: "
            f"walking back from the output ({' ← '.join(path)}) reached {found}. CAM needs the "
            "class scores to be a Dense layer applied to globally pooled feature maps. Use "
            "helpers.grad_cam(model, images), which works for any convolutional classifier "
            "(e.g. VGG-16)."
        )
    if not pooling and (layer is not None or pooling_layer is None):
        operation, tensor = _cut_at(dense_input, layer, name)
        if tensor is not features:
            pooling_layer, features = None, tensor
    if len(features.shape) != 4:
        raise ValueError(
            f"{describe(pooling_layer)} receives a tensor of shape {features.shape}; expected a "
            "4-D feature map"
        )
    feature_op, _, _ = producer(features)
    format_owner = pooling_layer if pooling_layer is not None else feature_op
    try:
        head_model = keras.Model(features, dense_input)
        # Keras < 3.14 builds the model even when the head also reads tensors from before the
        # cut; running its graph on a symbolic batch of one fails then, on every version.
        probe = keras.KerasTensor((1, *features.shape[1:]), dtype=features.dtype)
        head_model.compute_output_spec(probe)
    except (ValueError, KeyError) as error:
        raise ValueError(
            f"layer {feature_op.name!r} is not a cut point of model {name!r}: the classifier "
            "head also uses tensors from before it (e.g. a skip connection around it); choose a "
            f"later layer ({error})"
        ) from error
    return CAMHead(
        feature_layer=getattr(feature_op, "name", "input"),
        pooling=pooling_layer,
        dense=dense,
        feature_model=keras.Model(flat_input, features, name=f"{name}_features"),
        head_model=head_model,
        channels_first=getattr(format_owner, "data_format", None) == "channels_first",
        output_activation=activation,
    )
