"""MaxBoxAcc: the best box accuracy over a sweep of thresholds, under two named protocols.

Introduced in notebook 04. A fixed box threshold (Zhou et al.'s 0.2) favours some models over
others; Choe et al. (CVPR 2020, "Evaluating Weakly Supervised Object Localization Methods
Right") score each model at its best single threshold for the whole data set instead (an
oracle over τ, as average precision is over its operating points). Their CVPR paper's MaxBoxAcc
takes the largest region's box at IoU 0.5; **MaxBoxAccV2** (their released code, and their TPAMI
2022 extension "Evaluation for Weakly Supervised Object Localization: Protocol, Metrics, and
Datasets") takes every region's box and averages over IoU 0.3, 0.5 and 0.7:

* ``protocol="choe"``: their definition, as their released code (clovaai/wsolevaluation,
  ``BoxEvaluator`` with ``multi_contour_eval``) computes it: each map min-max normalised,
  ``τ = 0, 0.01, ..., 0.99``, every region's box a candidate and the best-matching one counts
  (:func:`~helpers.evaluate.boxes.choe_boxes`; the box is chosen by its overlap with the true
  box, a second oracle). With ``iou_threshold=(0.3, 0.5, 0.7)`` the score is **MaxBoxAccV2**,
  the mean over the IoU thresholds δ of each δ's best accuracy (their ``multi_iou_eval``). Their
  code upsamples maps bicubically; :func:`helpers.evaluate_localization` does so bilinearly.
* ``protocol="zhou"``: Zhou et al.'s box rule (:func:`~helpers.evaluate.boxes.cam_to_box`: the
  largest region at ``τ · max`` of the map as it is), swept over ``τ = 0, 0.05, ..., 0.95``.
  This package's MaxBoxAcc before Choe's was added; it is not Choe et al.'s number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from helpers.checks import ArgumentError
from helpers.evaluate.boxes import (
    CHOE_THRESHOLDS, box_iou, cams_to_boxes, check_iou_threshold, check_thresholds, choe_boxes,
    maps_and_boxes,
)

__all__ = ["PROTOCOLS", "MaxBoxAccuracy", "check_protocol", "max_box_accuracy"]

#: The accepted protocols, with what each means.
PROTOCOLS: dict[str, str] = {
    "choe": "Choe et al. 2020 (wsolevaluation): min-max maps, tau every 0.01, best of all boxes",
    "zhou": "Zhou et al. 2016's box (largest region at tau * max), tau every 0.05",
}
#: Zhou's sweep: 0.00, 0.05, ..., 0.95.
ZHOU_THRESHOLDS: np.ndarray = np.round(np.arange(0.0, 1.0, 0.05), 2)


def check_protocol(protocol: Any) -> str:
    """``protocol`` if it is one of :data:`PROTOCOLS`, else :class:`ArgumentError` listing them."""
    if isinstance(protocol, str) and protocol in PROTOCOLS:
        return protocol
    accepted = "; ".join(f"{name!r}: {meaning}" for name, meaning in PROTOCOLS.items())
    raise ArgumentError(f"protocol must be one of {list(PROTOCOLS)}, got {protocol!r:.80} "
                        f"({accepted})")


#: The most IoU thresholds one score averages over (each is a pass over every box).
MAX_IOU_THRESHOLDS = 100


def _check_iou_thresholds(iou_threshold: Any) -> tuple[float, ...]:
    if isinstance(iou_threshold, (list, np.ndarray)):
        # Before protocols, the third positional argument was the list of box thresholds.
        raise ArgumentError(f"iou_threshold must be a number in (0, 1] or a tuple of them, e.g. "
                            f"(0.3, 0.5, 0.7) for MaxBoxAccV2; got a {type(iou_threshold).__name__}"
                            f" {iou_threshold!r:.60}: box thresholds go in thresholds=")
    values = iou_threshold if isinstance(iou_threshold, tuple) else (iou_threshold,)
    if len(values) == 0:
        raise ArgumentError("iou_threshold must be a number in (0, 1] or a non-empty tuple of "
                            "them, e.g. (0.3, 0.5, 0.7) for MaxBoxAccV2; got an empty sequence")
    if len(values) > MAX_IOU_THRESHOLDS:
        raise ArgumentError(f"iou_threshold has {len(values):,} values; at most "
                            f"{MAX_IOU_THRESHOLDS} are taken, e.g. (0.3, 0.5, 0.7) for MaxBoxAccV2")
    return tuple(check_iou_threshold(value) for value in values)


@dataclass(frozen=True)
class MaxBoxAccuracy:
    """Result of :func:`max_box_accuracy`.

    Attributes
    ----------
    best
        One IoU threshold: the highest box accuracy over the thresholds (MaxBoxAcc). Several:
        the mean over them of each one's highest accuracy (MaxBoxAccV2 for ``(0.3, 0.5, 0.7)``).
    best_threshold
        The box threshold that reached :attr:`best` (the smallest, if several did); NaN for
        several IoU thresholds, each having its own (:attr:`best_thresholds`).
    thresholds
        ``(T,)`` the box thresholds swept.
    accuracies
        ``(T,)`` accuracy at each threshold, for one IoU threshold; ``(D, T)`` for several (row
        ``d`` for ``iou_thresholds[d]``).
    protocol
        ``"choe"`` or ``"zhou"`` (:data:`PROTOCOLS`).
    iou_thresholds
        The IoU thresholds δ, in the order given.
    top1
        True when a box counted only for a correctly classified image (top-1 localisation);
        False for GT-known localisation.
    """

    best: float
    best_threshold: float
    thresholds: np.ndarray
    accuracies: np.ndarray
    protocol: str = "zhou"
    iou_thresholds: tuple[float, ...] = (0.5,)
    top1: bool = False

    @property
    def curves(self) -> np.ndarray:
        """``(D, T)``: accuracy against the box threshold, one row per IoU threshold."""
        return np.atleast_2d(self.accuracies)

    @property
    def best_per_iou(self) -> np.ndarray:
        """``(D,)``: MaxBoxAcc at each IoU threshold."""
        return self.curves.max(axis=1)

    @property
    def best_thresholds(self) -> np.ndarray:
        """``(D,)``: the box threshold of each IoU threshold's best (the smallest on ties)."""
        return self.thresholds[np.argmax(self.curves, axis=1)]

    @property
    def label(self) -> str:
        """The score's name, with its protocol and IoU thresholds, for tables and plots."""
        name = "MaxBoxAccV2" if len(self.iou_thresholds) > 1 else "MaxBoxAcc"
        ious = "/".join(f"{value:g}" for value in self.iou_thresholds)
        return f"{'top-1 ' if self.top1 else ''}{name} ({self.protocol}, IoU {ious})"


def _box_hits(array: np.ndarray, truth: np.ndarray, sweep: np.ndarray,
              ious: tuple[float, ...], protocol: str) -> np.ndarray:
    """``(D, T, N)`` bool: image ``n``'s box is right at IoU threshold ``d`` and box threshold
    ``t``."""
    if protocol == "zhou":
        best = np.stack([np.asarray(box_iou(cams_to_boxes(array, float(t)), truth), dtype=float)
                         for t in sweep])  # (T, N)
    else:
        best = np.empty((len(sweep), len(array)))
        for index, cam in enumerate(array):
            # Their accumulate(): the best IoU of all candidate boxes at each threshold (one IoU
            # call per map; each threshold has at least one box).
            boxes = choe_boxes(cam, sweep)
            starts = np.cumsum([0] + [len(found) for found in boxes[:-1]])
            overlaps = np.asarray(box_iou(np.concatenate(boxes), truth[index]), dtype=float)
            best[:, index] = np.maximum.reduceat(np.atleast_1d(overlaps), starts)
    return np.stack([best >= iou for iou in ious])


def max_box_accuracy(
    cams: Any,
    true_boxes: Any,
    iou_threshold: float | Sequence[float] = 0.5,
    protocol: str = "choe",
    *,
    thresholds: Sequence[float] | np.ndarray | None = None,
    correct_class: Any = None,
) -> MaxBoxAccuracy:
    """Box accuracy over a sweep of box thresholds, and its maximum (Choe et al., CVPR 2020).

    Introduced in notebook 04.

    Parameters
    ----------
    cams
        ``(N, H, W)`` maps in the frame of ``true_boxes`` (upsample class maps to the image size
        first: Choe et al. score maps at the input's resolution).
    true_boxes
        ``(N, 4)`` inclusive ``(x0, y0, x1, y1)``.
    iou_threshold
        IoU needed for a hit, in ``(0, 1]`` (0.5: MaxBoxAcc), or a tuple of several
        (``(0.3, 0.5, 0.7)``: MaxBoxAccV2, the mean of their MaxBoxAcc). A list is refused: it
        was the box thresholds' place before ``protocol`` came.
    protocol
        ``"choe"`` (wsolevaluation's boxes and sweep) or ``"zhou"`` (:func:`cam_to_box`'s box,
        thresholds a fraction of each map's maximum); see :data:`PROTOCOLS` and the module.
    thresholds
        The box thresholds, fractions in ``[0, 1]``; default ``0, 0.01, ..., 0.99`` for
        ``"choe"`` and ``0.00, 0.05, ..., 0.95`` for ``"zhou"``.
    correct_class
        Optional ``(N,)`` booleans (e.g. ``predicted == labels``): a box then counts only for a
        correctly classified image (top-1 localisation). Without it: GT-known localisation.

    Returns
    -------
    MaxBoxAccuracy

    Raises
    ------
    ValueError, TypeError
        An unknown protocol (the message lists them), IoU thresholds outside ``(0, 1]``, box
        thresholds outside ``[0, 1]``, no samples, mismatched shapes, NaN or infinite maps, or
        ``correct_class`` that is not boolean.
    """
    protocol = check_protocol(protocol)
    ious = _check_iou_thresholds(iou_threshold)
    array, truth = maps_and_boxes(cams, true_boxes)
    default = CHOE_THRESHOLDS if protocol == "choe" else ZHOU_THRESHOLDS
    sweep = check_thresholds(default if thresholds is None else thresholds)
    hits = _box_hits(array, truth, sweep, ious, protocol)  # (D, T, N)
    if correct_class is not None:
        correct = np.asarray(correct_class)
        if correct.dtype != bool or correct.shape != (len(array),):
            raise ArgumentError(f"correct_class must be ({len(array)},) booleans (True where the "
                                f"class is right, e.g. predicted == labels), got dtype "
                                f"{correct.dtype}, shape {correct.shape}")
        hits &= correct
    curves = np.array([[float(row.mean()) for row in per_iou] for per_iou in hits])  # (D, T)
    best_index = np.argmax(curves, axis=1)
    per_iou_best = curves[np.arange(len(ious)), best_index]
    single = len(ious) == 1
    return MaxBoxAccuracy(
        best=float(per_iou_best[0]) if single else float(np.mean(per_iou_best)),
        best_threshold=float(sweep[best_index[0]]) if single else float("nan"),
        thresholds=sweep,
        accuracies=curves[0] if single else curves,
        protocol=protocol,
        iou_thresholds=ious,
        top1=correct_class is not None,
    )
