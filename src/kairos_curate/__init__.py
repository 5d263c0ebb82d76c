"""kairos-curate: curate fine-tuning data with KAIROS (MMD-based) data valuation.

The public API, re-exported lazily so that ``import kairos_curate`` stays cheap and the CLI's
``--help`` never waits for torch:

* :func:`value` runs any registered valuation method (:data:`METHODS`) and returns the one result
  type, :class:`ValuationResult`; :func:`kairos_values` is KAIROS itself;
* :func:`select` turns values into a :class:`Selection` under a registered policy
  (:data:`POLICIES`); :func:`register_method` / :func:`register_policy` add plug-ins.

Layers, bottom up: ``config``, ``io``, ``progress`` -> ``data``, ``embedding``, ``valuation``,
``training``, ``evaluation`` -> ``selection`` -> ``study`` (the experiments, DVC-free) ->
``reporting`` -> ``stages`` (one module per DVC stage) and ``commands`` (the CLI).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "METHODS": "kairos_curate.valuation",
    "ValuationInputs": "kairos_curate.valuation",
    "ValuationResult": "kairos_curate.valuation",
    "kairos_values": "kairos_curate.valuation",
    "register_method": "kairos_curate.valuation",
    "value": "kairos_curate.valuation",
    "POLICIES": "kairos_curate.selection",
    "Selection": "kairos_curate.selection",
    "register_policy": "kairos_curate.selection",
    "select": "kairos_curate.selection",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'kairos_curate' has no attribute {name!r}")
