"""Time every notebook of the series from a clean kernel: per notebook, and its slowest cell.

    .venv/bin/python benchmarks/time_notebooks.py            # all notebooks
    .venv/bin/python benchmarks/time_notebooks.py notebooks/03_*.ipynb

Goals (issue 6): all notebooks together within 5 minutes on a 2-core machine, no cell over 30 s.
Prints a table and writes benchmarks/results/notebook_timings.json. Notebooks are executed in
memory; the files on disk are not changed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
TOTAL_BUDGET_S = 300.0
CELL_BUDGET_S = 30.0


def _seconds(start: str, end: str) -> float:
    parse = dt.datetime.fromisoformat
    return (parse(end.replace("Z", "+00:00")) - parse(start.replace("Z", "+00:00"))).total_seconds()


def time_notebook(path: Path) -> dict[str, object]:
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", record_timing=True,
        resources={"metadata": {"path": str(path.parent)}},
    )
    start = time.perf_counter()
    client.execute()
    wall = time.perf_counter() - start
    cells = []
    for index, cell in enumerate(notebook.cells):
        timing = cell.get("metadata", {}).get("execution", {})
        if cell.cell_type == "code" and "shell.execute_reply" in timing:
            begin = timing.get("iopub.execute_input") or timing.get("shell.execute_reply.started")
            cells.append({"cell": index, "seconds": _seconds(begin, timing["shell.execute_reply"]),
                          "first_line": cell.source.splitlines()[0] if cell.source else ""})
    slowest = max(cells, key=lambda c: c["seconds"]) if cells else None
    return {"notebook": path.name, "wall_seconds": wall, "cells": cells, "slowest_cell": slowest}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--output", type=Path, default=ROOT / "benchmarks/results/notebook_timings.json")
    arguments = parser.parse_args()
    paths = arguments.notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    os.environ.setdefault("GAPCAM_OFFLINE", "1")
    # Time what a reader waits for: kernels draw figures with their inline backend, which they
    # use only when MPLBACKEND is unset (tests set Agg).
    os.environ.pop("MPLBACKEND", None)

    results = [time_notebook(path) for path in paths]
    total = sum(r["wall_seconds"] for r in results)
    print(f"{'notebook':<48s}{'wall s':>8s}{'slowest cell s':>16s}")
    for r in results:
        slow = r["slowest_cell"]
        print(f"{r['notebook']:<48s}{r['wall_seconds']:>8.1f}"
              f"{(slow['seconds'] if slow else 0):>10.1f} (cell {slow['cell'] if slow else '-'})")
    worst = max((r["slowest_cell"]["seconds"] for r in results if r["slowest_cell"]), default=0.0)
    print(f"{'all notebooks':<48s}{total:>8.1f}{worst:>10.1f}")
    print(f"goal: all <= {TOTAL_BUDGET_S:.0f} s: {'met' if total <= TOTAL_BUDGET_S else 'NOT met'}; "
          f"every cell <= {CELL_BUDGET_S:.0f} s: {'met' if worst <= CELL_BUDGET_S else 'NOT met'}")
    machine = {"platform": platform.platform(), "processor": platform.processor(),
               "cpu_count": os.cpu_count(), "python": platform.python_version(),
               "keras_backend": os.environ.get("KERAS_BACKEND", "tensorflow")}
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    arguments.output.write_text(json.dumps(
        {"machine": machine, "total_seconds": total, "slowest_cell_seconds": worst,
         "notebooks": results}, indent=2))
    print(f"written: {arguments.output.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
