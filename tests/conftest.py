"""Shared fixtures. Tests run offline and on the CPU; the Keras backend comes from KERAS_BACKEND
(TensorFlow unless set)."""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("GAPCAM_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import importlib.util  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _load_script(relative_path: str):
    """A script of the repository (benchmarks/, experiments/, docs/) imported as a module."""
    path = ROOT / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def load_script():
    """``load_script("benchmarks/bench_cam.py")``: a repository script as a module."""
    return _load_script


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


@pytest.fixture(params=[False, True], ids=["cpu", "accelerator"])
def chunk_size(request, monkeypatch):
    """Set how many input values one network call takes, with the engine's accelerator flag set
    both ways (a CPU and a GPU host choose their chunk sizes differently): ``chunk_size(n)``."""
    import keras

    from helpers._engine import devices

    monkeypatch.setattr(devices, "HAS_ACCELERATOR", {keras.backend.backend(): request.param})

    def set_values(values: int) -> None:
        monkeypatch.setattr(devices, "CHUNK_INPUT_VALUES", values)
        monkeypatch.setattr(devices, "ACCELERATOR_CHUNK_INPUT_VALUES", values)

    return set_values
