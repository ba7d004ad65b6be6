"""Gradients of the class scores with respect to a feature map, per backend.

Part of the private CAM engine (:mod:`helpers._engine`). Inside a compiled program:
``tf.GradientTape`` on TensorFlow, ``jax.vjp`` on JAX. Two kinds, for ``K`` requested classes:

* **pooled**, ``Σ_{x,y} ∂S_c/∂A_k(x, y)`` ``(B, K, k)``: the gradient with respect to a spatially
  constant shift ``d`` ``(B, 1, 1, k)`` added to ``A``, since ``∂S/∂d_k = Σ_{x,y} ∂S/∂A_k(x, y)``;
  every class's pooled gradient at ``(B, K, k)`` memory (1000 classes stay cheap);
* **per position**, ``∂S_c/∂A_k(x, y)`` ``(B, K, h, w, k)``, for methods that weight positions
  (Grad-CAM++).

Images are independent at inference, so row ``b`` of a batched gradient is image ``b``'s.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras

__all__ = ["BACKENDS", "class_gradients"]

#: Backends with gradients inside compiled programs.
BACKENDS = ("tensorflow", "jax")


def _tensorflow(logits_of: Callable, choose: Callable, features: Any, per_position: bool) -> Any:
    import tensorflow as tf

    target = features if per_position else tf.zeros_like(features[:, :1, :1, :])
    with tf.GradientTape() as tape:
        tape.watch(target)
        logits = logits_of(target if per_position else features + target)
        ids = choose(tf.stop_gradient(logits))
        selected = tf.gather(logits, ids, batch_dims=1)  # (B, K)
    jacobian = tape.batch_jacobian(selected, target)  # (B, K, h, w, k) or (B, K, 1, 1, k)
    return logits, ids, jacobian if per_position else jacobian[:, :, 0, 0, :]


def _jax(logits_of: Callable, choose: Callable, features: Any, per_position: bool) -> Any:
    import jax
    import jax.numpy as jnp

    if per_position:
        logits, pullback = jax.vjp(logits_of, features)
    else:
        shift = jnp.zeros_like(features[:, :1, :1, :])
        logits, pullback = jax.vjp(lambda d: logits_of(features + d), shift)
    ids = choose(jax.lax.stop_gradient(logits))
    cotangents = jax.nn.one_hot(jnp.swapaxes(ids, 0, 1), logits.shape[-1], dtype=logits.dtype)
    (gradients,) = jax.vmap(pullback)(cotangents)  # (K, B, ...): one pull-back per class
    gradients = jnp.swapaxes(gradients, 0, 1)
    return logits, ids, gradients if per_position else gradients[:, :, 0, 0, :]


def class_gradients(logits_of: Callable[[Any], Any], choose: Callable[[Any], Any], features: Any,
                    *, per_position: bool) -> tuple[Any, Any, Any]:
    """``(logits (B, C), class ids (B, K), gradients)`` of the chosen classes' logits with
    respect to ``features`` ``(B, h, w, k)``; ``choose(logits)`` picks the ids (no gradient flows
    through it). Gradients are pooled ``(B, K, k)`` or per position ``(B, K, h, w, k)``."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        return _tensorflow(logits_of, choose, features, per_position)
    if backend == "jax":
        return _jax(logits_of, choose, features, per_position)
    raise NotImplementedError(
        f"gradient methods are implemented for the TensorFlow and JAX backends; the current "
        f"Keras backend is {backend!r}. Set KERAS_BACKEND=tensorflow or jax, or use "
        "class_activation_maps, which runs on every backend."
    )
