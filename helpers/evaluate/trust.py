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
  **insertion** curve). :func:`deletion_insertion` computes both curves and their areas, per
  image. What a deleted pixel becomes (the *baseline*) changes the verdict: RISE's code sets the
  ImageNet-normalised pixels to 0, i.e. the dataset's mean colour (``baseline="grey"``), and
  inserts into a blur; xplique's Deletion/Insertion use one constant ``baseline_mode`` (0.0 of the
  model's input) for both. ROAD (:mod:`helpers.evaluate.road`) fills removed pixels from their
  neighbours instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from helpers.cam import forward, keras_model_of
from helpers.checks import ArgumentError, choice, integer, number
from helpers.checks import maps as check_maps
from helpers.images import resize_images, to_rgb_batch
from helpers.maps import softmax, upsample_maps
from helpers.models import Classifier

#: The largest seed (NumPy's legacy range, as :func:`helpers.set_seed`); layer i gets seed + i.
MAX_SEED = 2**32 - 1

__all__ = ["BASELINES", "RANDOMIZATIONS", "FaithfulnessCurves", "class_probabilities",
           "deletion_insertion", "prepare_faithfulness", "randomize_layers"]

#: Images per forward pass of the curves (a batch's activations, not its images, fill memory).
FORWARD_BATCH = 16
#: The ImageNet mean colour on 0..255 (torchvision's 0.485, 0.456, 0.406): what RISE's deletion
#: substrate, zeros of the ImageNet-normalised tensor, is in pixels.
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255.0
#: How :func:`randomize_layers` destroys the weights.
RANDOMIZATIONS = ("reinit", "permute")
#: Deletion / insertion baselines: what a deleted pixel becomes and where insertion starts.
BASELINES = ("black", "grey", "blur")

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
def randomize_layers(model: Any, layers: Sequence[str], seed: int = 0, *,
                     mode: str = "reinit") -> Iterator[list[str]]:
    """Randomise the named layers of ``model`` inside a ``with`` block, then restore them.

    Introduced in notebook 06. ``mode="reinit"`` (default): each variable gets a fresh draw from
    the layer's own initializer (kernels random, as at the start of training, every one of a
    layer's: a SeparableConv2D's depthwise and pointwise kernels alike; biases,
    BatchNormalization's scale, shift and statistics back to their initial values), as in
    Adebayo et al.'s cascading randomisation. ``mode="permute"``: each variable's own values are
    shuffled among its entries (one random permutation of the flattened array per variable:
    kernels, biases and BatchNormalization's parameters alike), so the trained weights'
    distribution and scale are kept and only their arrangement is destroyed.
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
    mode
        ``"reinit"`` (fresh draws from the initializers) or ``"permute"`` (the trained values,
        shuffled).

    Yields
    ------
    list[str]
        The names of the layers that hold variables and were re-initialised.

    Raises
    ------
    ValueError
        An unknown or repeated layer name, ``layers`` given as one string, an unknown ``mode``,
        or (``"reinit"``) a variable with no initializer to draw from (nothing is changed then).
    """
    mode = choice("mode", mode, RANDOMIZATIONS)
    seed = integer("seed", seed, 0, MAX_SEED)  # NumPy's range, as helpers.set_seed
    keras_model = keras_model_of(model)
    if isinstance(layers, str):
        raise ValueError(f"layers must be a list of layer names, got the str {layers!r}")
    if isinstance(layers, (set, frozenset, type({}.keys()))):
        raise ArgumentError(
            f"layers must be a list of layer names, in the order meant (layer i is drawn with "
            f"seed + i), got a {type(layers).__name__}, whose order changes from one Python "
            "process to the next (PYTHONHASHSEED): the same seed would give other weights. Pass a "
            "list, e.g. the model's layer names from the output down")
    if not isinstance(layers, (list, tuple)) or not all(isinstance(n, str) for n in layers):
        raise TypeError(f"layers must be a list of layer names, got {layers!r:.80}")
    layers = list(layers)
    known = {layer.name: layer for layer in keras_model.layers}
    missing = [name for name in layers if name not in known]
    if missing:
        nested = [f"{layer.name}/{name}" for layer in keras_model.layers
                  if isinstance(layer, keras.Model) for name in missing
                  if name in {inner.name for inner in layer.layers}]
        hint = (f"; {', '.join(nested[:3])} is inside a nested model: pass the nested model's name "
                "to randomise it whole") if nested else ""
        raise ValueError(f"model {keras_model.name!r} has no layers named {missing[:5]} among its "
                         f"own layers{hint}")
    repeated = sorted({name for name in layers if layers.count(name) > 1})
    if repeated:
        raise ValueError(f"layers names {repeated[:5]} more than once; pass each layer once")
    # Every variable of every layer, with its initializer, is found before anything changes.
    plan = [(index, variable, _initializer_of(known[name], variable) if mode == "reinit" else None)
            for index, name in enumerate(layers) for variable in known[name].weights]
    saved: list[tuple[Any, np.ndarray]] = []
    try:
        for index, variable, initializer in plan:
            value = keras.ops.convert_to_numpy(variable)
            saved.append((variable, value))
            if mode == "reinit":
                variable.assign(_fresh_value(initializer, tuple(variable.shape), seed + index))
            else:  # one generator per layer: the layer's variables get different permutations
                generator = np.random.default_rng([seed + index, len(saved)])
                variable.assign(generator.permutation(value.ravel()).reshape(value.shape))
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
        ``(B,)`` areas under each image's curves (trapezoid rule over ``fractions``): lower
        deletion and higher insertion are better. Average them yourself (``.mean()``).
    baseline
        ``"black/blur"`` (the default: deletion to black, insertion from a blur) or the one
        baseline both curves used.
    """

    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray
    deletion_auc: np.ndarray
    insertion_auc: np.ndarray
    baseline: str = "black/blur"


def _blurred(image: np.ndarray, sigma: float) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(image, sigma=(sigma, sigma, 0), mode="nearest")


def _area(fractions: np.ndarray, values: np.ndarray) -> np.ndarray:
    widths = np.diff(fractions)
    return ((values[:, 1:] + values[:, :-1]) / 2 * widths).sum(axis=1)


def prepare_faithfulness(classifier: Classifier, images: Any, maps: Any, class_ids: Any
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The checks and the resizing that every faithfulness measure shares: ``(resized images
    (B, H, W, 3) on 0..255, maps upsampled bilinearly to (B, H, W), class ids (B,))``.

    Raises TypeError/ValueError for a classifier that is not a Classifier, mismatched counts,
    maps that are not finite real numbers, a constant map (it ranks no pixel: the error names
    the image), and class ids that are not ints in range."""
    if not isinstance(classifier, Classifier):
        raise TypeError(f"classifier must be a helpers.Classifier, got {type(classifier).__name__}")
    resized = resize_images(to_rgb_batch(images), classifier.input_size)  # as preprocess does
    batch = resized.shape[0]
    maps = check_maps("maps", maps, 3)
    if maps.shape[0] != batch:
        raise ValueError(f"maps must be (B, h, w) with B = {batch} images, got shape {maps.shape}")
    class_ids = np.asarray(class_ids)
    if class_ids.shape != (batch,) or not np.issubdtype(class_ids.dtype, np.integer):
        raise ValueError(f"class_ids must be {batch} integer class ids, got {class_ids!r:.80}")
    if np.any((class_ids < 0) | (class_ids >= classifier.num_classes)):
        raise ValueError(f"class ids must be in 0..{classifier.num_classes - 1}, got {class_ids}")
    flat = maps.reshape(batch, -1)
    constant = flat.max(axis=1) == flat.min(axis=1)
    if np.any(constant):  # no evidence anywhere: ties everywhere, ranked by reading order
        raise ValueError(f"map {int(np.flatnonzero(constant)[0])} is constant: it ranks no "
                         "pixel; score only maps that vary (a map of all zeros found nothing)")
    largest = np.abs(maps).max(axis=(1, 2), keepdims=True)
    if largest.max() > np.finfo(np.float32).max:  # only ranked: scaled, not made infinite
        maps = maps / largest
    maps = maps.astype(np.float32)
    return resized, upsample_maps(maps, classifier.input_size), class_ids


def class_probabilities(classifier: Classifier, variants: Any,
                        class_id: int) -> tuple[np.ndarray, np.ndarray]:
    """``(probability of class_id, whether it is the top-1 class)``, each ``(N,)``, for ``N``
    images ``(H, W, 3)`` on 0..255 at the classifier's input size (a list, an array, or anything
    that gives a list for a slice), through the compiled network in batches of
    :data:`FORWARD_BATCH`."""
    network = forward(classifier)
    logits = np.concatenate([
        keras.ops.convert_to_numpy(network(classifier.normalize(
            np.stack(variants[start:start + FORWARD_BATCH])).astype(np.float32)))
        for start in range(0, len(variants), FORWARD_BATCH)])
    return softmax(logits)[:, class_id], logits.argmax(axis=1) == class_id


class LazyImages:
    """``count`` images made by ``make(i)`` only when a batch of them is read, in order: the
    curves' variants of a photo are never all in memory (``steps=1000`` held 2,002 copies)."""

    def __init__(self, count: int, make: Callable[[int], np.ndarray]) -> None:
        self.count, self.make = count, make

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, part: slice) -> list[np.ndarray]:
        return [self.make(i) for i in range(*part.indices(self.count))]


def _replaced(begin: np.ndarray, source: np.ndarray, chosen: np.ndarray,
              shape: tuple[int, ...]) -> np.ndarray:
    step = begin.copy()
    step[chosen] = source[chosen]
    return step.reshape(shape)


def _substrate(image: np.ndarray, baseline: str, blur_sigma: float) -> np.ndarray:
    if baseline == "black":
        return np.zeros_like(image)
    if baseline == "grey":
        return np.broadcast_to(IMAGENET_MEAN, image.shape).astype(image.dtype)
    return _blurred(image, blur_sigma)


def deletion_insertion(
    classifier: Classifier,
    images: Any,
    maps: Any,
    class_ids: Any,
    *,
    steps: int = 20,
    blur_sigma: float = 5.0,
    baseline: str | None = None,
) -> FaithfulnessCurves:
    """Deletion and insertion curves of saliency maps, with each image's areas.

    Introduced in notebook 06. Each image is resized to the classifier's input. Pixels are
    ranked by the map (upsampled bilinearly to the input size; ties in reading order). For
    ``steps`` equal shares of the pixels, **deletion** replaces the top-ranked ones by the
    baseline and **insertion** copies them into the baseline image; the class probability
    (softmax of the logits) is recorded at every step, the unchanged image included. All
    ``B × 2 × (steps + 1)`` images go through the compiled network in batches of
    :data:`FORWARD_BATCH`.

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
        Standard deviation of the blur baseline, in input pixels (RISE's code: an 11 × 11 kernel
        of sigma 5; here scipy's ``gaussian_filter``, edges repeated).
    baseline
        ``None`` (default): deletion to **black** (0), insertion from a **blur** of the image.
        Or one baseline for both curves (as xplique's ``baseline_mode``): ``"black"``,
        ``"grey"`` (the ImageNet mean colour (124, 116, 104), what RISE's code deletes to: zeros
        of the ImageNet-normalised tensor; xplique's default 0.0 is the same for a model whose
        input is centred) or ``"blur"``.

    Returns
    -------
    FaithfulnessCurves

    Raises
    ------
    ValueError, TypeError
        Mismatched counts, a map that is not finite real numbers, a constant map (it ranks no
        pixel), bad ``steps``, ``blur_sigma``, ``baseline`` or class ids.
    """
    steps = integer("steps", steps, 1, 1000)
    blur_sigma = number("blur_sigma (pixels)", blur_sigma, 0.0, 1e3, low_open=True, high_open=True)
    if baseline is not None:
        baseline = choice("baseline", baseline, BASELINES)
    resized, ranks, class_ids = prepare_faithfulness(classifier, images, maps, class_ids)
    batch, height, width = resized.shape[:3]
    order = np.argsort(-ranks.reshape(batch, -1), axis=1, kind="stable")
    fractions = np.linspace(0.0, 1.0, steps + 1)
    counts = np.round(fractions * height * width).astype(int)
    curves = {"deletion": np.empty((batch, steps + 1)), "insertion": np.empty((batch, steps + 1))}
    for b in range(batch):
        image = resized[b].reshape(-1, 3)
        deleted = _substrate(resized[b], baseline or "black", blur_sigma).reshape(-1, 3)
        start = _substrate(resized[b], baseline or "blur", blur_sigma).reshape(-1, 3)
        plans = [(begin, source, order[b, :count]) for begin, source in
                 ((image, deleted), (start, image)) for count in counts]  # deletion, insertion
        variants = LazyImages(len(plans), lambda i, plans=plans: _replaced(*plans[i], (height, width, 3)))
        tracked, _ = class_probabilities(classifier, variants, int(class_ids[b]))
        curves["deletion"][b], curves["insertion"][b] = tracked[: steps + 1], tracked[steps + 1:]
    return FaithfulnessCurves(
        fractions=fractions,
        deletion=curves["deletion"],
        insertion=curves["insertion"],
        deletion_auc=_area(fractions, curves["deletion"]),
        insertion_auc=_area(fractions, curves["insertion"]),
        baseline=baseline or "black/blur",
    )
