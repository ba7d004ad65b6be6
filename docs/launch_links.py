"""The README's "Open in Colab" and "Launch Binder" links, one pair per notebook, built from the
repository URL written once in pyproject.toml (``[project.urls] Repository``).

    python docs/launch_links.py            # print the table
    python docs/launch_links.py --write    # replace the table in README.md (between its markers)

tests/test_repository.py checks that README.md holds exactly this table and that every link
points at a notebook that exists. When the repository moves, change the URL in pyproject.toml,
run ``--write``, and commit.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
#: The branch the links open; Binder builds its image from it.
BRANCH = "main"
START = "<!-- launch-links: made by python docs/launch_links.py --write -->"
END = "<!-- /launch-links -->"


def repository_url() -> str:
    """``[project.urls] Repository`` from pyproject.toml (read as text: tomllib is Python 3.11+)."""
    text = (ROOT / "pyproject.toml").read_text()
    match = re.search(r'^Repository\s*=\s*"https://github\.com/([^/"]+)/([^/"]+?)/?"', text, re.M)
    if not match:
        raise ValueError('pyproject.toml needs Repository = "https://github.com/OWNER/NAME" '
                         "under [project.urls]")
    return f"https://github.com/{match.group(1)}/{match.group(2)}"


def notebooks() -> list[Path]:
    """The series' notebooks, relative to the repository root, in order."""
    return sorted(path.relative_to(ROOT) for path in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def colab_link(notebook: Path, url: str | None = None) -> str:
    owner_name = (url or repository_url()).removeprefix("https://github.com/")
    return f"https://colab.research.google.com/github/{owner_name}/blob/{BRANCH}/{notebook.as_posix()}"


def binder_link(notebook: Path, url: str | None = None) -> str:
    owner_name = (url or repository_url()).removeprefix("https://github.com/")
    return (f"https://mybinder.org/v2/gh/{owner_name}/{BRANCH}"
            f"?labpath={quote(notebook.as_posix(), safe='')}")


def table() -> str:
    """The Markdown table, markers included."""
    url = repository_url()
    rows = [START, "| # | notebook | Colab | Binder |", "|---|---|---|---|"]
    for notebook in notebooks():
        number = notebook.name[:2]
        rows.append(f"| {number} | `{notebook.name}` | [Open in Colab]({colab_link(notebook, url)}) "
                    f"| [Launch Binder]({binder_link(notebook, url)}) |")
    rows.append(END)
    return "\n".join(rows)


def readme_table(readme: str) -> str | None:
    """The table as README.md holds it (markers included), or None."""
    match = re.search(re.escape(START) + r".*?" + re.escape(END), readme, re.S)
    return match.group(0) if match else None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="replace the table in README.md")
    arguments = parser.parse_args(argv)
    if not arguments.write:
        print(table())
        return
    path = ROOT / "README.md"
    readme = path.read_text()
    current = readme_table(readme)
    if current is None:
        raise SystemExit(f"README.md has no {START!r} ... {END!r} block to replace")
    path.write_text(readme.replace(current, table()))
    print(f"written: {path}")


if __name__ == "__main__":
    main()
