"""The result of every map method, and the two things one does with maps: resize and normalise.

Introduced in notebook 03.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import keras
import numpy as np

from helpers.checks import integer, maps as check_maps
from helpers.checks import size as size_check

__all__ = ["UPSAMPLE_LIMIT", "CAMResult", "check_upsample_size", "normalize_cam", "resize_maps", "softmax",
           "upsample_maps", "upsample_operator"]

#: Memory budget (number of float32 values) for one chunk of upsampled maps.
_CHUNK_VALUES = 1 << 22  # 16 MiB: 83 maps of 224 x 224


def resize_maps(maps: Any, size: tuple[int, int]) -> Any:
    """The one resize of maps, in ``keras.ops`` (the compiled methods use it too): ``(n, ..., h, w)``
    → ``(n, ..., H, W)``, bilinear with half-pixel centres, no antialiasing (maps are upsampled)."""
    ops = keras.ops
    shape = ops.shape(maps)
    flat = ops.reshape(maps, (-1, shape[-2], shape[-1], 1))
    resized = ops.image.resize(flat, size, interpolation="bilinear", antialias=False)
    return ops.reshape(resized, (-1, *shape[1:-2], size[0], size[1]))


#: Most float32 values an upsampling makes at once (1 GiB), whether in the compiled call
#: (``upsample=True``), by :attr:`CAMResult.maps` or by :func:`upsample_maps`; more is refused.
UPSAMPLE_LIMIT = 1 << 28


def check_upsample_size(shape: tuple[int, ...], size: tuple[int, int], what: str) -> None:
    """Refuse to make ``shape[:-2] + size`` float32 maps above :data:`UPSAMPLE_LIMIT`."""
    count = int(np.prod(shape[:-2], dtype=np.int64)) * int(size[0]) * int(size[1])
    if count > UPSAMPLE_LIMIT:
        lead = " × ".join(str(int(n)) for n in shape[:-2]) or "1"
        raise ValueError(
            f"{what} would make {lead} maps of {size[0]} × {size[1]} ({count * 4 / 2**30:.1f} GiB); "
            f"the limit is {UPSAMPLE_LIMIT * 4 / 2**30:.0f} GiB. Upsample only the maps you show "
            "(result.map(i, k)), or ask for fewer classes or images.")


def upsample_maps(low_res: Any, size: tuple[int, int]) -> np.ndarray:
    """Bilinear upsampling of maps ``(..., h, w)`` to ``(..., H, W)``, in one resize call.

    Introduced in notebook 03. Half-pixel centres (as ``keras.ops.image.resize``); no
    antialiasing (it is an upsampling). The resize is linear, so upsampling a weighted sum of
    feature maps equals the weighted sum of the upsampled feature maps.

    Parameters
    ----------
    low_res
        Maps ``(..., h, w)``.
    size
        ``(H, W)``.

    Returns
    -------
    numpy.ndarray
        float32 ``(..., H, W)``.
    """
    low_res = check_maps("maps", low_res, float32=True).astype(np.float32, copy=False)
    height, width = size_check("size", size)
    check_upsample_size(low_res.shape, (height, width), "upsample_maps")
    lead, (h, w) = low_res.shape[:-2], low_res.shape[-2:]
    flat = low_res.reshape(-1, h, w)
    out = np.empty((flat.shape[0], height, width), dtype=np.float32)
    chunk = max(1, _CHUNK_VALUES // (height * width))
    for start in range(0, flat.shape[0], chunk):  # chunks only bound memory ("all" classes)
        resized = resize_maps(flat[start : start + chunk], (height, width))
        out[start : start + chunk] = keras.ops.convert_to_numpy(resized)
    return out.reshape(*lead, height, width)


def upsample_operator(low_size: tuple[int, int], size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Matrices ``rows (H, h)`` and ``columns (W, w)`` such that
    ``rows @ low @ columns.T == upsample_maps(low, size)``: bilinear resizing is linear and
    separable (rows, then columns), so resizing the unit impulses of one row and of one column
    once gives its two factors, ``H·h + W·w`` numbers whatever the map's size (the explorer
    upsamples one map per slider move with them)."""
    (h, w), (height, width) = low_size, size
    rows = upsample_maps(np.eye(h, dtype=np.float32)[:, :, None], (height, 1))[:, :, 0].T
    columns = upsample_maps(np.eye(w, dtype=np.float32)[:, None, :], (1, width))[:, 0, :].T
    return rows, columns


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return (0.5 * (1.0 + np.tanh(0.5 * logits.astype(np.float64)))).astype(np.float32)


def softmax(logits: Any, axis: int = -1) -> np.ndarray:
    """The one softmax of numpy logits (computed in float64, returned as float32):
    probabilities from class scores, along ``axis``."""
    logits = np.asarray(logits)
    shifted = logits.astype(np.float64) - logits.max(axis=axis, keepdims=True)
    exp = np.exp(shifted)
    return (exp / exp.sum(axis=axis, keepdims=True)).astype(np.float32)


@dataclass(eq=False)
class CAMResult:
    """Maps for ``B`` images and ``K`` classes each, from any method of :mod:`helpers.cam`.

    Introduced in notebook 03.

    Attributes
    ----------
    low_res
        ``(B, K, h, w)`` maps at feature resolution. CAM: ``M_c = Σ_k w_k^c f_k`` (no bias, no
        ReLU, no normalisation), so ``low_res.mean(axis=(2, 3)) + bias == scores``. Grad-CAM:
        ``Σ_k α_k^c A_k`` before the ReLU.
    class_ids
        ``(B, K)`` int class ids, row ``b`` for image ``b``.
    logits
        ``(B, num_classes)`` class scores before any softmax.
    input_size
        ``(H, W)`` of the model input; :attr:`maps` have this size and cover the whole image.
    class_names
        ``num_classes`` names (ImageNet names for a Classifier, ``"class i"`` otherwise).
    method
        The method's name: ``"cam"``, ``"grad_cam"``, ...
    layer
        Name of the layer whose feature maps were weighted.
    bias
        ``(B, K)`` Dense bias of each class (CAM only; None for gradient methods).
    pooling
        CAM only: ``"average"`` for a GAP head, where ``mean(M_c) + b_c = S_c`` holds, or
        ``"max"`` for a GMP head, where it does not (``S_c = Σ_k w_k^c max f_k + b_c``: each
        channel contributes its own maximum, wherever it is). None for gradient methods.
    output_activation
        What turns the model's logits into its output: ``"softmax"``, ``"sigmoid"`` (one
        logit, or independent labels) or ``"linear"``; :attr:`probabilities` follow it.
    dtype
        Precision of the network pass: ``"float32"`` or a mixed-precision policy name.
    """

    low_res: np.ndarray
    class_ids: np.ndarray
    logits: np.ndarray
    input_size: tuple[int, int]
    class_names: tuple[str, ...] = field(repr=False)
    method: str = "cam"
    layer: str = ""
    bias: np.ndarray | None = field(default=None, repr=False)
    pooling: str | None = None
    output_activation: str = "softmax"
    dtype: str = "float32"
    _maps: np.ndarray | None = field(default=None, repr=False)
    _probabilities: np.ndarray | None = field(default=None, repr=False)
    #: A weak reference to the Keras model that made the maps (None for a result made by
    #: hand): :meth:`joined` joins only results of one model.
    _model: Any = field(default=None, repr=False)

    @property
    def maps(self) -> np.ndarray:
        """``(B, K, H, W)``: :attr:`low_res` bilinearly upsampled to :attr:`input_size`.

        Computed on first access (or by the compiled call itself with ``upsample=True``),
        then kept: with ``classes="all"`` this is
        ``B × num_classes × H × W`` floats (200 MB per image for 1000 classes at 224 × 224), so
        use :meth:`map` for a few maps. Above :data:`UPSAMPLE_LIMIT` values it is refused, as
        ``upsample=True`` refuses the same work.
        """
        if self._maps is None:
            check_upsample_size(self.low_res.shape, self.input_size, "result.maps")
            self._maps = upsample_maps(self.low_res, self.input_size)
        return self._maps

    def _indices(self, image_index: Any, k: Any) -> tuple[int, int]:
        batch, classes = self.class_ids.shape
        return (integer("image_index", image_index, 0, batch - 1),
                integer(f"k (the result has {classes} classes per image)", k, 0, classes - 1))

    def map(self, image_index: int = 0, k: int = 0) -> np.ndarray:
        """One upsampled map ``(H, W)``: image ``image_index``, its ``k``-th requested class."""
        image_index, k = self._indices(image_index, k)
        if self._maps is not None:
            return self._maps[image_index, k]
        return upsample_maps(self.low_res[image_index, k], self.input_size)

    def joined(self, other: CAMResult) -> CAMResult:
        """This result with ``other``'s images after its own (same model object, method,
        classes, layer and ``dtype``; ValueError otherwise): e.g. the explorer adding an
        uploaded photo."""
        if not isinstance(other, CAMResult):
            raise TypeError(f"other must be a CAMResult (of the same model), got "
                            f"{type(other).__name__}")
        if other._model != self._model:  # two builds of one architecture look alike otherwise
            raise ValueError("cannot join results of two different models (other was computed "
                             "with another model object than this result): results of one model "
                             "join; compute both with the same model")
        if other.dtype != self.dtype:
            raise ValueError(f"cannot join a result computed in {other.dtype} to one computed in "
                             f"{self.dtype}: results of one precision join (pass the same dtype=)")
        if (other.low_res.shape[1:], other.method, other.layer, other.logits.shape[1],
                other.class_names, other.input_size) != (
                self.low_res.shape[1:], self.method, self.layer, self.logits.shape[1],
                self.class_names, self.input_size):
            raise ValueError(f"cannot join a {other.method} result of maps {other.low_res.shape} "
                             f"at {other.layer!r}, {other.logits.shape[1]} classes, to a "
                             f"{self.method} result of maps {self.low_res.shape} at "
                             f"{self.layer!r}, {self.logits.shape[1]} classes: results of one "
                             "model, method, layer and classes join")
        bias = None if self.bias is None else np.concatenate([self.bias, other.bias])
        return replace(self, low_res=np.concatenate([self.low_res, other.low_res]),
                       class_ids=np.concatenate([self.class_ids, other.class_ids]),
                       logits=np.concatenate([self.logits, other.logits]),
                       bias=bias, _maps=None, _probabilities=None)

    @property
    def identity_holds(self) -> bool:
        """Whether ``low_res.mean(axis=(2, 3)) + bias == scores`` holds by construction (a CAM
        of a GAP head)."""
        return self.pooling == "average"

    @property
    def probabilities(self) -> np.ndarray:
        """``(B, num_classes)`` probabilities: the sigmoid of each logit when the model ends in
        a sigmoid or has a single logit (a softmax over one logit would always be 1), else the
        softmax of :attr:`logits`. A head whose output is neither (e.g. ``Dense(activation="relu")``)
        has no probabilities: a ValueError says to read :attr:`logits`."""
        if self.output_activation not in _PROBABILITY_OUTPUTS:
            raise ValueError(
                f"the model outputs {self.output_activation}(Dense scores), not class "
                "probabilities or logits; read result.logits (the Dense scores) instead")
        if self._probabilities is None:
            if self.output_activation == "sigmoid" or self.logits.shape[-1] == 1:
                self._probabilities = _sigmoid(self.logits)
            else:
                self._probabilities = softmax(self.logits)
        return self._probabilities

    @property
    def scores(self) -> np.ndarray:
        """``(B, K)`` logits of the requested classes."""
        return np.take_along_axis(self.logits, self.class_ids, axis=1)

    @property
    def class_probabilities(self) -> np.ndarray:
        """``(B, K)`` softmax probabilities of the requested classes."""
        return np.take_along_axis(self.probabilities, self.class_ids, axis=1)

    @property
    def num_images(self) -> int:
        return int(self.low_res.shape[0])

    def class_name(self, class_id: int) -> str:
        """Name of class ``class_id``."""
        return self.class_names[integer("class id", class_id, 0, len(self.class_names) - 1)]

    def label(self, image_index: int = 0, k: int = 0) -> str:
        """``"Egyptian cat (285), p = 0.79"`` for image ``image_index``'s ``k``-th class
        (probability to two significant digits, so that small ones stay visible: 0.0041)."""
        image_index, k = self._indices(image_index, k)
        class_id = int(self.class_ids[image_index, k])
        if self.output_activation not in _PROBABILITY_OUTPUTS:
            return (f"{self.class_names[class_id]} ({class_id}), score = "
                    f"{float(self.logits[image_index, class_id]):.3g}")
        probability = float(self.probabilities[image_index, class_id])
        return f"{self.class_names[class_id]} ({class_id}), p = {probability:.2g}"


#: Model outputs whose scores give class probabilities: logits (softmax), softmax, sigmoid.
_PROBABILITY_OUTPUTS = ("linear", "softmax", "sigmoid")


def normalize_cam(maps: Any) -> np.ndarray:
    """Min-max scale each map ``(..., H, W)`` to [0, 1] for display.

    Introduced in notebook 03. A constant map (max == min, e.g. a class with no evidence
    anywhere in a degenerate input) becomes all zeros instead of a division by zero.

    Raises
    ------
    helpers.checks.ArgumentError
        Maps that are not real numbers (strings, complex, ragged lists), contain NaN or
        infinite values, are empty or have fewer than 2 dimensions.
    """
    # float64: a span of finite values can overflow float32
    wide = check_maps("maps", maps).astype(np.float64, copy=False)
    low = wide.min(axis=(-2, -1), keepdims=True)
    span = wide.max(axis=(-2, -1), keepdims=True) - low
    safe = np.where(span > 0, span, 1.0)
    return np.where(span > 0, (wide - low) / safe, 0.0).astype(np.float32)
