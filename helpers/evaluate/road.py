"""ROAD: remove pixels and debias them by noisy linear imputation (Rong et al., ICML 2022).

Introduced in notebook 06. Rong, Leemann, Borisov, Kasneci and Kasneci, *A Consistent and
Efficient Evaluation Strategy for Attribution Methods* (code: tleemann/road_evaluation). Deletion
to black (:func:`helpers.deletion_insertion`) leaves the *shape* of the deleted region in the
image: the model can read the map's outline from the hole (class information leakage), and
most-relevant-first (MoRF) and least-relevant-first (LeRF) orders disagree about which map is
better. ROAD fills each removed pixel from its neighbours instead (:func:`noisy_linear_imputation`):

    x_i = Σ_j w_j x_j / Σ_j w_j   over the 8 neighbours j of i inside the image,
    w = 1/6 for the 4 direct neighbours, 1/12 for the 4 diagonal ones,

one equation per removed pixel (a known neighbour moves to the right-hand side), solved as one
sparse linear system (``scipy.sparse``), then Gaussian noise of standard deviation 0.01 (images
scaled to [0, 1]) is added to the removed pixels, as their ``NoisyLinearImputer`` does.

:func:`road` removes, at each fraction ``p`` of the pixels, the ``⌊p·N⌋`` most relevant (MoRF:
the probability should fall fast) or least relevant (LeRF: it should stay) and records the class
probability (softmax), per image. The paper reports the accuracy over a test set (the share of
images still classified as their label) and the code also the mean probability of the predicted
class; :attr:`RoadCurves.morf_top1` gives the former per image, :attr:`RoadCurves.morf` the latter.
Their ``ImputedDataset`` with ``remove=False`` removes ``salient_order[⌊p·N⌋:]``, everything but the
top ``p``: its LeRF at ``p`` is ours at ``1 − p``; here ``p`` is always the share removed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from helpers.checks import ArgumentError, integer, number
from helpers.evaluate.trust import LazyImages, class_probabilities, prepare_faithfulness
from helpers.models import Classifier

__all__ = ["MAX_FRACTIONS", "NEIGHBOURS", "RoadCurves", "noisy_linear_imputation", "road"]

#: The most fractions :func:`road` takes (as ``deletion_insertion``'s ``steps`` is capped): 100
#: fractions cost about 400 s per image at 224 × 224.
MAX_FRACTIONS = 100

#: ``(row offset, column offset, weight)`` of the 8 neighbours in ROAD's ``NoisyLinearImputer``.
NEIGHBOURS = ((-1, -1, 1 / 12), (-1, 0, 1 / 6), (-1, 1, 1 / 12), (0, -1, 1 / 6),
              (0, 1, 1 / 6), (1, -1, 1 / 12), (1, 0, 1 / 6), (1, 1, 1 / 12))


def noisy_linear_imputation(image: np.ndarray, removed: np.ndarray, noise: float = 0.01,
                            rng: np.random.Generator | None = None) -> np.ndarray:
    """Fill the ``removed`` pixels of ``image`` ``(H, W, C)`` (values on [0, 1]) with the weighted
    mean of their neighbours (:data:`NEIGHBOURS`), all removed pixels at once, plus Gaussian
    ``noise`` (standard deviation) on them. ``removed`` ``(H, W)`` bool; at least one pixel must
    be kept. Returns a new float64 image; kept pixels are unchanged."""
    from scipy.sparse import csc_matrix
    from scipy.sparse.linalg import spsolve

    height, width, channels = image.shape
    flat = image.reshape(-1, channels).astype(np.float64)
    gone = np.flatnonzero(removed.ravel())
    if gone.size == 0:
        return flat.reshape(image.shape)
    if gone.size == height * width:
        raise ValueError("every pixel is removed: there is nothing to impute from")
    unknown = np.full(height * width, -1)
    unknown[gone] = np.arange(gone.size)  # pixel → its unknown's index
    row, col = np.divmod(gone, width)
    rows, cols, values = [], [], []
    right = np.zeros((gone.size, channels))
    total = np.zeros(gone.size)  # Σ w_j over the neighbours inside the image
    for dy, dx, weight in NEIGHBOURS:
        inside = (row + dy >= 0) & (row + dy < height) & (col + dx >= 0) & (col + dx < width)
        neighbour = (row + dy) * width + (col + dx)
        total[inside] += weight
        also_gone = inside & (unknown[np.where(inside, neighbour, 0)] >= 0)
        known = inside & ~also_gone
        rows.append(np.flatnonzero(also_gone))
        cols.append(unknown[neighbour[also_gone]])
        values.append(np.full(also_gone.sum(), weight))
        right[known] -= weight * flat[neighbour[known]]  # a known neighbour: right-hand side
    index = np.arange(gone.size)
    system = csc_matrix((np.concatenate([*values, -total]),
                         (np.concatenate([*rows, index]), np.concatenate([*cols, index]))),
                        shape=(gone.size, gone.size))
    solved = np.asarray(spsolve(system, right)).reshape(gone.size, channels)
    rng = np.random.default_rng() if rng is None else rng
    flat[gone] = solved + noise * rng.standard_normal(solved.shape)
    return flat.reshape(image.shape)


@dataclass(frozen=True)
class RoadCurves:
    """ROAD curves of ``B`` maps at ``F`` fractions.

    Attributes
    ----------
    fractions
        ``(F,)`` share of the pixels removed.
    original
        ``(B,)`` probability of the class on the unchanged image.
    morf, lerf
        ``(B, F)`` class probability (softmax) after removing the most / least relevant pixels.
    morf_top1, lerf_top1
        ``(B, F)`` whether the class is still the top-1 class (ROAD's accuracy, over images).
    morf_area, lerf_area
        ``(B,)`` areas under each image's curves (trapezoid rule over ``fractions``): a faithful
        map has a small MoRF area and a large LeRF area.
    """

    fractions: np.ndarray
    original: np.ndarray
    morf: np.ndarray
    lerf: np.ndarray
    morf_top1: np.ndarray
    lerf_top1: np.ndarray
    morf_area: np.ndarray
    lerf_area: np.ndarray


def _area(fractions: np.ndarray, values: np.ndarray) -> np.ndarray:
    if len(fractions) < 2:
        return np.zeros(len(values))
    return ((values[:, 1:] + values[:, :-1]) / 2 * np.diff(fractions)).sum(axis=1)


def road(
    classifier: Classifier,
    images: Any,
    maps: Any,
    class_ids: Any,
    *,
    fractions: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
    noise: float = 0.01,
    seed: int = 0,
) -> RoadCurves:
    """ROAD, MoRF and LeRF, with noisy linear imputation (Rong et al., 2022).

    Introduced in notebook 06. Each image is resized to the classifier's input; its map is
    upsampled bilinearly, min-max scaled, and (as ROAD's code does) a fixed tie-breaking noise of
    1e-4 (one draw per call, shared by the images) is added before ranking. At each fraction the
    removed pixels are imputed from the kept ones (:func:`noisy_linear_imputation`, on the image
    scaled to [0, 1]) and the class probability is recorded. One sparse solve per image, fraction
    and order (about a second each at 224 × 224 on a CPU core).

    Parameters
    ----------
    classifier, images, maps, class_ids
        As :func:`helpers.deletion_insertion`.
    fractions
        Shares of the pixels removed, each in [0, 1) (ROAD's percentages 10 % … 90 % by default),
        at most :data:`MAX_FRACTIONS` of them.
    noise
        Standard deviation of the imputation noise on [0, 1]-scaled images (ROAD: 0.01; 0: the
        plain linear imputation).
    seed
        Seeds the tie-breaking and the imputation noise.

    Returns
    -------
    RoadCurves

    Raises
    ------
    ValueError, TypeError
        As :func:`helpers.deletion_insertion` (a constant map too); a fraction outside [0, 1),
        more than :data:`MAX_FRACTIONS` fractions, a negative ``noise``.
    """
    given = np.ravel(np.asarray(fractions, dtype=object))
    if given.size > MAX_FRACTIONS:  # each costs a sparse solve per image and order (~2 s)
        raise ArgumentError(
            f"fractions must be at most {MAX_FRACTIONS} shares (each takes about 2 s per image and "
            f"order at 224 × 224), got {given.size}; e.g. np.arange(0.1, 1, 0.1)")
    fractions = np.array([number("each of fractions", f, 0.0, 1.0, high_open=True) for f in given])
    if fractions.size == 0:
        raise ValueError("fractions is empty; pass at least one share of pixels to remove")
    if np.any(np.diff(fractions) <= 0):
        raise ValueError(
            f"fractions must increase, each larger than the one before (the curve's area is taken "
            f"in their order); got {[float(f) for f in fractions]}")
    noise = number("noise (on [0, 1])", noise, 0.0, 1.0)
    seed = integer("seed", seed, 0)
    resized, ranks, class_ids = prepare_faithfulness(classifier, images, maps, class_ids)
    batch, height, width = ranks.shape
    rng = np.random.default_rng(seed)
    low = ranks.min(axis=(1, 2), keepdims=True)
    scaled = (ranks - low) / (ranks.max(axis=(1, 2), keepdims=True) - low + 1e-5)
    scaled = scaled + 1e-4 * rng.standard_normal((height, width))
    order = np.argsort(-scaled.reshape(batch, -1), axis=1, kind="stable")  # most relevant first
    counts = (fractions * height * width).astype(int)
    results = {name: np.empty((batch, len(fractions))) for name in ("morf", "lerf")}
    top1 = {name: np.empty((batch, len(fractions)), bool) for name in ("morf", "lerf")}
    original = np.empty(batch)
    for b in range(batch):
        image = resized[b] / 255.0
        rankings = [ranked[:count] for ranked in (order[b], order[b, ::-1]) for count in counts]

        def make(i: int, b: int = b, image: np.ndarray = image,
                 rankings: list[np.ndarray] = rankings) -> np.ndarray:  # 0: the photo itself
            if i == 0:
                return resized[b]
            removed = np.zeros(height * width, bool)
            removed[rankings[i - 1]] = True  # MoRF's fractions, then LeRF's
            filled = noisy_linear_imputation(image, removed.reshape(height, width), noise, rng)
            return (filled * 255.0).astype(np.float32)

        variants = LazyImages(1 + len(rankings), make)  # made in order: rng's draws as before
        probability, is_top1 = class_probabilities(classifier, variants, int(class_ids[b]))
        original[b] = probability[0]
        for i, name in enumerate(("morf", "lerf")):
            part = slice(1 + i * len(counts), 1 + (i + 1) * len(counts))
            results[name][b], top1[name][b] = probability[part], is_top1[part]
    return RoadCurves(
        fractions=fractions, original=original,
        morf=results["morf"], lerf=results["lerf"],
        morf_top1=top1["morf"], lerf_top1=top1["lerf"],
        morf_area=_area(fractions, results["morf"]), lerf_area=_area(fractions, results["lerf"]),
    )
