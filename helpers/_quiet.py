"""Import Keras without TensorFlow's native start-up log lines.

TensorFlow 2.20+ writes lines such as "oneDNN custom operations are on", "Could not find cuda
drivers" or "failed call to cuInit" from C++ straight to file descriptor 2, before its logging is
initialised and ignoring ``TF_CPP_MIN_LOG_LEVEL`` (tensorflow/tensorflow#100442). In Jupyter they
land in cell outputs. This module silences descriptor 2 only during the first ``import keras``
and TensorFlow's device discovery, and, on other backends, while seeding imports TensorFlow
(``keras.utils.set_random_seed`` seeds TensorFlow too wherever it is installed). Python exceptions
and warnings are unaffected. Set ``GAPCAM_TF_LOGS=1`` to see the lines.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, AttributeError, ValueError):  # no descriptor 2 (embedded interpreters)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _tensorflow_to_import_quietly() -> bool:
    return (
        "tensorflow" not in sys.modules
        and os.environ.get("GAPCAM_TF_LOGS") != "1"
        and importlib.util.find_spec("tensorflow") is not None
    )


def import_tensorflow_quietly() -> None:
    """Import TensorFlow, where it is installed and not imported yet, with its native start-up
    logs silenced. For other backends: Keras imports TensorFlow when it seeds."""
    if not _tensorflow_to_import_quietly():
        return
    with _native_stderr_silenced():
        _discover_tensorflow()


def _discover_tensorflow() -> None:
    """Import TensorFlow and run its device discovery, which logs too ("failed call to cuInit"
    where a CUDA runtime but no driver is installed): call it while descriptor 2 is silenced."""
    import tensorflow as tf

    tf.config.list_physical_devices()


def import_keras_quietly() -> None:
    """Import keras (and its TensorFlow backend) with native start-up logs silenced, once."""
    quiet = (
        "keras" not in sys.modules
        and os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow"
        and os.environ.get("GAPCAM_TF_LOGS") != "1"
    )
    if not quiet:
        return
    with _native_stderr_silenced():
        import keras  # noqa: F401

        _discover_tensorflow()
