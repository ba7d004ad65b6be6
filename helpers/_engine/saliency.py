"""Gradients of class logits with respect to the input image, with the ReLUs swapped.

Part of the private CAM engine (:mod:`helpers._engine`). Guided backpropagation
(:mod:`helpers.guided`) changes the backward pass of every ReLU of a network. The engine does the
swapping: while the compiled program is traced (once on TensorFlow, once per input shape on JAX),
each ReLU-like activation of the model's inference graph is replaced by ``relu_rule(cap)``, a
function the caller writes with ``keras.ops.custom_gradient``; after the trace the layers are
restored, so every other program and the model itself keep ordinary ReLUs.

Which activations are swapped: ``activation="relu"`` / ``"relu6"`` of any layer (Conv, Dense,
``Activation``), and ``keras.layers.ReLU`` layers with ``negative_slope == 0`` and
``threshold == 0`` (``max_value`` becomes the cap: ``ReLU(6.0)`` in EfficientNet-Lite0). A leaky
or thresholded ReLU is not a ReLU and keeps its own gradient.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any

import keras
import numpy as np

from helpers._engine.autodiff import BACKENDS, class_gradients
from helpers._engine.compile import cached, compile_function, counters, inference_model
from helpers._engine.devices import chunk_input_values
from helpers._engine.graph import all_layers
from helpers._engine.heads import CAMHead, find_head, keras_model_of
from helpers._engine.inputs import check_fits, class_names, image_source, resolve_classes
from helpers._engine.runner import GRADIENT_VALUES, Plan, _choose, _class_ids, _logits, _network, to_numpy
from helpers.checks import array_bytes

__all__ = ["input_gradients", "swapped_relus"]

#: Keras' ReLU activation functions, with their caps.
_RELUS = ((keras.activations.relu, None), (keras.activations.relu6, 6.0))


def _cap_of(activation: Any) -> tuple[bool, float | None]:
    for function, cap in _RELUS:
        if activation is function:
            return True, cap
    return False, None


@contextlib.contextmanager
def swapped_relus(layers: list[Any], relu_rule: Callable[[float | None], Callable]) -> Iterator[int]:
    """Inside the block, every ReLU of ``layers`` computes ``relu_rule(cap)`` (``cap``: None for
    ReLU, 6.0 for ReLU6, a ReLU layer's ``max_value``). Yields how many were swapped."""
    changed: list[tuple[Any, str, Any]] = []
    try:
        for layer in layers:
            is_relu, cap = _cap_of(getattr(layer, "activation", None))
            if is_relu:
                changed.append((layer, "activation", layer.activation))
                layer.activation = relu_rule(cap)
            elif (isinstance(layer, keras.layers.ReLU) and not layer.negative_slope
                  and not layer.threshold):
                changed.append((layer, "call", None))
                max_value = None if layer.max_value is None else float(layer.max_value)
                layer.call = relu_rule(max_value)  # an instance attribute hides the class's call
        yield len(changed)
    finally:
        for layer, attribute, previous in reversed(changed):
            if attribute == "call":
                del layer.call
            else:
                layer.activation = previous


def _program_body(head: CAMHead, plan: Plan, relu_rule: Any, images: Any, given: Any) -> dict[str, Any]:
    counters["traces"] += 1
    layers = all_layers(inference_model(head.feature_model), inference_model(head.head_model))
    with swapped_relus(layers, relu_rule):
        logits, ids, gradients = class_gradients(
            lambda x: _logits(head, _network(head, x)), functools.partial(_choose, plan, given),
            images, per_position=True)
    outputs = {"gradients": gradients, "logits": logits}
    if plan.classes == "top":
        outputs["class_ids"] = ids
    return outputs


def input_gradients(model: Any, images: Any, classes: Any, top_k: int | None, layer: str | None,
                    relu_rule: Callable[[float | None], Callable]) -> dict[str, Any]:
    """``∂S_c/∂x`` for the chosen classes, with every ReLU computing ``relu_rule(cap)``.

    Returns a dict: ``gradients`` ``(B, K, H, W, C)`` with respect to the model's (preprocessed)
    input, ``class_ids`` ``(B, K)``, ``logits`` ``(B, num_classes)`` (of the ordinary forward pass:
    the swapped ReLUs compute the same values), ``relus`` (how many were swapped), ``head``,
    ``class_names``, ``input_size``. Float32, compiled once per model, request and rule."""
    backend = keras.backend.backend()
    if backend not in BACKENDS:
        raise NotImplementedError(
            f"input gradients are implemented for the TensorFlow and JAX backends; the current "
            f"Keras backend is {backend!r}. Set KERAS_BACKEND=tensorflow or jax."
        )
    keras_model = keras_model_of(model)
    head = find_head(keras_model, layer, pooling=False)
    batch = image_source(model, images)
    check_fits(head, batch.shape)
    count = len(batch)
    chosen = resolve_classes(classes, top_k, count, head.num_classes)
    plan = Plan(chosen.kind, chosen.count, None, "float32")
    layers = all_layers(inference_model(head.feature_model), inference_model(head.head_model))
    with swapped_relus(layers, relu_rule) as relus:  # counted now, swapped again when traced
        pass
    program = cached(keras_model, ("input gradients", relu_rule, head, plan.classes, plan.count),
                     lambda: compile_function(
                         functools.partial(_program_body, head, plan, relu_rule),
                         [*head.feature_model.variables, *head.head_model.variables,
                          *head.dense.variables],
                         [((None, *batch.shape), "float32"), ((None, None), "int64")]))
    given = chosen.ids if chosen.ids is not None else np.zeros((count, 0), dtype=np.int64)
    # The result holds one input-sized gradient per image and class: bounded before any work
    # (classes="all" on 1000 classes is 574 MiB for a single 224-pixel photo).
    array_bytes(f"input gradients for {chosen.count} classes of {count} images (ask for fewer "
                "classes: top_k or a list of class ids)", (count, chosen.count, *batch.shape), 4)
    per_image = chosen.count * int(np.prod(batch.shape))
    chunk = max(1, min(chunk_input_values(backward=True) // int(np.prod(batch.shape)),
                       GRADIENT_VALUES // per_image))
    parts = []
    for start in range(0, count, chunk):
        counters["network_calls"] += 1
        parts.append(to_numpy(program(batch[start:start + chunk], given[start:start + chunk])))
    outputs = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    return {
        "gradients": outputs["gradients"].astype(np.float32, copy=False),
        "logits": outputs["logits"].astype(np.float32, copy=False),
        "class_ids": _class_ids(chosen, outputs, count),
        "relus": relus,
        "head": head,
        "class_names": class_names(model, head.num_classes),
        "input_size": (int(batch.shape[0]), int(batch.shape[1])),
    }
