"""Boxes from class activation maps: threshold, largest component, bounding box; IoU; rescaling.

Introduced in notebook 04. Scores of many boxes (accuracy, MaxBoxAcc, the pointing game) are in
:mod:`helpers.evaluate.localization`.

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
* :func:`choe_boxes` follows Choe et al. (CVPR 2020) as their released code computes it
  (clovaai/wsolevaluation, ``compute_bboxes_from_scoremaps`` with ``multi_contour_eval``): every
  region's box is a candidate, and each box is **one pixel wider and taller** than its region
  (their ``x1 = x + w`` from ``cv2.boundingRect``, then scored with the same inclusive ``+ 1``
  IoU as :func:`box_iou`). See its docstring.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from helpers.checks import ArgumentError, integer, number, real_array
from helpers.checks import maps as check_maps

__all__ = ["CHOE_THRESHOLDS", "NO_BOX", "box_iou", "cam_to_box", "cams_to_boxes", "choe_boxes",
           "maps_and_boxes",
           "scale_box"]

Box = tuple[int, int, int, int]
#: Row used by the batched functions for "no box" (a map with no positive value).
NO_BOX: Box = (-1, -1, -1, -1)
#: 8-connectivity: a 3x3 block of ones.
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
#: Choe et al.'s box thresholds: ``np.arange(0, 1, cam_curve_interval)`` with the 0.01 of their
#: README's evaluation command (their config.py's default is 0.001).
CHOE_THRESHOLDS: np.ndarray = np.arange(0, 1, 0.01)
#: Pixels of threshold masks :func:`choe_boxes` makes at once (each costs about 5 bytes with
#: the Euler count's temporaries): 1 << 21 is about 10 MiB, whatever the map's size.
_CHOE_CHUNK_PIXELS = 1 << 21


def _check_map(cam: Any, name: str = "cam") -> np.ndarray:
    return check_maps(name, cam, 2).astype(np.float64, copy=False)


def check_threshold(threshold: float) -> float:
    """A fraction of the map's maximum, in [0, 1]."""
    return number("threshold", threshold, 0.0, 1.0)


def check_iou_threshold(iou_threshold: float) -> float:
    """An IoU in (0, 1]; a percentage (50 for 50%) is refused with a hint, not scored 0."""
    if isinstance(iou_threshold, (int, float)) and 1.0 < iou_threshold <= 100.0:
        raise ArgumentError(f"iou_threshold must be a finite number in (0, 1], got "
                            f"{iou_threshold!r} (a percentage? pass 0.5 for 50%)")
    return number("iou_threshold", iou_threshold, 0.0, 1.0, low_open=True)


def _check_size(size: Any, name: str) -> tuple[int, int]:
    if isinstance(size, np.ndarray) and size.shape == (2,):
        size = tuple(size.tolist())  # e.g. np.array(image.shape[:2])
    if not isinstance(size, (tuple, list)) or len(size) != 2:
        raise ArgumentError(f"{name} must be (height, width), two integers >= 1, got {size!r:.80}")
    return integer(f"{name}[0] (height)", size[0], 1), integer(f"{name}[1] (width)", size[1], 1)


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
    fraction = check_threshold(threshold)
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
    check_threshold(threshold)
    array = real_array("cams", cams, "an array (N, H, W)")
    if array.ndim == 3 and len(array) == 0:
        return np.empty((0, 4), dtype=np.int64)  # no maps, no boxes
    array = check_maps("cams", array, 3)
    boxes = np.empty((len(array), 4), dtype=np.int64)
    for index, cam in enumerate(array):
        box = cam_to_box(cam, threshold)
        boxes[index] = NO_BOX if box is None else box
    return boxes


def _min_max(array: np.ndarray) -> np.ndarray:
    """wsolevaluation's ``normalize_scoremap``, in float64: ``cam -= min; cam /= max``, and a
    constant map becomes zeros. (It also turns a NaN map into zeros; :func:`_check_map` refuses
    NaN before this.)"""
    if array.min() == array.max():
        return np.zeros_like(array)
    shifted = array - array.min()
    return shifted / shifted.max()


def _euler_numbers(masks: np.ndarray) -> np.ndarray:
    """``(T,)`` Euler numbers (8-connected regions minus their holes) of ``(T, H, W)`` masks, by
    counting 2x2 patterns (Gray 1971): ``(Q1 - Q3 - 2 QD) / 4`` on the zero-padded masks."""
    padded = np.pad(masks, ((0, 0), (1, 1), (1, 1)))
    a, b = padded[:, :-1, :-1], padded[:, :-1, 1:]
    c, d = padded[:, 1:, :-1], padded[:, 1:, 1:]
    ones = a.astype(np.int8) + b + c + d
    diagonal = (ones == 2) & (a == d)  # two ones on one diagonal
    return ((ones == 1).sum(axis=(1, 2)) - (ones == 3).sum(axis=(1, 2))
            - 2 * diagonal.sum(axis=(1, 2))) // 4


def _region_boxes(mask: np.ndarray, euler: int | None = None) -> np.ndarray:
    """Inclusive ``(x0, y0, x1, y1)`` of the pixels of every contour ``cv2.findContours(mask,
    RETR_TREE)`` returns, without OpenCV.

    OpenCV traces 8-connected regions of ones (on the image padded with a border of zeros, so
    regions touching the edge count). ``RETR_TREE`` returns every border: each region's outer
    border, whose pixels span the region's bounding box, and the border around each **hole** (a
    4-connected patch of zeros that does not reach the edge), which runs on the ones next to the
    hole and so spans the hole's box grown by one pixel on each side. ``euler`` (the mask's
    Euler number, :func:`_euler_numbers`), when given, skips the search for holes where it shows
    there are none (the boxes are the same; most thresholded maps have no hole).
    """
    labels, count = ndimage.label(mask, structure=_EIGHT_CONNECTED)
    if count == 1:  # the usual case: the region's box is the mask's (cheaper than find_objects)
        rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        boxes = [(columns[0], rows[0], columns[-1], rows[-1])]
    else:
        boxes = [(s[1].start, s[0].start, s[1].stop - 1, s[0].stop - 1)
                 for s in ndimage.find_objects(labels)]
    if euler is not None and count == euler:  # regions - holes == regions: no hole to trace
        return np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    zeros, _ = ndimage.label(np.pad(~mask, 1, constant_values=True))  # 4-connected zeros
    outside = zeros[0, 0]
    for index, s in enumerate(ndimage.find_objects(zeros), start=1):
        if index != outside and s is not None:  # a hole; padded frame: - 1, grown by one: - 1
            boxes.append((s[1].start - 2, s[0].start - 2, s[1].stop - 1, s[0].stop - 1))
    return np.asarray(boxes, dtype=np.int64).reshape(-1, 4)


def choe_boxes(cam: Any, thresholds: Any = None) -> list[np.ndarray]:
    """Every candidate box of a map at each threshold, as Choe et al.'s released code makes them.

    Introduced in notebook 04. Step by step, as clovaai/wsolevaluation does it
    (``normalize_scoremap``, then ``compute_bboxes_from_scoremaps(..., multi_contour_eval=True)``):

    1. min-max normalise the map to [0, 1] (a constant map becomes all zeros);
    2. ``image = (map * 255).astype(uint8)`` (truncated, not rounded);
    3. at threshold ``τ`` keep the pixels with ``image > int(τ · max(image))`` (``cv2.threshold``
       with ``THRESH_BINARY`` keeps values strictly above ``thresh``);
    4. every contour of that mask (``cv2.findContours`` with ``RETR_TREE``: each 8-connected
       region, and each hole in one) gives a box ``x, y, w, h = cv2.boundingRect(contour)``,
       ``(x0, y0, x1, y1) = (x, y, min(x + w, W - 1), min(y + h, H - 1))``. ``boundingRect``'s
       ``w`` counts pixels, so ``x + w`` is one past the last column: read as an inclusive box
       (their IoU adds 1 to widths and heights, as :func:`box_iou` does), each box is one pixel
       wider and taller than its region, except at the right and bottom edges;
    5. an empty mask gives the one box ``(0, 0, 0, 0)``.

    Regions are found with ``scipy.ndimage.label`` (8-connectivity) instead of OpenCV.

    Parameters
    ----------
    cam
        ``(H, W)`` finite map (any real values).
    thresholds
        Fractions in ``[0, 1]``; default :data:`CHOE_THRESHOLDS` (``0, 0.01, ..., 0.99``).

    Returns
    -------
    list of numpy.ndarray
        One ``(n_τ, 4)`` int array of candidate boxes per threshold.

    Raises
    ------
    ValueError
        A map that is not 2-D, is empty, or holds NaN or infinite values (wsolevaluation would
        score a NaN map as all zeros), or thresholds outside ``[0, 1]``.
    """
    array = _check_map(cam)
    sweep = check_thresholds(CHOE_THRESHOLDS if thresholds is None else thresholds)
    image = (_min_max(array) * 255).astype(np.uint8)
    peak = float(image.max())
    height, width = image.shape
    cuts = np.array([int(threshold * peak) for threshold in sweep])
    boxes = []
    chunk = max(1, _CHOE_CHUNK_PIXELS // image.size)  # masks of a few thresholds at a time
    for start in range(0, len(cuts), chunk):
        masks = image[None] > cuts[start:start + chunk, None, None]
        for mask, euler in zip(masks, _euler_numbers(masks)):
            if not mask.any():
                boxes.append(np.zeros((1, 4), dtype=np.int64))
                continue
            found = _region_boxes(mask, int(euler))
            found[:, 2] = np.minimum(found[:, 2] + 1, width - 1)  # x + w, at most W - 1
            found[:, 3] = np.minimum(found[:, 3] + 1, height - 1)  # y + h, at most H - 1
            boxes.append(found)
    return boxes


#: The most box thresholds one sweep takes: each costs a pass over every map (and Choe's
#: protocol, on maps cast to uint8 as their code does, has no more than 256 distinct ones).
MAX_THRESHOLDS = 1000


def check_thresholds(thresholds: Any) -> np.ndarray:
    """A non-empty 1-D sequence of at most :data:`MAX_THRESHOLDS` box thresholds, each a fraction
    in [0, 1], as floats."""
    sweep = np.asarray(thresholds)
    if sweep.ndim != 1 or sweep.size == 0 or sweep.dtype.kind not in "iuf":
        raise ValueError(
            f"thresholds must be a non-empty 1-D sequence of fractions in [0, 1], got {thresholds!r:.80}"
        )
    if sweep.size > MAX_THRESHOLDS:
        raise ArgumentError(f"thresholds has {sweep.size:,} values; at most {MAX_THRESHOLDS} are "
                            "taken (a step of 0.001), e.g. np.linspace(0, 1, 101)")
    sweep = sweep.astype(float)
    if not np.all((sweep >= 0.0) & (sweep <= 1.0)):  # NaN fails this too
        raise ValueError(f"thresholds must be fractions in [0, 1], got {sweep.tolist()}")
    return np.unique(sweep)  # increasing, each once: "the smallest on ties" is the first


def as_boxes(boxes: Any, name: str) -> np.ndarray:
    if boxes is None:
        return np.asarray(NO_BOX, dtype=np.float64)
    try:  # converted under this guard before any other numpy call reads them
        array = real_array(name, boxes).astype(np.float64)
    except ArgumentError:
        raise ArgumentError(f"{name} must be numbers (x0, y0, x1, y1), or an array (N, 4) of "
                            f"them; got {str(boxes)[:80]!r} ({type(boxes).__name__})") from None
    if array.shape[-1:] != (4,):
        raise ValueError(f"{name} must have shape (..., 4) as (x0, y0, x1, y1), got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or infinite coordinates")
    missing = np.all(array == -1, axis=-1)
    inverted = (array[..., 2] < array[..., 0]) | (array[..., 3] < array[..., 1])
    if np.any(inverted & ~missing):
        raise ValueError(f"{name} has a box with x1 < x0 or y1 < y0 (inclusive boxes need x0 <= x1)")
    return array


def refuse_no_box(truth: np.ndarray) -> np.ndarray:
    """The ``(N,)`` rows of checked true boxes ``(N, 4)`` that are :data:`NO_BOX`, if none is:
    a sample without a true box cannot be scored (an IoU of 0 would count it as a miss), so
    every localisation score refuses it with a ValueError naming the first."""
    missing = np.all(truth == -1, axis=-1)
    if np.any(missing):
        i = int(np.flatnonzero(missing)[0])
        raise ValueError(
            f"true box {i} is NO_BOX (-1, -1, -1, -1), no box: each sample scored needs its true "
            f"box ({int(missing.sum())} of {len(truth)} have none); score only the samples that "
            "have one")
    return missing


def maps_and_boxes(cams: Any, true_boxes: Any) -> tuple[np.ndarray, np.ndarray]:
    """Check the pair every localisation score takes: maps ``(N, H, W)``, finite and not empty,
    and ``(N, 4)`` inclusive boxes **in the maps' frame** (inside ``W × H``; a box that reaches
    past the maps was drawn for another resolution, e.g. 224-pixel boxes for 7 × 7 maps, and
    would score 0 without a word). Returns them as floating arrays: float32 maps are kept as
    they are (no float64 copy of a whole batch: each score converts one map at a time)."""
    array = real_array("cams", cams, "an array (N, H, W)")
    if array.ndim == 3 and len(array) == 0:
        raise ValueError("got no samples (cams is empty); a score of nothing is undefined")
    array = check_maps("cams", array, 3)
    truth = as_boxes(true_boxes, "true_boxes")
    if truth.shape != (len(array), 4):
        raise ValueError(f"true_boxes must be (N, 4) for {len(array)} maps, got {truth.shape}")
    present = ~refuse_no_box(truth)
    height, width = array.shape[1:]
    outside = present & ((truth[:, :2].min(axis=1) < 0) | (truth[:, 2] > width - 1)
                         | (truth[:, 3] > height - 1))
    if np.any(outside):
        i = int(np.flatnonzero(outside)[0])
        raise ValueError(
            f"true box {i} {tuple(int(v) for v in truth[i])} lies outside the {height} × {width} "
            "maps: boxes and maps must share one frame. Score maps upsampled to the boxes' frame "
            "(result.maps, at the input size), or bring the boxes to the maps' with "
            "helpers.scale_box.")
    return array, truth


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
    first, second = as_boxes(a, "a"), as_boxes(b, "b")
    try:
        np.broadcast_shapes(first.shape[:-1], second.shape[:-1])
    except ValueError:
        raise ValueError(
            f"a holds {first.shape[:-1]} boxes and b {second.shape[:-1]}: pair them one to one "
            "(the same shape), or compare one box with many (a single box (4,) broadcasts)"
        ) from None
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
    coordinates = as_boxes(box, "box")
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
