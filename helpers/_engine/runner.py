"""Running a map method: the compiled programs, the batches, the result.

Part of the private CAM engine (:mod:`helpers._engine`). A method (see :mod:`helpers.cam`) is an
object with ``name``, ``inputs`` (the names of what its weights function reads, from
:data:`INPUTS`), ``pooling_head`` (whether it needs a GAP/GMP → Dense head), ``masks`` (for
methods that read ``masked_logits``: the function that turns channel maps into input masks) and
``maps(available)`` (its weights and the weighted sum, in ``keras.ops``). The engine runs it as
programs compiled once per model and kind of request:

1. the network: images → feature map ``A`` ``(B, h, w, k)``, float32, channels last (in the
   requested precision, BatchNormalization folded);
2. for ``masked_logits`` only: the network again on the image times each of ``method.masks``;
3. the method: logits from ``A`` through the head, the class choice, the method's inputs
   (gradients by automatic differentiation only when it reads them), ``method.maps`` and the
   optional upsampling, on the device, in float32.
"""

from __future__ import annotations

import functools
import inspect
import weakref
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from helpers._engine.autodiff import BACKENDS, class_gradients
from helpers._engine.compile import (
    PRECISIONS, cached, compile_function, counters, inference_model, network_program, traced,
)
from helpers._engine.devices import chunk_input_values
from helpers._engine.graph import all_layers
from helpers._engine.heads import CAMHead, find_head, keras_model_of
from helpers._engine.inputs import Classes, Images, check_fits, class_names, image_source, resolve_classes
from helpers.checks import flag
from helpers.maps import CAMResult, check_upsample_size, resize_maps

__all__ = ["GRADIENT_INPUTS", "INPUTS", "Plan", "check_precision", "masked_logits", "method_inputs",
           "programs",
           "run", "to_numpy"]

#: What the engine can pass a weights function, by parameter name.
INPUTS = {
    "features": "A, the target layer's feature maps (B, h, w, k)",
    "kernel": "the Dense kernel (k, C); needs a pooling head",
    "class_ids": "the requested class ids (B, K), or None for every class in id order",
    "logits": "the logits (B, C)",
    "pooled_gradients": "Σ_{x,y} ∂S_c/∂A_k(x, y) (B, K, k)",
    "gradients": "∂S_c/∂A_k(x, y) (B, K, h, w, k)",
    "masked_logits": "the logits of the input times each of the method's masks (B, k, C)",
}
#: Method inputs computed by automatic differentiation.
GRADIENT_INPUTS = ("gradients", "pooled_gradients")
#: Most masked images per forward pass of Score-CAM (its batches are full-size network passes).
MASK_BATCH = 16
#: Most float32 values of per-position gradients (``B × K × h × w × k``) in one chunk (256 MiB).
GRADIENT_VALUES = 1 << 26
@dataclass(frozen=True)
class Plan:
    """What a method program computes: ``classes`` ("top", "given" or "all"), ``count`` (K),
    ``size`` (upsample to (H, W) in the program, or None), ``precision`` of the network."""

    classes: str
    count: int
    size: tuple[int, int] | None
    precision: str


def method_inputs(name: str, weights: Any, masks: Any) -> tuple[str, ...]:
    """The engine inputs a weights function reads: its parameter names, each one of
    :data:`INPUTS` (a ValueError lists them otherwise); ``masked_logits`` needs ``masks``."""
    parameters = tuple(inspect.signature(weights).parameters)
    unknown = [parameter for parameter in parameters if parameter not in INPUTS]
    if unknown:
        accepted = "\n".join(f"  {input_name}: {meaning}" for input_name, meaning in INPUTS.items())
        raise ValueError(
            f"method {name!r}: the weights function {weights.__name__} has parameter(s) "
            f"{', '.join(map(repr, unknown))}, which the engine does not provide; name each "
            f"parameter after what it reads, one of:\n{accepted}")
    if "masked_logits" in parameters and masks is None:
        raise ValueError(f"method {name!r} reads masked_logits, so it needs masks= (a function "
                         "(channel maps (n, h, w), input size) -> masks (n, H, W))")
    return parameters


def check_precision(dtype: Any) -> str:
    if dtype is None:
        return "float32"
    if not isinstance(dtype, str) or dtype not in PRECISIONS:
        raise ValueError(
            f"dtype must be None (float32) or one of {', '.join(map(repr, PRECISIONS))}; "
            f"got {dtype!r}"
        )
    return dtype


def _check_upsample(upsample: Any, batch: int, count: int, size: tuple[int, int]) -> None:
    if flag("upsample", upsample):
        check_upsample_size((batch, count, 1, 1), size, "upsample=True")


# --------------------------------------------------------------------------------------------
# The two programs
# --------------------------------------------------------------------------------------------


def _network(head: CAMHead, images: Any) -> Any:
    """Stage 1: images → feature map ``A`` ``(B, h, w, k)``, float32, channels last."""
    features = inference_model(head.feature_model, head.folded)(images, training=False)
    if head.channels_first:
        features = keras.ops.transpose(features, (0, 2, 3, 1))
    return keras.ops.cast(features, "float32")


def _logits(head: CAMHead, features: Any) -> Any:
    """Logits ``(B, C)`` from ``A`` through the head (pooling, pass-through layers, Dense
    without its activation), in float32."""
    ops = keras.ops
    if head.channels_first:
        features = ops.transpose(features, (0, 3, 1, 2))
    pooled = inference_model(head.head_model, head.folded)(features, training=False)
    pooled = ops.cast(pooled, "float32")
    logits = ops.matmul(pooled, ops.cast(head.dense.kernel, "float32"))
    if head.dense.bias is not None:
        logits = logits + ops.cast(head.dense.bias, "float32")
    return logits


def _choose(plan: Plan, given: Any, logits: Any) -> Any:
    """Class ids ``(B, K)`` (int32): the top ``K`` by logit (best first; ties: lower id first),
    every class, or the given ones."""
    ops = keras.ops
    if plan.classes == "top":
        return ops.top_k(logits, plan.count, sorted=True)[1]
    if plan.classes == "all":
        every = ops.expand_dims(ops.arange(plan.count, dtype="int32"), 0)
        return ops.broadcast_to(every, (ops.shape(logits)[0], plan.count))
    return ops.cast(given, "int32")


def _method(method: Any, head: CAMHead, plan: Plan, features: Any, given: Any,
            masked: Any = None) -> dict[str, Any]:
    """Stage 3: logits, class choice, the method's inputs, its maps, optional upsampling.
    ``masked``: the logits of the masked inputs ``(B, k, C)``, for methods that read
    ``masked_logits``."""
    logits_of = functools.partial(_logits, head)
    choose = functools.partial(_choose, plan, given)
    needs = set(method.inputs)
    available: dict[str, Any] = {"features": features}
    if needs & set(GRADIENT_INPUTS):
        per_position = "gradients" in needs
        logits, ids, gradients = class_gradients(logits_of, choose, features,
                                                 per_position=per_position)
        available["gradients" if per_position else "pooled_gradients"] = gradients
        if per_position and "pooled_gradients" in needs:
            available["pooled_gradients"] = keras.ops.sum(gradients, axis=(2, 3))
    else:
        logits = logits_of(features)
        ids = choose(logits)
    available.update(
        masked_logits=masked,
        logits=logits,
        class_ids=None if plan.classes == "all" else ids,  # None: every class, in id order
        kernel=keras.ops.cast(head.dense.kernel, "float32"),
    )
    low_res = method.maps(available)
    outputs = {"low_res": low_res, "logits": logits}
    if plan.classes == "top":
        outputs["class_ids"] = ids
    if plan.size is not None:
        outputs["maps"] = resize_maps(low_res, plan.size)
    return outputs


def programs(method: Any, model: Any, plan: Plan, layer: str | None = None) -> tuple[Any, Any]:
    """``(network, method program)`` for ``method`` on ``model`` (a Classifier or Keras model):
    ``network(images)`` → ``A``; ``program(A, class_ids)`` → dict of outputs (``class_ids`` is
    ``(B, K)`` int64 for "given" plans, ``(B, 0)`` otherwise). Built once and cached."""
    keras_model = keras_model_of(model)
    head = find_head(keras_model, layer, pooling=method.pooling_head)
    network = cached(keras_model, ("network", head, plan.precision), lambda: network_program(
        functools.partial(_network, head), head.feature_model, [], plan.precision, head.folded))
    shape = head.feature_shape
    height, width = shape[1:] if head.channels_first else shape[:2]
    # The method program reads float32 features whatever the network's precision: one program
    # serves every precision of the same request.
    key = ("method", method.name, head, plan.classes, plan.count, plan.size)
    inference_model(head.head_model, head.folded)  # fold now, eagerly, never while tracing
    signature = [((None, height, width, head.channels), "float32"), ((None, None), "int64")]
    if "masked_logits" in method.inputs:
        signature.append(((None, head.channels, head.num_classes), "float32"))
    program = cached(keras_model, key, lambda: compile_function(
        functools.partial(_counted, functools.partial(_method, method, head, plan)),
        [*head.head_model.variables, *head.dense.variables], signature,
    ))
    return network, program


def _masked_network(head: CAMHead, masks_of: Any, image: Any, maps: Any) -> Any:
    """Logits ``(n, C)`` of one preprocessed image ``(1, H, W, C)`` times each of the ``n`` masks
    that ``masks_of`` makes from ``n`` channel maps ``(n, h, w)``."""
    masks = masks_of(maps, tuple(image.shape[1:3]))  # (n, H, W)
    return _logits(head, _network(head, image * masks[..., None]))


def masked_logits(method: Any, head: CAMHead, model: Any, batch: np.ndarray, features: Any,
                  precision: str) -> np.ndarray:
    """``(B, k, C)``: for each image and each channel ``k`` of ``features`` ``(B, h, w, k)``, the
    logits of the image times that channel's mask (``method.masks``). One forward pass per
    channel, in batches of at most :data:`MASK_BATCH` images."""
    keras_model = keras_model_of(model)
    layers = all_layers(inference_model(head.feature_model, head.folded))
    masks_of = method.masks
    key = ("masked", masks_of, head, precision)  # shared by methods with the same masks
    program = cached(keras_model, key, lambda: compile_function(
        functools.partial(traced, functools.partial(_masked_network, head, masks_of), layers,
                          precision),
        [*head.feature_model.variables, *head.head_model.variables, *head.dense.variables],
        [((1, *batch.shape[1:]), "float32"), ((None, *tuple(features.shape[1:3])), "float32")],
    ))
    maps = np.moveaxis(np.asarray(keras.ops.convert_to_numpy(features)), -1, 1)  # (B, k, h, w)
    step = max(1, min(MASK_BATCH, chunk_input_values() // int(np.prod(batch.shape[1:]))))
    out = np.empty((*maps.shape[:2], head.num_classes), dtype=np.float32)
    for b in range(len(batch)):
        for start in range(0, maps.shape[1], step):
            counters["network_calls"] += 1
            logits = program(batch[b:b + 1], maps[b, start:start + step])
            out[b, start:start + step] = keras.ops.convert_to_numpy(logits)
    return out


def _counted(body: Any, *args: Any) -> Any:
    counters["traces"] += 1
    return body(*args)


def to_numpy(outputs: dict[str, Any]) -> dict[str, np.ndarray]:
    """A program's outputs as numpy arrays."""
    return {name: np.asarray(keras.ops.convert_to_numpy(value)) for name, value in outputs.items()}


# --------------------------------------------------------------------------------------------
# One call
# --------------------------------------------------------------------------------------------


def _class_ids(chosen: Classes, outputs: dict[str, np.ndarray], batch: int) -> np.ndarray:
    if chosen.kind == "given":
        return chosen.ids
    if chosen.kind == "all":
        return np.tile(np.arange(chosen.count, dtype=np.int64), (batch, 1))
    return outputs["class_ids"].astype(np.int64)


def _chunk(method: Any, head: CAMHead, batch: Images, count: int) -> int:
    """Images per network call: bounded by the input's size, and for per-position gradients by
    ``B × K × h × w × k``; ValueError if one image's gradients alone exceed four chunks."""
    chunk = max(1, chunk_input_values() // int(np.prod(batch.shape)))
    chunk = -(-len(batch) // -(-len(batch) // chunk))  # the same number of chunks, evened out
    if "gradients" not in method.inputs:
        return chunk
    sizes = [s for s in head.feature_shape if s is not None]
    per_image = count * int(np.prod(sizes)) if len(sizes) == 3 else GRADIENT_VALUES
    if per_image > 4 * GRADIENT_VALUES:
        raise ValueError(
            f"{method.name} needs the gradient at every position for each class: {count} classes "
            f"× {head.feature_shape} is {per_image * 4 / 2**30:.1f} GiB per image; ask for fewer "
            "classes (top_k or a list of class ids)"
        )
    return max(1, min(chunk, GRADIENT_VALUES // per_image))


def run(method: Any, model: Any, images: Any, classes: Any = None, top_k: int | None = None,
        layer: str | None = None, *, upsample: bool = False, dtype: str | None = None
        ) -> CAMResult:
    """Maps of ``method`` for ``images``: check the request, run the two programs over the
    images in chunks, gather the result. The public functions of :mod:`helpers.cam` call this."""
    backend = keras.backend.backend()
    if set(method.inputs) & set(GRADIENT_INPUTS) and backend not in BACKENDS:
        raise NotImplementedError(
            f"{method.name} needs gradients and is implemented for the TensorFlow and JAX "
            f"backends; the current Keras backend is {backend!r}. Set KERAS_BACKEND=tensorflow "
            "or jax, or use class_activation_maps, which runs on every backend."
        )
    precision = check_precision(dtype)
    head = find_head(model, layer, pooling=method.pooling_head)
    batch = image_source(model, images)  # checked now, preprocessed a chunk at a time
    check_fits(head, batch.shape)
    count, size = len(batch), (int(batch.shape[0]), int(batch.shape[1]))
    chosen = resolve_classes(classes, top_k, count, head.num_classes)
    _check_upsample(upsample, count, chosen.count, size)
    plan = Plan(chosen.kind, chosen.count, size if upsample else None, precision)
    network, program = programs(method, model, plan, layer)
    given = chosen.ids if chosen.ids is not None else np.zeros((count, 0), dtype=np.int64)
    chunk = _chunk(method, head, batch, chosen.count)
    parts = []
    for start in range(0, count, chunk):
        counters["network_calls"] += 1
        part = batch[start:start + chunk]
        features = network(part)
        extra = []
        if "masked_logits" in method.inputs:
            extra.append(masked_logits(method, head, model, part, features, precision))
        parts.append(to_numpy(program(features, given[start:start + chunk], *extra)))
    outputs = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    for name in ("logits", "low_res"):  # the inputs were finite: this is the network's doing
        bad = ~np.isfinite(outputs[name]).all(axis=tuple(range(1, outputs[name].ndim)))
        if bad.any():
            raise ValueError(
                f"the model's {'logits' if name == 'logits' else 'maps'} hold NaN or infinite "
                f"values for image {int(np.flatnonzero(bad)[0])} (of {count}), although the images "
                "are finite: its weights hold NaN or inf (training diverged?), or a float16 "
                "layer overflowed (a mixed_float16 model: run it in float32)")
    class_ids = _class_ids(chosen, outputs, count)
    return CAMResult(
        low_res=outputs["low_res"].astype(np.float32, copy=False),
        class_ids=class_ids,
        logits=outputs["logits"].astype(np.float32, copy=False),
        input_size=size,
        class_names=class_names(model, head.num_classes),
        method=method.name,
        layer=head.feature_layer,
        bias=head.bias[class_ids] if method.pooling_head else None,
        pooling=head.pooling_kind if method.pooling_head else None,
        output_activation=head.output_activation,
        dtype=precision,
        _maps=outputs["maps"].astype(np.float32, copy=False) if "maps" in outputs else None,
        _model=weakref.ref(keras_model_of(model)),
    )
