"""docs/WORKSHOP.md: its timing table is the one benchmarks/workshop_table.py makes from the
committed docs/workshop_timings.json (written by benchmarks/time_notebooks.py), and it names the
notebooks' sections as they are headed now."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def workshop_table(load_script):
    return load_script("benchmarks/workshop_table.py")


def test_the_guides_table_agrees_with_the_committed_timings(workshop_table, capsys):
    assert workshop_table.main(["--check"]) == 0, capsys.readouterr().err


def test_the_check_fails_when_a_number_differs(workshop_table, tmp_path, capsys):
    report = json.loads((ROOT / "docs/workshop_timings.json").read_text())
    report["notebooks"][0]["sections"][0]["median_seconds"] += 1.0
    timings = tmp_path / "timings.json"
    timings.write_text(json.dumps(report))
    guide = tmp_path / "WORKSHOP.md"
    guide.write_text((ROOT / "docs/WORKSHOP.md").read_text())
    assert workshop_table.main(["--check", "--timings", str(timings), "--guide", str(guide)]) == 1
    assert "run python benchmarks/workshop_table.py" in capsys.readouterr().err
    assert workshop_table.main(["--timings", str(timings), "--guide", str(guide)]) == 0
    assert workshop_table.main(["--check", "--timings", str(timings), "--guide", str(guide)]) == 0


def test_a_guide_without_markers_is_refused(workshop_table):
    with pytest.raises(ValueError, match="timings:start"):
        workshop_table.replace_table("no markers here", "table")


def test_the_timings_cover_every_notebook_and_its_current_sections(load_script):
    """The committed timings name the notebooks and `##` sections that exist now (a renamed or
    added section means: re-time, regenerate)."""
    time_notebooks = load_script("benchmarks/time_notebooks.py")
    import nbformat

    report = json.loads((ROOT / "docs/workshop_timings.json").read_text())
    paths = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert [n["notebook"] for n in report["notebooks"]] == [p.name for p in paths]
    for path, timed in zip(paths, report["notebooks"]):
        notebook = nbformat.read(path, as_version=4)
        sections = time_notebooks.section_of_cells(notebook)
        code = {sections[i] for i, c in enumerate(notebook.cells) if c.cell_type == "code"}
        assert [s["heading"] for s in timed["sections"]] == [
            s for s in dict.fromkeys(sections) if s in code], path.name


def test_the_readme_links_the_guide_and_the_guide_names_its_commands():
    readme = (ROOT / "README.md").read_text()
    assert "(docs/WORKSHOP.md)" in readme
    guide = (ROOT / "docs/WORKSHOP.md").read_text()
    for command in ("make wheelhouse", "make lab WHEELHOUSE=", "make doctor",
                    "benchmarks/time_notebooks.py", "benchmarks/workshop_table.py",
                    "--only-binary=:all:", "--platform", "--python-version"):
        assert command in guide, command
    assert re.search(r"one OS, one CPU architecture and one Python minor version", guide)
