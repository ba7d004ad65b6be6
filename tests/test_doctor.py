"""python -m helpers doctor: all green on a good environment, and the right red line (with its
fix, and a non-zero exit status) when one thing at a time is broken."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from helpers import doctor
from helpers.__main__ import main


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("[")]


@pytest.mark.slow
def test_a_good_environment_is_all_green(tmp_path, monkeypatch):
    """The whole doctor, as `python -m helpers doctor --prepare` runs it, on this (good)
    environment with a fresh weights cache: every line green, exit status 0, a timing line."""
    monkeypatch.setenv("GAPCAM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    stream = io.StringIO()

    failed = doctor.run_doctor(doctor.default_checks(prepare=True), stream=stream, color=False)

    text = stream.getvalue()
    lines = _lines(text)
    assert failed == 0, text
    assert lines and all(line.startswith("[  ok  ]") for line in lines), text
    assert any("converted now and verified" in line for line in lines), text
    assert any("CAM on 'chelsea': Egyptian cat (285)" in line for line in lines), text
    widgets = f"[  ok  ] widgets: ipywidgets {_ipywidgets()} "
    assert any(line.startswith(widgets) for line in lines), text
    assert re.search(r"^all \d+ checks passed in \d+\.\d s", text, re.M), text
    # The weights are now in the cache: a second look verifies them without converting.
    ok, message, _ = doctor.check_offline_weights()
    assert ok and "verified (SHA-256)" in message, message


def test_missing_weights_cache_is_red_with_its_fix_and_exit_status_1(tmp_path, monkeypatch,
                                                                       capsys):
    empty = tmp_path / "empty-cache"
    monkeypatch.setenv("GAPCAM_CACHE_DIR", str(empty))
    monkeypatch.setattr(doctor, "check_cam", lambda: doctor.CheckResult(True, "cam skipped"))

    ok, message, fix = doctor.check_offline_weights()
    assert not ok and "not converted yet" in message and str(empty) in message
    assert "python -m helpers prepare" in fix
    assert not empty.exists(), "the check must not convert anything without --prepare"

    assert main(["doctor"]) == 1
    output = capsys.readouterr().out
    red = [line for line in _lines(output) if line.startswith("[ FAIL ]")]
    assert len(red) == 1 and "offline weights not converted yet" in red[0], output
    assert "fix: python -m helpers prepare" in output
    assert re.search(r"^1 of \d+ checks failed in", output, re.M), output


def test_a_package_below_its_range_is_red(monkeypatch):
    real_version = metadata.version

    def version(name: str) -> str:
        return "3.0.0" if name.lower() == "keras" else real_version(name)

    monkeypatch.setattr(metadata, "version", version)
    keras_line = doctor.check_package(Requirement("keras>=3.6,<4"))
    assert not keras_line.ok
    assert "keras 3.0.0 is outside its declared range" in keras_line.message
    assert ">=3.6" in keras_line.message and "pip install" in keras_line.fix
    assert doctor.check_package(Requirement("numpy>=1.26,<3")).ok

    stream = io.StringIO()
    checks = [("keras", lambda: doctor.check_package(Requirement("keras>=3.6,<4"))),
              ("numpy", lambda: doctor.check_package(Requirement("numpy>=1.26,<3")))]
    assert doctor.run_doctor(checks, stream=stream, color=False) == 1
    red, green = _lines(stream.getvalue())
    assert red.startswith("[ FAIL ] keras 3.0.0") and green.startswith("[  ok  ] numpy")


def test_a_missing_package_is_red():
    result = doctor.check_package(Requirement("surely-not-installed-gapcam>=1"))
    assert not result.ok and "is not installed" in result.message
    assert f'{sys.executable} -m pip install "surely-not-installed-gapcam>=1"' in result.fix


def test_ranges_come_from_the_installed_metadata_with_the_notebooks_extra(monkeypatch):
    with pytest.raises(metadata.PackageNotFoundError):
        doctor.declared_requirements("surely-not-installed-gapcam")
    declared = ["keras<4,>=3.6", 'tensorflow<2.22,>=2.16; extra == "notebooks"',
                'jax>=0.4; extra == "test"', 'colorama; sys_platform == "win32"']
    monkeypatch.setattr(metadata, "requires", lambda name: declared if name == "x" else None)
    names = [str(r) for r in doctor.declared_requirements("x")]
    assert names == ["keras<4,>=3.6", "tensorflow<2.22,>=2.16"]  # not the test extra's, nor
    # a requirement whose marker excludes this platform


def test_missing_widgets_extension_is_red(tmp_path):
    result = doctor.check_widgets(search_paths=[tmp_path])
    assert not result.ok
    assert "no widgets front-end extension @jupyter-widgets/jupyterlab-manager" in result.message
    assert "jupyterlab_widgets" in result.fix

    stream = io.StringIO()
    checks = [("widgets", lambda: doctor.check_widgets(search_paths=[tmp_path]))]
    assert doctor.run_doctor(checks, stream=stream, color=False) == 1
    assert _lines(stream.getvalue())[0].startswith(f"[ FAIL ] ipywidgets {_ipywidgets()}")


def _ipywidgets() -> str:
    import ipywidgets

    return ipywidgets.__version__


@pytest.mark.parametrize("kernel_major", [7, 8])
def test_a_widgets_extension_of_the_wrong_generation_is_red(tmp_path, monkeypatch, kernel_major):
    """ipywidgets 8 talks to jupyterlab-manager 5.x (jupyterlab_widgets 3), 7.x to 3.x
    (jupyterlab_widgets 1.1, which also runs in JupyterLab 4); 5.x cannot render 7.x widgets."""
    import ipywidgets

    monkeypatch.setattr(ipywidgets, "__version__", f"{kernel_major}.9.0")

    def not_installed(name):  # the extension installed some other way: no range check
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", not_installed)
    declared = "jupyterlab_widgets>=1.0.0" if kernel_major == 7 else "jupyterlab_widgets~=3.0.15"
    monkeypatch.setattr(metadata, "requires", lambda name: [declared])  # 7.7.1's, 8.1's
    folder = tmp_path / "@jupyter-widgets" / "jupyterlab-manager"
    folder.mkdir(parents=True)
    wrong, right = ("5.0.16", "3.1.11") if kernel_major == 7 else ("3.1.11", "5.0.16")
    (folder / "package.json").write_text(json.dumps({"version": wrong}))
    result = doctor.check_widgets(search_paths=[tmp_path])
    assert not result.ok and f"does not match ipywidgets {kernel_major}.9.0" in result.message
    wanted = "jupyterlab_widgets>=1.0.0,<3" if kernel_major == 7 else "jupyterlab_widgets~=3.0.15"
    assert f'install "{wanted}"' in result.fix  # 7.7.1 itself declares no bound: 3.x won't do
    (folder / "package.json").write_text(json.dumps({"version": right}))
    assert doctor.check_widgets(search_paths=[tmp_path]).ok


def test_a_non_tensorflow_backend_is_red(monkeypatch):
    result = doctor.check_keras_backend(expected="not-a-backend")
    assert not result.ok and "'not-a-backend'" in result.message
    assert "KERAS_BACKEND=not-a-backend" in result.fix


def test_memory_and_disk_thresholds(tmp_path):
    assert doctor.check_memory(minimum_gib=2, available_bytes=4 * 2**30).ok
    low = doctor.check_memory(minimum_gib=2, available_bytes=2**29)
    assert not low.ok and "0.5 GiB available" in low.message and low.fix
    assert doctor.check_disk([tmp_path], minimum_gib=0.0).ok
    full = doctor.check_disk([tmp_path / "not" / "yet"], minimum_gib=1e12)
    assert not full.ok and "below 1e+12 GiB" in full.message and full.fix


def test_a_failing_cam_is_red_and_a_crashing_check_does_not_stop_the_others(monkeypatch):
    import helpers

    def broken(name: str):
        raise RuntimeError("simulated")

    monkeypatch.setattr(helpers, "load_classifier", broken)
    result = doctor.check_cam()
    assert not result.ok and "RuntimeError: simulated" in result.message

    def crash() -> doctor.CheckResult:
        raise ValueError("boom")

    stream = io.StringIO()
    checks = [("crash", crash), ("fine", lambda: doctor.CheckResult(True, "fine"))]
    assert doctor.run_doctor(checks, stream=stream, color=False) == 1
    assert _lines(stream.getvalue()) == [
        "[ FAIL ] crash: the check itself failed: ValueError('boom')", "[  ok  ] fine"]


def _doctor_file_with_broken(tmp_path: Path, package: str, body: str) -> subprocess.CompletedProcess:
    """``python helpers/doctor.py`` with a stand-in ``package`` (its ``__init__`` is ``body``)
    ahead of the real one on the path."""
    root = Path(__file__).resolve().parents[1]
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text(body)
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(root)]),
                   "GAPCAM_CACHE_DIR": str(tmp_path / "cache")}
    return subprocess.run([sys.executable, str(root / "helpers" / "doctor.py")], cwd=tmp_path,
                          env=environment, capture_output=True, text=True, timeout=300)


def test_run_as_a_file_it_prints_every_line_when_keras_itself_is_broken(tmp_path):
    """`python helpers/doctor.py` (make doctor) with a Keras that fails to import: the package
    lines still print, the Keras-dependent ones are red, the exit status is 1."""
    run = _doctor_file_with_broken(tmp_path, "keras", "raise ImportError('simulated broken keras')")
    lines = _lines(run.stdout)
    assert run.returncode == 1, run.stdout + run.stderr
    assert any(line.startswith("[  ok  ] numpy ") for line in lines), run.stdout
    assert any(line.startswith("[  ok  ] widgets: ipywidgets") for line in lines), run.stdout
    red = "\n".join(line for line in lines if line.startswith("[ FAIL ]"))
    assert "Keras does not import: ImportError: simulated broken keras" in red, run.stdout
    assert "CAM on the photo 'chelsea' failed" in red, run.stdout


def test_a_broken_pillow_is_named_not_blamed_on_keras(tmp_path):
    """Before: with Pillow broken (Keras imports it), "Keras does not import" and a reinstall
    of keras. Now the line names Pillow, and the fix reinstalls Pillow."""
    run = _doctor_file_with_broken(tmp_path, "PIL", "raise AttributeError('simulated broken Pillow')")
    assert run.returncode == 1, run.stdout + run.stderr
    lines = _lines(run.stdout)
    index = next(i for i, line in enumerate(lines) if "does not import" in line)
    assert lines[index] == ("[ FAIL ] PIL does not import, so neither does helpers: "
                            "AttributeError: simulated broken Pillow"), run.stdout
    fix = run.stdout.split(lines[index], 1)[1].splitlines()[1]  # the line under it
    assert fix.strip().startswith("fix:") and '-m pip install --force-reinstall "pillow"' in fix, fix
    assert "keras" not in fix


def test_python_is_checked_against_the_installed_requires_python(monkeypatch):
    assert doctor.check_python().ok  # the project is installed (make lab / make test)
    missing = doctor.check_python("surely-not-installed-gapcam")
    assert not missing.ok and "is not installed" in missing.message and "make lab" in missing.fix

    class Declared:
        def get(self, key: str) -> str:
            return ">=3.99" if key == "Requires-Python" else ""

    monkeypatch.setattr(metadata, "metadata", lambda name: Declared())
    old = doctor.check_python()
    assert not old.ok and "outside the declared range >=3.99" in old.message
