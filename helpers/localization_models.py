"""Class maps of small CNNs with a GAP *or* GMP head, and scoring them on digit canvases.

Introduced in notebook 04.

:func:`helpers.class_activation_maps` (notebook 03) needs a ``GlobalAveragePooling2D → Dense``
head. Zhou et al. (2016) also computed maps for a *global max pooling* (GMP) baseline, with the same
recipe: the Dense weights ``w_k^c`` of class ``c`` applied at every position of the last feature
map ``f_k``,

    M_c(x, y) = Σ_k w_k^c f_k(x, y)              (the same weighted sum for both heads).

Only the link between the map and the class score differs:

* GAP: ``S_c = Σ_k w_k^c mean_{x,y} f_k + b_c = mean_{x,y} M_c + b_c`` (the CAM identity);
* GMP: ``S_c = Σ_k w_k^c max_{x,y} f_k + b_c``: each channel contributes its own maximum, wherever
  it is, so ``S_c`` is in general neither ``mean(M_c) + b_c`` nor ``max(M_c) + b_c``.

:func:`global_pooling_cams` computes ``M_c`` for either head with the same code, so the two can be
compared fairly; :func:`evaluate_localization` runs a model over a
:class:`~helpers.synthetic.DigitCanvases` set and scores the maps of the true class with
:func:`helpers.localization.localization_report`.
"""

from __future__ import annotations

import weakref
from typing import Any

import keras
import numpy as np

from helpers.cam import CAMResult, _resolve_classes, _run_feature_model, upsample_maps
from helpers.graph import _describe, _producer
from helpers.localization import LocalizationReport, localization_report

__all__ = ["POOLING_METHODS", "find_pooling_head", "global_pooling_cams", "evaluate_localization"]

#: ``CAMResult.method`` for each kind of global pooling head.
POOLING_METHODS = {
    keras.layers.GlobalAveragePooling2D: "cam",
    keras.layers.GlobalMaxPooling2D: "cam_gmp",
}


_HEADS: weakref.WeakKeyDictionary[keras.Model, tuple[Any, Any, Any]] = weakref.WeakKeyDictionary()


def find_pooling_head(
    model: keras.Model,
) -> tuple[keras.Model, keras.layers.Layer, keras.layers.Dense]:
    """Find ``feature map → GlobalAveragePooling2D | GlobalMaxPooling2D → Dense`` in a model.

    Introduced in notebook 04. The search goes by layer type and graph position, walking back from
    the model's output: the output must come from a ``Dense`` layer whose input comes directly
    from a global average or max pooling layer.

    Parameters
    ----------
    model
        A Functional Keras model with one image input and one output, such as
        :func:`helpers.build_small_cnn` builds (``head="gap"`` or ``"gmp"``).

    Returns
    -------
    feature_model, pooling, dense
        A model from the images to the feature map ``(B, h, w, k)`` (sharing the layers),
        the pooling layer and the Dense layer (kernel ``(k, C)``).

    Raises
    ------
    TypeError
        ``model`` is not a Keras model.
    ValueError
        The model's output is not ``Dense(global pooling(feature map))``; the message says what
        was found.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"model must be a keras.Model, got {type(model).__name__}")
    cached = _HEADS.get(model)
    if cached is not None:
        return cached
    outputs = list(keras.tree.flatten(model.outputs)) if model.outputs else []
    if len(model.inputs or []) != 1 or len(outputs) != 1:
        raise ValueError(f"model {model.name!r} needs one input and one output")
    dense, dense_node, _ = _producer(outputs[0])
    if not isinstance(dense, keras.layers.Dense):
        found = "the input" if dense is None else _describe(dense)
        raise ValueError(
            f"model {model.name!r}: the output comes from {found}, not from a Dense layer"
        )
    pooling, pooling_node, _ = _producer(dense_node.arguments.keras_tensors[0])
    if type(pooling) not in POOLING_METHODS:
        found = "the input" if pooling is None else _describe(pooling)
        raise ValueError(
            f"model {model.name!r}: Dense {dense.name!r} receives {found}, not a "
            "GlobalAveragePooling2D or GlobalMaxPooling2D layer"
        )
    if getattr(pooling, "data_format", "channels_last") != "channels_last":
        raise ValueError(
            f"{pooling.name!r} pools a channels_first map; only channels_last is supported"
        )
    features = pooling_node.arguments.keras_tensors[0]
    feature_model = keras.Model(model.inputs[0], features, name=f"{model.name}_features")
    _HEADS[model] = (feature_model, pooling, dense)  # built once: predict traces once per model
    return feature_model, pooling, dense


def _class_ids(classes: Any, top_k: int | None, logits: np.ndarray) -> np.ndarray:
    """``(B, K)`` class ids, with the same rules as :func:`helpers.class_activation_maps`."""
    batch, num_classes = logits.shape
    chosen = _resolve_classes(classes, top_k, batch, num_classes)
    if chosen.kind == "given":
        return chosen.ids
    if chosen.kind == "all":
        return np.tile(np.arange(num_classes, dtype=np.int64), (batch, 1))
    return np.argsort(-logits, axis=-1, kind="stable")[:, : chosen.count].astype(np.int64)


def global_pooling_cams(
    model: keras.Model,
    images: Any,
    classes: Any = None,
    top_k: int | None = None,
    batch_size: int = 256,
) -> CAMResult:
    """Class maps ``M_c = Σ_k w_k^c f_k`` of a model with a GAP or a GMP head.

    Introduced in notebook 04. One forward pass to the feature map (in inference mode, in batches
    of ``batch_size``); the logits are computed from it as the head does (mean or max over
    positions, then the Dense layer), the maps with one ``einsum``.

    Parameters
    ----------
    model
        A Keras model whose output is ``Dense(GlobalAveragePooling2D(f))`` or
        ``Dense(GlobalMaxPooling2D(f))`` (see :func:`find_pooling_head`).
    images
        ``(B, H, W, C)`` already in the model's input range.
    classes
        As in :func:`helpers.class_activation_maps`: ``None`` for the top-1 (or ``top_k``)
        classes by logit, ``"all"``, a sequence of class ids for every image ``(K,)``, or class
        ids per image ``(B, K)`` (the true labels as ``labels[:, None]``).
    top_k
        With ``classes=None``: how many top classes per image.
    batch_size
        Images per forward batch.

    Returns
    -------
    CAMResult
        ``low_res (B, K, h, w)``, ``maps (B, K, H, W)``, ``class_ids``, ``logits``, ``bias``;
        ``method`` is ``"cam"`` for a GAP head (then ``low_res.mean(axis=(2, 3)) + bias`` equals
        the scores) and ``"cam_gmp"`` for a GMP head (then the scores are
        ``Σ_k w_k^c max f_k + b_c`` and no such identity holds).
    """
    feature_model, pooling, dense = find_pooling_head(model)
    batch = np.asarray(images, dtype=np.float32)
    if batch.ndim != 4:
        raise ValueError(f"images must be a batch (B, H, W, C), got shape {batch.shape}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    # The engine's compiled forward pass (helpers.cam), one program per feature model.
    features = np.concatenate([
        _run_feature_model(feature_model, batch[start : start + batch_size])
        for start in range(0, len(batch), batch_size)
    ])
    kernel = keras.ops.convert_to_numpy(dense.kernel).astype(np.float32)  # (k, C)
    bias = (
        np.zeros(kernel.shape[1], np.float32)
        if dense.bias is None
        else keras.ops.convert_to_numpy(dense.bias).astype(np.float32)
    )
    method = POOLING_METHODS[type(pooling)]
    pooled = features.mean(axis=(1, 2)) if method == "cam" else features.max(axis=(1, 2))
    logits = pooled @ kernel + bias
    class_ids = _class_ids(classes, top_k, logits)
    low_res = np.einsum("bhwk,bck->bchw", features, kernel.T[class_ids], optimize=True)
    return CAMResult(
        low_res=low_res.astype(np.float32),
        class_ids=class_ids,
        logits=logits.astype(np.float32),
        input_size=(int(batch.shape[1]), int(batch.shape[2])),
        class_names=tuple(f"class {i}" for i in range(kernel.shape[1])),
        method=method,
        layer=getattr(_producer(feature_model.outputs[0])[0], "name", "input"),
        bias=bias[class_ids],
    )


def evaluate_localization(
    model: keras.Model,
    data: Any,
    threshold: float = 0.2,
    thresholds: Any = None,
    iou_threshold: float = 0.5,
    batch_size: int = 256,
) -> LocalizationReport:
    """Classify a set of digit canvases and score the true class's maps against the true boxes.

    Introduced in notebook 04. The maps of each image's **true** class (Choe et al.'s
    "GT-known" setting) are upsampled bilinearly to the canvas size, where the true boxes live;
    for a correctly classified image this is also the map of the predicted class, so the paper's
    top-1 localisation (right class *and* IoU ≥ 0.5) comes out of the same maps.

    Parameters
    ----------
    model
        A model with a GAP or GMP head (:func:`find_pooling_head`).
    data
        A :class:`helpers.DigitCanvases` (``images``, ``labels``, ``boxes``).
    threshold, thresholds, iou_threshold
        As in :func:`helpers.localization.localization_report`.

    Returns
    -------
    LocalizationReport
    """
    result = global_pooling_cams(model, data.images, classes=np.asarray(data.labels)[:, None],
                                 batch_size=batch_size)
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
