"""benchmarks/time_notebooks.py on a two-cell notebook: rounds, medians, verdicts, the JSON."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import nbformat
import pytest


@pytest.fixture(scope="module")
def time_notebooks(load_script):
    return load_script("benchmarks/time_notebooks.py")


@pytest.mark.slow
@pytest.mark.parametrize("slow_import", [
    "",
    # Stands for importing matplotlib under load (or matplotlib 3.8): slower than the sleep cell,
    # which the test used to assume would always be the slowest.
    "\nimport time\ntime.sleep(0.6)",
])
def test_two_rounds_of_a_small_notebook(time_notebooks, tmp_path, monkeypatch, slow_import):
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# a title"),
        nbformat.v4.new_code_cell(  # kernels must draw with their inline backend
            "import matplotlib\nassert 'inline' in matplotlib.get_backend(), "
            "matplotlib.get_backend()" + slow_import),
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
    # No assertion depends on how fast the machine is: which cell is slowest depends on the load
    # (importing matplotlib can take longer than the 0.3 s sleep), so the test checks that the
    # report names the cell with the largest median, whichever it is. A sleep lasts at least its
    # duration, so only that lower bound is asserted.
    matplotlib_cell, sleep = result["cells"]
    assert matplotlib_cell["first_line"] == "import matplotlib"
    assert sleep["cell"] == 2 and sleep["first_line"] == "import time"
    assert len(sleep["seconds"]) == 2 and min(sleep["seconds"]) >= 0.3
    for cell in result["cells"]:
        assert min(cell["seconds"]) <= cell["median_seconds"] <= cell["max_seconds"]
    slowest = max(result["cells"], key=lambda cell: cell["median_seconds"])
    assert result["slowest_cell"] == slowest
    assert report["slowest_cell_seconds"] == slowest["median_seconds"]
    assert report["total_seconds"] == result["median_wall_seconds"] >= 0.3
    goals = report["goals"]
    assert goals["total_met"] == (report["total_seconds"] <= goals["total_seconds"])
    assert goals["cells_met"] == (report["slowest_cell_seconds"] <= goals["cell_seconds"])
    assert report["repeats"] == 2 and len(report["load_average"]["start"]) == 3
    assert "--repeats 2" in report["command"]
    # Memory: the kernel's high-water mark, read after every cell (Linux only), never falls
    # from one cell to the next, and the notebook's peak is that of its last cell.
    if sys.platform.startswith("linux"):
        assert 10 < result["peak_mib"] == max(result["peak_mib_per_round"]) < 100_000
        peaks = [cell["peak_mib"] for cell in result["cells"]]
        assert peaks == sorted(peaks) and peaks[-1] == result["peak_mib"]
        assert result["peak_cell"] in {1, 2}
        assert all(0 < cell["rss_mib"] <= cell["peak_mib"] for cell in result["cells"])
        assert report["peak_mib"] == result["peak_mib"]
        assert goals["memory_met"] == (report["peak_mib"] <= goals["peak_mib"])


def test_process_memory_reads_this_process_and_refuses_what_it_cannot(time_notebooks):
    if sys.platform.startswith("linux"):
        memory = time_notebooks.process_memory(os.getpid())
        assert 0 < memory["rss_mib"] <= memory["peak_mib"]
    assert time_notebooks.process_memory(None) is None
    assert time_notebooks.process_memory(2**22 + 12345) is None  # above Linux's pid_max


def test_bad_arguments_are_refused_with_a_reason(time_notebooks, tmp_path, capsys):
    with pytest.raises(SystemExit):
        time_notebooks.main(["--repeats", "0"])
    assert "--repeats must be at least 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        time_notebooks.main([str(tmp_path / "missing.ipynb")])
    assert "no such notebook" in capsys.readouterr().err


def test_sections_follow_level_one_and_two_headings(time_notebooks):
    """Code cells belong to the last '#'/'##' heading above them; '###' stays inside; a section's
    time is the sum of its cells' times per round."""
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("before any heading"),
        nbformat.v4.new_markdown_cell("# Title\n\ntext"),
        nbformat.v4.new_code_cell("a"),
        nbformat.v4.new_markdown_cell("## Summary\n\n## Exercises"),
        nbformat.v4.new_code_cell("b"),
        nbformat.v4.new_markdown_cell("### A detail"),
        nbformat.v4.new_code_cell("c"),
    ])
    assert time_notebooks.section_of_cells(notebook) == [
        "", "Title", "Title", "Exercises", "Exercises", "Exercises", "Exercises"]

    def run(a: float, b: float, c: float) -> dict:
        return {"wall_seconds": a + b + c, "cells": [
            {"cell": 2, "seconds": a, "first_line": "a", "section": "Title"},
            {"cell": 4, "seconds": b, "first_line": "b", "section": "Exercises"},
            {"cell": 6, "seconds": c, "first_line": "c", "section": "Exercises"}]}

    summary = time_notebooks.summarise(Path("01_x.ipynb"), [run(1, 2, 3), run(2, 1, 1), run(3, 4, 4)])
    title, exercises = summary["sections"]
    assert title == {"heading": "Title", "cells": [2], "median_seconds": 2, "max_seconds": 3,
                     "seconds": [1, 2, 3]}
    assert exercises["heading"] == "Exercises" and exercises["cells"] == [4, 6]
    assert exercises["seconds"] == [5, 2, 8] and exercises["median_seconds"] == 5
    assert [cell["section"] for cell in summary["cells"]] == ["Title", "Exercises", "Exercises"]
