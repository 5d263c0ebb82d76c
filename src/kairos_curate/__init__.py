"""kairos-curate: curate fine-tuning data with KAIROS (MMD-based) data valuation.

The public API is re-exported lazily so that ``import kairos_curate`` stays cheap and the CLI's
``--help`` never waits for torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "kairos_values": "kairos_curate.valuation",
    "KairosResult": "kairos_curate.valuation",
    "select": "kairos_curate.valuation",
    "SelectionResult": "kairos_curate.valuation",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'kairos_curate' has no attribute {name!r}")
