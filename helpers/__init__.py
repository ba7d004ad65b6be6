"""Helpers for the GAP → CAM notebook series.

Importing this package downloads nothing, changes no global plot style and prints nothing. It
imports Keras once with TensorFlow's native start-up log lines silenced (see ``helpers._quiet``;
``GAPCAM_TF_LOGS=1`` shows them).
Each function's docstring names the notebook that introduced it.
"""

from helpers._quiet import import_keras_quietly

import_keras_quietly()  # before anything imports keras: hides TensorFlow's native start-up lines

# ruff: noqa: E402
from helpers.architecture import LAYER_GROUPS, parameter_breakdown
from helpers.cam import class_activation_maps, find_cam_head, grad_cam, grad_cam_plus_plus, score_cam
from helpers.data import sample_images
from helpers.env import report_environment, require_versions, set_seed
from helpers.images import load_image, load_images
from helpers.localization import box_iou, cam_to_box, localization_report, scale_box
from helpers.localization_models import evaluate_localization
from helpers.localization_plots import TRUE_BOX_COLOR, plot_localization_gallery, plot_threshold_sweep
from helpers.maps import CAMResult, normalize_cam, upsample_maps
from helpers.models import (
    Classifier,
    OfflineError,
    load_classifier,
    prepare_offline_model,
)
from helpers.plotting import draw_box, plot_cam, plot_cam_classes, plot_cam_images
from helpers.small_models import (
    HEADS,
    build_head,
    build_small_cnn,
    compile_classifier,
    head_parameter_counts,
)
from helpers.photo_composites import make_photo_composites
from helpers.synthetic import make_digit_canvases
from helpers.transfer import build_transfer_model, fit_transfer_head
from helpers.trust import deletion_insertion, randomize_layers
from helpers.widgets import cam_explorer

#: The public API: what the notebooks use, and what a reader needs beside it (at most 45 names).
#: Everything else lives in its module (``helpers.localization.pointing_game``,
#: ``helpers.plotting.show_cam``, ``helpers.torch_weights.read_legacy_state_dict``, ...) or in
#: the private engine.
__all__ = [
    "CAMResult",
    "Classifier",
    "HEADS",
    "LAYER_GROUPS",
    "OfflineError",
    "TRUE_BOX_COLOR",
    "box_iou",
    "build_head",
    "build_small_cnn",
    "build_transfer_model",
    "cam_explorer",
    "cam_to_box",
    "class_activation_maps",
    "compile_classifier",
    "deletion_insertion",
    "draw_box",
    "evaluate_localization",
    "find_cam_head",
    "fit_transfer_head",
    "grad_cam",
    "grad_cam_plus_plus",
    "head_parameter_counts",
    "load_classifier",
    "load_image",
    "load_images",
    "localization_report",
    "make_digit_canvases",
    "make_photo_composites",
    "normalize_cam",
    "parameter_breakdown",
    "plot_cam",
    "plot_cam_classes",
    "plot_cam_images",
    "plot_localization_gallery",
    "plot_threshold_sweep",
    "prepare_offline_model",
    "randomize_layers",
    "report_environment",
    "require_versions",
    "sample_images",
    "scale_box",
    "score_cam",
    "set_seed",
    "upsample_maps",
]

__version__ = "0.1.0"
