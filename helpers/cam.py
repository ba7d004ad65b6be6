"""Class activation maps (CAM) and Grad-CAM: the math, in a few lines each.

Introduced in notebook 03. **This is the file to open**: each method below is a plain
``keras.ops`` function, and the engine (:mod:`helpers._engine`) compiles these same functions;
what you read here is what runs.

Every method makes a class map as a **weighted sum of feature maps**. For the feature map
``A`` ``(B, h, w, k)`` of some layer (``k`` channels) and channel weights ``w_k^c`` for class ``c``,

    M_c(x, y) = Σ_k w_k^c A_k(x, y)                                     (:func:`weighted_sum`)

The methods differ only in where the weights come from:

* **CAM** (Zhou et al., CVPR 2016), for a network whose head is global pooling → Dense, with
  ``A = f``, the last feature map: ``w_k^c`` **is the Dense kernel** (:func:`cam_weights`). With
  global *average* pooling (GAP) the class score is

      S_c = Σ_k w_k^c · mean_{x,y} f_k(x, y) + b_c = mean_{x,y} M_c(x, y) + b_c,

  so the map says exactly where the score comes from. With global *max* pooling (GMP) the same
  weighted sum is the map (Zhou et al.'s GMP baseline), but ``S_c = Σ_k w_k^c max f_k + b_c``:
  each channel brings its own maximum, wherever it is, and no such identity holds.
* **Grad-CAM** (Selvaraju et al., ICCV 2017), for any convolutional classifier and any layer:
  ``w_k^c = α_k^c = mean_{x,y} ∂S_c/∂A_k(x, y)``, the spatial mean of the gradient of the
  logit (:func:`grad_cam_weights`). On a GAP → Dense network with ``A = f``,
  ``∂S_c/∂f_k(x, y) = w_k^c / (h·w)``: Grad-CAM is CAM / (h·w).
* **Grad-CAM++** (Chattopadhay et al., WACV 2018): positive gradients weighted per position by
  ``α`` from the second and third powers of the gradient (:func:`grad_cam_plus_plus_weights`).
* **Score-CAM** (Wang et al., CVPR-W 2020), gradient-free: the weight of channel ``k`` is how much
  the class score rises when the input is masked by that channel's map
  (:func:`score_cam_weights`); one forward pass per channel, so it is slow.

**Adding a method** is one weights function plus one entry in :data:`METHODS`. Its parameter
names say what it reads, and the engine passes exactly those (computing gradients only when
asked): ``features`` (``A``, ``(B, h, w, k)``), ``kernel`` (the Dense kernel ``(k, C)``; needs a
pooling head), ``class_ids`` (``(B, K)``, or None for every class in id order), ``logits``
(``(B, C)``), ``pooled_gradients`` (``Σ_{x,y} ∂S_c/∂A_k(x, y)``, ``(B, K, k)``), ``gradients``
(``∂S_c/∂A_k(x, y)``, ``(B, K, h, w, k)``) and ``masked_scores`` (the logit ``S_c`` of the input
masked by each channel's normalised, upsampled map, ``(B, K, k)``: one forward pass per channel).
It returns weights ``(B, K, k)`` (or ``(K, k)``, the same for every image).

How it runs (the engine's business, not needed to follow the math): two compiled programs per
model and kind of request (``tf.function`` on TensorFlow, ``jax.jit`` on JAX), the network once
per batch with its BatchNormalization layers folded into the convolutions, then the method on the
device; maps stay at feature resolution (``low_res``) and are upsampled once, after the sum (the
resize is linear, so summing first gives the same maps at a fraction of the cost).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import keras

from helpers._engine import CAMHead, find_head, run
from helpers.maps import CAMResult, normalize_cam, upsample_maps

__all__ = [
    "METHODS",
    "CAMHead",
    "CAMResult",
    "Method",
    "cam_weights",
    "class_activation_maps",
    "find_cam_head",
    "grad_cam",
    "grad_cam_plus_plus",
    "grad_cam_plus_plus_weights",
    "grad_cam_weights",
    "normalize_cam",
    "score_cam",
    "score_cam_weights",
    "upsample_maps",
    "weighted_sum",
]


# --------------------------------------------------------------------------------------------
# The math
# --------------------------------------------------------------------------------------------


def weighted_sum(features: Any, weights: Any) -> Any:
    """``M_c(x, y) = Σ_k w_k^c A_k(x, y)``: maps ``(B, K, h, w)`` from feature maps
    ``(B, h, w, k)`` and weights ``(B, K, k)`` per image, or ``(K, k)`` shared by all images."""
    if len(weights.shape) == 2:
        return keras.ops.einsum("bhwk,ck->bchw", features, weights)
    return keras.ops.einsum("bhwk,bck->bchw", features, weights)


def cam_weights(kernel: Any, class_ids: Any) -> Any:
    """CAM: ``w_k^c`` is the Dense kernel's column for class ``c``.

    ``kernel`` ``(k, C)``; ``class_ids`` ``(B, K)``, or None for all ``C`` classes (then one
    ``(C, k)`` matrix serves every image)."""
    per_class = keras.ops.transpose(kernel)  # (C, k)
    if class_ids is None:
        return per_class
    return keras.ops.take(per_class, class_ids, axis=0)  # (B, K, k)


def grad_cam_weights(pooled_gradients: Any, features: Any) -> Any:
    """Grad-CAM: ``α_k^c = (1 / (h·w)) Σ_{x,y} ∂S_c/∂A_k(x, y)``, the mean gradient of the
    logit over the map's ``h·w`` positions. ``(B, K, k)``."""
    height, width = keras.ops.shape(features)[1], keras.ops.shape(features)[2]
    return pooled_gradients / keras.ops.cast(height * width, "float32")


def grad_cam_plus_plus_weights(gradients: Any, features: Any) -> Any:
    """Grad-CAM++: ``w_k^c = Σ_{x,y} α_k^c(x, y) · relu(g(x, y))``, with ``g = ∂S_c/∂A_k`` and

        α = g² / (2 g² + s_k g³ + ε),   s_k = Σ_{a,b} A_k(a, b),   ε = 1e-6   (α = 0 where g = 0),

    as pytorch-grad-cam computes it (the raw logit, α not normalised). ``(B, K, k)``."""
    ops = keras.ops
    g2 = ops.square(gradients)  # (B, K, h, w, k)
    sums = ops.sum(features, axis=(1, 2))[:, None, None, None, :]  # s_k, (B, 1, 1, 1, k)
    alpha = g2 / (2.0 * g2 + sums * g2 * gradients + 1e-6)
    alpha = ops.where(ops.not_equal(gradients, 0.0), alpha, 0.0)
    return ops.sum(alpha * ops.relu(gradients), axis=(2, 3))


def score_cam_weights(masked_scores: Any) -> Any:
    """Score-CAM: each channel's map, upsampled and min-max scaled to [0, 1], masks the input;
    the logit of class ``c`` for each masked input, softmax-normalised over the channels, is the
    channel's weight: ``w_k^c = softmax_k(S_c(x ⊙ norm(up(A_k))))``. ``(B, K, k)``."""
    return keras.ops.softmax(masked_scores, axis=-1)


# --------------------------------------------------------------------------------------------
# The methods
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Method:
    """A map method: its name, its weights function, and whether it needs a pooling head.

    ``inputs`` (filled in from the weights function's parameter names) tells the engine what
    to compute for it; :meth:`maps` is the method itself: weights, then :func:`weighted_sum`.
    """

    name: str
    weights: Callable[..., Any]
    pooling_head: bool = False
    inputs: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "inputs", tuple(inspect.signature(self.weights).parameters))

    def maps(self, available: dict[str, Any]) -> Any:
        """``(B, K, h, w)`` maps from the engine's ``available`` inputs."""
        weights = self.weights(**{name: available[name] for name in self.inputs})
        return weighted_sum(available["features"], weights)


#: Every method, by name.
METHODS: dict[str, Method] = {
    "cam": Method("cam", cam_weights, pooling_head=True),
    "grad_cam": Method("grad_cam", grad_cam_weights),
    "grad_cam_plus_plus": Method("grad_cam_plus_plus", grad_cam_plus_plus_weights),
    "score_cam": Method("score_cam", score_cam_weights),
}


# --------------------------------------------------------------------------------------------
# The public functions
# --------------------------------------------------------------------------------------------


def find_cam_head(model: Any) -> CAMHead:
    """Find the ``feature map → GlobalAveragePooling2D | GlobalMaxPooling2D → Dense`` head.

    Introduced in notebook 03 (GAP) and notebook 04 (GMP).

    The search walks back from the model output by layer type: optional Activation/Softmax
    layers, then a ``Dense`` layer, then identity-at-inference layers (Dropout, GaussianNoise,
    Identity, Flatten, Reshape), then a ``GlobalAveragePooling2D`` or ``GlobalMaxPooling2D``
    whose input is the feature map. Nested Functional/Sequential models (a pretrained base inside
    a ``Sequential``, a base built with ``pooling="avg"``) are searched too. Cached per model.

    Parameters
    ----------
    model
        A :class:`helpers.Classifier` or a Keras Functional/Sequential model.

    Returns
    -------
    CAMHead
        ``feature_layer``, ``pooling``, ``dense``, ``feature_model``, ``weights``, ``bias``, ...

    Raises
    ------
    ValueError
        If the model has no such head; the message says what was found instead and points to
        :func:`grad_cam`, which works without global pooling.
    TypeError
        If ``model`` is neither a Classifier nor a Keras model.
    """
    return find_head(model, pooling=True)


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

    Parameters
    ----------
    model
        A :class:`helpers.Classifier` (its ``preprocess`` and class names are used) or any Keras
        Functional/Sequential model whose head is GAP or GMP → ``Dense`` (:func:`find_cam_head`),
        nested models included. A bare Keras model gets images already preprocessed for it (a
        list of arrays is resized to its input size, not normalised); class names are
        ``"class i"``. Logits are taken before the Dense layer's activation.
    images
        RGB images: an array ``(B, H, W, 3)``, one image ``(H, W, 3)``, or a list of differently
        sized ``(H, W, 3)`` arrays (each resized whole to the input size, never cropped).
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
        for the network (faster on GPUs). The weighting and the logits stay float32, so the
        identity below still holds to float32 precision, but the feature maps carry 16-bit
        rounding (maps differ from float32's by about 1e-2 (bfloat16) or 1e-3 (float16)).

    Returns
    -------
    CAMResult
        ``low_res`` ``(B, K, h, w)``, ``maps`` ``(B, K, H, W)``, ``class_ids`` ``(B, K)``,
        ``logits`` ``(B, num_classes)``, ``bias`` ``(B, K)``, ``pooling``. For a GAP head,
        ``low_res.mean(axis=(2, 3)) + bias == scores`` to float32 precision; for a GMP head
        (``pooling == "max"``) it does not hold.

    Raises
    ------
    ValueError
        No GAP/GMP → Dense head (the message points to :func:`grad_cam`), bad images, class ids
        or dtype.
    TypeError
        Non-integer class ids, a model that is neither a Classifier nor a Keras model.
    """
    return run(METHODS["cam"], model, images, classes, top_k, upsample=upsample, dtype=dtype)


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

    Introduced in notebook 03. ``α_k^c = mean_{x,y} ∂S_c / ∂A_k(x, y)``, where ``A`` is the target
    layer's output and ``S_c`` the logit of class ``c`` (:func:`grad_cam_weights`). The
    gradients of all requested classes come from one compiled program (``tf.GradientTape`` on
    TensorFlow, ``jax.vjp`` on JAX).

    Parameters
    ----------
    model, images, classes, top_k, upsample, dtype
        As in :func:`class_activation_maps`; the model needs a final ``Dense`` layer (optionally
        followed by Activation/Softmax), not a global pooling.
    layer
        Name of the target layer (a 4-D output); default: the input of the global pooling if
        there is one (``"top_relu"`` for EfficientNet-Lite0), else the last 4-D tensor before the
        final Dense layer that no pooling layer produced (``"block5_conv3"``, 14 × 14, for
        VGG-16, as in the Grad-CAM authors' code).

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
    return run(METHODS["grad_cam"], model, images, classes, top_k, layer,
               upsample=upsample, dtype=dtype)


def grad_cam_plus_plus(
    model: Any,
    images: Any,
    classes: Any = None,
    top_k: int | None = None,
    layer: str | None = None,
    *,
    upsample: bool = False,
    dtype: str | None = None,
) -> CAMResult:
    """Grad-CAM++ maps ``Σ_k w_k^c A_k`` (before ReLU), weights from
    :func:`grad_cam_plus_plus_weights`.

    Introduced in notebook 06. Arguments, result and errors as in :func:`grad_cam`
    (``method="grad_cam_plus_plus"``). The per-position gradients of all requested classes come
    from one compiled program; their memory (``B × K × h × w × k`` floats) is bounded by running
    the images in chunks, so ``classes="all"`` works but is slow.
    """
    return run(METHODS["grad_cam_plus_plus"], model, images, classes, top_k, layer,
               upsample=upsample, dtype=dtype)


def score_cam(
    model: Any,
    images: Any,
    classes: Any = None,
    top_k: int | None = None,
    layer: str | None = None,
    *,
    upsample: bool = False,
    dtype: str | None = None,
) -> CAMResult:
    """Score-CAM maps ``Σ_k w_k^c A_k`` (before ReLU), weights from :func:`score_cam_weights`.

    Introduced in notebook 06. Arguments, result and errors as in :func:`grad_cam`
    (``method="score_cam"``), on every backend (no gradients). Costs one forward pass of the
    network per channel of ``layer`` and image (1,280 on EfficientNet-Lite0's last layer), run
    in batches bounded in memory: choose a layer with fewer channels, or few images.
    """
    return run(METHODS["score_cam"], model, images, classes, top_k, layer,
               upsample=upsample, dtype=dtype)
