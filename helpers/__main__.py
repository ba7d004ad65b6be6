"""Command line: ``python -m helpers prepare`` converts the offline weights once (used by make)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m helpers")
    commands = parser.add_subparsers(dest="command", required=True)
    prepare = commands.add_parser(
        "prepare", help="convert the packaged EfficientNet-Lite0 weights into the Keras cache"
    )
    prepare.add_argument("--force", action="store_true", help="rebuild even if the cache is valid")
    arguments = parser.parse_args(argv)
    if arguments.command == "prepare":
        from helpers.models import prepare_offline_model

        prepare_offline_model(force=arguments.force, verbose=True)


if __name__ == "__main__":
    main()
