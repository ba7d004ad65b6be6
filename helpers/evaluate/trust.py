"""Which map can we trust? Two measurements that do not need true boxes.

Introduced in notebook 06.

* **Sanity check** (Adebayo et al., *Sanity Checks for Saliency Maps*, NeurIPS 2018): a map that
  explains the *model* must change when the model's weights are destroyed. Cascading
  randomisation re-initialises the layers from the top down, one stage at a time, and compares
  each method's maps with the maps of the trained model (rank correlation, SSIM).
  :func:`randomize_layers` re-initialises layers for the duration of a ``with`` block.
* **Faithfulness** (Petsiuk et al., *RISE*, BMVC 2018): delete the pixels a map ranks highest
  first, and the class probability should fall fast (a small area under the **deletion** curve);
  insert them first into a blurred copy, and it should rise fast (a large area under the
  **insertion** curve). :func:`deletion_insertion` computes both curves and their areas.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from helpers.cam import forward, keras_model_of
from helpers.checks import integer, number
from helpers.images import resize_images, to_rgb_batch
from helpers.maps import softmax, upsample_maps
from helpers.models import Classifier

__all__ = ["FaithfulnessCurves", "deletion_insertion", "randomize_layers"]

#: Images per forward pass of the curves (a batch's activations, not its images, fill memory).
FORWARD_BATCH = 16

def _initializer_of(layer: Any, variable: Any) -> Any:
    """The initializer that drew ``variable`` of ``layer``: its ``<name>_initializer`` (for
    ``depthwise_kernel`` also ``depthwise_initializer``; a DepthwiseConv2D's ``kernel`` has
    ``depthwise_initializer``)."""
    name = str(variable.name).split("/")[-1].split(":")[0]
    candidates = [f"{name}_initializer", f"{name.removesuffix('_kernel')}_initializer"]
    if name == "kernel":
        candidates.append("depthwise_initializer")
    for attribute in candidates:
        initializer = getattr(layer, attribute, None)
        if initializer is not None:
            return initializer
    raise ValueError(f"cannot re-initialise layer {layer.name!r}: its variable {name!r} has no "
                     f"initializer (looked for {', '.join(candidates)}); leave the layer out")


def _fresh_value(initializer: Any, shape: tuple[int, ...], seed: int) -> Any:
    config = initializer.get_config()
    if "seed" in config:
        initializer = type(initializer).from_config({**config, "seed": seed})
    return initializer(shape, dtype="float32")


@contextlib.contextmanager
def randomize_layers(model: Any, layers: Sequence[str], seed: int = 0) -> Iterator[list[str]]:
    """Re-initialise the named layers of ``model`` inside a ``with`` block, then restore them.

    Introduced in notebook 06. Each variable gets a fresh draw from the layer's own initializer
    (kernels random, as at the start of training, every one of a layer's: a SeparableConv2D's
    depthwise and pointwise kernels alike; biases, BatchNormalization's scale, shift and
    statistics back to their initial values), as in Adebayo et al.'s cascading randomisation.
    The trained values are put back when the block ends, also after an error. Compiled CAM
    programs read the current weights, so maps computed inside the block see the random ones.

    Parameters
    ----------
    model
        A :class:`helpers.Classifier` or a Keras model.
    layers
        Names of the layers to re-initialise (e.g. everything from the output down to a stage).
    seed
        Seeds the draws (layer ``i`` of ``layers`` uses ``seed + i``).

    Yields
    ------
    list[str]
        The names of the layers that hold variables and were re-initialised.

    Raises
    ------
    ValueError
        An unknown or repeated layer name, ``layers`` given as one string, or a variable with no
        initializer to draw from (nothing is changed then).
    """
    keras_model = keras_model_of(model)
    if isinstance(layers, str):
        raise ValueError(f"layers must be a list of layer names, got the str {layers!r}")
    layers = list(layers)
    known = {layer.name: layer for layer in keras_model.layers}
    missing = [name for name in layers if name not in known]
    if missing:
        raise ValueError(f"model {keras_model.name!r} has no layers named {missing[:5]}")
    repeated = sorted({name for name in layers if layers.count(name) > 1})
    if repeated:
        raise ValueError(f"layers names {repeated[:5]} more than once; pass each layer once")
    # Every variable of every layer, with its initializer, is found before anything changes.
    plan = [(index, variable, _initializer_of(known[name], variable))
            for index, name in enumerate(layers) for variable in known[name].weights]
    saved: list[tuple[Any, np.ndarray]] = []
    try:
        for index, variable, initializer in plan:
            saved.append((variable, keras.ops.convert_to_numpy(variable)))
            variable.assign(_fresh_value(initializer, tuple(variable.shape), seed + index))
        yield [name for name in layers if known[name].weights]
    finally:
        for variable, value in reversed(saved):
            variable.assign(value)


@dataclass(frozen=True)
class FaithfulnessCurves:
    """Deletion and insertion curves of ``B`` maps (Petsiuk et al., 2018).

    Attributes
    ----------
    fractions
        ``(S + 1,)`` share of the pixels deleted or inserted at each step, 0 to 1.
    deletion, insertion
        ``(B, S + 1)`` probability of the class at each step.
    deletion_auc, insertion_auc
        ``(B,)`` areas under the curves (trapezoid rule over ``fractions``): lower deletion and
        higher insertion are better.
    """

    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray
    deletion_auc: np.ndarray
    insertion_auc: np.ndarray


def _blurred(image: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(image, sigma=(sigma, sigma, 0), mode="nearest")


def _area(fractions: np.ndarray, values: np.ndarray) -> np.ndarray:
    widths = np.diff(fractions)
    return ((values[:, 1:] + values[:, :-1]) / 2 * widths).sum(axis=1)


def deletion_insertion(
    classifier: Classifier,
    images: Any,
    maps: Any,
    class_ids: Any,
    *,
    steps: int = 20,
    blur_sigma: float = 5.0,
) -> FaithfulnessCurves:
    """Deletion and insertion curves of saliency maps, with their areas.

    Introduced in notebook 06. Each image is resized to the classifier's input. Pixels are
    ranked by the map (upsampled bilinearly to the input size; ties in reading order). For
    ``steps`` equal shares of the pixels, **deletion** sets the top-ranked ones to black and
    **insertion** copies them into a blurred version of the image (a Gaussian blur of
    ``blur_sigma`` pixels, as RISE does); the class probability (softmax of the logits) is
    recorded at every step, the unchanged image included. All ``B × 2 × (steps + 1)`` images go
    through the compiled network in batches of :data:`FORWARD_BATCH`.

    Parameters
    ----------
    classifier
        A :class:`helpers.Classifier` (its ``preprocess`` resizing and ``normalize`` are used).
    images
        ``B`` RGB images (a batch or a list), 0..255.
    maps
        ``(B, h, w)`` maps at any resolution (e.g. ``result.low_res[:, k]``), each covering its
        whole image; values are only ranked.
    class_ids
        ``(B,)`` the class whose probability is tracked for each image.
    steps
        Number of shares (20: 5 % of the pixels each).
    blur_sigma
        Standard deviation of the insertion baseline's blur, in input pixels.

    Returns
    -------
    FaithfulnessCurves

    Raises
    ------
    ValueError, TypeError
        Mismatched counts, a map that is not finite, bad ``steps`` or class ids.
    """
    if not isinstance(classifier, Classifier):
        raise TypeError(f"classifier must be a helpers.Classifier, got {type(classifier).__name__}")
    steps = integer("steps", steps, 1, 1000)
    blur_sigma = number("blur_sigma (pixels)", blur_sigma, 0.0, 1e3, low_open=True, high_open=True)
    resized = resize_images(to_rgb_batch(images), classifier.input_size)  # as preprocess does
    batch, height, width = resized.shape[0], *classifier.input_size
    maps = np.asarray(maps, dtype=np.float32)
    if maps.ndim != 3 or maps.shape[0] != batch:
        raise ValueError(f"maps must be (B, h, w) with B = {batch} images, got shape {maps.shape}")
    if not np.all(np.isfinite(maps)):
        raise ValueError("maps contain NaN or infinite values")
    class_ids = np.asarray(class_ids)
    if class_ids.shape != (batch,) or not np.issubdtype(class_ids.dtype, np.integer):
        raise ValueError(f"class_ids must be {batch} integer class ids, got {class_ids!r:.80}")
    if np.any((class_ids < 0) | (class_ids >= classifier.num_classes)):
        raise ValueError(f"class ids must be in 0..{classifier.num_classes - 1}, got {class_ids}")
    ranks = upsample_maps(maps, (height, width)).reshape(batch, -1)
    order = np.argsort(-ranks, axis=1, kind="stable")
    fractions = np.linspace(0.0, 1.0, steps + 1)
    counts = np.round(fractions * height * width).astype(int)
    network = forward(classifier)
    curves = {"deletion": np.empty((batch, steps + 1)), "insertion": np.empty((batch, steps + 1))}
    for b in range(batch):
        image = resized[b].reshape(-1, 3)
        blurred = _blurred(resized[b], blur_sigma).reshape(-1, 3)
        variants = []
        for _kind, start, source in (("deletion", image, np.zeros_like(image)),
                                    ("insertion", blurred, image)):
            for count in counts:
                step = start.copy()
                chosen = order[b, :count]
                step[chosen] = source[chosen]
                variants.append(step.reshape(height, width, 3))
        logits = np.concatenate([
            keras.ops.convert_to_numpy(network(classifier.normalize(
                np.stack(variants[start:start + FORWARD_BATCH])).astype(np.float32)))
            for start in range(0, len(variants), FORWARD_BATCH)])
        tracked = softmax(logits)[:, class_ids[b]]
        curves["deletion"][b], curves["insertion"][b] = tracked[: steps + 1], tracked[steps + 1:]
    return FaithfulnessCurves(
        fractions=fractions,
        deletion=curves["deletion"],
        insertion=curves["insertion"],
        deletion_auc=_area(fractions, curves["deletion"]),
        insertion_auc=_area(fractions, curves["insertion"]),
    )
