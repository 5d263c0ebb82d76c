"""Downstream of selection: train a cheap probe on each method's selections and compare.

For a pool variant, every method's values go through every named selection (policy +
parameters) at the same budget - except a selection that names its own valuation method, which
runs once, on that method's result; a logistic-regression probe on the frozen embeddings is trained
on each subset with its (possibly noisy) labels and scored on the clean test set. Baselines of
the same size: uniform random subsets, an *oracle* subset drawn from truly clean rows (the only
row that reads ground truth; a ceiling, not a method) and the full pool. Each row also reports
the share of bad samples in the subset and its smallest class.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from kairos_curate.data.variants import Variant
from kairos_curate.selection import SelectionSpec, select
from kairos_curate.valuation.result import ValuationResult

__all__ = ["LinearProbe", "Probe", "downstream_rows", "subset_row"]

#: ``probe(train_x, train_y) -> {"accuracy": ..., "macro_f1": ...}`` on the clean test set.
Probe = Callable[[np.ndarray, np.ndarray], dict[str, float]]


class LinearProbe:
    """Logistic regression on the first principal components of frozen embeddings.

    The PCA is unsupervised and fitted on pool + reference embeddings (no labels, no test rows);
    calling the probe trains on a subset and scores on the clean test set.

    Parameters
    ----------
    pool_x, ref_x
        Embeddings the PCA is fitted on.
    test_x, y_test
        The clean test set.
    n_classes
        Number of task classes.
    dim
        Principal components kept.
    seed
        Seed of the randomized PCA.
    """

    def __init__(
        self,
        pool_x: np.ndarray,
        ref_x: np.ndarray,
        test_x: np.ndarray,
        y_test: np.ndarray,
        n_classes: int,
        *,
        dim: int,
        seed: int,
    ) -> None:
        from sklearn.decomposition import PCA
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, user_api="blas"):
            self.pca = PCA(
                n_components=min(int(dim), pool_x.shape[1]), svd_solver="randomized", random_state=int(seed)
            ).fit(np.concatenate([pool_x, ref_x]))
            self.test_z = self.pca.transform(test_x)
        self.y_test = np.asarray(y_test)
        self.n_classes = int(n_classes)

    def features(self, x: np.ndarray) -> np.ndarray:
        """Probe features (principal components) of embeddings ``x``."""
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, user_api="blas"):
            return np.asarray(self.pca.transform(x))

    def __call__(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """Train on embeddings ``x`` with labels ``y``; accuracy, macro-F1, AUC on the test set."""
        from kairos_curate.evaluation import probe_metrics

        return probe_metrics(self.features(x), y, self.test_z, self.y_test, self.n_classes)


def subset_row(variant: Variant, probe: Probe, idx: np.ndarray, n_classes: int, **keys: Any) -> dict[str, Any]:
    """Train the probe on rows ``idx`` of ``variant``; one result row (``keys`` first)."""
    m = probe(variant.x[idx], variant.y[idx])
    counts = np.bincount(variant.y[idx], minlength=n_classes)
    return {
        **keys,
        "k": int(idx.size),
        "accuracy": m["accuracy"],
        "macro_f1": m["macro_f1"],
        "bad_share": float(variant.bad[idx].mean()),
        "min_class_count": int(counts.min()),
    }


def downstream_rows(
    variant: Variant,
    results: Mapping[str, ValuationResult],
    ref_x: np.ndarray,
    y_ref: np.ndarray,
    probe: Probe,
    *,
    budget: float,
    selections: Mapping[str, SelectionSpec],
    random_draws: int,
    n_classes: int,
    seed: int,
    include_baselines: bool = True,
) -> list[dict[str, Any]]:
    """Probe rows for every method x selection, plus the random, oracle and full-pool rows.

    Parameters
    ----------
    variant
        The pool variant.
    results
        Method name -> its valuation of the variant.
    ref_x, y_ref
        Reference embeddings and labels (class quotas and kernel policies).
    probe
        Trains on a subset and scores on the clean test set.
    budget
        Subset size as a fraction of the variant (at least one sample per class).
    selections
        Selection name -> spec; every method's values go through each (a spec with its own
        ``method`` only through that method's result, valued here if ``results`` lacks it).
    random_draws
        Uniform random subsets of the same size.
    n_classes
        Number of task classes (for the smallest class count).
    seed
        Seed of the random and oracle draws (and of kernel policies' median heuristic).
    include_baselines
        Add the ``random_k``, ``oracle_k (uses truth)`` and ``full pool`` rows.

    Returns
    -------
    list of dict
        ``method``, ``policy`` (the selection's name), ``draw``, ``k``, ``accuracy``,
        ``macro_f1``, ``bad_share``, ``min_class_count``.
    """
    n = variant.y.shape[0]
    k = max(n_classes, round(float(budget) * n))
    rows: list[dict[str, Any]] = []
    shared = [spec for spec in selections.values() if spec.method is None]
    own = [spec for spec in selections.values() if spec.method is not None]
    for name, result in results.items():
        for spec in shared:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # starved classes show up as min_class_count
                chosen = select(
                    result.values,
                    k,
                    policy=spec.policy_instance(),
                    labels=variant.y,
                    ids=variant.ids,
                    reference_labels=y_ref,
                    embeddings=variant.x,
                    reference=ref_x,
                    seed=seed,
                )
            rows.append(subset_row(variant, probe, chosen.indices, n_classes, method=name, policy=spec.name, draw=0))
    for spec in own:  # a selection with its own method: one row, on that method's full result
        assert spec.method is not None
        found = None if spec.method_params else results.get(spec.method)  # results: default parameters
        if found is None:
            from kairos_curate.valuation import ValuationInputs, value

            found = value(
                spec.method,
                ValuationInputs(variant.x, variant.y, ref_x, y_ref, seed, ids=variant.ids),
                spec.method_params,
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            chosen = select(
                found,
                k,
                policy=spec.policy_instance(),
                labels=variant.y,
                ids=variant.ids,
                reference_labels=y_ref,
                embeddings=variant.x,
                reference=ref_x,
                seed=seed,
            )
        rows.append(subset_row(variant, probe, chosen.indices, n_classes, method=spec.method, policy=spec.name, draw=0))
    if include_baselines:
        rng = np.random.default_rng([int(seed), 7])
        for draw in range(int(random_draws)):
            rows.append(
                subset_row(
                    variant,
                    probe,
                    rng.choice(n, size=k, replace=False),
                    n_classes,
                    method="random_k",
                    policy="uniform",
                    draw=draw,
                )
            )
        clean = np.flatnonzero(~variant.bad)
        rows.append(
            subset_row(
                variant,
                probe,
                rng.choice(clean, size=min(k, clean.size), replace=False),
                n_classes,
                method="oracle_k (uses truth)",
                policy="uniform",
                draw=0,
            )
        )
        rows.append(subset_row(variant, probe, np.arange(n), n_classes, method="full pool", policy="all", draw=0))
    return rows
