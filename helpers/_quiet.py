"""Import Keras without TensorFlow's native start-up log lines.

TensorFlow 2.20+ writes lines such as "oneDNN custom operations are on", "Could not find cuda
drivers" or "failed call to cuInit" from C++ straight to file descriptor 2, before its logging is
initialised and ignoring ``TF_CPP_MIN_LOG_LEVEL`` (tensorflow/tensorflow#100442). In Jupyter they
land in cell outputs. This module silences descriptor 2 only during the first ``import keras``
and TensorFlow's device discovery; Python exceptions and warnings are unaffected. Set ``GAPCAM_TF_LOGS=1`` to see the lines.
"""

from __future__ import annotations

import contextlib
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

        import tensorflow as tf

        # Device discovery logs too ("failed call to cuInit" where a CUDA runtime but no driver
        # is installed): do it now, once, while descriptor 2 is silenced.
        tf.config.list_physical_devices()
