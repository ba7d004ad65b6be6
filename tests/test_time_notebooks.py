"""benchmarks/time_notebooks.py on a two-cell notebook: rounds, medians, verdicts, the JSON."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def time_notebooks():
    spec = importlib.util.spec_from_file_location(
        "time_notebooks", ROOT / "benchmarks/time_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_two_rounds_of_a_small_notebook(time_notebooks, tmp_path, monkeypatch):
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# a title"),
        nbformat.v4.new_code_cell(  # kernels must draw with their inline backend
            "import matplotlib\nassert 'inline' in matplotlib.get_backend(), "
            "matplotlib.get_backend()"),
        nbformat.v4.new_code_cell("import time\ntime.sleep(0.3)"),
    ])
    path = tmp_path / "01_small.ipynb"
    nbformat.write(notebook, path)
    output = tmp_path / "elsewhere" / "timings.json"  # outside the repository
    monkeypatch.setenv("MPLBACKEND", "Agg")

    report = time_notebooks.main([str(path), "--repeats", "2", "--output", str(output)])

    assert json.loads(output.read_text()) == json.loads(json.dumps(report))
    (result,) = report["notebooks"]
    assert result["notebook"] == "01_small.ipynb" and len(result["wall_seconds"]) == 2
    assert [cell["cell"] for cell in result["cells"]] == [1, 2]  # code cells, by index
    sleep = result["slowest_cell"]
    assert sleep["cell"] == 2 and sleep["first_line"] == "import time"
    assert result["cells"][0]["first_line"] == "import matplotlib"
    assert len(sleep["seconds"]) == 2 and min(sleep["seconds"]) >= 0.3
    assert min(sleep["seconds"]) <= sleep["median_seconds"] <= sleep["max_seconds"]
    assert report["slowest_cell_seconds"] == sleep["median_seconds"]
    assert report["total_seconds"] == result["median_wall_seconds"] >= 0.3
    assert report["goals"]["total_met"] and report["goals"]["cells_met"]
    assert report["repeats"] == 2 and len(report["load_average"]["start"]) == 3
    assert "--repeats 2" in report["command"]


def test_bad_arguments_are_refused_with_a_reason(time_notebooks, tmp_path, capsys):
    with pytest.raises(SystemExit):
        time_notebooks.main(["--repeats", "0"])
    assert "--repeats must be at least 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        time_notebooks.main([str(tmp_path / "missing.ipynb")])
    assert "no such notebook" in capsys.readouterr().err
