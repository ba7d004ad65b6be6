"""Shared fixtures. Tests run offline and on the CPU; the Keras backend comes from KERAS_BACKEND
(TensorFlow unless set)."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("GAPCAM_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def lite0():
    """The offline pretrained EfficientNet-Lite0 classifier (built once per test session)."""
    import helpers

    return helpers.load_classifier("efficientnet_lite0")


@pytest.fixture(scope="session")
def samples():
    """The seven sample photos, RGB uint8."""
    import helpers

    return helpers.sample_images()
