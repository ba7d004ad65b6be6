"""Helpers for the GAP → CAM notebook series.

Importing this package downloads nothing, changes no global plot style and prints nothing. It
imports Keras once with TensorFlow's native start-up log lines silenced (see ``helpers._quiet``;
``GAPCAM_TF_LOGS=1`` shows them).
Each function's docstring names the notebook that introduced it.
"""

from helpers._quiet import import_keras_quietly

import_keras_quietly()  # before anything imports keras: hides TensorFlow's native start-up lines

# ruff: noqa: E402
from helpers.architecture import LAYER_GROUPS, ParameterBreakdown, iter_layers, parameter_breakdown
from helpers.cam import (
    PRECISIONS,
    CAMHead,
    CAMResult,
    class_activation_maps,
    find_cam_head,
    grad_cam,
    normalize_cam,
    upsample_maps,
)
from helpers.data import SAMPLE_IMAGE_NAMES, sample_image, sample_images
from helpers.env import on_colab, report_environment, require_versions, set_seed
from helpers.graph import fold_batch_norm
from helpers.imagenet import imagenet_class_name, imagenet_class_names
from helpers.localization import (
    LocalizationReport,
    box_iou,
    cam_to_box,
    cams_to_boxes,
    localization_accuracy,
    localization_report,
    max_box_accuracy,
    pointing_game,
    scale_box,
)
from helpers.localization_models import (
    evaluate_localization,
    find_pooling_head,
    global_pooling_cams,
)
from helpers.localization_plots import plot_localization_gallery, plot_threshold_sweep
from helpers.models import (
    AVAILABLE_MODELS,
    Classifier,
    OfflineError,
    Prediction,
    load_classifier,
    prepare_offline_model,
)
from helpers.plotting import display_image, plot_cam, plot_cam_classes, plot_cam_images, show_cam
from helpers.small_models import (
    HEADS,
    build_head,
    build_small_cnn,
    compile_classifier,
    head_parameter_counts,
)
from helpers.synthetic import DigitCanvases, digit_source_split, make_digit_canvases
from helpers.torch_weights import WeightsFileError, read_legacy_state_dict
from helpers.widgets import CAMExplorer, cam_explorer

__all__ = [
    "AVAILABLE_MODELS",
    "CAMExplorer",
    "CAMHead",
    "CAMResult",
    "Classifier",
    "DigitCanvases",
    "HEADS",
    "LAYER_GROUPS",
    "LocalizationReport",
    "OfflineError",
    "PRECISIONS",
    "ParameterBreakdown",
    "Prediction",
    "SAMPLE_IMAGE_NAMES",
    "WeightsFileError",
    "box_iou",
    "build_head",
    "build_small_cnn",
    "cam_explorer",
    "cam_to_box",
    "cams_to_boxes",
    "class_activation_maps",
    "compile_classifier",
    "digit_source_split",
    "display_image",
    "evaluate_localization",
    "find_cam_head",
    "find_pooling_head",
    "fold_batch_norm",
    "global_pooling_cams",
    "grad_cam",
    "head_parameter_counts",
    "imagenet_class_name",
    "imagenet_class_names",
    "iter_layers",
    "load_classifier",
    "localization_accuracy",
    "localization_report",
    "make_digit_canvases",
    "max_box_accuracy",
    "normalize_cam",
    "on_colab",
    "parameter_breakdown",
    "plot_cam",
    "plot_cam_classes",
    "plot_cam_images",
    "plot_localization_gallery",
    "plot_threshold_sweep",
    "pointing_game",
    "prepare_offline_model",
    "read_legacy_state_dict",
    "report_environment",
    "require_versions",
    "scale_box",
    "sample_image",
    "sample_images",
    "set_seed",
    "show_cam",
    "upsample_maps",
]

__version__ = "0.1.0"
