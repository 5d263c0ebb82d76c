"""Detection: how well a method's lowest values flag the injected problems of a pool variant.

Lowest value = most suspicious. Scored against the variant's ground truth (``kind`` per row):
all problems together, and each kind of problem against the clean rows when several are present.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kairos_curate.data.variants import KINDS, Variant
from kairos_curate.evaluation import detection_curve, detection_metrics
from kairos_curate.valuation.result import ValuationResult

__all__ = ["SUMMARY_METRICS", "detection_rows", "problem_masks", "suspicion_curve"]

#: Detection metrics summarised over seeds.
SUMMARY_METRICS = (
    "auroc",
    "average_precision",
    "precision_at_k_bad",
    "recall_at_k_bad",
    "precision_at_budget_10pct",
    "recall_at_budget_10pct",
    "precision_at_budget_20pct",
    "recall_at_budget_20pct",
    "seconds",
)


def problem_masks(kind: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{problem: (is_bad, included)}``: all problems together, and each kind against clean rows."""
    kind = np.asarray(kind)
    clean = kind == "clean"
    out = {"any problem": (~clean, np.ones(kind.shape, dtype=bool))}
    present = [k for k in KINDS if (kind == k).any()]
    if len(present) > 1:
        for k in present:
            out[k] = (kind == k, (kind == k) | clean)
    return {name: m for name, m in out.items() if m[0].any() and not m[0][m[1]].all()}


def detection_rows(variant: Variant, result: ValuationResult) -> list[dict[str, Any]]:
    """One row per problem: AUROC, average precision, precision/recall at k.

    ``k`` is the number of injected problems (``k_bad``) and budgets of 10% and 20% of the pool.
    """
    n = variant.y.shape[0]
    ks = {"k_bad": int(variant.bad.sum()), "budget_10pct": round(0.1 * n), "budget_20pct": round(0.2 * n)}
    suspicion = -result.values
    rows = []
    for problem, (bad, included) in problem_masks(variant.kind).items():
        m = detection_metrics(suspicion[included], bad[included], ks)
        rows.append(
            {
                "setting": variant.setting,
                "method": result.method,
                "seed": variant.seed,
                "problem": problem,
                "n": n,
                "seconds": result.seconds,
                **m,
            }
        )
    return rows


def suspicion_curve(variant: Variant, result: ValuationResult) -> tuple[np.ndarray, np.ndarray]:
    """Fraction of all injected problems found vs fraction of the pool inspected, lowest first."""
    return detection_curve(-result.values, problem_masks(variant.kind)["any problem"][0])
