"""Confident learning: flag samples whose given label disagrees with out-of-sample predictions.

Following Northcutt et al. (JAIR 2021) via the ``cleanlab`` package: a classifier (here a
logistic regression on the frozen embeddings, optionally after an unsupervised PCA fitted on the
pool) is trained ``n_folds`` times, each time predicting the held-out fold, which gives
out-of-sample probabilities ``p(c | x_i)`` for every pool sample. ``cleanlab`` turns them into a
label-quality score per sample (default ``self_confidence = p(y_i | x_i)``; higher = the given
label is more plausible) and a boolean label-issue mask (``find_label_issues``). The quality
score is the value (higher = more valuable).

Confident learning looks only at label consistency *within the pool*: it never uses the
reference, so it cannot tell an off-task image carrying a plausible label from a clean one when
many such images agree with each other, and it has no notion of pixel corruption beyond what the
classifier's confidence reflects.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from kairos_curate.valuation.base import (
    MethodParams,
    ValuationInputs,
    ValuationMethod,
    register_method,
)
from kairos_curate.valuation.result import ValuationResult

__all__ = ["ConfidentLearning", "confident_learning", "cross_val_proba"]


def cross_val_proba(
    features: np.ndarray,
    codes: np.ndarray,
    n_classes: int,
    *,
    n_folds: int = 5,
    max_iter: int = 300,
    seed: int = 0,
) -> np.ndarray:
    """Out-of-fold predicted probabilities of a logistic regression (stratified folds).

    Parameters
    ----------
    features
        ``(N, d)`` float features.
    codes
        ``(N,)`` integer labels in ``0..n_classes-1``.
    n_classes
        Number of classes (columns of the output).
    n_folds
        Stratified folds (every class needs at least ``n_folds`` members).
    max_iter
        L-BFGS iterations of each fit.
    seed
        Seed of the fold assignment.

    Returns
    -------
    numpy.ndarray
        ``(N, n_classes)`` rows summing to 1.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    out = np.zeros((features.shape[0], n_classes))
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for train, held in folds.split(features, codes):
        model = LogisticRegression(max_iter=max_iter).fit(features[train], codes[train])
        out[np.ix_(held, model.classes_)] = model.predict_proba(features[held])
    return out


def confident_learning(
    pool: Any,
    pool_labels: Any,
    *,
    n_folds: int = 5,
    pca_dim: int | None = 64,
    method: str = "self_confidence",
    max_iter: int = 300,
    seed: int = 0,
) -> ValuationResult:
    """Confident-learning label-quality scores of every pool sample (see the module docs).

    Parameters
    ----------
    pool
        ``(N, d)`` pool embeddings.
    pool_labels
        ``(N,)`` labels as given (possibly noisy); at least two classes, each with at least
        ``n_folds`` samples.
    n_folds
        Cross-validation folds (>= 2).
    pca_dim
        Project onto this many principal components of the pool first (unsupervised, cheaper
        fits); ``None`` or a value >= d keeps the embeddings as they are.
    method
        cleanlab's label-quality score: ``"self_confidence"``, ``"normalized_margin"`` or
        ``"confidence_weighted_entropy"``.
    max_iter
        L-BFGS iterations of each logistic-regression fit.
    seed
        Seed of the folds and the PCA.

    Returns
    -------
    ValuationResult
        ``values``: label-quality scores in ``[0, 1]`` (higher = more valuable); term
        ``issues`` (cleanlab's ``find_label_issues`` mask); info ``pred_probs`` (``(N, C)``
        out-of-sample probabilities, columns follow ``classes``), ``classes`` and the settings.
    """
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    x = np.asarray(pool, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"pool must be a 2-D array with at least 2 rows; got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("pool contains NaN/inf")
    y = np.asarray(pool_labels)
    if y.shape != (x.shape[0],):
        raise ValueError(f"pool_labels must have shape ({x.shape[0]},); got {y.shape}")
    if int(n_folds) < 2:
        raise ValueError(f"n_folds must be >= 2; got {n_folds}")
    classes, codes = np.unique(y, return_inverse=True)
    counts = np.bincount(codes, minlength=classes.size)
    if classes.size < 2:
        raise ValueError("confident learning needs at least two classes in pool_labels")
    if counts.min() < n_folds:
        raise ValueError(
            f"class {classes[counts.argmin()]!r} has {counts.min()} samples, fewer than "
            f"n_folds={n_folds}; lower n_folds"
        )
    from threadpoolctl import threadpool_limits

    # Small dense problems: one BLAS thread is several times faster than oversubscribed cores.
    with threadpool_limits(1, user_api="blas"):
        feats = x
        if pca_dim is not None and 0 < int(pca_dim) < min(x.shape):
            from sklearn.decomposition import PCA

            feats = PCA(n_components=int(pca_dim), svd_solver="randomized", random_state=seed).fit_transform(x)
        proba = cross_val_proba(feats, codes, classes.size, n_folds=int(n_folds), max_iter=max_iter, seed=seed)
    scores = np.asarray(get_label_quality_scores(codes, proba, method=method), dtype=np.float64)
    issues = np.asarray(find_label_issues(codes, proba), dtype=bool)
    return ValuationResult(
        method="confident_learning",
        values=scores,
        terms={"issues": issues},
        info={
            "pred_probs": proba,
            "classes": classes,
            "n_folds": int(n_folds),
            "pca_dim": pca_dim,
            "score": method,
            "model": "LogisticRegression",
            "n_issues": int(issues.sum()),
        },
    )


class ConfidentLearningParams(MethodParams):
    """Confident learning's parameters (see :func:`confident_learning`)."""

    n_folds: int = 5
    pca_dim: int | None = 64
    score: Literal["self_confidence", "normalized_margin", "confidence_weighted_entropy"] = "self_confidence"


@register_method
class ConfidentLearning(ValuationMethod):
    """cleanlab's label quality from cross-validated logistic-regression probabilities."""

    name = "confident_learning"
    description = "cleanlab self-confidence from 5-fold logistic regression"
    seeded = True

    Params = ConfidentLearningParams

    def fit(self, inputs: ValuationInputs) -> ValuationResult:
        """Label-quality scores of the pool (the reference is not used)."""
        return confident_learning(
            inputs.pool,
            inputs.pool_labels,
            n_folds=self.params.n_folds,
            pca_dim=self.params.pca_dim,
            method=self.params.score,
            seed=inputs.seed,
        )
