"""Random values: the chance baseline (uniform, seeded). Any selection over random values shows
what the selection policy does on its own, without a valuation."""

from __future__ import annotations

import numpy as np

from kairos_curate.valuation.base import ValuationInputs, ValuationMethod, register_method
from kairos_curate.valuation.result import ValuationResult

__all__ = ["RandomValues"]


@register_method
class RandomValues(ValuationMethod):
    """Uniform random values in ``[0, 1)`` from ``inputs.seed``."""

    name = "random"
    description = "uniform random values"
    seeded = True
    needs_labels = False

    def fit(self, inputs: ValuationInputs) -> ValuationResult:
        """One uniform draw per pool sample."""
        values = np.random.default_rng(inputs.seed).random(int(inputs.pool.shape[0]))
        return ValuationResult(self.name, values=np.asarray(values))
