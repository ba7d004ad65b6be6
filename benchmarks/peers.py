"""The peers the engine is timed against, re-implemented faithfully (each function's docstring
says from where): the seed post's CAM, the keras.io Grad-CAM example, tf-keras-vis's Gradcam;
and the correlation that checks they compute the same maps as ours."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any


def seed_post_cam(cam_model: Any, amp_layer_weights: Any, image: Any,
                  preprocess: Callable[[Any], Any]) -> Any:
    """The seed post's order of work (Alexis Cook, "Global Average Pooling Layers for Object
    Localization", 2017, ResNet-50 CAM), for one image: run the model once for the last conv
    output (1, 7, 7, 2048) and the predictions (``predict``, as the post does), take the arg max,
    upsample **every** feature map with ``scipy.ndimage.zoom(..., (32, 32, 1), order=1)`` to
    (224, 224, 2048), then ``np.dot`` with the class's Dense weights, reshaped to (224, 224).
    The zoom factors are input size / feature size (32 for both models here)."""
    import numpy as np
    import scipy.ndimage

    last_conv_output, pred_vec = cam_model.predict(preprocess(image), verbose=0)
    last_conv_output = np.squeeze(last_conv_output)  # (7, 7, k)
    pred = np.argmax(pred_vec)
    height, width = image.shape[:2]
    factors = (height / last_conv_output.shape[0], width / last_conv_output.shape[1], 1)
    mat_for_mult = scipy.ndimage.zoom(last_conv_output, factors, order=1)  # (224, 224, k)
    weights = amp_layer_weights[:, pred]
    channels = mat_for_mult.shape[-1]
    final_output = np.dot(mat_for_mult.reshape((height * width, channels)), weights)
    return final_output.reshape(height, width), pred


def make_gradcam_heatmap(img_array: Any, model: Any, last_conv_layer_name: str,
                         pred_index: Any = None) -> Any:
    """keras.io ``examples/vision/grad_cam.py`` (fchollet), as published: builds the gradient
    model on every call, one image, ``tf.GradientTape``, the gradient of the top class's score
    with respect to the last conv output, channel weights = spatial mean of the gradient,
    weighted sum, ReLU, divided by the max. Returns the low-resolution (7 × 7) heatmap (the
    example upsamples only when it draws, with PIL)."""
    import keras
    import tensorflow as tf

    grad_model = keras.models.Model(
        model.input, [model.get_layer(last_conv_layer_name).output, model.output]
    )
    with tf.GradientTape() as tape:
        last_conv_layer_output, preds = grad_model(img_array)
        if pred_index is None:
            pred_index = tf.argmax(preds[0])
        class_channel = preds[:, pred_index]
    grads = tape.gradient(class_channel, last_conv_layer_output)
    pooled_grads = tf.reduce_mean(grads, axis=(0, 1, 2))
    last_conv_layer_output = last_conv_layer_output[0]
    heatmap = last_conv_layer_output @ pooled_grads[..., tf.newaxis]
    heatmap = tf.squeeze(heatmap)
    heatmap = tf.maximum(heatmap, 0) / tf.math.reduce_max(heatmap)
    return heatmap.numpy()


def tf_keras_vis_gradcam(model: Any) -> tuple[Callable[..., Any] | None, str | None]:
    """tf-keras-vis ``Gradcam(model, model_modifier=None, clone=True)`` with a
    ``CategoricalScore``; (function(batch, class ids, layer) → maps (B, H, W), None), or
    (None, the reason it cannot run)."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return None, "tf-keras-vis needs the TensorFlow backend (tf.GradientTape)"
    try:
        with warnings.catch_warnings():  # its own scipy.ndimage.interpolation deprecation
            warnings.simplefilter("ignore", DeprecationWarning)
            from tf_keras_vis.gradcam import Gradcam
            from tf_keras_vis.utils.scores import CategoricalScore
    except Exception as error:  # noqa: BLE001 - any import failure is the reason to report
        return None, (f"tf-keras-vis is not importable ({type(error).__name__}: {error}); "
                      "install requirements-bench.txt")
    gradcam = Gradcam(model, model_modifier=None, clone=True)

    def run(batch: Any, class_ids: Any, layer: str) -> Any:
        # The same target layer as ours (no search for the last Conv layer, which would stop
        # before the BatchNorm/activation), expanded to the input size and normalised (defaults).
        return gradcam(CategoricalScore(list(class_ids)), batch, penultimate_layer=layer,
                       seek_penultimate_conv_layer=False)

    return run, None


def correlation(a: Any, b: Any) -> float:
    import numpy as np

    a, b = np.ravel(np.asarray(a, np.float64)), np.ravel(np.asarray(b, np.float64))
    if a.std() == 0 or b.std() == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])

