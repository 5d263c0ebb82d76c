"""Progress bars where a person watches a terminal, and none in rendered notebooks or logs.

``KAIROS_PROGRESS=0`` (set by the stage runner for every notebook kernel) turns every bar off;
``KAIROS_PROGRESS=1`` forces them on; otherwise a bar shows when standard error is a terminal.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any, TypeVar

__all__ = ["progress_bar", "progress_enabled"]

T = TypeVar("T")


def progress_enabled(requested: bool | None = None) -> bool:
    """Whether to draw progress bars: ``requested`` unless ``$KAIROS_PROGRESS`` says otherwise,
    and by default only on a terminal."""
    env = os.environ.get("KAIROS_PROGRESS")
    if env is not None and env.strip():
        return env.strip().lower() not in ("0", "false", "no", "off")
    if requested is not None:
        return requested
    return sys.stderr.isatty()


def progress_bar(iterable: Iterable[T] | None = None, *, desc: str, enabled: bool | None = None, **kwargs: Any) -> Any:
    """A plain-text tqdm bar over ``iterable`` (or a manual one with ``total=``), or none at all.

    ``enabled`` is passed through :func:`progress_enabled`, so the environment can silence it.
    """
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, disable=not progress_enabled(enabled), **kwargs)
