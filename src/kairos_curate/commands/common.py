"""Checks shared by the CLI commands: numeric ranges, devices, input and output paths.

Each command validates every argument with these *before* it reads data, computes or writes
anything, and every message names the flag the user typed and what to do instead. No heavy
imports at module level (``--help`` must stay instant).
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "add_force_flag",
    "check_count",
    "check_device",
    "check_fraction",
    "check_inputs_exist",
    "check_not_constant",
    "check_same_dimension",
    "check_seed",
    "progress_enabled",
    "suffix_choice",
]


def add_force_flag(parser: argparse.ArgumentParser, what: str) -> None:
    """Add ``--force``: replace existing outputs (``what`` describes them in the help)."""
    parser.add_argument(
        "--force",
        action="store_true",
        help=f"replace {what} if it already exists (never an input file); without it an existing output is an error",
    )


def check_fraction(
    value: float | None,
    flag: str,
    *,
    low: float = 0.0,
    high: float = 1.0,
    low_open: bool = False,
    high_open: bool = False,
) -> None:
    """Raise unless ``value`` (when given) is a finite number in the interval."""
    if value is None:
        return
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    ok = (
        math.isfinite(value)
        and (value > low if low_open else value >= low)
        and (value < high if high_open else value <= high)
    )
    if not ok:
        raise ValueError(f"{flag} must lie in {interval}, got {value:g}")


def check_count(value: int | None, flag: str, *, minimum: int = 1) -> None:
    """Raise unless ``value`` (when given) is an integer ``>= minimum``."""
    if value is not None and int(value) < minimum:
        raise ValueError(f"{flag} must be an integer >= {minimum}, got {value}")


def check_seed(value: int, flag: str = "--seed") -> None:
    """Raise unless ``value`` is a seed numpy accepts (``0 <= seed < 2**63``)."""
    if not 0 <= int(value) < 2**63:
        raise ValueError(f"{flag} must be a non-negative integer, got {value}")


def check_device(device: str, flag: str = "--device") -> None:
    """Raise when CUDA is asked for but unavailable (imports torch; call in handlers only)."""
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ValueError(f"{flag} cuda: no CUDA device is available here; use {flag} cpu or {flag} auto")


def check_inputs_exist(inputs: dict[str, Path | None]) -> None:
    """Raise for the first input that is missing, a folder where a file is expected, or empty."""
    from kairos_curate.io import check_input_file

    for flag, path in inputs.items():
        if path is not None:
            check_input_file(path, flag)


def check_same_dimension(pool: Any, reference: Any, pool_path: Path, reference_path: Path) -> None:
    """Raise when pool and reference embeddings have different widths (different encoders)."""
    if pool.shape[1] != reference.shape[1]:
        raise ValueError(
            f"--pool has dimension {pool.shape[1]} ({pool_path}) but --reference has "
            f"{reference.shape[1]} ({reference_path}); embed both with the same encoder"
        )


def check_not_constant(matrix: Any, flag: str, path: Path) -> None:
    """Raise when every row of an embedding matrix is the same vector (nothing to value)."""
    import numpy as np

    if matrix.shape[0] > 1 and float(np.ptp(matrix, axis=0).max()) == 0.0:
        raise ValueError(
            f"{flag} {path}: all {matrix.shape[0]} rows are the same embedding, so there is "
            "nothing to value or rank; were the images blank or identical? re-embed them"
        )


def progress_enabled(choice: bool | None, stream: Any) -> bool:
    """``--progress/--no-progress``: the user's choice, else whether ``stream`` is a terminal."""
    return bool(stream.isatty()) if choice is None else bool(choice)


def suffix_choice(path: Path, flag: str, allowed: Sequence[str]) -> str:
    """The lower-case suffix of ``path`` if it is one of ``allowed``; else a clear error."""
    suffix = path.suffix.lower()
    if suffix not in allowed:
        raise ValueError(f"{flag} must end in {' or '.join(allowed)}; got {path}")
    return suffix
