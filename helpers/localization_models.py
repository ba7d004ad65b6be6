"""Scoring a model's class maps against true boxes, on digit canvases.

Introduced in notebook 04. :func:`evaluate_localization` runs a model with a GAP or a GMP head
(:func:`helpers.class_activation_maps` computes ``M_c = Σ_k w_k^c f_k`` for both) over a
:class:`~helpers.synthetic.DigitCanvases` set and scores the maps of the true class with
:func:`helpers.localization.localization_report`.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from helpers.cam import class_activation_maps
from helpers.localization import LocalizationReport, localization_report
from helpers.maps import upsample_maps

__all__ = ["evaluate_localization"]


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
        A :class:`helpers.synthetic.DigitCanvases` (``images``, ``labels``, ``boxes``).
    threshold, thresholds, iou_threshold
        As in :func:`helpers.localization.localization_report`.

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
