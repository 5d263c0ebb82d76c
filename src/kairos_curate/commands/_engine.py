"""The ``--engine`` / ``--ray-address`` (and ``--method`` / ``--landmarks``) options, shared by
``embed``, ``value`` and ``audit``. Nothing here imports Ray; the engine is built on use."""

from __future__ import annotations

import argparse
from typing import Any

from kairos_curate.engine.base import ENGINES

__all__ = ["add_engine_arguments", "engine_from_args"]


def add_engine_arguments(parser: argparse.ArgumentParser, *, method: bool = False) -> None:
    """Add ``--engine``, ``--ray-address`` and, with ``method=True``, ``--method``/``--landmarks``."""
    group = parser.add_argument_group("scale-out (README: More than one machine)")
    group.add_argument(
        "--engine",
        choices=ENGINES,
        default="local",
        help="local: this process (default); ray: Ray tasks / Ray Data (a local Ray cluster "
        "unless --ray-address is given)",
    )
    group.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDRESS",
        help="with --engine ray: 'auto' joins the cluster started with `ray start` on this "
        "machine, 'ray://HEAD:10001' a remote head node; default: start a local cluster",
    )
    if method:
        group.add_argument(
            "--method",
            choices=("exact", "nystrom"),
            default="exact",
            help="exact kernel sums, or the Nystrom sketch for pools beyond exact reach",
        )
        group.add_argument(
            "--landmarks",
            type=int,
            default=1000,
            help="--method nystrom: number of landmarks (half from the reference)",
        )


def engine_from_args(args: argparse.Namespace) -> Any:
    """The engine the options ask for (``LocalEngine`` by default).

    Raises
    ------
    ValueError
        ``--ray-address`` without ``--engine ray``, or ``--landmarks`` below 1.
    """
    from kairos_curate.engine import get_engine

    if getattr(args, "landmarks", 1) < 1:
        raise ValueError(f"--landmarks must be >= 1, got {args.landmarks}")
    return get_engine(args.engine, args.ray_address)
