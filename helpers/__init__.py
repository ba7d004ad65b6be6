"""Helpers for the GAP → CAM notebook series.

Importing this package has no side effects (no downloads, no global plot style, no prints).
Each function's docstring names the notebook that introduced it.
"""

from helpers._quiet import import_keras_quietly

import_keras_quietly()  # before anything imports keras: hides TensorFlow's native start-up lines

# ruff: noqa: E402
from helpers.architecture import LAYER_GROUPS, ParameterBreakdown, iter_layers, parameter_breakdown
from helpers.data import SAMPLE_IMAGE_NAMES, sample_image, sample_images
from helpers.env import on_colab, report_environment, require_versions, set_seed
from helpers.imagenet import imagenet_class_name, imagenet_class_names
from helpers.localization import (
    box_iou,
    cam_to_box,
    cams_to_boxes,
    localization_accuracy,
    max_box_accuracy,
    pointing_game,
    scale_box,
)
from helpers.models import (
    AVAILABLE_MODELS,
    Classifier,
    OfflineError,
    Prediction,
    load_classifier,
    prepare_offline_model,
)
from helpers.torch_weights import WeightsFileError, read_legacy_state_dict

__all__ = [
    "AVAILABLE_MODELS",
    "Classifier",
    "LAYER_GROUPS",
    "OfflineError",
    "ParameterBreakdown",
    "Prediction",
    "SAMPLE_IMAGE_NAMES",
    "WeightsFileError",
    "box_iou",
    "cam_to_box",
    "cams_to_boxes",
    "imagenet_class_name",
    "imagenet_class_names",
    "iter_layers",
    "load_classifier",
    "localization_accuracy",
    "max_box_accuracy",
    "on_colab",
    "parameter_breakdown",
    "pointing_game",
    "prepare_offline_model",
    "read_legacy_state_dict",
    "report_environment",
    "require_versions",
    "scale_box",
    "sample_image",
    "sample_images",
    "set_seed",
]

__version__ = "0.1.0"
