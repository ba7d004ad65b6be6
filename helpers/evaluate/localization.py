"""Scoring boxes and maps against true boxes: accuracy, MaxBoxAcc, the pointing game, a report.

Introduced in notebook 04. Boxes come from :mod:`helpers.evaluate.boxes`
(:func:`~helpers.evaluate.boxes.cam_to_box`); MaxBoxAcc under Choe et al.'s protocol or Zhou's
rule from :mod:`helpers.evaluate.max_box` (re-exported here); :func:`evaluate_localization` runs a
model with a
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
    as_boxes, box_iou, cams_to_boxes, check_iou_threshold, check_threshold, maps_and_boxes,
    refuse_no_box,
)
from helpers.evaluate.max_box import MaxBoxAccuracy, check_protocol, max_box_accuracy
from helpers.maps import upsample_maps

__all__ = [
    "LocalizationReport",
    "MaxBoxAccuracy",
    "evaluate_localization",
    "localization_accuracy",
    "localization_report",
    "max_box_accuracy",
    "pointing_game",
    "zhou_accuracy",
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
        No samples, mismatched shapes, a true box that is :data:`NO_BOX`, or ``iou_threshold``
        outside ``(0, 1]`` (50 for 50% is refused, not scored 0).
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
    refuse_no_box(truth)  # as every localisation score: a sample without a true box is no miss
    hits = np.asarray(box_iou(predicted, truth)) >= check_iou_threshold(iou_threshold)
    if correct_class is not None:
        hits &= _check_bools(correct_class, "correct_class", hits.shape)
    return float(hits.mean())


def zhou_accuracy(
    cams: Any,
    true_boxes: Any,
    threshold: float = 0.2,
    iou_threshold: float = 0.5,
    correct_class: Any = None,
) -> float:
    """Zhou et al.'s localisation accuracy: one box per map by :func:`cam_to_box` at the fixed
    ``threshold`` (their 0.2 of the map's maximum), right when its IoU is ≥ ``iou_threshold``.

    Introduced in notebook 04. ``correct_class`` (boolean ``(N,)``) gives top-1 localisation;
    without it, GT-known. This is :attr:`LocalizationReport.gt_known` / ``top1``; Choe et al.'s
    MaxBoxAcc instead takes each model's best threshold (:func:`max_box_accuracy`).
    """
    return localization_accuracy(cams_to_boxes(cams, threshold), true_boxes, iou_threshold,
                                 correct_class=correct_class)


def pointing_game(cams: Any, true_boxes: Any, tolerance: int = 15) -> float:
    """Fraction of maps whose maximum lies within ``tolerance`` pixels of the true box.

    Zhang et al. (ECCV 2016, "Top-down Neural Attention by Excitation Backprop"): "a hit if the
    maximum point lies in the annotated region with a 15-pixel tolerance". Their released code
    (``eval_coco.py``) takes the first maximum (``np.argmax``) of the map resized to the
    **original image**, draws a circle of radius 15 pixels around it and counts a hit when the
    circle touches the object; here the object is the box, so a hit is a Euclidean distance
    ≤ ``tolerance`` from the peak pixel to the nearest pixel of the box (0: inside the box).
    TorchRay's re-implementation counts distance < ``tolerance`` (strictly).

    A constant map (e.g. all zeros) points nowhere and counts as a miss.

    Pixels are the **map's**: pass maps upsampled to the frame of ``true_boxes`` (the input
    size, 224 × 224 or the canvas), as :func:`localization_report`'s callers do. 15 pixels was
    set for photos of a few hundred pixels a side; on small canvases it is a large margin, and
    ``tolerance=0`` (peak inside the box) is the stricter game.

    Parameters
    ----------
    cams
        ``(N, H, W)`` maps in the frame of ``true_boxes``.
    true_boxes
        ``(N, 4)`` inclusive boxes.
    tolerance
        Pixels, an integer ≥ 0 (Zhang et al.'s 15).
    """
    array, truth = maps_and_boxes(cams, true_boxes)
    tolerance = integer("tolerance (pixels)", tolerance, 0)
    flat = array.reshape(len(array), -1)
    flat_peak = flat.argmax(axis=1)
    rows, columns = np.unravel_index(flat_peak, array.shape[1:])
    # Distance from the peak to the nearest box pixel, along each axis (0 inside the box's span).
    dx = np.maximum.reduce([truth[:, 0] - columns, np.zeros(len(array)), columns - truth[:, 2]])
    dy = np.maximum.reduce([truth[:, 1] - rows, np.zeros(len(array)), rows - truth[:, 3]])
    # A constant map (all zeros: nothing found) has no peak to point with: a miss, wherever
    # argmax's first pixel happens to lie.
    pointed = flat.max(axis=1) > flat.min(axis=1)
    return float((pointed & (dx**2 + dy**2 <= tolerance**2)).mean())


@dataclass(frozen=True, eq=False)
class LocalizationReport:
    """Boxes and localisation scores of a set of maps against true boxes.

    Introduced in notebook 04; made by :func:`localization_report` (and
    :func:`helpers.evaluate_localization`, which runs a model first).

    Attributes
    ----------
    cams
        ``(N, H, W)`` float32: the maps that were scored, in the frame of the true boxes (the
        array given, not a copy, when it was float32 already).
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
        localisation when the maps are those of the true class): Zhou et al.'s rule at the fixed
        :attr:`threshold`, :func:`zhou_accuracy`.
    max_box
        :func:`max_box_accuracy` over a sweep of thresholds (MaxBoxAcc); ``max_box.protocol``
        says whose (``"choe"``: Choe et al. 2020's, the default, MaxBoxAccV2 over IoU 0.3, 0.5
        and 0.7; ``"zhou"``: Zhou's box at each threshold), ``max_box.label`` names it.
    pointing, pointing_tolerance
        :func:`pointing_game` with that tolerance in pixels: share of maps whose maximum lies
        within it of the true box (0: inside the box).
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
    pointing_tolerance: int = 15

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
        """The scores by name, in the order of a table row. The fixed-threshold scores are Zhou's
        rule at ``tau`` (a fraction of each map's maximum); MaxBoxAcc names its protocol
        (``"MaxBoxAcc (zhou)"``, ``"MaxBoxAccV2 (choe)"``); its best threshold is on that
        protocol's scale, for MaxBoxAccV2 the one at IoU 0.5 (or its first IoU threshold); the
        pointing game names its tolerance when it has one."""
        ious = self.max_box.iou_thresholds
        max_box_name = "MaxBoxAccV2" if len(ious) > 1 else "MaxBoxAcc"
        tolerance = f" ({self.pointing_tolerance} px)" if self.pointing_tolerance else ""
        if len(ious) > 1:
            at = ious.index(0.5) if 0.5 in ious else 0
            best_tau_name = f"best tau ({self.max_box.protocol}, IoU {ious[at]:g})"
            best_tau = float(self.max_box.best_thresholds[at])
        else:
            best_tau_name = f"best tau ({self.max_box.protocol})"
            best_tau = self.max_box.best_threshold
        return {
            "classification": self.classification,
            f"top-1 loc. (zhou, tau={self.threshold:g})": self.top1,
            f"GT-known loc. (zhou, tau={self.threshold:g})": self.gt_known,
            f"{max_box_name} ({self.max_box.protocol})": self.max_box.best,
            best_tau_name: best_tau,
            f"pointing game{tolerance}": self.pointing,
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
    protocol: str = "choe",
    max_box_iou: float | Sequence[float] | None = None,
    pointing_tolerance: int = 15,
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
        The sweep of :func:`max_box_accuracy` (default: its protocol's, ``0.00, 0.05, ..., 0.95``
        for ``"zhou"``, ``0, 0.01, ..., 0.99`` for ``"choe"``).
    iou_threshold
        IoU needed for a hit (0.5).
    protocol
        MaxBoxAcc's protocol (:func:`max_box_accuracy`): ``"choe"`` (the default, Choe et al.'s
        definition: thresholds on each map's min-max scale) or ``"zhou"`` (Zhou's box swept
        over fractions of each map's maximum). The fixed-threshold scores (``gt_known``,
        ``top1``, ``boxes``) are Zhou's rule at ``threshold`` under either.
    max_box_iou
        IoU threshold(s) of MaxBoxAcc; default ``(0.3, 0.5, 0.7)`` for ``"choe"`` (MaxBoxAccV2,
        the field's score) and ``iou_threshold`` for ``"zhou"``.
    pointing_tolerance
        :func:`pointing_game`'s tolerance in pixels of ``cams``; default 15, Zhang et al.'s
        (ECCV 2016); 0 counts a hit only when the peak is inside the box.

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
    array, _ = maps_and_boxes(cams, true_boxes)
    # float32 maps are kept, not copied (200 maps of 224 x 224: 40 MB a report).
    array, truth = np.asarray(array, dtype=np.float32), np.asarray(true_boxes)  # boxes as given
    if (labels is None) != (predicted is None):
        raise ValueError("pass both labels and predicted, or neither")
    threshold = check_threshold(threshold)
    iou_threshold = check_iou_threshold(iou_threshold)
    protocol = check_protocol(protocol)
    if max_box_iou is None:
        max_box_iou = (0.3, 0.5, 0.7) if protocol == "choe" else iou_threshold
    pointing_tolerance = integer("pointing_tolerance (pixels)", pointing_tolerance, 0)
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
        max_box=max_box_accuracy(array, truth, max_box_iou, protocol, thresholds=thresholds),
        pointing=pointing_game(array, truth, tolerance=pointing_tolerance),
        labels=label_array,
        predicted=predicted_array,
        classification=classification,
        top1=top1,
        pointing_tolerance=pointing_tolerance,
    )


def evaluate_localization(
    model: keras.Model,
    data: Any,
    threshold: float = 0.2,
    thresholds: Any = None,
    iou_threshold: float = 0.5,
    *,
    protocol: str = "choe",
    max_box_iou: float | Sequence[float] | None = None,
    pointing_tolerance: int = 15,
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
    threshold, thresholds, iou_threshold, protocol, max_box_iou, pointing_tolerance
        As in :func:`localization_report`: by default MaxBoxAccV2 under Choe et al.'s protocol
        and the pointing game with Zhang et al.'s 15 pixels; ``protocol="zhou",
        pointing_tolerance=0`` gives the rules of notebook 04's first edition.

    Returns
    -------
    LocalizationReport
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model, got {type(model).__name__}")
    missing = [name for name in ("images", "labels", "boxes") if not hasattr(data, name)]
    if missing:
        raise TypeError(
            f"data must have images, labels and boxes (a DigitCanvases or PhotoComposites, e.g. "
            f"helpers.make_digit_canvases(...)); a {type(data).__name__} has no "
            f"{', '.join(missing)}")
    images = np.asarray(data.images)
    if images.ndim != 4:
        raise ValueError(f"data.images must be a batch (B, H, W, C), got shape {images.shape}")
    labels = np.asarray(data.labels)
    if labels.shape != (len(images),) or labels.dtype.kind not in "iu":
        raise ValueError(f"data.labels must be {len(images)} integer classes (one per image), got "
                         f"{labels.dtype} {labels.shape}")
    result = class_activation_maps(model, images, classes=labels[:, None])
    cams = upsample_maps(result.low_res[:, 0], result.input_size)
    return localization_report(
        cams,
        data.boxes,
        labels=data.labels,
        predicted=result.logits.argmax(axis=-1),
        threshold=threshold,
        thresholds=thresholds,
        iou_threshold=iou_threshold,
        protocol=protocol,
        max_box_iou=max_box_iou,
        pointing_tolerance=pointing_tolerance,
    )
