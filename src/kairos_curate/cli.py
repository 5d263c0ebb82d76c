"""The ``kairos-curate`` command line.

Each sub-command lives in its own module under :mod:`kairos_curate.commands` and exposes
``register(subparsers)``; heavy imports (torch, pandas) happen inside the handlers so that
``--help`` stays instant.

Exit statuses: 0 success; 2 a problem with the user's input (one sentence on stderr naming
the file or flag and the fix, never a traceback); 130 interrupted by Ctrl-C (SIGINT), 143 by
SIGTERM (finished work that can be kept, such as embedding cache shards, is kept); 1 an
unexpected internal error (one line; set ``KAIROS_CURATE_DEBUG=1`` for the traceback).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import re
import signal
import sys
from collections.abc import Iterator, Sequence
from typing import Any

from kairos_curate import __version__

# Order is the order shown in --help. Every name must be a module of kairos_curate.commands.
COMMAND_MODULES = ("value", "embed", "audit", "curate")

#: Exit status for each way a run can be interrupted.
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class UserInputError(Exception):
    """An error caused by the user's input; the CLI prints it without a traceback."""


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM (see :func:`main`)."""


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
        module = importlib.import_module(f"kairos_curate.commands.{name}")
        module.register(sub)
    return parser


def flag_message(message: str, flag_names: dict[str, str]) -> str:
    """Replace library argument names in ``message`` by the CLI flags the user typed.

    Only identifiers that cannot be ordinary words are replaced (``pool_labels``,
    ``labels=...``, ``memory_budget_bytes``): ``flag_names`` maps them to flags. A name that is
    part of a path or file name (``data/pool_labels.csv``) is left alone.
    """
    for name, flag in sorted(flag_names.items(), key=lambda kv: -len(kv[0])):
        message = re.sub(rf"(?<![\w./\\-]){re.escape(name)}(?![\w/\\-]|\.\w)", flag, message)
    return message


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """While the command runs, SIGTERM raises :class:`Terminated` so cleanup code runs."""

    def handler(_signum: int, _frame: Any) -> None:
        raise Terminated("SIGTERM")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kairos-curate`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = f"kairos-curate {args.command}"
    try:
        with _sigterm_raises():
            return int(args.func(args) or 0)
    except (UserInputError, ValueError, OSError) as err:
        # OSError covers missing files, permissions, full disks and undecodable images.
        text = flag_message(str(err), getattr(args, "flag_names", {}))
        print(f"{prog}: error: {text}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        how = "SIGTERM" if isinstance(err, Terminated) else "Ctrl-C (SIGINT)"
        note = getattr(args, "interrupt_note", None)
        print(f"{prog}: interrupted by {how}" + (f"; {note()}" if callable(note) else ""), file=sys.stderr)
        return EXIT_SIGTERM if isinstance(err, Terminated) else EXIT_SIGINT
    except Exception as err:
        if os.environ.get("KAIROS_CURATE_DEBUG"):
            raise
        print(
            f"{prog}: internal error: {type(err).__name__}: {err} (this is a bug; rerun with "
            "KAIROS_CURATE_DEBUG=1 to see the traceback and report it)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
