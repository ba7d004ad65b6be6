"""What the experiments share: their command line (``--smoke``, ``--output``) and the record
each writes to helpers/data/records/ (read by notebooks with ``helpers.data.recorded``)."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "helpers/data/records"


def parse(name: str, doc: str, smoke_help: str, argv: list[str] | None) -> argparse.Namespace:
    """``--smoke`` (the code path only, in seconds) and ``--output`` (default: the committed
    record ``<name>.json``); sets the offline TensorFlow defaults before Keras is imported."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help=smoke_help)
    parser.add_argument("--output", type=Path, default=RECORDS / f"{name}.json")
    arguments = parser.parse_args(argv)
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("GAPCAM_OFFLINE", "1")
    return arguments


def write(name: str, argv: list[str] | None, output: Path, fields: dict[str, Any],
          indent: int = 2) -> dict[str, Any]:
    """The record: the command that made it, when, on which Keras backend, then ``fields``;
    written to ``output`` as JSON and returned."""
    import helpers  # noqa: F401 - first: it imports Keras without TensorFlow's start-up lines
    import keras

    report = {
        "command": " ".join([f"experiments/{name}.py", *(sys.argv[1:] if argv is None else argv)]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "keras_backend": keras.backend.backend(), "keras": keras.__version__,
        **fields,
    }
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=indent, default=float))
    print(f"written: {output}")
    return report
