"""Helpers for the GAP → CAM notebook series.

Importing this package downloads nothing, changes no global plot style and prints nothing. It
imports Keras once with TensorFlow's native start-up log lines silenced (see ``helpers._quiet``;
``GAPCAM_TF_LOGS=1`` shows them).
Each function's docstring names the notebook that introduced it.
"""

import sys

if sys.argv[:2] == ["-m", "doctor"]:  # `python -m helpers doctor`: Python imports this package
    from helpers.doctor import run_if_keras_fails  # first, and the doctor must run even when

    run_if_keras_fails(sys.argv[2:])  # Keras cannot be imported (e.g. a mistyped KERAS_BACKEND)

from helpers._quiet import import_keras_quietly

import_keras_quietly()  # before anything imports keras: hides TensorFlow's native start-up lines

# ruff: noqa: E402
from helpers.cam import (
    activation_maps,
    class_activation_maps,
    find_cam_head,
    grad_cam,
    grad_cam_plus_plus,
    score_cam,
)
from helpers.data import load_image, load_images, sample_images
from helpers.data.composites import make_photo_composites
from helpers.data.digits import make_digit_canvases
from helpers.env import report_environment, require_versions, set_seed
from helpers.evaluate.boxes import box_iou, cam_to_box, scale_box
from helpers.evaluate.localization import evaluate_localization, localization_report
from helpers.evaluate.trust import deletion_insertion, randomize_layers
from helpers.guided import guided_backprop, guided_grad_cam
from helpers.maps import CAMResult, normalize_cam, upsample_maps
from helpers.models import Classifier, OfflineError, load_classifier, prepare_offline_model
from helpers.models.architecture import LAYER_GROUPS, parameter_breakdown
from helpers.models.small_cnn import (
    HEADS,
    build_head,
    build_small_cnn,
    compile_classifier,
    head_parameter_counts,
)
from helpers.models.transfer import build_transfer_model, fit_transfer_head
from helpers.plots.cam import draw_box, plot_cam, plot_cam_classes, plot_cam_images
from helpers.plots.explorer import cam_explorer
from helpers.plots.localization import TRUE_BOX_COLOR, plot_localization_gallery, plot_threshold_sweep

#: The public API: what the notebooks use, and what a reader needs beside it (at most 47 names).
#: Everything else lives in its layer's module (``helpers.evaluate.localization.pointing_game``,
#: ``helpers.plots.cam.show_cam``, ``helpers.models.torch_weights.read_legacy_state_dict``, ...)
#: or in the private engine. The layers, each importing only those before it:
#: ``checks``, ``images``, ``maps`` → ``_engine`` → ``cam``, ``guided`` → ``models``, ``data`` →
#: ``evaluate`` → ``plots``; ``env`` and ``doctor`` are the setup cell's.
__all__ = [
    "CAMResult",
    "Classifier",
    "HEADS",
    "LAYER_GROUPS",
    "OfflineError",
    "TRUE_BOX_COLOR",
    "activation_maps",
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
    "guided_backprop",
    "guided_grad_cam",
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
