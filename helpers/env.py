"""The notebooks' setup cell: version checks, backend and device report, seeds.

Introduced in notebook 01.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from importlib import metadata

__all__ = ["on_colab", "require_versions", "report_environment", "set_seed"]


def on_colab() -> bool:
    """Whether the code runs on Google Colab."""
    return "google.colab" in sys.modules or os.path.exists("/content/sample_data")


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        if not digits:
            break
        parts.append(int(digits))
        if not piece.isdigit():
            break
    return tuple(parts)


def require_versions(**minimums: str) -> dict[str, str]:
    """Assert that installed distributions are at least the given versions.

    Parameters
    ----------
    **minimums
        Distribution name (``-`` written as ``_``) → minimum version, e.g. ``keras="3.6"``.

    Returns
    -------
    dict[str, str]
        The installed versions.

    Raises
    ------
    RuntimeError
        Naming every package that is missing or too old, and how to fix it.
    ValueError
        A minimum that is not a version string of dot-separated numbers (``"3.6"``, not ``3.6``,
        ``""`` or ``"latest"``).
    """
    for name, minimum in minimums.items():
        if not (isinstance(minimum, str) and re.fullmatch(r"\d+(\.\d+)*", minimum.strip())):
            raise ValueError(f"require_versions({name}=...) takes a version string of numbers "
                             f"and dots such as \"3.6\", got {type(minimum).__name__} {minimum!r}")
    installed, problems = {}, []
    for name, minimum in minimums.items():
        distribution = name.replace("_", "-")
        try:
            version = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            problems.append(f"{distribution} is not installed (need >= {minimum})")
            continue
        installed[distribution] = version
        if _version_tuple(version) < _version_tuple(minimum):
            problems.append(f"{distribution} {version} is older than {minimum}")
    if problems:
        raise RuntimeError(
            "; ".join(problems) + ". Run `make lab` (or `pip install -r requirements.txt`)."
        )
    return installed


def report_environment() -> dict[str, object]:
    """Print and return Python, Keras, backend and device information.

    Says so (does not fail) when no GPU is found: every notebook of the series runs on a CPU.
    """
    import keras

    from helpers._engine.devices import accelerators

    devices = accelerators()
    info: dict[str, object] = {
        "python": platform.python_version(),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "devices": devices or ["CPU"],
        "colab": on_colab(),
    }
    print(
        f"Python {info['python']} | Keras {info['keras']} on {info['backend']} | "
        f"devices: {', '.join(info['devices'])}" + (" | Colab" if info["colab"] else "")
    )
    if not devices:
        print("No GPU found: running on the CPU (every notebook here is sized for that).")
    return info


#: NumPy's legacy global seed (which Keras sets) must lie in 0 .. 2**32 - 1.
MAX_SEED = 2**32 - 1


def set_seed(seed: int = 42) -> None:
    """Seed Python, NumPy and the Keras backend so runs are repeatable.

    Parameters
    ----------
    seed
        An int in ``0 .. 2**32 - 1`` (NumPy's range).

    Raises
    ------
    helpers.checks.ArgumentError
        ``seed`` is not an int (``None`` would mean "unseeded", the opposite of repeatable), or
        is negative or above ``2**32 - 1``.
    """
    from helpers.checks import integer

    seed = integer("seed", seed, 0, MAX_SEED)
    import keras

    from helpers._quiet import import_tensorflow_quietly

    import_tensorflow_quietly()  # Keras seeds TensorFlow too, wherever it is installed
    keras.utils.set_random_seed(int(seed))
