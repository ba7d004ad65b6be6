"""Guided Backpropagation and Guided Grad-CAM: maps in input space, pixel by pixel.

Introduced in notebook 06. **The math, in a few lines each:**

* **Guided Backpropagation** (Springenberg et al., *Striving for Simplicity: The All
  Convolutional Net*, ICLR-W 2015): the gradient of the class logit ``S_c`` with respect to the
  input image, where every ReLU's backward pass lets through only **positive** gradients at
  **positive** inputs. For ``y = relu(x)`` with upstream gradient ``g = ∂S_c/∂y``, the ordinary
  rule is ``∂S_c/∂x = g · [x > 0]``; the guided rule is ``relu(g) · [x > 0]``
  (:func:`guided_relu`).
* **ReLU6** (``min(max(x, 0), 6)``, EfficientNet-Lite0's activation): the guided rule replaces
  its positive-part gate, and the cap keeps its ordinary derivative: ``relu(g) · [0 < x < 6]``
  (the output does not change with ``x`` above 6, so no gradient flows there). xplique's
  ``guided_relu_policy`` keeps ``max_value`` in the forward pass but passes ``relu(g) · [x > 0]``,
  also through the cap.
* **Guided Grad-CAM** (Selvaraju et al., ICCV 2017): guided backpropagation times the Grad-CAM
  map ``L_c = relu(Σ_k α_k^c A_k)``, upsampled bilinearly to the input size:
  ``G_c(x, y, channel) = guided_c(x, y, channel) · up(L_c)(x, y)`` (:func:`guided_grad_cam`).
  pytorch-grad-cam multiplies by the min-max scaled ``L_c``: the same picture up to a positive
  factor per map where ``min L_c = 0``.

The engine (:mod:`helpers._engine.saliency`) swaps every ReLU of the network (``relu``/``relu6``
activations of any layer, ``ReLU`` layers) for :func:`guided_relu` while it traces the compiled
gradient program, with ``keras.ops.custom_gradient`` on TensorFlow and JAX; the model itself is
left unchanged. Gradients are with respect to the model's input, i.e. the preprocessed image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np

from helpers._engine import input_gradients
from helpers.cam import activation_maps
from helpers.maps import CAMResult, upsample_maps

__all__ = ["GuidedResult", "guided_backprop", "guided_grad_cam", "guided_relu"]


def guided_relu(cap: float | None = None) -> Any:
    """``relu`` (``cap`` None) or ``min(relu, cap)`` forward; backward, the guided rule
    ``∂S/∂x = relu(g) · [0 < x < cap]`` for the upstream gradient ``g``."""
    ops = keras.ops

    @ops.custom_gradient
    def relu(x: Any) -> Any:
        def backward(*args: Any, upstream: Any = None) -> Any:
            upstream = args[0] if upstream is None else upstream  # TensorFlow: positional
            gate = x > 0 if cap is None else ops.logical_and(x > 0, x < cap)
            return ops.relu(upstream) * ops.cast(gate, upstream.dtype)

        return (ops.relu(x) if cap is None else ops.clip(x, 0.0, cap)), backward

    return relu


@dataclass(eq=False)
class GuidedResult:
    """Input-space maps of ``B`` images for ``K`` classes each (a :class:`CAMResult` holds maps
    at feature resolution and upsamples them; these are per pixel and per colour channel).

    Attributes
    ----------
    maps
        ``(B, K, H, W, C)``: the guided gradient (``"guided_backprop"``) or its product with the
        upsampled ReLU'd Grad-CAM map (``"guided_grad_cam"``), with respect to the model input.
    class_ids
        ``(B, K)`` class ids, row ``b`` for image ``b``.
    logits
        ``(B, num_classes)`` class scores (the ordinary forward pass).
    class_names
        ``num_classes`` names.
    method
        ``"guided_backprop"`` or ``"guided_grad_cam"``.
    relus
        How many ReLU activations the guided rule replaced (0: the plain input gradient).
    grad_cam
        Guided Grad-CAM: the Grad-CAM result it multiplied by (its ``layer`` is the target layer).
    """

    maps: np.ndarray
    class_ids: np.ndarray
    logits: np.ndarray
    class_names: tuple[str, ...] = field(repr=False)
    method: str = "guided_backprop"
    relus: int = 0
    grad_cam: CAMResult | None = field(default=None, repr=False)

    @property
    def scores(self) -> np.ndarray:
        """``(B, K)`` logits of the requested classes."""
        return np.take_along_axis(self.logits, self.class_ids, axis=1)


def guided_backprop(model: Any, images: Any, classes: Any = None, top_k: int | None = None,
                    layer: str | None = None) -> GuidedResult:
    """Guided Backpropagation (Springenberg et al., 2015): ``∂S_c/∂x`` with guided ReLUs.

    Introduced in notebook 06. Arguments as :func:`helpers.grad_cam` (``layer`` only says where
    the network is cut for the head finder; the gradient runs through the whole network to the
    input). Returns a :class:`GuidedResult` with ``maps`` ``(B, K, H, W, C)``.

    Raises
    ------
    ValueError, TypeError
        As :func:`helpers.activation_maps` (images, classes, layer).
    NotImplementedError
        On a Keras backend other than TensorFlow and JAX.
    """
    out = input_gradients(model, images, classes, top_k, layer, guided_relu)
    return GuidedResult(maps=out["gradients"], class_ids=out["class_ids"], logits=out["logits"],
                        class_names=out["class_names"], method="guided_backprop", relus=out["relus"])


def guided_grad_cam(model: Any, images: Any, classes: Any = None, top_k: int | None = None,
                    layer: str | None = None) -> GuidedResult:
    """Guided Grad-CAM (Selvaraju et al., 2017): guided backpropagation ⊙ ``up(relu(Grad-CAM))``.

    Introduced in notebook 06. Arguments as :func:`helpers.grad_cam` (``layer``: Grad-CAM's target
    layer). Returns a :class:`GuidedResult` with ``maps`` ``(B, K, H, W, C)`` and ``grad_cam``.
    Errors as :func:`guided_backprop`."""
    guided = guided_backprop(model, images, classes, top_k, layer)
    grad_cam = activation_maps(model, images, guided.class_ids, layer=layer, method="grad_cam")
    localisation = upsample_maps(np.maximum(grad_cam.low_res, 0.0), guided.maps.shape[2:4])  # (B, K, H, W)
    return GuidedResult(maps=guided.maps * localisation[..., None], class_ids=guided.class_ids,
                        logits=guided.logits, class_names=guided.class_names,
                        method="guided_grad_cam", relus=guided.relus, grad_cam=grad_cam)
