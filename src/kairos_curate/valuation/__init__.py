"""KAIROS valuation: MMD-based data values, selection policies and baselines (pure math).

Everything here takes arrays or tensors and returns arrays or result objects; no file I/O.

* :func:`kairos_values` / :class:`KairosResult` - exact blocked KAIROS (CPU or CUDA), label
  modes ``"residual"`` and ``"class_conditional"``, exact leave-one-out;
* :class:`KairosState` - incremental updates equal to a full recompute;
* :func:`rff_kairos_values` - random Fourier feature approximation, ``O((N + M) D)``;
* :func:`select` / :class:`SelectionResult` - global, per-class and herding selection;
* :func:`knn_shapley` - closed-form KNN-Shapley baseline;
* :func:`median_bandwidth` - the bandwidth convention.
"""

from kairos_curate.valuation.bandwidth import median_bandwidth
from kairos_curate.valuation.incremental import KairosState
from kairos_curate.valuation.kairos import kairos_values
from kairos_curate.valuation.knn_shapley import knn_shapley
from kairos_curate.valuation.labels import combine_terms
from kairos_curate.valuation.loo import exact_loo
from kairos_curate.valuation.result import KairosResult
from kairos_curate.valuation.rff import RandomFourierFeatures, rff_kairos_values
from kairos_curate.valuation.selection import SelectionResult, allocate_quotas, select

__all__ = [
    "KairosResult",
    "KairosState",
    "RandomFourierFeatures",
    "SelectionResult",
    "allocate_quotas",
    "combine_terms",
    "exact_loo",
    "kairos_values",
    "knn_shapley",
    "median_bandwidth",
    "rff_kairos_values",
    "select",
]
