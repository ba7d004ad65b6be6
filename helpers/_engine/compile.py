"""Compiling keras.ops functions per backend, with one cache and counters.

Part of the private CAM engine (:mod:`helpers._engine`). ``tf.function`` on TensorFlow, ``jax.jit``
on JAX (the weights passed in as arguments, so training is seen at the next call), the function
itself on other backends. Networks run with BatchNormalization folded into the convolutions
(:func:`helpers._engine.graph.fold_batch_norm`) unless folding is switched off.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import weakref
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import keras

from helpers._engine.graph import FoldedConvBatchNorm, all_layers, fold_batch_norm

__all__ = [
    "MAX_PROGRAMS_PER_MODEL", "PRECISIONS", "cached", "cached_count", "compile_function",
    "compiled_forward", "counters", "folding", "inference_model", "network_program", "traced",
]

#: Precisions of the network pass: float32, or Keras mixed precision (16-bit compute, float32
#: weights). The weighting of the maps and the logits are computed in float32 either way.
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")

#: What the engine has done so far: ``builds`` (folded graphs and programs made and cached),
#: ``traces`` (Python runs of a program's body: once per program on TensorFlow, once per input
#: shape on JAX, every call when eager),
#: ``network_calls`` (forward passes over a batch of images).
counters: Counter[str] = Counter()

_FOLD = {"enabled": True}
#: Per model (weakly held): what was built for it. No value may hold its key (a model, or a
#: sub-model in a key): the entry would then keep the model alive for good.
_CACHE: weakref.WeakKeyDictionary[keras.Model, dict[Any, Any]] = weakref.WeakKeyDictionary()
#: Two threads building for one model build once (re-entrant: a build may build more).
_LOCK = threading.RLock()


@contextlib.contextmanager
def folding(enabled: bool) -> Iterator[None]:
    """Within the block, programs built from now on run networks folded (True) or as they are
    (False). Programs already built keep what they were built with."""
    previous, _FOLD["enabled"] = _FOLD["enabled"], bool(enabled)
    try:
        yield
    finally:
        _FOLD["enabled"] = previous


#: The most programs kept per model: a program is made per distinct request (``top_k``, output
#: size, layer, precision), so a loop over requests would otherwise keep one program (and, on
#: TensorFlow, its graph) per value for as long as the model lives. The least recently used goes.
MAX_PROGRAMS_PER_MODEL = 24


def cached(model: keras.Model, key: Any, build: Callable[[], Any]) -> Any:
    """The engine's one cache: ``build()`` once per ``model`` (weakly held) and ``key``, at most
    :data:`MAX_PROGRAMS_PER_MODEL` per model (least recently used dropped first; counted as
    ``evictions``). The folding switch is part of every key."""
    with _LOCK:
        programs = _CACHE.setdefault(model, {}).setdefault("programs", OrderedDict())
        full_key = (key, _FOLD["enabled"])
        if full_key in programs:
            programs.move_to_end(full_key)
        else:
            programs[full_key] = build()
            counters["builds"] += 1
            while len(programs) > MAX_PROGRAMS_PER_MODEL:
                programs.popitem(last=False)
                counters["evictions"] += 1
        return programs[full_key]


def cached_count(model: keras.Model) -> int:
    """How many programs are cached for ``model`` now."""
    with _LOCK:
        return len(_CACHE.get(model, {}).get("programs", ()))


def inference_model(model: keras.Model, store: dict | None = None) -> keras.Model:
    """``model`` with BatchNormalization folded into the convolutions before it (same
    variables), built once per model; the model itself when folding is off or impossible.

    The folded copy is kept in ``store`` (a head keeps those of its sub-models, so that they go
    with it), by default in the cache entry of ``model``. Where nothing folds, only that fact is
    kept, not the model: an entry that held its own key would never be freed."""
    if not _FOLD["enabled"]:
        return model
    with _LOCK:
        if store is None:
            store = _CACHE.setdefault(model, {})
        key = ("folded", id(model))  # the store lives no longer than the model
        if key not in store:
            try:
                folded = fold_batch_norm(model)
            except (TypeError, ValueError):
                folded = model
            store[key] = None if folded is model else folded
            counters["builds"] += 1
        return model if store[key] is None else store[key]


@contextlib.contextmanager
def _precision(layers: list[Any], precision: str) -> Iterator[None]:
    """Give float32 ``layers`` the dtype policy ``precision`` while a program is traced, then
    restore it: mixed precision without a copy of the model (weights stay shared)."""
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


def traced(body: Callable[..., Any], layers: list[Any], precision: str, *args: Any) -> Any:
    """Run ``body(*args)`` with ``layers`` in ``precision``, counting the run as a trace."""
    counters["traces"] += 1
    with _precision(layers, precision):
        return body(*args)


def compile_function(function: Callable[..., Any], variables: list[Any],
                     signature: list[tuple[tuple, str]]) -> Callable[..., Any]:
    """Compile ``function(*tensors)`` for the current Keras backend.

    TensorFlow: a ``tf.function`` with ``signature`` (``(shape, dtype)`` per argument, ``None``
    where free, so that one trace serves every batch size). JAX: ``jax.jit`` of a pure function
    that gets the current values of ``variables`` (every Keras variable ``function`` reads) as
    arguments, mapped in with a ``keras.StatelessScope``. Other backends: ``function`` itself.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        specs = [tf.TensorSpec(shape, dtype) for shape, dtype in signature]
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


def network_program(network: Callable[[Any], Any], model: keras.Model, extra_variables: list[Any],
                    precision: str, store: dict | None = None) -> Callable[..., Any]:
    """``network(images)`` compiled: it runs ``model``'s inference graph (folded now, eagerly,
    never while tracing; kept in ``store``, see :func:`inference_model`) in ``precision``;
    ``extra_variables`` are other variables it reads."""
    layers = all_layers(inference_model(model, store))
    return compile_function(
        functools.partial(traced, network, layers, precision),
        [*model.variables, *extra_variables],
        [((None, *model.inputs[0].shape[1:]), "float32")],
    )


def _forward(reference: Any, batch: Any) -> Any:
    return inference_model(reference())(batch, training=False)


def compiled_forward(model: keras.Model) -> Callable[[Any], Any]:
    """``images → model outputs``, compiled once per model: the folded forward pass (the
    benchmark's classification baseline)."""
    reference = weakref.ref(model)  # the cache must not keep its key alive
    return cached(model, "forward", lambda: network_program(
        functools.partial(_forward, reference), model, [], "float32"))
