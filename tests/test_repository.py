"""Repository consistency: requirements vs environment.yml, the repository URL, notebook hygiene."""

from __future__ import annotations

import importlib.util
import json
import re
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


def test_makefile_keeps_the_inline_backend_for_jupyter():
    """make lab and make execute-notebooks start kernels without MPLBACKEND (ipykernel uses its
    inline backend only when it is unset), and nothing exports one globally."""
    makefile = (ROOT / "Makefile").read_text()
    assert not re.search(r"^export\s+MPLBACKEND", makefile, re.M)
    for target in ("lab", "execute-notebooks"):
        recipe = re.search(rf"^{target}:.*\n((?:\t.*\n)+)", makefile, re.M)
        assert recipe and "env -u MPLBACKEND" in recipe.group(1), target


def test_public_api_is_small_and_is_what_the_notebooks_use():
    """About 40 names (at most 45); every `helpers.X` a notebook uses is one of them, and every
    one of them resolves."""
    import helpers

    assert len(helpers.__all__) <= 45, len(helpers.__all__)
    assert len(set(helpers.__all__)) == len(helpers.__all__)
    for name in helpers.__all__:
        assert getattr(helpers, name) is not None
    used = set()
    for path in NOTEBOOKS:
        notebook = json.loads(path.read_text())
        source = "\n".join("".join(c["source"]) for c in notebook["cells"]
                           if c["cell_type"] == "code")
        used |= set(re.findall(r"\bhelpers\.([A-Za-z_]\w*)", source))
        assert not re.search(r"from helpers\.\w+ import", source), path.name
    assert used - {"__version__"} <= set(helpers.__all__), used - set(helpers.__all__)


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
    colab = re.findall(rf"https://colab\.research\.google\.com/github/([^)\s]+)", readme)
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


def test_make_tests_both_ends_of_requires_python():
    """make test-lowest runs on the lowest Python requires-python allows, test-highest on the
    highest, and the venv check of make lab accepts the same range."""
    makefile = (ROOT / "Makefile").read_text()
    low, high = _requires_python()
    assert re.search(rf"^LOWEST_PY\s*\?=\s*{re.escape(low)}$", makefile, re.M)
    assert re.search(rf"^HIGHEST_PY\s*\?=\s*{re.escape(high)}$", makefile, re.M)
    as_tuple = lambda version: "(%s, %s)" % tuple(version.split("."))  # noqa: E731
    assert f"{as_tuple(low)} <= v <= {as_tuple(high)}" in makefile
    assert f"Python {low}-{high} is needed" in makefile


def test_make_lab_registers_no_kernel_the_notebooks_do_not_use():
    """The notebooks name the "python3" kernel (Colab and Binder know only that one), which
    JupyterLab from the venv provides; make lab must not add a second one to the launcher."""
    makefile = (ROOT / "Makefile").read_text()
    assert "kernelspec install" not in makefile and "ipykernel install" not in makefile


def test_ci_runs_the_browser_test_after_make_test():
    steps = [line.strip() for line in (ROOT / ".ci/run").read_text().splitlines()
             if line.strip().startswith("make ")]
    assert steps == ["make test", "make test-widgets7", "make test-browser",
                     "make test-browser-widgets7", "make test-wheelhouse"], steps
