"""What is timed: the photos (the sample photos, resized, flipped and shifted into a batch), the
models (ResNet-50 with random weights, the offline Lite0, a tiny CNN for --smoke) and the
arithmetic a model costs per image (multiply-adds)."""

from __future__ import annotations

from typing import Any


def multiply_adds(model: Any) -> int:
    """Multiply-adds of one image through the model's layers that have a ``kernel``
    (convolutions, depthwise convolutions, Dense; nested models included): the arithmetic
    that dominates a CNN. Each output position costs the kernel's size."""
    import math

    from helpers.models.architecture import iter_layers

    total = 0
    for layer in iter_layers(model):
        kernel = getattr(layer, "kernel", None)
        if kernel is None:
            continue
        shape = tuple(layer.output.shape[1:])
        positions = shape[1:] if getattr(layer, "data_format", None) == "channels_first" \
            else shape[:-1]
        total += math.prod(positions) * math.prod(kernel.shape)
    return total


def photo_batch(count: int, size: tuple[int, int]) -> Any:
    """``count`` RGB uint8 images at ``size``: the seven sample photos, resized whole, with
    flips and shifts so that no two are the same."""
    import numpy as np

    import keras

    import helpers

    # Resized whole, bilinear with antialiasing, as Classifier.preprocess resizes.
    photos = np.stack([
        np.clip(keras.ops.convert_to_numpy(keras.ops.image.resize(
            photo.astype(np.float32), size, interpolation="bilinear", antialias=True)), 0, 255)
        for photo in helpers.sample_images().values()
    ]).astype(np.uint8)
    batch = []
    for i in range(count):
        image = photos[i % len(photos)]
        if (i // len(photos)) % 2:
            image = image[:, ::-1]
        batch.append(np.roll(image, 3 * (i // len(photos)), axis=0))
    return np.stack(batch)


def tiny_classifier() -> Any:
    """A small GAP → Dense CNN at 64 × 64 for --smoke (every code path in seconds)."""
    import keras

    from helpers.models import Classifier

    keras.utils.set_random_seed(0)
    image = keras.Input((64, 64, 3), name="image")
    x = keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(image)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.Conv2D(16, 3, strides=4, padding="same", activation="relu",
                            name="last_conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    logits = keras.layers.Dense(10, name="predictions")(x)
    model = keras.Model(image, logits, name="tiny_cnn")
    return Classifier(name="tiny_cnn", model=model, input_size=(64, 64), num_classes=10,
                      normalize=lambda x: x / 127.5 - 1.0)


def load_model(name: str) -> Any:
    import helpers

    if name == "tiny_cnn":
        return tiny_classifier()
    if name == "efficientnet_lite0":
        return helpers.load_classifier("efficientnet_lite0")
    return helpers.load_classifier(name, weights=None)  # random weights: fine for timing

