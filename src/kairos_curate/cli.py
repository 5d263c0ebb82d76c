"""The ``kairos-curate`` command line.

Each sub-command lives in its own module under :mod:`kairos_curate.commands` and exposes
``register(subparsers)``; heavy imports (torch, pandas) happen inside the handlers so that
``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from kairos_curate import __version__

# Order is the order shown in --help.
COMMAND_MODULES = ("value", "embed", "scenario", "audit", "curate")


class UserInputError(Exception):
    """An error caused by the user's input; the CLI prints it without a traceback."""


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every registered sub-command."""
    parser = argparse.ArgumentParser(
        prog="kairos-curate",
        description=(
            "Value, select and audit fine-tuning data with KAIROS (MMD-based data valuation). "
            "Run `kairos-curate <command> --help` for the options of each command."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="<command>")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"kairos_curate.commands.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"kairos_curate.commands.{name}":
                continue  # command not built yet
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kairos-curate`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (UserInputError, ValueError, FileNotFoundError) as err:
        print(f"kairos-curate {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
