"""Time every notebook of the series from a clean kernel: per notebook, per section, slowest cell;
and the kernel's peak resident memory.

    .venv/bin/python benchmarks/time_notebooks.py --wait-for-quiet 600   # what make bench runs
    .venv/bin/python benchmarks/time_notebooks.py notebooks/03_*.ipynb --repeats 1

Goals: all notebooks together within 5 minutes on a 2-core machine, no cell over 30 s.
Goal (Binder gives 1-2 GB per session): each notebook's kernel peaks at <= 1.5 GiB resident,
read as ``VmHWM`` (the high-water mark of the resident set) from ``/proc/<kernel pid>/status``
after every cell (Linux; elsewhere the memory columns are empty). Each cell records the peak so
far and its resident set after it ran; the table names the cell that raised the peak the most.
The series is run ``--repeats`` times (3 by default; each round runs every notebook once, so a
change of load hits all alike). Verdicts use the median of each cell and of each notebook's wall
time, which is what a reader typically waits; the slowest single run is reported beside them.
Prints a table and writes JSON (benchmarks/results/notebook_timings.json: the machine, the load
averages at start and end, every time). Notebooks are executed in memory; the files on disk are
not changed. Figures are drawn with the kernel's inline backend, as in JupyterLab.

Sections are keyed by the notebook's markdown headings of level 1 or 2 (``# Title``,
``## 3. Overlays``): each code cell belongs to the last such heading above it, and a section's
time is the sum of its cells' times (median over rounds). docs/WORKSHOP.md's timing table is
made from these (``python benchmarks/workshop_table.py``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import (  # noqa: E402
    load_average, machine_basics, process_memory, python_path, wait_for_quiet,
)

ROOT = Path(__file__).resolve().parents[1]
TOTAL_BUDGET_S = 300.0
CELL_BUDGET_S = 30.0
MEMORY_BUDGET_MIB = 1536.0


def _seconds(start: str, end: str) -> float:
    parse = dt.datetime.fromisoformat
    return (parse(end.replace("Z", "+00:00")) - parse(start.replace("Z", "+00:00"))).total_seconds()


#: A markdown heading of level 1 or 2 ("# Title", "## 3. Overlays"); deeper ones stay inside.
SECTION_HEADING = re.compile(r"^#{1,2}\s+(.+?)\s*#*\s*$", re.M)


def section_of_cells(notebook: Any) -> list[str]:
    """The section heading that each cell belongs to (the last level-1/2 heading above it, or in
    the cell itself for a markdown cell); "" before the first heading."""
    current, sections = "", []
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            headings = SECTION_HEADING.findall(cell.source)
            if headings:
                current = headings[-1]
        sections.append(current)
    return sections


def kernel_pid(client: NotebookClient) -> int | None:
    """The process id of the client's kernel (jupyter_client's local provisioner starts the
    kernel itself, not a wrapper), or None."""
    process = getattr(getattr(client.km, "provisioner", None), "process", None)
    return getattr(process, "pid", None)


def time_notebook(path: Path) -> dict[str, Any]:
    """Execute one notebook from a clean kernel: its wall time, the kernel's peak resident
    memory, and each code cell's time, section and memory after it ran."""
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", record_timing=True,
        resources={"metadata": {"path": str(path.parent)}},
    )
    memory_after: dict[int, dict[str, float] | None] = {}

    def record_memory(cell: Any, cell_index: int, **_: Any) -> None:
        memory_after[cell_index] = process_memory(kernel_pid(client))

    client.on_cell_executed = record_memory
    start = time.perf_counter()
    client.execute()
    wall = time.perf_counter() - start
    sections = section_of_cells(notebook)
    cells = []
    for index, cell in enumerate(notebook.cells):
        timing = cell.get("metadata", {}).get("execution", {})
        if cell.cell_type == "code" and "shell.execute_reply" in timing:
            begin = timing.get("iopub.execute_input") or timing.get("shell.execute_reply.started")
            memory = memory_after.get(index) or {}
            cells.append({"cell": index, "seconds": _seconds(begin, timing["shell.execute_reply"]),
                          "first_line": cell.source.splitlines()[0] if cell.source else "",
                          "section": sections[index], "peak_mib": memory.get("peak_mib"),
                          "rss_mib": memory.get("rss_mib")})
    peaks = [c["peak_mib"] for c in cells if c["peak_mib"] is not None]
    return {"wall_seconds": wall, "peak_mib": max(peaks) if peaks else None, "cells": cells}


def summarise_sections(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per section (in notebook order): its code cells, and per round the sum of their times;
    the median and the slowest of those sums."""
    order: dict[str, list[int]] = {}
    for cell in runs[0]["cells"]:
        order.setdefault(cell.get("section", ""), []).append(cell["cell"])
    sections = []
    for heading, indices in order.items():
        totals = [sum(c["seconds"] for c in run["cells"] if c["cell"] in indices) for run in runs]
        sections.append({"heading": heading, "cells": indices,
                         "median_seconds": statistics.median(totals),
                         "max_seconds": max(totals), "seconds": totals})
    return sections


def summarise(path: Path, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One notebook over all rounds: median and slowest wall time, per cell the median and the
    slowest of its times (the notebook's slowest cell is the one with the largest median), and
    the same per section."""
    walls = [run["wall_seconds"] for run in runs]
    cells = []
    for position, first in enumerate(runs[0]["cells"]):
        times = [run["cells"][position]["seconds"] for run in runs]
        peaks = [run["cells"][position].get("peak_mib") for run in runs]
        peaks = [p for p in peaks if p is not None]
        cells.append({"cell": first["cell"], "first_line": first["first_line"],
                      "section": first.get("section", ""),
                      "median_seconds": statistics.median(times), "max_seconds": max(times),
                      "seconds": times,
                      # the kernel's peak so far (max over rounds) and its resident set after
                      # this cell in the first round
                      "peak_mib": max(peaks) if peaks else None,
                      "rss_mib": first.get("rss_mib")})
    slowest = max(cells, key=lambda c: c["median_seconds"]) if cells else None
    peaks = [run["peak_mib"] for run in runs if run.get("peak_mib") is not None]
    # The cell that raised the high-water mark the most (the first cell's rise counts from 0).
    rises = [(c["peak_mib"] - previous, c) for previous, c in zip(
        [0.0] + [c["peak_mib"] or 0.0 for c in cells], cells) if c["peak_mib"] is not None]
    peak_cell = max(rises, key=lambda rise: rise[0])[1] if rises else None
    return {"notebook": path.name, "median_wall_seconds": statistics.median(walls),
            "max_wall_seconds": max(walls), "wall_seconds": walls, "cells": cells,
            "sections": summarise_sections(runs), "slowest_cell": slowest,
            "peak_mib": max(peaks) if peaks else None, "peak_mib_per_round": peaks,
            "peak_cell": peak_cell["cell"] if peak_cell else None}


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="notebooks to time (default: every notebooks/NN_*.ipynb)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="rounds over the series; medians are the verdict (default 3)")
    parser.add_argument("--wait-for-quiet", type=float, default=0.0, metavar="SECONDS",
                        help="first wait up to this long for a 1-minute load below --quiet-load")
    parser.add_argument("--quiet-load", type=float, default=0.7)
    parser.add_argument("--output", type=Path,
                        default=ROOT / "benchmarks/results/notebook_timings.json")
    arguments = parser.parse_args(argv)
    if arguments.repeats < 1:
        parser.error(f"--repeats must be at least 1, got {arguments.repeats}")
    missing = [str(path) for path in arguments.notebooks if not path.is_file()]
    if missing:
        parser.error(f"no such notebook: {', '.join(missing)}")
    return arguments


def main(argv: list[str] | None = None) -> dict[str, Any]:
    arguments = parse_arguments(argv)
    paths = arguments.notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    os.environ.setdefault("GAPCAM_OFFLINE", "1")
    # Time what a reader waits for: kernels draw figures with their inline backend, which they
    # use only when MPLBACKEND is unset (tests set Agg).
    os.environ.pop("MPLBACKEND", None)

    quiet = (wait_for_quiet(arguments.wait_for_quiet, arguments.quiet_load)
             if arguments.wait_for_quiet else None)
    load_start = load_average()
    rounds = [[time_notebook(path) for path in paths] for _ in range(arguments.repeats)]
    load_end = load_average()
    results = [summarise(path, [r[index] for r in rounds]) for index, path in enumerate(paths)]

    total = sum(r["median_wall_seconds"] for r in results)
    slowest_round = max(sum(run["wall_seconds"] for run in r) for r in rounds)
    worst = max((r["slowest_cell"]["median_seconds"] for r in results if r["slowest_cell"]),
                default=0.0)
    worst_single = max((c["max_seconds"] for r in results for c in r["cells"]), default=0.0)
    memory = [r["peak_mib"] for r in results if r["peak_mib"] is not None]
    peak_memory = max(memory) if len(memory) == len(results) else None
    verdicts = {"total": total <= TOTAL_BUDGET_S, "cells": worst <= CELL_BUDGET_S,
                "memory": None if peak_memory is None else peak_memory <= MEMORY_BUDGET_MIB}

    print(f"{len(paths)} notebook(s), {arguments.repeats} round(s); medians (slowest run); "
          "kernel's peak resident MiB (VmHWM, max over rounds) and the cell that raised it most")
    print(f"{'notebook':<44s}{'wall s':>16s}{'slowest cell s':>24s}{'peak MiB':>20s}")
    for r in results:
        slow = r["slowest_cell"]
        cell = (f"{slow['median_seconds']:.1f} ({slow['max_seconds']:.1f}) cell {slow['cell']}"
                if slow else "-")
        peak = (f"{r['peak_mib']:.0f} cell {r['peak_cell']}" if r["peak_mib"] is not None
                else "-")
        print(f"{r['notebook']:<44s}{r['median_wall_seconds']:>8.1f} ({r['max_wall_seconds']:5.1f})"
              f"{cell:>24s}{peak:>20s}")
    print(f"{'all notebooks':<44s}{total:>8.1f} ({slowest_round:5.1f}){worst:>10.1f} "
          f"({worst_single:.1f})")
    memory_verdict = {None: "not measured (no /proc)", True: "met", False: "NOT met"}
    print(f"goal: all <= {TOTAL_BUDGET_S:.0f} s: {'met' if verdicts['total'] else 'NOT met'}; "
          f"every cell <= {CELL_BUDGET_S:.0f} s: {'met' if verdicts['cells'] else 'NOT met'}; "
          f"every kernel <= {MEMORY_BUDGET_MIB:.0f} MiB: {memory_verdict[verdicts['memory']]}")
    print(f"load average (1, 5, 15 min): start {load_start}, end {load_end}")

    report = {
        "command": " ".join([python_path(), "benchmarks/time_notebooks.py",
                             *(sys.argv[1:] if argv is None else argv)]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {**machine_basics(),
                    "keras_backend": os.environ.get("KERAS_BACKEND", "tensorflow")},
        "load_average": {"start": load_start, "end": load_end, "quiet_wait": quiet},
        "repeats": arguments.repeats,
        "goals": {"total_seconds": TOTAL_BUDGET_S, "cell_seconds": CELL_BUDGET_S,
                  "total_met": verdicts["total"], "cells_met": verdicts["cells"],
                  "peak_mib": MEMORY_BUDGET_MIB, "memory_met": verdicts["memory"]},
        "total_seconds": total, "slowest_round_seconds": slowest_round,
        "peak_mib": peak_memory,
        "slowest_cell_seconds": worst, "slowest_single_cell_seconds": worst_single,
        "notebooks": results,
    }
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    arguments.output.write_text(json.dumps(report, indent=2))
    print(f"written: {arguments.output}")
    return report


if __name__ == "__main__":
    main()
