"""Repository consistency: requirements vs environment.yml, the repository URL, notebook hygiene;
what the Makefile's targets and .ci/run run (with stand-ins for the venv's programs and make)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def _normalise(requirement: str) -> str:
    requirement = requirement.split("#", 1)[0].strip()
    name, _, spec = re.match(r"([A-Za-z0-9_.\-]+)\s*(.*)", requirement).group(1, 0, 2)
    return re.sub(r"[-_.]+", "-", name).lower() + spec.replace(" ", "")


def _requirements_txt() -> set[str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return {_normalise(line) for line in lines if line.split("#", 1)[0].strip()}


def _environment_yml_pip() -> set[str]:
    # A tiny reader for the one shape this file has (no YAML dependency): "      - pkg spec"
    # lines under "  - pip:".
    lines = (ROOT / "environment.yml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "- pip:")
    indent = len(lines[start]) - len(lines[start].lstrip())
    entries = set()
    for line in lines[start + 1 :]:
        if line.strip() and len(line) - len(line.lstrip()) <= indent:
            break
        item = line.strip()
        if item.startswith("- "):
            entries.add(_normalise(item[2:]))
    return entries


def test_environment_yml_matches_requirements():
    assert _environment_yml_pip() == _requirements_txt()


def _pyproject_list(key: str) -> set[str]:
    # The quoted strings of one array in pyproject.toml ("dependencies = [" ... "]"); the file's
    # arrays are one string per line (tomllib is Python 3.11+, and the series supports 3.10).
    text = (ROOT / "pyproject.toml").read_text()
    body = re.search(rf"^{re.escape(key)}\s*=\s*\[(.*?)^\]", text, re.M | re.S)
    assert body, f"no {key} = [...] in pyproject.toml"
    return {_normalise(item) for item in re.findall(r'"([^"]+)"', body.group(1))}


def test_pyproject_declares_every_requirement_for_the_doctor():
    """The installed metadata is what `python -m helpers doctor` reads: the package's
    dependencies plus its `notebooks` extra must be requirements.txt, range for range."""
    dependencies, notebooks = _pyproject_list("dependencies"), _pyproject_list("notebooks")
    assert dependencies | notebooks == _requirements_txt()
    assert not dependencies & notebooks, "a requirement is listed twice"


def test_requirements_use_ranges_not_exact_pins():
    pinned = [r for r in _requirements_txt() if "==" in r]
    assert not pinned, f"exact pins break Colab/Binder: {pinned}"


def _repository_url() -> str:
    # tomllib is Python 3.11+; the one line we need is simple enough to read directly.
    text = (ROOT / "pyproject.toml").read_text()
    return re.search(r'^Repository\s*=\s*"([^"]+)"', text, re.M).group(1)


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_skeleton_and_clean_outputs(path):
    notebook = json.loads(path.read_text())
    cells = notebook["cells"]
    code = [c for c in cells if c["cell_type"] == "code"]
    sources = ["".join(c["source"]) for c in cells]
    markdown = "\n".join(s for c, s in zip(cells, sources) if c["cell_type"] == "markdown")

    assert notebook["metadata"]["kernelspec"]["name"] == "python3"
    colab = [s for s in sources if "/content/sample_data" in s]
    assert colab, "no Colab install cell"
    assert _repository_url() in colab[0], "Colab cell's URL differs from pyproject.toml's"
    assert any("helpers.report_environment()" in s for s in sources), "no setup cell"
    for heading in ("Learning objectives", "Summary", "Exercises", "Solutions"):
        assert re.search(rf"^(#+ .*|\*\*){heading}", markdown, re.M | re.I), f"no {heading!r} section"

    counts = [c["execution_count"] for c in code if "".join(c["source"]).strip()]
    assert counts == list(range(1, len(counts) + 1)), "outputs are not from one clean run"
    errors = [o for c in code for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, "a committed output is an error"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_notebooks_show_their_figures(path):
    """Every cell that calls plt.show() unconditionally (not indented: not the online-only
    branches) has a picture in its saved outputs: a notebook executed with MPLBACKEND=Agg (a
    non-interactive backend) saves none, and readers would see empty cells."""
    notebook = json.loads(path.read_text())
    for index, cell in enumerate(notebook["cells"]):
        source = "".join(cell["source"])
        if cell["cell_type"] != "code" or not re.search(r"^plt\.show\(\)", source, re.M):
            continue
        pictures = [o for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
        assert pictures, f"cell {index} calls plt.show() but its saved outputs hold no figure"


def test_public_api_is_small_and_is_what_the_notebooks_use():
    """About 45 names at the top (at most 47: notebook 06's two input-space methods,
    guided_backprop and guided_grad_cam, came after the first cap of 45); every `helpers.X` a
    notebook uses is one of them, and every one of them resolves. Notebook 06's rarer tools live
    one layer down (`helpers.cam.Method`, `helpers.data.recorded`, `helpers.evaluate.road`):
    a notebook may reach a public module's `__all__`, never a private name."""
    import importlib

    import helpers

    assert len(helpers.__all__) <= 47, len(helpers.__all__)
    assert len(set(helpers.__all__)) == len(helpers.__all__)
    for name in helpers.__all__:
        assert getattr(helpers, name) is not None
    top, deeper = set(), set()
    for path in NOTEBOOKS:
        notebook = json.loads(path.read_text())
        source = "\n".join("".join(c["source"]) for c in notebook["cells"]
                           if c["cell_type"] == "code")
        imports = re.findall(r"from (helpers(?:\.\w+)+) import ([\w, ]+)", source)
        source = re.sub(r"from helpers(?:\.\w+)+ import [\w, ]+", "", source)
        for dotted in re.findall(r"\bhelpers((?:\.[A-Za-z_]\w*)+)", source):
            parts = dotted.strip(".").split(".")
            module = "helpers"
            while len(parts) > 1 and importlib.util.find_spec(f"{module}.{parts[0]}") is not None:
                module, parts = f"{module}.{parts[0]}", parts[1:]
            (top if module == "helpers" else deeper).add((module, parts[0]))
        for module, names in imports:
            deeper |= {(module, name.strip()) for name in names.split(",")}
    used = {name for _, name in top}
    assert used - {"__version__"} <= set(helpers.__all__), used - set(helpers.__all__)
    for module, name in sorted(deeper):
        assert not any(part.startswith("_") for part in module.split(".")), module
        assert name in importlib.import_module(module).__all__, f"{module}.{name}"


def test_no_public_module_imports_another_modules_private_names():
    """The underscore is a boundary: public modules of helpers import only public names from each
    other (the private engine package helpers._engine is used through its own names)."""
    offenders = []
    for path in sorted((ROOT / "helpers").glob("*.py")):
        for line in path.read_text().splitlines():
            match = re.match(r"\s*from helpers(\.\w+)* import (.*)", line)
            if match and re.search(r"(^|[\s,(])_\w", match.group(2)):
                offenders.append(f"{path.name}: {line.strip()}")
    assert offenders == []


def _launch_links():
    spec = importlib.util.spec_from_file_location("launch_links", ROOT / "docs/launch_links.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_launch_links_are_built_from_the_one_repository_url():
    launch_links = _launch_links()
    readme = (ROOT / "README.md").read_text()
    assert launch_links.repository_url() == _repository_url()
    assert launch_links.readme_table(readme) == launch_links.table(), (
        "README.md's launch links are stale: run python docs/launch_links.py --write")


def test_every_launch_link_points_at_a_notebook_that_exists():
    """Every Colab and Binder link in README.md (wherever it is) names this repository, and a
    notebook of the series that exists; every notebook has one of each."""
    readme = (ROOT / "README.md").read_text()
    owner_name = re.escape(_repository_url().removeprefix("https://github.com/"))
    colab = re.findall(r"https://colab\.research\.google\.com/github/([^)\s]+)", readme)
    binder = re.findall(r"https://mybinder\.org/v2/gh/([^)\s]+)", readme)
    colab_paths, binder_paths = [], []
    for link in colab:
        match = re.fullmatch(rf"{owner_name}/blob/[^/]+/(notebooks/[^/?#]+\.ipynb)", link)
        assert match, f"Colab link not to a notebook of {_repository_url()}: {link}"
        colab_paths.append(match.group(1))
    for link in binder:
        match = re.fullmatch(rf"{owner_name}/[^/?]+\?labpath=(notebooks%2F[^&#]+\.ipynb)", link)
        assert match, f"Binder link not to a notebook of {_repository_url()}: {link}"
        binder_paths.append(unquote(match.group(1)))
    expected = sorted(path.relative_to(ROOT).as_posix() for path in NOTEBOOKS)
    for path in colab_paths + binder_paths:
        assert (ROOT / path).is_file(), f"a launch link points at {path}, which does not exist"
    assert sorted(set(colab_paths)) == expected and sorted(set(binder_paths)) == expected


def test_launch_links_follow_the_url():
    launch_links = _launch_links()
    notebook = Path("notebooks/01_x.ipynb")
    url = "https://github.com/someone/elsewhere"
    assert launch_links.colab_link(notebook, url) == (
        "https://colab.research.google.com/github/someone/elsewhere/blob/main/notebooks/01_x.ipynb")
    assert launch_links.binder_link(notebook, url) == (
        "https://mybinder.org/v2/gh/someone/elsewhere/main?labpath=notebooks%2F01_x.ipynb")


def _requires_python() -> tuple[str, str]:
    text = (ROOT / "pyproject.toml").read_text()
    low, high = re.search(r'^requires-python\s*=\s*">=(3\.\d+),<3\.(\d+)"', text, re.M).groups()
    return low, f"3.{int(high) - 1}"


# --- What the Makefile and .ci/run run ------------------------------------------------------------
# The targets run for real, on a stand-in venv: its python, jupyter and ruff are scripts that
# record their arguments, working folder and environment (and exit 0, or 1 when FAKE_FAIL names
# them). `make -n` (print, run nothing) where a stand-in cannot go.

needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")

_RECORDER = """#!/bin/sh
{ printf '%s\\037' "$(basename "$0")" "$PWD" "KERAS_BACKEND=${KERAS_BACKEND-<unset>}" \\
    "GAPCAM_OFFLINE=${GAPCAM_OFFLINE-<unset>}" "MPLBACKEND=${MPLBACKEND-<unset>}" "$@"; echo; } \\
  >> "$FAKE_LOG"
[ "$(basename "$0")" != "${FAKE_FAIL-}" ]
"""


def _write_recorder(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_RECORDER)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def _clean_environment(**extra: str) -> dict[str, str]:
    """This process's environment without what an outer make passes down (its flags and
    command-line variables, e.g. VENV=), with KERAS_BACKEND and MPLBACKEND unset."""
    drop = {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "KERAS_BACKEND", "MPLBACKEND"}
    return {**{k: v for k, v in os.environ.items() if k not in drop}, **extra}


class FakeVenv:
    """A venv whose programs only record how they were called; installed (its stamp is newer
    than the requirements), so the set-up steps do not run pip."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.log = folder / "calls.log"
        for name in ("python", "jupyter", "ruff"):
            _write_recorder(folder / "bin" / name)
        (folder / ".installed").touch()  # newer than the requirements files it depends on
        # Relative to the repository: execute-notebooks calls ../$(BIN)/jupyter from notebooks/.
        self.venv = os.path.relpath(folder, ROOT)

    def make(self, *targets: str, fail: str = "", **environment: str):
        self.log.write_text("")
        result = subprocess.run(
            ["make", "--no-print-directory", *targets, f"VENV={self.venv}"], cwd=ROOT,
            env=_clean_environment(FAKE_LOG=str(self.log), FAKE_FAIL=fail, **environment),
            capture_output=True, text=True, timeout=120)
        return result, self.calls()

    def calls(self) -> list[dict]:
        calls = []
        for line in self.log.read_text().splitlines():
            name, cwd, *fields = line.rstrip("\x1f").split("\x1f")
            environment = dict(field.split("=", 1) for field in fields[:3])
            calls.append({"program": name, "cwd": Path(cwd), "env": environment,
                          "args": fields[3:]})
        return calls


@pytest.fixture
def fake_venv(tmp_path):
    return FakeVenv(tmp_path / "venv")


def _pytest_runs(calls: list[dict]) -> list[dict]:
    return [c for c in calls if c["program"] == "python" and c["args"][:2] == ["-m", "pytest"]]


def _selection(call: dict) -> list[str]:
    """The paths and -m expression of a pytest call (its other options left out)."""
    args, chosen = call["args"][2:], []
    for index, arg in enumerate(args):
        if arg == "-m":
            chosen += ["-m", args[index + 1]]
        elif not arg.startswith("-") and (index == 0 or args[index - 1] not in ("-m", "-p", "-W")):
            chosen.append(arg)
    return chosen


@needs_make
def test_make_test_runs_lint_every_test_every_notebook_and_the_jax_tests(fake_venv):
    result, calls = fake_venv.make("test")
    assert result.returncode == 0, result.stderr
    assert calls[0]["program"] == "ruff", "lint runs first (it takes seconds)"
    assert calls[0]["args"] == ["check", "helpers", "tests", "benchmarks", "experiments"]
    assert ["-m", "helpers", "prepare"] in [c["args"] for c in calls], "the model is prepared"
    runs = _pytest_runs(calls)
    assert [(_selection(c), c["env"]["KERAS_BACKEND"]) for c in runs] == [
        (["tests/"], "tensorflow"),
        (["notebooks/"], "tensorflow"),
        (["tests/", "-m", "jax"], "jax"),
    ]
    notebooks = runs[1]["args"]
    assert {"--nbval-lax", "--nbval-current-env", "--nbval-cell-timeout=600"} <= set(notebooks)
    for call in runs:
        assert call["env"]["GAPCAM_OFFLINE"] == "1" and call["cwd"] == ROOT
        assert "no:cacheprovider" in call["args"]


@needs_make
@pytest.mark.parametrize("failing", ["ruff", "python"])
def test_make_test_stops_at_the_first_part_that_fails(fake_venv, failing):
    result, calls = fake_venv.make("test", fail=failing)
    assert result.returncode != 0
    assert calls and calls[-1]["program"] == failing
    if failing == "ruff":
        assert _pytest_runs(calls) == [], "tests ran although lint failed"


@needs_make
@pytest.mark.parametrize("target, selection, backend", [
    ("test-unit", ["tests/"], "tensorflow"),
    ("test-fast", ["tests/", "-m", "not slow"], "tensorflow"),
    ("test-jax", ["tests/", "-m", "jax"], "jax"),
    ("test-notebooks", ["notebooks/"], "tensorflow"),
])
def test_each_part_of_make_test_runs_alone(fake_venv, target, selection, backend):
    result, calls = fake_venv.make(target)
    assert result.returncode == 0, result.stderr
    runs = _pytest_runs(calls)
    assert [(_selection(c), c["env"]["KERAS_BACKEND"]) for c in runs] == [(selection, backend)]
    assert runs[0]["env"]["GAPCAM_OFFLINE"] == "1"
    assert not [c for c in calls if c["program"] == "ruff"]


@needs_make
def test_make_lint_checks_the_code_with_ruff(fake_venv):
    result, calls = fake_venv.make("lint")
    assert result.returncode == 0, result.stderr
    assert [(c["program"], c["args"]) for c in calls] == [
        ("ruff", ["check", "helpers", "tests", "benchmarks", "experiments"])]
    fake_venv.folder.joinpath(".installed").unlink()  # a fresh venv: the set-up installs ruff
    dry_run = subprocess.run(["make", "-n", "lint", f"VENV={fake_venv.venv}"], cwd=ROOT,
                             env=_clean_environment(), capture_output=True, text=True, timeout=60)
    assert "-r requirements-test.txt" in dry_run.stdout, dry_run.stdout
    requirements = (ROOT / "requirements-test.txt").read_text().splitlines()
    assert any(re.match(r"ruff\s*[<>=~]", line) for line in requirements), "ruff is not installed"


@needs_make
def test_jupyter_starts_without_mplbackend(fake_venv):
    """make lab and make execute-notebooks start kernels without MPLBACKEND (ipykernel uses its
    inline backend only when it is unset, else the saved notebooks show no figures), even when
    the caller's environment has one; and no target sets one for the others."""
    result, calls = fake_venv.make("lab", MPLBACKEND="Agg")
    assert result.returncode == 0, result.stderr
    lab = [c for c in calls if c["program"] == "jupyter"]
    assert [c["args"][:2] for c in lab] == [["lab", "notebooks/"]]
    assert lab[0]["env"]["MPLBACKEND"] == "<unset>"

    result, calls = fake_venv.make("execute-notebooks", MPLBACKEND="Agg")
    assert result.returncode == 0, result.stderr
    executed = [c for c in calls if c["program"] == "jupyter"]
    assert sorted(c["args"][-1] for c in executed) == [path.name for path in NOTEBOOKS]
    for call in executed:
        assert call["args"][:2] == ["nbconvert", "--to"] and "--execute" in call["args"]
        assert call["env"]["MPLBACKEND"] == "<unset>" and call["cwd"] == ROOT / "notebooks"

    result, calls = fake_venv.make("test")
    assert {c["env"]["MPLBACKEND"] for c in calls} == {"<unset>"}, "a MPLBACKEND is exported"


@needs_make
def test_make_lab_registers_no_kernel_the_notebooks_do_not_use(fake_venv):
    """The notebooks name the "python3" kernel (Colab and Binder know only that one), which
    JupyterLab from the venv provides; neither the set-up nor make lab adds a second one."""
    _, calls = fake_venv.make("lab")
    fake_venv.folder.joinpath(".installed").unlink()
    dry_run = subprocess.run(["make", "-n", "lab", f"VENV={fake_venv.venv}"], cwd=ROOT,
                             env=_clean_environment(), capture_output=True, text=True, timeout=60)
    commands = [" ".join(c["args"]) for c in calls] + dry_run.stdout.splitlines()
    assert not [c for c in commands if "kernelspec install" in c or "ipykernel install" in c]


def _help_lines() -> dict[str, str]:
    shown = subprocess.run(["make", "--no-print-directory", "help"], cwd=ROOT,
                           env=_clean_environment(), capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    lines = [line.split(None, 2) for line in shown.stdout.splitlines()]
    assert all(len(line) == 3 and line[0] == "make" for line in lines), shown.stdout
    return {target: description for _, target, description in lines}


def _phony_targets() -> set[str]:
    """The .PHONY targets, from make's own database (`make -p`: every rule and variable as make
    read them), not from the Makefile's text."""
    database = subprocess.run(["make", "-pq", "help"], cwd=ROOT, env=_clean_environment(),
                              capture_output=True, text=True, timeout=60).stdout
    phony = re.search(r"^\.PHONY: (.*)$", database, re.M)
    assert phony, "make -p shows no .PHONY targets"
    return set(phony.group(1).split())


@needs_make
def test_make_help_describes_every_target():
    """Every phony target (each one a user runs) is listed by make help with a description,
    and every target listed exists."""
    described = _help_lines()
    phony = _phony_targets()
    assert {"help", "test", "test-fast", "lint", "lab", "setup", "test-lowest"} <= phony
    assert sorted(phony - described.keys()) == [], "targets without a ## description"
    assert sorted(described.keys() - phony) == [], "make help lists targets that are not phony"
    for target in described:
        dry_run = subprocess.run(["make", "-n", target], cwd=ROOT, env=_clean_environment(),
                                 capture_output=True, text=True, timeout=60)
        assert "No rule to make target" not in dry_run.stderr, target


@needs_make
def test_make_without_a_target_prints_the_help():
    plain = subprocess.run(["make", "--no-print-directory"], cwd=ROOT, env=_clean_environment(),
                           capture_output=True, text=True, timeout=60)
    assert plain.returncode == 0 and plain.stdout.splitlines() == [
        f"make {target:<22} {text}" for target, text in _help_lines().items()], plain.stdout


def _python_reporting(path: Path, version: tuple[int, int]) -> Path:
    """A python that reports `version` to the code it runs with -c and records -m venv."""
    path.write_text(f"#!{sys.executable}\n"
                    "import sys\n"
                    "if sys.argv[1] == '-c':\n"
                    f"    sys.version_info = {(*version, 0, 'final', 0)!r}\n"
                    "    exec(sys.argv[2])\n"
                    "else:\n"
                    "    print('RAN', *sys.argv[1:])\n")
    path.chmod(0o755)
    return path


@needs_make
def test_the_venv_is_made_only_with_a_python_that_requires_python_allows(tmp_path):
    low, high = _requires_python()
    (low_major, low_minor), (high_major, high_minor) = (
        tuple(map(int, version.split("."))) for version in (low, high))
    venv = tmp_path / "venv"
    for version, accepted in [((low_major, low_minor - 1), False), ((low_major, low_minor), True),
                              ((high_major, high_minor), True),
                              ((high_major, high_minor + 1), False)]:
        python = _python_reporting(tmp_path / f"python{version[0]}.{version[1]}", version)
        made = subprocess.run(["make", f"{venv}/bin/python", f"VENV={venv}", f"PYTHON={python}"],
                              cwd=ROOT, env=_clean_environment(), capture_output=True, text=True,
                              timeout=60)
        assert (made.returncode == 0) == accepted, (version, made.stdout, made.stderr)
        assert ("RAN -m venv" in made.stdout) == accepted, version
        if not accepted:
            assert f"Python {low}-{high} is needed" in made.stdout + made.stderr


@needs_make
@pytest.mark.parametrize("target, end", [("test-lowest", 0), ("test-highest", 1)])
def test_make_tests_both_ends_of_requires_python(tmp_path, target, end):
    """make test-lowest makes its venv with the lowest Python requires-python allows (uv picking
    the lowest versions), test-highest with the highest, then runs make test in that venv."""
    version = _requires_python()[end]
    pythons = tmp_path / "bin"
    pythons.mkdir()
    for minor in range(8, 16):  # every pythonX.Y answers to its name
        _python_reporting(pythons / f"python3.{minor}", (3, minor))
    venv = tmp_path / target
    dry_run = subprocess.run(
        ["make", "-n", "--no-print-directory", target, f"LOWEST_VENV={tmp_path}/test-lowest",
         f"HIGHEST_VENV={tmp_path}/test-highest"],
        cwd=ROOT, env=_clean_environment(PATH=f"{pythons}:{os.environ['PATH']}",
                                         PYENV_ROOT=str(tmp_path / "no-pyenv")),
        capture_output=True, text=True, timeout=60)
    assert dry_run.returncode == 0, dry_run.stderr
    commands = dry_run.stdout.replace("\\\n", " ").splitlines()
    assert f"python{version} -m venv {venv}" in commands, dry_run.stdout
    resolution = "lowest-direct" if end == 0 else "highest"
    assert [c for c in commands if "uv pip install" in c and f"--resolution {resolution}" in c]
    # ... then make test in that venv: its lint and its pytest runs.
    assert any(c.startswith(f"{venv}/bin/ruff check") for c in commands), dry_run.stdout
    assert any(f"{venv}/bin/python -m pytest" in c for c in commands), dry_run.stdout


def _fake_make(folder: Path, fail: str = "") -> Path:
    folder.mkdir()
    make = folder / "make"
    make.write_text('#!/bin/sh\necho "$PWD $*" >> "$FAKE_LOG"\n'
                    f'[ "$*" != "{fail}" ]\n')
    make.chmod(0o755)
    return folder


def test_ci_runs_make_test_then_the_other_checks(tmp_path):
    """.ci/run is executable and runs, from the repository, make test, the widgets-7 tests, the
    browser tests, the Binder session and the wheelhouse check, in that order (a stand-in make
    records them)."""
    run = ROOT / ".ci/run"
    assert os.access(run, os.X_OK)
    log = tmp_path / "make.log"
    folder = _fake_make(tmp_path / "bin")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = subprocess.run([str(run)], cwd=elsewhere, capture_output=True, text=True, timeout=60,
                            env=_clean_environment(PATH=f"{folder}:{os.environ['PATH']}",
                                                   FAKE_LOG=str(log)))
    assert result.returncode == 0, result.stderr
    assert log.read_text().splitlines() == [
        f"{ROOT} {target}" for target in ("test", "test-widgets7", "test-browser",
                                          "test-browser-widgets7", "test-binder",
                                          "test-wheelhouse")]


@pytest.mark.parametrize("failing", ["test", "test-browser"])
def test_ci_stops_at_the_first_failure(tmp_path, failing):
    log = tmp_path / "make.log"
    folder = _fake_make(tmp_path / "bin", fail=failing)
    result = subprocess.run([str(ROOT / ".ci/run")], capture_output=True, text=True, timeout=60,
                            env=_clean_environment(PATH=f"{folder}:{os.environ['PATH']}",
                                                   FAKE_LOG=str(log)))
    assert result.returncode != 0
    assert log.read_text().splitlines()[-1] == f"{ROOT} {failing}"


_LIST_MARKERS = """
import sys, pytest
class Record:
    def pytest_collection_finish(self, session):
        for item in session.items:
            print("ITEM", item.nodeid, *sorted({m.name for m in item.iter_markers()} & {"jax", "slow"}))
sys.exit(pytest.main(sys.argv[1:], plugins=[Record()]))
"""


@pytest.mark.slow
def test_the_jax_and_slow_markers_each_choose_a_part_of_the_tests():
    """Collected, not run (so a marker that pyproject.toml does not register is an error:
    --strict-markers): some tests are marked jax and some not, some slow and some not."""
    result = subprocess.run(
        [sys.executable, "-c", _LIST_MARKERS, "--collect-only", "-q", "-p", "no:cacheprovider",
         str(ROOT / "tests")], cwd=ROOT, capture_output=True, text=True, timeout=300,
        env=_clean_environment(GAPCAM_OFFLINE="1"))
    assert result.returncode == 0, result.stdout[-3000:]
    markers = {line.split()[1]: set(line.split()[2:]) for line in result.stdout.splitlines()
               if line.startswith("ITEM ")}
    assert len(markers) > 100, result.stdout[-3000:]
    for name in ("jax", "slow"):
        marked = [test for test, names in markers.items() if name in names]
        assert 0 < len(marked) < len(markers), name
