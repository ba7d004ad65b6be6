"""Small CNNs that share one backbone and differ only in their head (Flatten, GAP or GMP).

Introduced in notebook 02 (parameter cost and regularisation of the heads); notebook 04 trains
the GAP and GMP variants for weakly-supervised localisation.

Every model maps images ``(B, H, W, C)`` to **logits** ``(B, num_classes)`` (no softmax: compile
with ``from_logits=True``, as :func:`compile_classifier` does). Layers have fixed names so code can
refer to them, and a CAM engine finds the head by layer type: the last convolution is
``"features"``, the head's first layer ``"flatten"``, ``"gap"`` or ``"gmp"``, the output layer
``"logits"``. With ``hidden=None`` (the default) the pooling layer feeds the ``"logits"`` Dense
layer directly, which is the GlobalAveragePooling2D → Dense structure CAM needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import keras

from helpers.checks import ArgumentError, array_bytes, flag, integer, number

__all__ = [
    "HEADS",
    "build_head",
    "build_small_cnn",
    "compile_classifier",
    "head_parameter_counts",
]

#: The heads the builders accept: flatten the feature map, or pool it globally (average / max).
HEADS = ("flatten", "gap", "gmp")

Head = Literal["flatten", "gap", "gmp"]


def _check_head(head: object) -> str:
    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    return str(head)


def _check_shape(name: str, shape: object) -> tuple[int, int, int]:
    if not isinstance(shape, (tuple, list)) or len(shape) != 3:
        raise ArgumentError(
            f"{name} must be (height, width, channels), three integers >= 1, got {shape!r:.80}"
        )
    height, width, channels = (integer(f"{name}[{i}]", v, 1) for i, v in enumerate(shape))
    return height, width, channels


def _check_hidden(hidden: object) -> int | None:
    return None if hidden is None else integer("hidden", hidden, 1)


def head_parameter_counts(
    feature_shape: Sequence[int], num_classes: int, hidden: int | None = None
) -> dict[str, int]:
    """Parameters of each head on an ``h × w × d`` feature map, computed from the formula.

    Introduced in notebook 02. A Dense layer from ``n_in`` inputs to ``n_out`` outputs has
    ``n_in · n_out`` weights and ``n_out`` biases. Flatten gives ``n_in = h·w·d``; global average
    or max pooling gives ``n_in = d`` (pooling itself has no parameters).

    Parameters
    ----------
    feature_shape
        ``(h, w, d)`` of the feature map the head receives, e.g. ``(7, 7, 512)`` for VGG-16.
    num_classes
        Outputs of the last Dense layer.
    hidden
        Width of an optional hidden Dense layer between the pooling and the output (VGG-16 has two
        of 4096; this counts one). ``None``: the pooled vector feeds the output layer.

    Returns
    -------
    dict[str, int]
        ``{"flatten": ..., "gap": ..., "gmp": ...}``; ``gap`` and ``gmp`` are always equal.
    """
    height, width, depth = _check_shape("feature_shape", feature_shape)
    num_classes = integer("num_classes", num_classes, 1)
    hidden = _check_hidden(hidden)

    def dense_stack(inputs: int) -> int:
        if hidden is None:
            return inputs * num_classes + num_classes
        return inputs * hidden + hidden + hidden * num_classes + num_classes

    pooled = dense_stack(depth)
    return {"flatten": dense_stack(height * width * depth), "gap": pooled, "gmp": pooled}


def _head_layers(
    features: keras.KerasTensor,
    head: str,
    num_classes: int,
    hidden: int | None,
    dropout: float,
    seed: int | None,
) -> keras.KerasTensor:
    """Apply [dropout →] pooling/flatten [→ hidden Dense] → logits Dense to ``features``."""

    def initializer(offset: int) -> keras.initializers.Initializer:
        return keras.initializers.GlorotUniform(seed=None if seed is None else seed + offset)

    x = features
    if dropout:
        # Before the pooling, so that pooling still feeds the output Dense layer directly.
        x = keras.layers.Dropout(dropout, seed=seed, name="dropout")(x)
    if head == "flatten":
        x = keras.layers.Flatten(name="flatten")(x)
    elif head == "gap":
        x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    else:
        x = keras.layers.GlobalMaxPooling2D(name="gmp")(x)
    if hidden is not None:
        dense_kernel_bytes(x, hidden, "hidden")
        x = keras.layers.Dense(
            hidden, activation="relu", kernel_initializer=initializer(100), name="hidden"
        )(x)
    dense_kernel_bytes(x, num_classes, "num_classes")
    return keras.layers.Dense(num_classes, kernel_initializer=initializer(101), name="logits")(x)


def dense_kernel_bytes(inputs: keras.KerasTensor, units: int, argument: str) -> None:
    """Refuse (:func:`helpers.checks.array_bytes`) a Dense kernel ``(inputs, units)`` above the
    limit before Keras draws it: ``argument`` (e.g. ``num_classes=10**9``) is what was wrong."""
    array_bytes(f"{argument}={units:,}: the Dense kernel", (int(inputs.shape[-1]), units), 4)


def build_head(
    feature_shape: Sequence[int],
    num_classes: int,
    head: Head = "gap",
    hidden: int | None = None,
) -> keras.Model:
    """A head alone, as a model from a feature map ``(B, h, w, d)`` to logits ``(B, num_classes)``.

    Introduced in notebook 02, to count a head's parameters on a big feature map (VGG-16's
    ``7 × 7 × 512``) without building the network below it.

    Parameters
    ----------
    feature_shape
        ``(h, w, d)``.
    num_classes
        Outputs.
    head
        ``"flatten"``, ``"gap"`` or ``"gmp"``.
    hidden
        Optional hidden Dense width, as in :func:`head_parameter_counts`.
    """
    feature_shape = _check_shape("feature_shape", feature_shape)
    num_classes = integer("num_classes", num_classes, 1)
    head = _check_head(head)
    hidden = _check_hidden(hidden)
    inputs = keras.Input(shape=feature_shape, name="feature_map")
    outputs = _head_layers(inputs, head, num_classes, hidden, dropout=0.0, seed=None)
    return keras.Model(inputs, outputs, name=f"{head}_head")


def build_small_cnn(
    input_shape: Sequence[int] = (48, 48, 1),
    num_classes: int = 10,
    *,
    head: Head = "gap",
    widths: Sequence[int] = (16, 32, 64, 64),
    hidden: int | None = None,
    poolings: int | None = None,
    batch_norm: bool = False,
    dropout: float = 0.0,
    seed: int | None = 0,
    name: str | None = None,
) -> keras.Model:
    """A small CNN: a convolutional backbone shared by all heads, then the chosen head.

    Introduced in notebook 02.

    Backbone, block ``i = 1..k`` for ``k = len(widths)``: a 3×3 ``Conv2D`` ``block{i}_conv``
    (``"same"`` padding, He-normal initialisation), [``BatchNormalization`` ``block{i}_bn``], a
    ``ReLU`` ``block{i}_relu``, and, in the first ``p`` blocks (``p = poolings``; by default every
    block but the last), a 2×2 max pooling ``block{i}_pool``. The last block's ReLU is named
    ``"features"``: its output is the feature map ``(B, H / 2^p, W / 2^p, widths[-1])``.
    Head: ``[Dropout "dropout"] →
    Flatten "flatten" | GlobalAveragePooling2D "gap" | GlobalMaxPooling2D "gmp" →
    [Dense "hidden", ReLU] → Dense "logits"`` (linear: logits).

    Parameters
    ----------
    input_shape
        ``(H, W, C)``; ``H`` and ``W`` must be divisible by ``2^p`` (``p`` poolings).
    num_classes
        Number of classes (outputs of ``"logits"``).
    head
        ``"flatten"``, ``"gap"`` or ``"gmp"``.
    widths
        Filters of each convolution; the default ``(16, 32, 64, 64)`` has four blocks and three
        poolings, so a 48×48 image gives a 6×6×64 feature map.
    hidden
        Optional hidden Dense layer width after the pooling/flatten (breaks the direct
        pooling → logits link CAM needs); ``None`` by default.
    poolings
        How many blocks, from the first, end in a 2×2 max pooling, in ``0..k-1``; ``None`` (the
        default) means ``k - 1``, every block but the last. Fewer poolings keep a finer feature map
        (notebook 04: ``widths=(16, 32, 64, 64), poolings=2`` gives 12×12 on 48×48 images) at
        more computation.
    batch_norm
        Insert ``BatchNormalization`` (momentum 0.9, named ``block{i}_bn``) after each
        convolution, which then has no bias. Off by default: on short CPU runs the moving
        statistics can lag the batch statistics, and a GAP head, which averages every position,
        is sensitive to that lag.
    dropout
        Dropout rate on the feature map before the head, in [0, 1); 0 for none.
    seed
        Seed of the weight initialisers (and dropout): the same seed gives the same backbone
        weights whatever the head, so heads are compared from one starting point. ``None``: drawn
        from Keras's global seed.
    name
        Model name; default ``f"small_cnn_{head}"``.

    Returns
    -------
    keras.Model
        Images ``(B, H, W, C)`` → logits ``(B, num_classes)``.
    """
    input_shape = _check_shape("input_shape", input_shape)
    num_classes = integer("num_classes", num_classes, 1)
    head = _check_head(head)
    hidden = _check_hidden(hidden)
    widths = tuple(widths) if isinstance(widths, (tuple, list)) else widths
    if not isinstance(widths, tuple) or not widths:
        raise ValueError(f"widths must be a non-empty sequence of positive ints, got {widths!r}")
    widths = tuple(integer("each of widths", w, 1) for w in widths)
    batch_norm = flag("batch_norm", batch_norm)
    dropout = number("dropout (a rate)", dropout, 0.0, 1.0, high_open=True)
    seed = None if seed is None else integer("seed", seed, 0)
    # a pooling after each of the first blocks, never after the last
    poolings = len(widths) - 1 if poolings is None else integer(
        f"poolings (for {len(widths)} widths)", poolings, 0, len(widths) - 1)
    factor = 2**poolings
    if input_shape[0] % factor or input_shape[1] % factor:
        raise ValueError(
            f"input_shape {input_shape}: height and width must be divisible by {factor} "
            f"(2 ** {poolings} poolings for {len(widths)} widths)"
        )

    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    for index, width in enumerate(widths, start=1):
        last = index == len(widths)
        x = keras.layers.Conv2D(
            width,
            3,
            padding="same",
            use_bias=not batch_norm,
            kernel_initializer=keras.initializers.HeNormal(
                seed=None if seed is None else seed + index
            ),
            name=f"block{index}_conv",
        )(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(momentum=0.9, name=f"block{index}_bn")(x)
        x = keras.layers.ReLU(name="features" if last else f"block{index}_relu")(x)
        if index <= poolings:
            x = keras.layers.MaxPooling2D(2, name=f"block{index}_pool")(x)
    outputs = _head_layers(x, head, num_classes, hidden, float(dropout), seed)
    return keras.Model(inputs, outputs, name=name or f"small_cnn_{head}")


def compile_classifier(model: keras.Model, learning_rate: float = 1e-3) -> keras.Model:
    """Compile a classifier for integer labels: Adam, sparse cross-entropy, accuracy.

    Introduced in notebook 02. The cross-entropy is taken from logits when the model ends in a
    layer without activation (every model of this series), and from probabilities when it ends
    in a softmax; any other final activation is refused. Returns the model, compiled in place.
    """
    if not isinstance(model, keras.Model):
        raise TypeError(f"expected a keras.Model, got {type(model).__name__}")
    learning_rate = number("learning_rate", learning_rate, 0.0, low_open=True)
    last = model.layers[-1] if model.layers else None
    while isinstance(last, keras.Model) and last.layers:  # a nested model's own last layer
        last = last.layers[-1]
    activation = "softmax" if isinstance(last, keras.layers.Softmax) else getattr(
        getattr(last, "activation", None), "__name__", "linear")
    activation = {"softmax_v2": "softmax"}.get(activation, activation)  # tf.nn.softmax
    outputs = model.outputs[0].shape[-1] if getattr(model, "outputs", None) else None
    if outputs == 1:
        raise ValueError(
            f"model {model.name!r} has one output; compile_classifier's cross-entropy needs one "
            "score per class (at least 2): build it with num_classes=2 for two classes, or "
            "compile it yourself with keras.losses.BinaryCrossentropy(from_logits=True)"
        )
    if activation not in ("linear", "softmax"):
        raise ValueError(f"model {model.name!r} ends in a {activation!r} activation; "
                         "compile_classifier trains logits (no final activation) or a softmax")
    model.compile(
        optimizer=keras.optimizers.Adam(float(learning_rate)),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=activation == "linear"),
        metrics=["accuracy"],
    )
    return model
