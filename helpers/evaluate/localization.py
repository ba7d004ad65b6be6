"""Scoring boxes and maps against true boxes: accuracy, MaxBoxAcc, the pointing game, a report.

Introduced in notebook 04. Boxes come from :mod:`helpers.evaluate.boxes`
(:func:`~helpers.evaluate.boxes.cam_to_box`); :func:`evaluate_localization` runs a model with a
GAP or a GMP head (:func:`helpers.class_activation_maps` computes ``M_c = Σ_k w_k^c f_k`` for
both) over a :class:`~helpers.data.digits.DigitCanvases` set and scores the true class's maps.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from helpers.cam import class_activation_maps
from helpers.checks import integer
from helpers.evaluate.boxes import (
    as_boxes, box_iou, cams_to_boxes, check_iou_threshold, check_threshold,
)
from helpers.maps import upsample_maps

__all__ = [
    "LocalizationReport",
    "MaxBoxAccuracy",
    "evaluate_localization",
    "localization_accuracy",
    "localization_report",
    "max_box_accuracy",
    "pointing_game",
]


def _check_count(count: int, what: str) -> None:
    if count == 0:
        raise ValueError(f"got no samples ({what} is empty); a score of nothing is undefined")


def _check_bools(values: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype != bool:
        raise TypeError(
            f"{name} must be booleans (True where the class is right), got dtype {array.dtype}"
            f"{' (labels? pass predicted == labels)' if array.dtype.kind in 'iuf' else ''}"
        )
    if array.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {array.shape}")
    return array


def localization_accuracy(
    predicted_boxes: Any,
    true_boxes: Any,
    iou_threshold: float = 0.5,
    correct_class: Any = None,
) -> float:
    """Fraction of images whose predicted box overlaps the true box with IoU ≥ ``iou_threshold``.

    With ``correct_class`` (a boolean ``(N,)``), an image counts only if it is also classified
    correctly: the paper's top-1 localisation accuracy.

    Raises
    ------
    ValueError
        No samples, mismatched shapes, or ``iou_threshold`` outside ``(0, 1]`` (50 for 50% is
        refused, not scored 0).
    TypeError
        ``correct_class`` that is not boolean (class labels such as ``[3, 7]`` are refused, not
        cast to True).
    """
    predicted = as_boxes(predicted_boxes, "predicted_boxes")
    truth = as_boxes(true_boxes, "true_boxes")
    if predicted.shape != truth.shape or predicted.ndim != 2:
        raise ValueError(
            f"predicted_boxes {predicted.shape} and true_boxes {truth.shape} must both be (N, 4)"
        )
    _check_count(len(predicted), "predicted_boxes")
    hits = np.asarray(box_iou(predicted, truth)) >= check_iou_threshold(iou_threshold)
    if correct_class is not None:
        hits &= _check_bools(correct_class, "correct_class", hits.shape)
    return float(hits.mean())


def pointing_game(cams: Any, true_boxes: Any, tolerance: int = 0) -> float:
    """Fraction of maps whose maximum lies inside the true box (Zhang et al., 2016).

    ``cams`` is ``(N, H, W)`` in the same frame as ``true_boxes`` ``(N, 4)`` (inclusive). The peak is
    the first maximum in row-major order; ``tolerance`` grows each box by that many pixels.
    """
    array = np.asarray(cams, dtype=np.float64)
    truth = as_boxes(true_boxes, "true_boxes")
    if array.ndim != 3 or truth.shape != (len(array), 4):
        raise ValueError(f"need cams (N, H, W) and true_boxes (N, 4), got {array.shape}, {truth.shape}")
    _check_count(len(array), "cams")
    if min(array.shape[1:]) == 0:
        raise ValueError(f"cams are empty maps: shape {array.shape}")
    tolerance = integer("tolerance (pixels)", tolerance, 0)
    if not np.all(np.isfinite(array)):
        raise ValueError("cams contain NaN or infinite values")
    flat_peak = array.reshape(len(array), -1).argmax(axis=1)
    rows, columns = np.unravel_index(flat_peak, array.shape[1:])
    inside = (
        (columns >= truth[:, 0] - tolerance)
        & (columns <= truth[:, 2] + tolerance)
        & (rows >= truth[:, 1] - tolerance)
        & (rows <= truth[:, 3] + tolerance)
    )
    return float(inside.mean())


@dataclass(frozen=True)
class MaxBoxAccuracy:
    """Result of :func:`max_box_accuracy`.

    Attributes
    ----------
    best
        The highest localisation accuracy over the thresholds (MaxBoxAcc).
    best_threshold
        The threshold that reached it (the smallest, if several did).
    thresholds, accuracies
        The whole sweep, for a plot of accuracy vs threshold.
    """

    best: float
    best_threshold: float
    thresholds: np.ndarray
    accuracies: np.ndarray


def max_box_accuracy(
    cams: Any,
    true_boxes: Any,
    thresholds: Sequence[float] | np.ndarray | None = None,
    iou_threshold: float = 0.5,
) -> MaxBoxAccuracy:
    """Localisation accuracy over a sweep of ``cam_to_box`` thresholds, and its maximum.

    MaxBoxAcc (Choe et al., CVPR 2020) removes the dependence on one hand-picked threshold such as
    0.2: the best threshold differs between models. Choe et al. min-max normalise each map first;
    here the threshold is a fraction of each map's maximum, as in :func:`cam_to_box`.

    Parameters
    ----------
    cams
        ``(N, H, W)`` maps in the frame of ``true_boxes``.
    true_boxes
        ``(N, 4)`` inclusive boxes.
    thresholds
        Fractions of the maximum in ``[0, 1]``; default ``0.00, 0.05, ..., 0.95``.
    iou_threshold
        IoU needed for a hit (0.5).
    """
    array = np.asarray(cams)
    if array.ndim != 3:
        raise ValueError(f"cams must be (N, H, W), got shape {array.shape}")
    _check_count(len(array), "cams")
    check_iou_threshold(iou_threshold)
    sweep = np.round(np.arange(0.0, 1.0, 0.05), 2) if thresholds is None else np.asarray(thresholds)
    if sweep.ndim != 1 or sweep.size == 0 or sweep.dtype.kind not in "iuf":
        raise ValueError(
            f"thresholds must be a non-empty 1-D sequence of fractions in [0, 1], got {thresholds!r:.80}"
        )
    sweep = sweep.astype(float)
    if not np.all((sweep >= 0.0) & (sweep <= 1.0)):  # NaN fails this too
        raise ValueError(f"thresholds must be fractions in [0, 1], got {sweep.tolist()}")
    accuracies = np.array(
        [
            localization_accuracy(cams_to_boxes(array, float(t)), true_boxes, iou_threshold)
            for t in sweep
        ]
    )
    best_index = int(np.argmax(accuracies))
    return MaxBoxAccuracy(
        best=float(accuracies[best_index]),
        best_threshold=float(sweep[best_index]),
        thresholds=sweep,
        accuracies=accuracies,
    )


@dataclass(frozen=True, eq=False)
class LocalizationReport:
    """Boxes and localisation scores of a set of maps against true boxes.

    Introduced in notebook 04; made by :func:`localization_report` (and
    :func:`helpers.evaluate_localization`, which runs a model first).

    Attributes
    ----------
    cams
        ``(N, H, W)`` the maps that were scored, in the frame of the true boxes.
    boxes
        ``(N, 4)`` :func:`cam_to_box` at :attr:`threshold` (:data:`NO_BOX` rows for maps with no
        positive value).
    true_boxes
        ``(N, 4)`` inclusive true boxes.
    ious
        ``(N,)`` IoU of each predicted box with its true box.
    threshold, iou_threshold
        The box threshold (fraction of each map's maximum) and the IoU needed for a hit.
    gt_known
        Share of images with IoU ≥ ``iou_threshold`` (the class is not checked: "GT-known"
        localisation when the maps are those of the true class).
    max_box
        :func:`max_box_accuracy` over a sweep of thresholds (MaxBoxAcc, Choe et al. 2020).
    pointing
        :func:`pointing_game`: share of maps whose maximum lies in the true box.
    labels, predicted
        ``(N,)`` true and predicted classes, or None.
    classification
        Share of ``predicted == labels`` (NaN without them).
    top1
        Share of images classified correctly *and* with IoU ≥ ``iou_threshold``: the paper's
        top-1 localisation accuracy (NaN without labels).
    """

    cams: np.ndarray
    boxes: np.ndarray
    true_boxes: np.ndarray
    ious: np.ndarray
    threshold: float
    iou_threshold: float
    gt_known: float
    max_box: MaxBoxAccuracy
    pointing: float
    labels: np.ndarray | None = None
    predicted: np.ndarray | None = None
    classification: float = float("nan")
    top1: float = float("nan")

    @property
    def hits(self) -> np.ndarray:
        """``(N,)`` bool: IoU ≥ ``iou_threshold``."""
        return self.ious >= self.iou_threshold

    @property
    def correct(self) -> np.ndarray | None:
        """``(N,)`` bool: classified correctly (None without labels)."""
        if self.labels is None or self.predicted is None:
            return None
        return self.predicted == self.labels

    def summary(self) -> dict[str, float]:
        """The scores by name, in the order of a table row."""
        return {
            "classification": self.classification,
            f"top-1 loc. (tau={self.threshold:g})": self.top1,
            f"GT-known loc. (tau={self.threshold:g})": self.gt_known,
            "MaxBoxAcc": self.max_box.best,
            "best tau": self.max_box.best_threshold,
            "pointing game": self.pointing,
            "mean IoU": float(self.ious.mean()) if self.ious.size else float("nan"),
        }


def localization_report(
    cams: Any,
    true_boxes: Any,
    *,
    labels: Any = None,
    predicted: Any = None,
    threshold: float = 0.2,
    thresholds: Sequence[float] | np.ndarray | None = None,
    iou_threshold: float = 0.5,
) -> LocalizationReport:
    """Every localisation score of notebook 04 for a set of maps, computed by one code path.

    Introduced in notebook 04.

    Parameters
    ----------
    cams
        ``(N, H, W)`` maps in the frame of ``true_boxes`` (upsample class maps to the image size
        first).
    true_boxes
        ``(N, 4)`` inclusive ``(x0, y0, x1, y1)``.
    labels, predicted
        Optional ``(N,)`` true and predicted classes, both or neither: they add the
        classification accuracy and the top-1 localisation accuracy.
    threshold
        :func:`cam_to_box` threshold for :attr:`LocalizationReport.boxes` (the paper's 0.2).
    thresholds
        The sweep of :func:`max_box_accuracy` (default ``0.00, 0.05, ..., 0.95``).
    iou_threshold
        IoU needed for a hit (0.5).

    Returns
    -------
    LocalizationReport
        ``classification`` and ``top1`` are NaN only when no labels were given ("not computed");
        every other score is a number.

    Raises
    ------
    ValueError, TypeError
        No samples, mismatched shapes, thresholds outside their ranges, non-finite maps, or labels
        that are not integer class indices.
    """
    array = np.asarray(cams, dtype=np.float32)
    truth = np.asarray(true_boxes)
    if array.ndim != 3 or truth.shape != (len(array), 4):
        raise ValueError(
            f"need cams (N, H, W) and true_boxes (N, 4), got {array.shape} and {truth.shape}"
        )
    _check_count(len(array), "cams")
    if (labels is None) != (predicted is None):
        raise ValueError("pass both labels and predicted, or neither")
    threshold = check_threshold(threshold)
    iou_threshold = check_iou_threshold(iou_threshold)
    boxes = cams_to_boxes(array, threshold)
    ious = np.atleast_1d(np.asarray(box_iou(boxes, truth), dtype=np.float64))
    hits = ious >= iou_threshold
    classification = top1 = float("nan")
    label_array = predicted_array = None
    if labels is not None:
        label_array, predicted_array = np.asarray(labels), np.asarray(predicted)
        for name, values in (("labels", label_array), ("predicted", predicted_array)):
            if values.dtype.kind not in "iu":
                raise TypeError(f"{name} must be integer class indices, got dtype {values.dtype}")
        if label_array.shape != (len(array),) or predicted_array.shape != (len(array),):
            raise ValueError(
                f"labels {label_array.shape} and predicted {predicted_array.shape} must be "
                f"({len(array)},)"
            )
        correct = predicted_array == label_array
        classification = float(correct.mean())
        top1 = localization_accuracy(boxes, truth, iou_threshold, correct_class=correct)
    return LocalizationReport(
        cams=array,
        boxes=boxes,
        true_boxes=truth,
        ious=ious,
        threshold=float(threshold),
        iou_threshold=float(iou_threshold),
        gt_known=float(hits.mean()),
        max_box=max_box_accuracy(array, truth, thresholds, iou_threshold),
        pointing=pointing_game(array, truth),
        labels=label_array,
        predicted=predicted_array,
        classification=classification,
        top1=top1,
    )


def evaluate_localization(
    model: keras.Model,
    data: Any,
    threshold: float = 0.2,
    thresholds: Any = None,
    iou_threshold: float = 0.5,
) -> LocalizationReport:
    """Classify a set of digit canvases and score the true class's maps against the true boxes.

    Introduced in notebook 04. The maps of each image's **true** class (Choe et al.'s
    "GT-known" setting) are upsampled bilinearly to the canvas size, where the true boxes live;
    for a correctly classified image this is also the map of the predicted class, so the paper's
    top-1 localisation (right class *and* IoU ≥ 0.5) comes out of the same maps.

    Parameters
    ----------
    model
        A Keras model with a GAP or GMP → Dense head (:func:`helpers.find_cam_head`).
    data
        A :class:`helpers.data.digits.DigitCanvases` (``images``, ``labels``, ``boxes``).
    threshold, thresholds, iou_threshold
        As in :func:`localization_report`.

    Returns
    -------
    LocalizationReport
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model, got {type(model).__name__}")
    images = np.asarray(data.images)
    if images.ndim != 4:
        raise ValueError(f"data.images must be a batch (B, H, W, C), got shape {images.shape}")
    result = class_activation_maps(model, images, classes=np.asarray(data.labels)[:, None])
    cams = upsample_maps(result.low_res[:, 0], result.input_size)
    return localization_report(
        cams,
        data.boxes,
        labels=data.labels,
        predicted=result.logits.argmax(axis=-1),
        threshold=threshold,
        thresholds=thresholds,
        iou_threshold=iou_threshold,
    )
