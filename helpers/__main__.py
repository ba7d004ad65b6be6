"""Command line (used by make):

* ``python -m helpers prepare`` converts the offline weights once;
* ``python -m helpers doctor`` checks that this machine is ready for the series (exit status 1
  when a check fails).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return the process exit status."""
    parser = argparse.ArgumentParser(prog="python -m helpers")
    commands = parser.add_subparsers(dest="command", required=True)
    prepare = commands.add_parser(
        "prepare", help="convert the packaged EfficientNet-Lite0 weights into the Keras cache"
    )
    prepare.add_argument("--force", action="store_true", help="rebuild even if the cache is valid")
    doctor = commands.add_parser(
        "doctor", help="check versions, backend, weights, memory, disk, widgets and one CAM; "
        "exit status 1 when a check fails"
    )
    doctor.add_argument("--prepare", action="store_true",
                        help="convert the offline weights first if they are missing")
    arguments = parser.parse_args(argv)
    if arguments.command == "prepare":
        from helpers.models.lite0 import prepare_offline_model

        prepare_offline_model(force=arguments.force, verbose=True)
        return 0
    from helpers.doctor import main as doctor

    return doctor(["--prepare"] if arguments.prepare else [])


if __name__ == "__main__":
    raise SystemExit(main())
