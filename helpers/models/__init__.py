"""Models: the ImageNet classifiers, the small CNNs of notebooks 02 and 04, transfer heads.

* :mod:`~helpers.models.classifier`: :class:`Classifier` and :func:`load_classifier`;
* :mod:`~helpers.models.lite0`: EfficientNet-Lite0 with offline weights, converted once into
  :mod:`~helpers.models.weights_cache` from the legacy torch file that
  :mod:`~helpers.models.torch_weights` reads;
* :mod:`~helpers.models.applications`: ResNet-50 and VGG-16 from ``keras.applications``;
* :mod:`~helpers.models.imagenet`: the 1,000 ImageNet class names;
* :mod:`~helpers.models.architecture`: parameter counts by layer group (notebook 01);
* :mod:`~helpers.models.small_cnn`: small CNNs with a flatten, GAP or GMP head (notebooks 02, 04);
* :mod:`~helpers.models.transfer`: a GAP head on a frozen pretrained base (notebook 05).
"""

from helpers.models.classifier import (
    AVAILABLE_MODELS, Classifier, OfflineError, Prediction, load_classifier,
)
from helpers.models.lite0 import prepare_offline_model

__all__ = ["AVAILABLE_MODELS", "Classifier", "OfflineError", "Prediction", "load_classifier",
           "prepare_offline_model"]
