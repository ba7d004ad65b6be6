"""Write the per-section timing table of docs/WORKSHOP.md from time_notebooks.py's JSON.

    # 1. time the notebooks (writes the JSON; --repeats 3 is steadier, 1 is quicker)
    .venv/bin/python benchmarks/time_notebooks.py --repeats 1 --output docs/workshop_timings.json
    # 2. rewrite the table between the guide's markers from that JSON
    .venv/bin/python benchmarks/workshop_table.py
    # CI (tests/test_workshop_guide.py): the table must agree with the committed JSON
    .venv/bin/python benchmarks/workshop_table.py --check

Only the text between ``<!-- timings:start -->`` and ``<!-- timings:end -->`` is generated; the
rest of the guide is written by hand.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TIMINGS = ROOT / "docs" / "workshop_timings.json"
GUIDE = ROOT / "docs" / "WORKSHOP.md"
START, END = "<!-- timings:start -->", "<!-- timings:end -->"
REGENERATE = "python benchmarks/workshop_table.py"


def render_table(report: dict[str, Any]) -> str:
    """The markdown between the markers: where the numbers come from, then one row per section
    (its code cells' run time, median over the rounds) and one total row per notebook."""
    machine, load = report["machine"], report["load_average"]
    lines = [
        f"Measured {report['date']} with `{report['command']}` "
        f"({report['repeats']} round{'s' if report['repeats'] != 1 else ''}; medians), on "
        f"{machine.get('cpu', '?')}, {machine.get('cpus_usable', '?')} cores, "
        f"{machine.get('memory_gib', '?')} GiB, Python {machine.get('python', '?')}, "
        f"Keras on {machine.get('keras_backend', '?')}; 1-minute load average "
        f"{load['start'][0]:.2f} at the start and {load['end'][0]:.2f} at the end. "
        f"Whole series: {report['total_seconds']:.0f} s. Regenerate with `{REGENERATE}` after "
        "re-timing (see above).",
        "",
        "| notebook | section | code cells | run time (s) |",
        "|---|---|---|---:|",
    ]
    for notebook in report["notebooks"]:
        name = notebook["notebook"].removesuffix(".ipynb")
        for section in notebook.get("sections", []):
            cells = ", ".join(str(c) for c in section["cells"])
            lines.append(f"| {name} | {section['heading'] or '(before the first heading)'} | "
                         f"{cells} | {section['median_seconds']:.1f} |")
        lines.append(f"| **{name}** | **whole notebook** (kernel start included) | | "
                     f"**{notebook['median_wall_seconds']:.1f}** |")
    return "\n".join(lines)


def replace_table(guide: str, table: str) -> str:
    """The guide with the text between the markers replaced by ``table``.

    Raises
    ------
    ValueError
        When the guide lacks either marker, or has them in the wrong order.
    """
    start, end = guide.find(START), guide.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the guide needs {START!r} followed by {END!r} around its timing "
                         f"table; found start at {start}, end at {end}")
    return guide[: start + len(START)] + "\n" + table + "\n" + guide[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timings", type=Path, default=TIMINGS)
    parser.add_argument("--guide", type=Path, default=GUIDE)
    parser.add_argument("--check", action="store_true",
                        help="do not write: exit 1 when the guide's table differs from the JSON")
    arguments = parser.parse_args(argv)
    report = json.loads(arguments.timings.read_text())
    current = arguments.guide.read_text()
    updated = replace_table(current, render_table(report))
    if arguments.check:
        if updated != current:
            print(f"{arguments.guide}'s timing table differs from {arguments.timings}; "
                  f"run {REGENERATE}", file=sys.stderr)
            return 1
        print(f"{arguments.guide}'s timing table agrees with {arguments.timings}")
        return 0
    arguments.guide.write_text(updated)
    print(f"written: the timing table of {arguments.guide}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
