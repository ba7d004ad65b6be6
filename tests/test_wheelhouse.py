"""The workshop's offline install, as the Makefile and CI run it (the install itself is
`make test-wheelhouse`, run by .ci/run: minutes and ~750 MB, too much for a unit test). Here:
that its pip cannot see this machine's pip configuration, and that the recipes use it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAKEFILE = (ROOT / "Makefile").read_text()


def _recipe(target: str) -> str:
    match = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n|[^\S\n]*\n)+)", MAKEFILE, re.M)
    assert match, f"no {target} target in the Makefile"
    return match.group(1)


def _isolated_pip_prefix() -> str:
    line = re.search(r"^ISOLATED_PIP = (.*)$", MAKEFILE, re.M).group(1)
    return line.replace("$$", "$")  # make's escape for the shell's $


def test_the_isolated_pip_sees_no_configuration_of_this_machine(tmp_path):
    """With PIP_* variables and a config file that name other wheel folders and indexes, the
    Makefile's isolated pip has no configuration at all (--isolated alone would still read the
    machine's global pip.conf)."""
    config = tmp_path / "pip.conf"
    config.write_text(f"[global]\nfind-links = {tmp_path / 'elsewhere'}\n"
                      "extra-index-url = file:///nowhere/simple\n")
    environment = {**os.environ, "PIP_FIND_LINKS": str(tmp_path / "more"),
                   "PIP_EXTRA_INDEX_URL": "file:///nowhere", "PIP_CONFIG_FILE": str(config)}
    shown = subprocess.run(
        ["sh", "-c", f"{_isolated_pip_prefix()}; env | grep '^PIP_' ; "
                     f"{sys.executable} -m pip --isolated config list"],
        env=environment, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == "PIP_CONFIG_FILE=/dev/null", shown.stdout
    # The same pip without the prefix does see them: the test can fail.
    leaky = subprocess.run([sys.executable, "-m", "pip", "config", "list"], env=environment,
                           capture_output=True, text=True, timeout=120)
    assert "elsewhere" in leaky.stdout or "more" in leaky.stdout, leaky.stdout


def test_the_wheelhouse_check_installs_offline_into_a_fresh_venv_and_runs_the_doctor():
    recipe = _recipe("test-wheelhouse")
    assert re.search(r"^test-wheelhouse: wheelhouse\b", MAKEFILE, re.M)
    assert "rm -rf $(WHEELHOUSE_VENV)" in recipe and "-m venv $(WHEELHOUSE_VENV)" in recipe
    logical = re.sub(r"\\\n\s*", " ", recipe).splitlines()  # continuation lines joined
    install = next(line.strip() for line in logical if "pip --isolated install" in line)
    assert install.startswith("$(ISOLATED_PIP);")
    assert "--no-index" in install and '--find-links "$(abspath $(WHEELHOUSE_DIR))"' in install
    assert "-r requirements.txt" in install and '"gap-cam-helpers[notebooks]"' in install
    assert "-m helpers doctor --prepare" in recipe and 'GAPCAM_CACHE_DIR="$$scratch/cache"' in recipe
    assert "env -u PYTHONPATH" in recipe  # the installed wheel runs, not the checkout
    wheelhouse = _recipe("wheelhouse")
    assert "pip wheel" in wheelhouse and "-r requirements.txt" in wheelhouse
    assert re.search(r'"setuptools>=77" \.\n', wheelhouse)  # this project's wheel too


def test_ci_runs_make_test_first_then_the_wheelhouse_check():
    # (the widget and browser tests come between the two: tests/test_repository.py)
    commands = [line.strip() for line in (ROOT / ".ci/run").read_text().splitlines()
                if line.strip().startswith("make ")]
    assert commands[0] == "make test" and commands[-1] == "make test-wheelhouse", commands


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_lab_with_a_wheelhouse_installs_only_from_it(tmp_path):
    """`make -n` (prints, runs nothing): with WHEELHOUSE every pip install is isolated and
    --no-index from that folder, the test-only requirements are left out, and a separate stamp
    is used; without it, the usual online install."""
    venv = tmp_path / "venv"
    offline = subprocess.run(
        ["make", "-n", "lab", f"VENV={venv}", f"WHEELHOUSE={tmp_path}"], cwd=ROOT,
        capture_output=True, text=True, timeout=60).stdout
    installs = [line for line in offline.replace("\\\n", " ").splitlines()
                if "pip" in line and " install" in line]
    assert len(installs) == 2, offline
    for line in installs:
        assert "PIP_CONFIG_FILE=/dev/null" in line and "pip --isolated install" in line
        assert f'--no-index --find-links "{tmp_path}"' in re.sub(r"\s+", " ", line)
    assert "requirements-test.txt" not in offline and ".installed-wheelhouse" in offline
    online = subprocess.run(["make", "-n", "lab", f"VENV={venv}"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60).stdout
    assert "--no-index" not in online and "requirements-test.txt" in online


def test_generated_folders_are_ignored():
    ignored = (ROOT / ".gitignore").read_text().split()
    assert "wheelhouse/" in ignored and ".venv-wheelhouse/" in ignored
