"""Class activation maps (CAM) and Grad-CAM: the math, in a few lines each.

Introduced in notebook 03. **This is the file to open**: each method below is a plain
``keras.ops`` function, and the engine (:mod:`helpers._engine`) compiles these same functions;
what you read here is what runs.

Every method makes a class map as a **weighted sum of feature maps**. For the feature map
``A`` ``(B, h, w, k)`` of some layer (``k`` channels) and channel weights ``w_k^c`` for class ``c``,

    M_c(x, y) = Σ_k w_k^c A_k(x, y)                                     (:func:`weighted_sum`)

(a method may also weight each position: ``w_k^c(x, y)``). The methods differ only in where the
weights come from:

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
* **Score-CAM** (Wang et al., CVPR-W 2020), gradient-free: each channel's map, upsampled and
  min-max scaled, masks the input (:func:`score_cam_masks`); the weight of channel ``k`` is the
  class *probability* of that masked input, as the authors' code (haofanwang/Score-CAM) computes
  it (:func:`score_cam_weights`). pytorch-grad-cam instead takes a softmax over the channels of
  the masked inputs' logits (:func:`score_cam_softmax_weights`, method ``"score_cam_softmax"``).
  One forward pass per channel, so it is slow.
* **HiResCAM** (Draelos & Carin, 2020): the gradient itself weights each position,
  ``M_c = Σ_k ∂S_c/∂A_k ⊙ A_k`` (:func:`hires_cam_weights`); on GAP → Dense with ``A = f`` it
  is CAM / (h·w) exactly, signed, like Grad-CAM, but unlike Grad-CAM it stays faithful to the
  score at any layer (no averaging of the gradient over the map).
* **LayerCAM** (Jiang et al., IEEE TIP 2021): only the positive gradients weight each position,
  ``M_c = Σ_k relu(∂S_c/∂A_k) ⊙ A_k`` (:func:`layer_cam_weights`).

Every ``low_res`` is the weighted sum **before any ReLU** (signed): pytorch-grad-cam applies
``max(·, 0)`` to every method's sum afterwards (``BaseCAM.compute_cam_per_layer``), for
HiResCAM and LayerCAM too; here that is the display's business (a diverging colour map shows
the negative part).

**Adding a method** is one weights function plus one entry in :data:`METHODS`. Its parameter
names say what it reads, and the engine passes exactly those (computing gradients only when
asked): ``features`` (``A``, ``(B, h, w, k)``), ``kernel`` (the Dense kernel ``(k, C)``; needs a
pooling head), ``class_ids`` (``(B, K)``, or None for every class in id order), ``logits``
(``(B, C)``), ``pooled_gradients`` (``Σ_{x,y} ∂S_c/∂A_k(x, y)``, ``(B, K, k)``), ``gradients``
(``∂S_c/∂A_k(x, y)``, ``(B, K, h, w, k)``) and ``masked_logits`` (the logits of the input times
each of the method's ``masks``, ``(B, k, C)``: one forward pass per channel). It returns weights
``(B, K, k)``, ``(K, k)`` (the same for every image) or ``(B, K, h, w, k)`` (per position). A
misspelt parameter name is refused when the :class:`Method` is made.

How it runs (the engine's business, not needed to follow the math): two compiled programs per
model and kind of request (``tf.function`` on TensorFlow, ``jax.jit`` on JAX), the network once
per batch with its BatchNormalization layers folded into the convolutions, then the method on the
device; maps stay at feature resolution (``low_res``) and are upsampled once, after the sum (the
resize is linear, so summing first gives the same maps at a fraction of the cost).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import keras

from helpers._engine import CAMHead, compiled_forward, find_head, keras_model_of, method_inputs, run
from helpers.checks import choice
from helpers.maps import CAMResult, normalize_cam, resize_maps, upsample_maps

__all__ = ["METHODS", "SCORE_CAM_WEIGHTINGS", "CAMHead", "CAMResult", "Method", "activation_maps",
           "cam_weights", "class_activation_maps", "find_cam_head", "forward", "grad_cam",
           "grad_cam_plus_plus", "grad_cam_plus_plus_weights", "grad_cam_weights", "hires_cam",
           "hires_cam_weights", "keras_model_of", "layer_cam", "layer_cam_weights",
           "normalize_cam", "score_cam", "score_cam_masks", "score_cam_softmax_weights",
           "score_cam_weights", "upsample_maps", "weighted_sum"]


# --------------------------------------------------------------------------------------------
# The math
# --------------------------------------------------------------------------------------------


def weighted_sum(features: Any, weights: Any) -> Any:
    """``M_c(x, y) = Σ_k w_k^c A_k(x, y)``: maps ``(B, K, h, w)`` from feature maps
    ``(B, h, w, k)`` and weights ``(B, K, k)`` per image, ``(K, k)`` shared by all images, or
    ``(B, K, h, w, k)`` per position (``Σ_k w_k^c(x, y) A_k(x, y)``)."""
    per = {2: "ck", 3: "bck", 5: "bchwk"}.get(len(weights.shape))
    if per is None:
        raise ValueError(f"weights must be (K, k), (B, K, k) or (B, K, h, w, k), got shape "
                         f"{tuple(weights.shape)}")
    return keras.ops.einsum(f"bhwk,{per}->bchw", features, weights)


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


def hires_cam_weights(gradients: Any) -> Any:
    """HiResCAM: every position weighted by the gradient there, ``w_k^c(x, y) = ∂S_c/∂A_k(x, y)``,
    signed (pytorch-grad-cam's ``HiResCAM.get_cam_image``: ``(grads * activations).sum(1)``).
    ``(B, K, h, w, k)``."""
    return gradients


def layer_cam_weights(gradients: Any) -> Any:
    """LayerCAM: every position weighted by its positive gradient,
    ``w_k^c(x, y) = relu(∂S_c/∂A_k(x, y))`` (pytorch-grad-cam's ``LayerCAM.get_cam_image``:
    ``(np.maximum(grads, 0) * activations).sum(1)``). ``(B, K, h, w, k)``."""
    return keras.ops.relu(gradients)


def score_cam_masks(channel_maps: Any, size: tuple[int, int]) -> Any:
    """Score-CAM's masks: each channel's map ``A_k`` ``(n, h, w)`` upsampled to the input's
    ``size`` and min-max scaled to [0, 1], ``norm(up(A_k))``: ``(n, H, W)``."""
    ops = keras.ops
    up = resize_maps(channel_maps, size)
    low = ops.min(up, axis=(1, 2), keepdims=True)
    high = ops.max(up, axis=(1, 2), keepdims=True)
    return (up - low) / (high - low + 1e-8)


def _class_rows(values: Any, class_ids: Any) -> Any:
    """``(B, k, C)`` values per channel and class → ``(B, K, k)``: the requested classes' rows
    (``class_ids`` ``(B, K)``), or every class in id order (None)."""
    ops = keras.ops
    rows = ops.transpose(values, (0, 2, 1))  # (B, C, k)
    if class_ids is None:
        return rows
    choice = ops.one_hot(class_ids, ops.shape(rows)[1], dtype="float32")  # (B, K, C)
    return ops.einsum("bck,bjc->bjk", rows, choice)


def score_cam_weights(masked_logits: Any, features: Any, class_ids: Any) -> Any:
    """Score-CAM as its authors compute it: ``w_k^c = softmax_c'(S_c'(x ⊙ norm(up(A_k))))_c``,
    the class **probability** (softmax over the classes) of the input masked by channel ``k``;
    no baseline is subtracted, and a channel whose map is constant gets weight 0 (the authors
    skip it). ``(B, K, k)``.

    ``masked_logits`` ``(B, k, C)``: every class's logit for each of the ``k`` masked inputs.
    The authors' final map is ``relu`` of the weighted sum, min-max scaled:
    ``normalize_cam(np.maximum(result.maps, 0))`` (``low_res`` stays before the ReLU)."""
    ops = keras.ops
    probabilities = _class_rows(ops.softmax(masked_logits, axis=-1), class_ids)  # (B, K, k)
    varies = ops.max(features, axis=(1, 2)) > ops.min(features, axis=(1, 2))  # (B, k)
    return ops.where(varies[:, None, :], probabilities, 0.0)


def score_cam_softmax_weights(masked_logits: Any, class_ids: Any) -> Any:
    """Score-CAM as pytorch-grad-cam computes it: the logit of class ``c`` for each masked input,
    softmax-normalised over the **channels**: ``w_k^c = softmax_k(S_c(x ⊙ norm(up(A_k))))``;
    constant channels (an all-zero mask) are kept. ``(B, K, k)``."""
    return keras.ops.softmax(_class_rows(masked_logits, class_ids), axis=-1)


# --------------------------------------------------------------------------------------------
# The methods
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Method:
    """A map method: its name, its weights function, whether it needs a pooling head, and (for
    methods that read ``masked_logits``) the function that makes input masks from channel maps.

    ``inputs`` (filled in from the weights function's parameter names) tells the engine what
    to compute for it; :meth:`maps` is the method itself: weights, then :func:`weighted_sum`.

    Raises
    ------
    ValueError
        A parameter name the engine does not provide (the message lists those it does), or
        ``masked_logits`` without ``masks``.
    """

    name: str
    weights: Callable[..., Any]
    pooling_head: bool = False
    masks: Callable[[Any, tuple[int, int]], Any] | None = None
    inputs: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:  # the engine checks the names (see the Raises above)
        object.__setattr__(self, "inputs", method_inputs(self.name, self.weights, self.masks))

    def maps(self, available: dict[str, Any]) -> Any:
        """``(B, K, h, w)`` maps from the engine's ``available`` inputs."""
        weights = self.weights(**{name: available[name] for name in self.inputs})
        return weighted_sum(available["features"], weights)


#: Every method, by name.
METHODS: dict[str, Method] = {
    "cam": Method("cam", cam_weights, pooling_head=True),
    "grad_cam": Method("grad_cam", grad_cam_weights),
    "grad_cam_plus_plus": Method("grad_cam_plus_plus", grad_cam_plus_plus_weights),
    "score_cam": Method("score_cam", score_cam_weights, masks=score_cam_masks),
    "hires_cam": Method("hires_cam", hires_cam_weights),
    "layer_cam": Method("layer_cam", layer_cam_weights),
    "score_cam_softmax": Method("score_cam_softmax", score_cam_softmax_weights,
                                masks=score_cam_masks),
}

#: Score-CAM's weightings: ``score_cam(..., weighting=...)`` → the method run.
SCORE_CAM_WEIGHTINGS = {"probability": "score_cam", "softmax": "score_cam_softmax"}


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


def activation_maps(
    model: Any,
    images: Any,
    classes: Any = None,
    top_k: int | None = None,
    layer: str | None = None,
    *,
    method: str | Method = "cam",
    upsample: bool = False,
    dtype: str | None = None,
) -> CAMResult:
    """Maps of any method, for a batch of images: the one entry point behind every named function.

    Introduced in notebook 03 (CAM, Grad-CAM) and notebook 06 (Grad-CAM++, Score-CAM, HiResCAM,
    LayerCAM).

    Parameters
    ----------
    model
        A :class:`helpers.Classifier` (its preprocessing and class names are used) or any Keras
        Functional/Sequential model ending in a ``Dense`` layer (optionally followed by
        Activation/Softmax), nested models included. CAM needs a GAP or GMP → ``Dense`` head
        (:func:`find_cam_head`). A bare Keras model gets images already preprocessed for it (a
        list of arrays is resized to its input size, not normalised); class names are
        ``"class i"``. Logits are taken before the Dense layer's activation.
    images
        RGB images: an array ``(B, H, W, 3)``, one image ``(H, W, 3)``, a list of differently
        sized ``(H, W, 3)`` arrays (each resized whole to the input size, never cropped), or a
        dict (its values, e.g. :func:`helpers.sample_images`).
    classes
        ``None`` (top-1, or the top ``top_k`` by logit), a sequence of class ids used for every
        image (``(K,)``), a ``(B, K)`` array of class ids per image, or ``"all"`` (every class in
        id order, in one pass).
    top_k
        With ``classes=None``: how many top classes per image (1..num_classes).
    layer
        Gradient and score methods: name of the target layer (a 4-D output); default: the input
        of the global pooling if there is one (``"top_relu"`` for EfficientNet-Lite0), else the
        last 4-D tensor before the final Dense layer that no pooling layer produced
        (``"block5_conv3"``, 14 × 14, for VGG-16, as in the Grad-CAM authors' code). CAM always
        weights the pooling's input.
    method
        A name in :data:`METHODS` (``"cam"``, ``"grad_cam"``, ``"grad_cam_plus_plus"``,
        ``"score_cam"`` (the authors' probability weights), ``"score_cam_softmax"``
        (pytorch-grad-cam's softmax over channels), ``"hires_cam"``, ``"layer_cam"``) or a
        :class:`Method` of your own.
    upsample
        Also compute the upsampled maps ``(B, K, H, W)`` in the same compiled call (otherwise
        :attr:`CAMResult.maps` upsamples on first access). Refused above 1 GiB of maps.
    dtype
        ``None`` (float32), ``"mixed_bfloat16"`` or ``"mixed_float16"``: Keras mixed precision
        for the network (faster on GPUs). The weighting and the logits stay float32, but the
        feature maps carry 16-bit rounding (maps differ from float32's by about 1e-2 (bfloat16)
        or 1e-3 (float16)).

    Returns
    -------
    CAMResult
        ``low_res`` ``(B, K, h, w)``, ``maps`` ``(B, K, H, W)``, ``class_ids`` ``(B, K)``,
        ``logits`` ``(B, num_classes)``, ``method``, ``layer``; for CAM also ``bias`` ``(B, K)``
        and ``pooling``. For CAM of a GAP head, ``low_res.mean(axis=(2, 3)) + bias == scores``
        to float32 precision; for a GMP head (``pooling == "max"``) it does not hold.

    Raises
    ------
    ValueError
        An unknown method, no suitable head or layer (for CAM the message points to
        :func:`grad_cam`), bad images, class ids or dtype, or per-position gradients too large.
    TypeError
        Non-integer class ids, a model that is neither a Classifier nor a Keras model.
    NotImplementedError
        A gradient method on a Keras backend other than TensorFlow and JAX.

    Notes
    -----
    Gradient methods run in chunks of images bounded in memory, so ``classes="all"`` works but
    is slow. Score-CAM costs one forward pass per channel of ``layer`` and image (1,280 on
    EfficientNet-Lite0's last layer): choose a layer with fewer channels, or few images.
    """
    if isinstance(method, str):
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)} (or pass a "
                             "helpers.cam.Method)")
        method = METHODS[method]
    elif not isinstance(method, Method):
        raise TypeError(f"method must be a name in {list(METHODS)} or a helpers.cam.Method, got "
                        f"{type(method).__name__}")
    return run(method, model, images, classes, top_k, layer, upsample=upsample, dtype=dtype)


def _named(method: str, title: str, notebook: str) -> Callable[..., CAMResult]:
    """The named function of a method: :func:`activation_maps` with ``method`` set."""
    named = functools.partial(activation_maps, method=method)
    named.__doc__ = (f"{title}: ``activation_maps(model, images, classes, top_k, layer, "
                     f"method={method!r}, ...)``.\n\nIntroduced in notebook {notebook}. "
                     "Arguments, result and errors: see :func:`activation_maps`.")
    return named


class_activation_maps = _named("cam", "Class activation maps (Zhou et al., 2016)", "03")
grad_cam = _named("grad_cam", "Grad-CAM maps before ReLU (Selvaraju et al., 2017)", "03")
grad_cam_plus_plus = _named("grad_cam_plus_plus", "Grad-CAM++ maps before ReLU", "06")
hires_cam = _named("hires_cam", "HiResCAM maps, signed (Draelos & Carin, 2020)", "06")
layer_cam = _named("layer_cam", "LayerCAM maps before ReLU (Jiang et al., 2021)", "06")


def score_cam(model: Any, images: Any, classes: Any = None, top_k: int | None = None,
              layer: str | None = None, *, weighting: str = "probability",
              upsample: bool = False, dtype: str | None = None) -> CAMResult:
    """Score-CAM maps before ReLU (Wang et al., 2020): ``activation_maps(..., method=...)``.

    Introduced in notebook 06. ``weighting="probability"`` (default) is the authors' weight,
    the class probability of each masked input (:func:`score_cam_weights`, method
    ``"score_cam"``); ``"softmax"`` is pytorch-grad-cam's softmax over the channels of the masked
    inputs' logits (:func:`score_cam_softmax_weights`, method ``"score_cam_softmax"``).
    ``result.method`` says which ran. Other arguments, result and errors: see
    :func:`activation_maps` (an unknown ``weighting`` is a ValueError naming both)."""
    weighting = choice("weighting", weighting, SCORE_CAM_WEIGHTINGS)
    return activation_maps(model, images, classes, top_k, layer,
                           method=SCORE_CAM_WEIGHTINGS[weighting], upsample=upsample, dtype=dtype)


def forward(model: Any) -> Callable[[Any], Any]:
    """The model's compiled forward pass (``tf.function`` / ``jax.jit``, BatchNormalization
    folded), built once per model: preprocessed images → its outputs (logits for a classifier),
    for callers that run many batches (notebook 05's pooled features, notebook 06's curves)."""
    return compiled_forward(keras_model_of(model))
