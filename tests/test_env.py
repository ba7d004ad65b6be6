"""helpers.env: set-up helpers of every notebook's first cells, in fresh interpreters.

TensorFlow writes start-up lines from C++ straight to descriptor 2 ("oneDNN custom operations
are on", "Could not find cuda drivers"), which land in notebook outputs. `import helpers` hides
them on the TensorFlow backend, and `helpers.set_seed` on the others, where Keras imports
TensorFlow to seed it too. `GAPCAM_TF_LOGS=1` shows them: the control that keeps these tests
honest on a TensorFlow that prints nothing.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None,
                                reason="about TensorFlow's start-up lines")

SETUP = """
import sys
import helpers
helpers.set_seed(7)
import numpy as np
first = np.random.rand()
helpers.set_seed(7)
assert np.random.rand() == first, "set_seed must make NumPy repeat"
assert "tensorflow" in sys.modules
print("backend", __import__("keras").backend.backend())
"""
NATIVE_LINES = ("port.cc", "cudart_stub", "cpu_feature_guard", "absl::InitializeLog")


def run_setup(backend: str, show_logs: bool) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items()
           if key not in {"GAPCAM_TF_LOGS", "TF_CPP_MIN_LOG_LEVEL"}}
    env["KERAS_BACKEND"] = backend
    if show_logs:
        env["GAPCAM_TF_LOGS"] = "1"
    return subprocess.run([sys.executable, "-c", SETUP], env=env, capture_output=True, text=True,
                          timeout=300, check=False)


@pytest.mark.slow
@pytest.mark.parametrize("backend", [
    "tensorflow",
    pytest.param("jax", marks=pytest.mark.skipif(importlib.util.find_spec("jax") is None,
                                                 reason="jax is not installed")),
])
def test_setup_hides_tensorflow_start_up_lines(backend):
    shown = run_setup(backend, show_logs=True)
    assert shown.returncode == 0, shown.stderr
    if not any(line in shown.stderr for line in NATIVE_LINES):
        pytest.skip("this TensorFlow prints no native start-up lines here")
    quiet = run_setup(backend, show_logs=False)
    assert quiet.returncode == 0, quiet.stderr
    assert f"backend {backend}" in quiet.stdout
    leaked = [line for line in quiet.stderr.splitlines() if any(n in line for n in NATIVE_LINES)]
    assert not leaked, leaked


@pytest.mark.parametrize("seed, error", [(-1, ValueError), (2**32, ValueError), (None, TypeError),
                                         (1.5, TypeError), ("7", TypeError), (True, TypeError)])
def test_set_seed_refuses_what_numpy_cannot_take(seed, error):
    # Before: errors from inside NumPy or Keras ("Seed must be between 0 and 2**32 - 1", a
    # ValueError for None), and True was taken as seed 1.
    from helpers.env import set_seed

    with pytest.raises(error, match=r"seed must be an integer in 0\.\.4294967295"):
        set_seed(seed)


def test_require_versions_passes_failing_and_refuses_what_is_not_a_version():
    from helpers.env import require_versions

    found = require_versions(numpy="1.0", keras="3")
    assert set(found) == {"numpy", "keras"}
    with pytest.raises(RuntimeError, match=r"numpy .* is older than 999\.0.*make lab"):
        require_versions(numpy="999.0")
    with pytest.raises(RuntimeError, match="no-such-package is not installed"):
        require_versions(no_such_package="1.0")
    for bad in ("", "latest", 3.6, None, "3.x"):
        with pytest.raises(ValueError, match=r"takes a version string of numbers and dots"):
            require_versions(keras=bad)
