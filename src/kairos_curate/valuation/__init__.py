"""Valuation: a value per pool sample, higher = more valuable (pure math, no file I/O).

Every method is one module that registers a :class:`ValuationMethod` and returns the one
result type, :class:`ValuationResult`; :func:`value` runs any of them by name.

* KAIROS (:mod:`.kairos`): ``kairos_feature``, ``kairos_residual``, ``kairos_class_conditional``;
  ``kairos_calibrated`` (:mod:`.calibrated`): KAIROS witness and label posterior as p-values
  calibrated on the reference, with per-class contamination estimates (the primary selection's);
  exact blocked kernel sums (:mod:`.kernels`, CPU or CUDA), exact leave-one-out (:mod:`.loo`),
  incremental updates (:class:`KairosState`), random Fourier features (:func:`rff_kairos_values`);
* baselines: ``knn_shapley``, ``lava``, ``confident_learning``, ``nearest_reference``,
  ``random`` - one module each.

Adding a method is one new module here (discovered at import, see :mod:`kairos_curate.plugins`).
"""

from kairos_curate.plugins import import_all
from kairos_curate.valuation.bandwidth import median_bandwidth
from kairos_curate.valuation.base import (
    METHODS,
    MethodParams,
    ValuationInputs,
    ValuationMethod,
    get_method,
    register_method,
    value,
)
from kairos_curate.valuation.incremental import KairosState
from kairos_curate.valuation.kairos import kairos_values
from kairos_curate.valuation.knn_shapley import knn_shapley
from kairos_curate.valuation.labels import combine_terms
from kairos_curate.valuation.loo import exact_loo
from kairos_curate.valuation.result import ValuationResult
from kairos_curate.valuation.rff import RandomFourierFeatures, rff_kairos_values

# Every module of this package is imported, so each method registers itself: adding a method is
# one new file. Heavy dependencies (POT, cleanlab) load inside fit().
import_all(__name__, __path__)

__all__ = [
    "METHODS",
    "KairosState",
    "MethodParams",
    "RandomFourierFeatures",
    "ValuationInputs",
    "ValuationMethod",
    "ValuationResult",
    "combine_terms",
    "exact_loo",
    "get_method",
    "kairos_values",
    "knn_shapley",
    "median_bandwidth",
    "register_method",
    "rff_kairos_values",
    "value",
]
