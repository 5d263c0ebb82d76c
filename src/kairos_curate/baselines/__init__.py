"""Baseline data-valuation methods and one registry that runs every method the same way.

* :func:`lava_values` - LAVA: class-wise optimal transport with a label cost (POT, CPU);
* :func:`confident_learning` - cross-validated predicted probabilities scored with cleanlab;
* :data:`METHODS` / :func:`run_method` - KAIROS (feature, residual, class-conditional), random,
  nearest reference, KNN-Shapley, LAVA and confident learning behind one interface: a value per
  pool sample (higher = more valuable) and the wall time it took.

Every method sees only pool embeddings, the pool's (possibly noisy) labels and the clean
labelled reference; none ever receives ground truth.
"""

from kairos_curate.baselines.confident_learning import ConfidentLearningResult, confident_learning
from kairos_curate.baselines.lava import (
    LavaResult,
    calibrated_gradient,
    label_distances,
    lava_values,
)
from kairos_curate.baselines.methods import (
    METHODS,
    MethodOutput,
    MethodSpec,
    ValuationInputs,
    run_method,
)

__all__ = [
    "METHODS",
    "ConfidentLearningResult",
    "LavaResult",
    "MethodOutput",
    "MethodSpec",
    "ValuationInputs",
    "calibrated_gradient",
    "confident_learning",
    "label_distances",
    "lava_values",
    "run_method",
]
