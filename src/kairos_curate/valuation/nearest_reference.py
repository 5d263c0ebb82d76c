"""Nearest reference: minus the Euclidean distance from each pool sample to its closest
reference embedding (a label-blind, parameter-free baseline for off-task and corrupted images)."""

from __future__ import annotations

import numpy as np

from kairos_curate.valuation.base import ValuationInputs, ValuationMethod, register_method
from kairos_curate.valuation.result import ValuationResult

__all__ = ["NearestReference", "nearest_reference_distance"]


def nearest_reference_distance(pool: np.ndarray, reference: np.ndarray, block: int = 2048) -> np.ndarray:
    """``(N,)`` distance of every pool row to its nearest reference row (float64, in blocks)."""
    x = np.asarray(pool, dtype=np.float64)
    z = np.asarray(reference, dtype=np.float64)
    z_sq = (z * z).sum(1)
    out = np.empty(x.shape[0])
    for lo in range(0, x.shape[0], block):
        xb = x[lo : lo + block]
        d2 = (xb * xb).sum(1)[:, None] + z_sq[None, :] - 2.0 * xb @ z.T
        out[lo : lo + block] = np.sqrt(np.maximum(d2.min(axis=1), 0.0))
    return out


@register_method
class NearestReference(ValuationMethod):
    """Value = minus the distance to the nearest reference embedding."""

    name = "nearest_reference"
    description = "minus distance to the nearest reference"
    needs_labels = False

    def fit(self, inputs: ValuationInputs) -> ValuationResult:
        """Minus the nearest-reference distance of every pool sample."""
        distance = nearest_reference_distance(inputs.pool, inputs.reference)
        return ValuationResult(self.name, values=-distance, terms={"distance": distance})
