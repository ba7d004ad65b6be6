"""Boxes from class activation maps, and how to score them.

Introduced in notebook 04.

Conventions
-----------
* A box is ``(x0, y0, x1, y1)`` in **inclusive** pixel coordinates of the map's frame: ``x`` is the
  column, ``y`` the row, and the box covers ``(x1 - x0 + 1) * (y1 - y0 + 1)`` pixels.
* ``cam_to_box`` follows Zhou et al. (2016): keep the pixels whose value is at least
  ``threshold * max(cam)``, take the **largest 8-connected component** (pixels touching by an edge
  or a corner belong together), and return its bounding box. When two components have the same
  size, the one holding the map's highest value wins, then the first in row-major order.
* A map with no positive value (``max(cam) <= 0``) carries no evidence for the class: there is no
  box (``None``; in batched functions the row :data:`NO_BOX`), which scores IoU 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

__all__ = [
    "NO_BOX",
    "cam_to_box",
    "cams_to_boxes",
    "box_iou",
    "scale_box",
    "localization_accuracy",
    "pointing_game",
    "max_box_accuracy",
    "MaxBoxAccuracy",
    "LocalizationReport",
    "localization_report",
]

Box = tuple[int, int, int, int]
#: Row used by the batched functions for "no box" (a map with no positive value).
NO_BOX: Box = (-1, -1, -1, -1)
#: 8-connectivity: a 3x3 block of ones.
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def _check_map(cam: Any, name: str = "cam") -> np.ndarray:
    array = np.asarray(cam, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D map (H, W), got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty: shape {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def _real_number(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r:.80}")
    return float(value)


def _check_threshold(threshold: float) -> float:
    value = _real_number(threshold, "threshold")
    if not 0.0 <= value <= 1.0:  # NaN fails this too
        raise ValueError(f"threshold is a fraction of the map's maximum in [0, 1], got {threshold}")
    return value


def _check_iou_threshold(iou_threshold: float) -> float:
    value = _real_number(iou_threshold, "iou_threshold")
    if not 0.0 < value <= 1.0:  # NaN fails this too
        hint = " (a percentage? pass 0.5 for 50%)" if 1.0 < value <= 100.0 else ""
        raise ValueError(
            f"iou_threshold is an IoU in (0, 1], e.g. 0.5, got {iou_threshold}{hint}"
        )
    return value


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


def _check_size(size: Any, name: str) -> tuple[int, int]:
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in size)
    ):
        raise TypeError(f"{name} must be (height, width) as two ints, got {size!r:.80}")
    height, width = int(size[0]), int(size[1])
    if height <= 0 or width <= 0:
        raise ValueError(f"{name} must be positive (height, width), got {size}")
    return height, width


def cam_to_box(cam: Any, threshold: float = 0.2) -> Box | None:
    """Bounding box of the largest region where ``cam >= threshold * max(cam)``.

    Parameters
    ----------
    cam
        ``(H, W)`` class activation map (any real values; raw or normalised).
    threshold
        Fraction of the map's maximum in ``[0, 1]``; the paper uses 0.2.

    Returns
    -------
    tuple[int, int, int, int] or None
        ``(x0, y0, x1, y1)``, inclusive, in the map's pixel frame; ``None`` when the map has no
        positive value (then no pixel is evidence for the class).

    Raises
    ------
    ValueError
        If ``cam`` is not a finite 2-D array or ``threshold`` is outside ``[0, 1]``.
    """
    array = _check_map(cam)
    fraction = _check_threshold(threshold)
    peak = float(array.max())
    if peak <= 0.0:
        return None
    mask = array >= fraction * peak
    labels, count = ndimage.label(mask, structure=_EIGHT_CONNECTED)
    if count == 1:
        chosen = 1
    else:
        sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
        candidates = np.flatnonzero(sizes == sizes.max()) + 1
        if len(candidates) == 1:
            chosen = int(candidates[0])
        else:
            # Tie: the component with the highest value; np.argmax takes the first in row-major order.
            best_values = ndimage.maximum(array, labels, candidates)
            chosen = int(candidates[int(np.argmax(best_values))])
    rows, columns = np.nonzero(labels == chosen)
    return int(columns.min()), int(rows.min()), int(columns.max()), int(rows.max())


def cams_to_boxes(cams: Any, threshold: float = 0.2) -> np.ndarray:
    """:func:`cam_to_box` for a batch of maps ``(N, H, W)`` → ``(N, 4)`` int boxes.

    Maps with no positive value give the row :data:`NO_BOX` ``(-1, -1, -1, -1)``.
    """
    array = np.asarray(cams)
    if array.ndim != 3:
        raise ValueError(f"cams must be a batch of maps (N, H, W), got shape {array.shape}")
    _check_threshold(threshold)
    boxes = np.empty((len(array), 4), dtype=np.int64)
    for index, cam in enumerate(array):
        box = cam_to_box(cam, threshold)
        boxes[index] = NO_BOX if box is None else box
    return boxes


def _as_boxes(boxes: Any, name: str) -> np.ndarray:
    if boxes is None:
        return np.asarray(NO_BOX, dtype=np.float64)
    array = np.asarray(boxes, dtype=np.float64)
    if array.shape[-1:] != (4,):
        raise ValueError(f"{name} must have shape (..., 4) as (x0, y0, x1, y1), got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite coordinates")
    missing = np.all(array == -1, axis=-1)
    inverted = (array[..., 2] < array[..., 0]) | (array[..., 3] < array[..., 1])
    if np.any(inverted & ~missing):
        raise ValueError(f"{name} has a box with x1 < x0 or y1 < y0 (inclusive boxes need x0 <= x1)")
    return array


def box_iou(a: Any, b: Any) -> np.ndarray | float:
    """Intersection over union of inclusive boxes.

    Parameters
    ----------
    a, b
        Boxes ``(..., 4)`` as ``(x0, y0, x1, y1)``, inclusive (a box covers
        ``(x1 - x0 + 1) * (y1 - y0 + 1)`` pixels); shapes broadcast. ``None`` or :data:`NO_BOX`
        stands for "no box" and scores 0.

    Returns
    -------
    float or numpy.ndarray
        IoU in ``[0, 1]``, a float for two single boxes.
    """
    first, second = _as_boxes(a, "a"), _as_boxes(b, "b")
    width = np.minimum(first[..., 2], second[..., 2]) - np.maximum(first[..., 0], second[..., 0]) + 1
    height = np.minimum(first[..., 3], second[..., 3]) - np.maximum(first[..., 1], second[..., 1]) + 1
    intersection = np.clip(width, 0, None) * np.clip(height, 0, None)

    def area(box: np.ndarray) -> np.ndarray:
        return (box[..., 2] - box[..., 0] + 1) * (box[..., 3] - box[..., 1] + 1)

    union = area(first) + area(second) - intersection
    missing = np.all(first == -1, axis=-1) | np.all(second == -1, axis=-1)
    iou = np.where(missing, 0.0, intersection / np.where(union > 0, union, 1.0))
    return float(iou) if iou.ndim == 0 else iou


def scale_box(box: Any, from_size: tuple[int, int], to_size: tuple[int, int]) -> Box | None:
    """Map an inclusive box between frames, e.g. from a 224×224 map to the original photo.

    ``from_size`` and ``to_size`` are ``(height, width)``. Each pixel of the source box maps to the
    pixels it covers in the target frame, so the box never shrinks below the area it covered.
    ``None`` or :data:`NO_BOX` gives ``None``.

    Raises
    ------
    TypeError, ValueError
        Sizes that are not two positive ints, or a box outside the ``from_size`` frame (it would
        otherwise be clipped silently).
    """
    (from_h, from_w), (to_h, to_w) = _check_size(from_size, "from_size"), _check_size(to_size, "to_size")
    if box is None:
        return None
    coordinates = _as_boxes(box, "box")
    if coordinates.shape != (4,):
        raise ValueError(f"box must be one box (x0, y0, x1, y1), got shape {coordinates.shape}")
    if tuple(coordinates) == NO_BOX:
        return None
    x0, y0, x1, y1 = (float(v) for v in coordinates)
    if x0 < 0 or y0 < 0 or x1 > from_w - 1 or y1 > from_h - 1:
        raise ValueError(
            f"box {tuple(box)} lies outside the {from_h}x{from_w} frame it is said to be in "
            f"(x in 0..{from_w - 1}, y in 0..{from_h - 1}); check from_size=(height, width)"
        )
    sx, sy = to_w / from_w, to_h / from_h
    new = (
        int(np.floor(x0 * sx)),
        int(np.floor(y0 * sy)),
        int(np.ceil((x1 + 1) * sx)) - 1,
        int(np.ceil((y1 + 1) * sy)) - 1,
    )
    return (
        min(new[0], to_w - 1),
        min(new[1], to_h - 1),
        min(max(new[2], new[0]), to_w - 1),
        min(max(new[3], new[1]), to_h - 1),
    )


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
    predicted = _as_boxes(predicted_boxes, "predicted_boxes")
    truth = _as_boxes(true_boxes, "true_boxes")
    if predicted.shape != truth.shape or predicted.ndim != 2:
        raise ValueError(
            f"predicted_boxes {predicted.shape} and true_boxes {truth.shape} must both be (N, 4)"
        )
    _check_count(len(predicted), "predicted_boxes")
    hits = np.asarray(box_iou(predicted, truth)) >= _check_iou_threshold(iou_threshold)
    if correct_class is not None:
        hits &= _check_bools(correct_class, "correct_class", hits.shape)
    return float(hits.mean())


def pointing_game(cams: Any, true_boxes: Any, tolerance: int = 0) -> float:
    """Fraction of maps whose maximum lies inside the true box (Zhang et al., 2016).

    ``cams`` is ``(N, H, W)`` in the same frame as ``true_boxes`` ``(N, 4)`` (inclusive). The peak is
    the first maximum in row-major order; ``tolerance`` grows each box by that many pixels.
    """
    array = np.asarray(cams, dtype=np.float64)
    truth = _as_boxes(true_boxes, "true_boxes")
    if array.ndim != 3 or truth.shape != (len(array), 4):
        raise ValueError(f"need cams (N, H, W) and true_boxes (N, 4), got {array.shape}, {truth.shape}")
    _check_count(len(array), "cams")
    if min(array.shape[1:]) == 0:
        raise ValueError(f"cams are empty maps: shape {array.shape}")
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, np.integer)) or tolerance < 0:
        raise ValueError(f"tolerance must be a non-negative int (pixels), got {tolerance!r}")
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
    _check_iou_threshold(iou_threshold)
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
    threshold = _check_threshold(threshold)
    iou_threshold = _check_iou_threshold(iou_threshold)
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
