"""Runs too slow for a notebook cell, recorded by ``experiments/*.py`` and shipped in the package.

A notebook reads a record with :func:`recorded` and checks it against what it computes itself
(its first run reproduces the notebook's own) before it uses the rest. The records live inside
the package, so they are there wherever the package is installed: a checkout, a wheelhouse, or
Colab's ``%pip install`` from the repository.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["RECORDS", "recorded"]

#: The folder of the records (``<name>.json``); ``experiments/*.py`` write here.
RECORDS = Path(__file__).resolve().with_name("records")


def recorded(name: str) -> dict[str, Any]:
    """The record ``name`` (e.g. ``"notebook06_seeds"``), as written by ``experiments/<name>.py``.

    Raises
    ------
    ValueError
        When there is no such record; the message lists the records there are.
    """
    known = sorted(path.stem for path in RECORDS.glob("*.json"))
    if not isinstance(name, str) or name not in known:
        raise ValueError(f"no recorded run named {name!r}; the records are: {', '.join(known)} "
                         f"(in {RECORDS}, written by experiments/<name>.py)")
    return json.loads((RECORDS / f"{name}.json").read_text(encoding="utf-8"))
