"""How one selection of the suite compares with another: the margin, the combined std, the paired view.

Shared by the suite's tables (:mod:`.selection_suite`) and the report's verdicts
(:mod:`.suite_verdicts`), so both judge a margin the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["RANDOM_VALUED_HERDING", "margin_against", "random_valued_herding"]

#: The ``against`` label of the check against herding over random values (the central claim's control).
RANDOM_VALUED_HERDING = "herding over random values"


def random_valued_herding(frame: pd.DataFrame) -> str | None:
    """The selection of ``frame`` (suite summary rows) that herds over random values, the control of
    the central claim: method ``random`` with policy ``herding``, found by what it is, not by its name.
    """
    rows = frame[(frame["method"] == "random") & (frame["policy"] == "herding")]
    return str(rows["selection"].iloc[0]) if len(rows) else None


def margin_against(a: pd.Series, b: pd.Series, per_seed: pd.DataFrame | None = None) -> dict[str, Any]:
    """``a`` minus ``b`` in mean accuracy, for two rows of the suite summary (indexed by selection).

    ``margin`` is the difference of the means, ``combined_std`` ``sqrt(std_a^2 + std_b^2)`` of the
    two stds over (seed x trial); ``wins`` is ``margin > combined_std``, ``no_harm`` ``margin >
    -combined_std``. With ``per_seed`` (seeds x selections: each selection's mean accuracy over its
    trials on that seed), the paired view too: ``paired_mean`` / ``paired_std`` (ddof=1, NaN for
    one seed) of ``a - b`` over the seeds both ran, ``paired_seeds`` and ``seeds_better`` (seeds
    where ``a`` scored higher).
    """
    sa, sb = np.nan_to_num(float(a["accuracy_std"])), np.nan_to_num(float(b["accuracy_std"]))
    margin = float(a["accuracy_mean"] - b["accuracy_mean"])
    combined = float(np.hypot(sa, sb))
    paired: dict[str, Any] = {}
    if per_seed is not None and a.name in per_seed and b.name in per_seed:
        diff = (per_seed[a.name] - per_seed[b.name]).dropna().to_numpy(dtype=np.float64)
        paired = {
            "paired_mean": float(diff.mean()) if diff.size else float("nan"),
            "paired_std": float(diff.std(ddof=1)) if diff.size > 1 else float("nan"),
            "paired_seeds": int(diff.size),
            "seeds_better": int((diff > 0).sum()),
        }
    return {
        "selection": str(a.name),
        "other": str(b.name),
        "mean": float(a["accuracy_mean"]),
        "std": sa,
        "other_mean": float(b["accuracy_mean"]),
        "other_std": sb,
        "margin": margin,
        "combined_std": combined,
        "wins": margin > combined,
        "no_harm": margin > -combined,
        **({"runs": int(a["runs"])} if "runs" in a else {}),
        **paired,
    }
