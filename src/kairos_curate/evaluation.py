"""Metrics: classification quality of a trained model, and how well scores flag bad samples."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, roc_auc_score

__all__ = [
    "classification_metrics",
    "detection_curve",
    "detection_metrics",
    "mean_std",
    "probe_metrics",
    "removal_curve",
    "winner_table",
]


def classification_metrics(y_true: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Accuracy, macro-F1 and macro one-vs-rest AUC of predicted class probabilities.

    Args:
        y_true: ``(n,)`` integer labels in ``0..K-1``.
        proba: ``(n, K)`` predicted probabilities (rows sum to 1).
    """
    y = np.asarray(y_true)
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != y.shape[0]:
        raise ValueError(f"proba must be (n, K) with n={y.shape[0]}, got {p.shape}")
    k = p.shape[1]
    pred = p.argmax(axis=1)
    labels = np.arange(k)
    present = np.unique(y)
    if present.size == k == 2:  # binary: sklearn wants the positive-class score only
        auc = float(roc_auc_score(y, p[:, 1]))
    elif present.size == k:
        auc = float(roc_auc_score(y, p, multi_class="ovr", average="macro", labels=labels))
    else:  # OvR AUC is undefined for a class absent from y_true
        auc = float("nan")
    return {
        "accuracy": float(accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, average="macro", labels=labels, zero_division=0)),
        "auc": auc,
    }


def detection_metrics(scores: np.ndarray, is_bad: np.ndarray, ks: dict[str, int] | None = None) -> dict[str, float]:
    """How well ``scores`` (higher = more suspicious) flag the ``is_bad`` samples.

    Returns AUROC, average precision, and precision/recall among the top-``k`` for each named
    ``k`` in ``ks`` (default: ``k`` = number of bad samples).
    """
    s = np.asarray(scores, dtype=np.float64)
    bad = np.asarray(is_bad, dtype=bool)
    if s.shape != bad.shape:
        raise ValueError(f"scores {s.shape} and is_bad {bad.shape} differ in shape")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or inf")
    n_bad = int(bad.sum())
    if n_bad == 0 or n_bad == bad.size:
        raise ValueError("detection metrics need both bad and clean samples")
    out = {
        "auroc": float(roc_auc_score(bad, s)),
        "average_precision": float(average_precision_score(bad, s)),
        "n_bad": float(n_bad),
        "n": float(bad.size),
    }
    order = np.argsort(-s, kind="stable")
    for name, k in (ks or {"k_bad": n_bad}).items():
        k = int(min(max(k, 1), bad.size))
        hits = int(bad[order[:k]].sum())
        out[f"precision_at_{name}"] = hits / k
        out[f"recall_at_{name}"] = hits / n_bad
    return out


def detection_curve(scores: np.ndarray, is_bad: np.ndarray, points: int = 101) -> tuple[np.ndarray, np.ndarray]:
    """Fraction of bad samples found vs fraction of the data inspected (most suspicious first)."""
    s = np.asarray(scores, dtype=np.float64)
    bad = np.asarray(is_bad, dtype=bool)
    order = np.argsort(-s, kind="stable")
    found = np.concatenate([[0.0], np.cumsum(bad[order]) / max(int(bad.sum()), 1)])
    inspected = np.linspace(0.0, 1.0, points)
    return inspected, np.interp(inspected, np.linspace(0.0, 1.0, bad.size + 1), found)


def mean_std(values: Any) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0 for a single value)."""
    arr = np.asarray(list(values), dtype=np.float64)
    if arr.size == 0:
        return float("nan"), float("nan")
    return float(arr.mean()), float(arr.std(ddof=1)) if arr.size > 1 else 0.0


def probe_metrics(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    n_classes: int,
    *,
    max_iter: int = 300,
) -> dict[str, float]:
    """Train a cheap probe (multinomial logistic regression) and score it on a clean test set.

    Args:
        train_x: ``(n, d)`` frozen features of the training subset.
        train_y: ``(n,)`` their labels (as given, possibly noisy) in ``0..n_classes-1``.
        test_x: ``(m, d)`` features of the clean test set.
        test_y: ``(m,)`` true test labels.
        n_classes: number of classes (columns of the probability matrix).
        max_iter: L-BFGS iterations.

    Returns:
        ``accuracy``, ``macro_f1`` and ``auc`` (see :func:`classification_metrics`). A subset
        holding a single class predicts that class everywhere.
    """
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    x = np.asarray(train_x, dtype=np.float64)
    y = np.asarray(train_y)
    if x.ndim != 2 or x.shape[0] != y.shape[0] or x.shape[0] == 0:
        raise ValueError(f"train_x must be (n, d) with n = len(train_y) > 0; got {x.shape} and {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"train_y must lie in 0..{n_classes - 1}")
    proba = np.zeros((np.asarray(test_x).shape[0], n_classes))
    present = np.unique(y)
    if present.size == 1:
        proba[:, int(present[0])] = 1.0
    else:
        # Small dense problems: one BLAS thread beats oversubscribed cores by a wide margin.
        with threadpool_limits(1, user_api="blas"):
            model = LogisticRegression(max_iter=max_iter).fit(x, y)
            proba[:, model.classes_] = model.predict_proba(np.asarray(test_x, dtype=np.float64))
    return classification_metrics(test_y, proba)


def removal_curve(
    values: np.ndarray,
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    test_y: np.ndarray,
    fractions: Any,
    n_classes: int,
    *,
    remove: str = "high",
    max_iter: int = 300,
) -> list[dict[str, float]]:
    """Point removal: drop the highest- (or lowest-) valued fraction, retrain the probe, score it.

    Args:
        values: ``(n,)`` values, higher = more valuable (ties broken by row order).
        train_x, train_y: the pool's features and labels.
        test_x, test_y: the clean test set.
        fractions: fractions of the pool to remove, each in ``[0, 1)``.
        n_classes: number of classes.
        remove: ``"high"`` (most valuable first: a good valuation makes accuracy fall fast) or
            ``"low"`` (least valuable first: a good valuation keeps or raises accuracy).
        max_iter: probe iterations.

    Returns:
        One dict per fraction: ``fraction``, ``n_kept``, ``accuracy``, ``macro_f1``.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.shape != (np.asarray(train_x).shape[0],):
        raise ValueError(f"values must have one entry per training row; got {v.shape}")
    if remove not in ("high", "low"):
        raise ValueError(f"remove must be 'high' or 'low', got {remove!r}")
    order = np.argsort(-v if remove == "high" else v, kind="stable")  # removal order
    out = []
    for frac in fractions:
        f = float(frac)
        if not 0.0 <= f < 1.0:
            raise ValueError(f"removal fractions must lie in [0, 1); got {f}")
        keep = np.sort(order[round(f * v.size) :])
        m = probe_metrics(
            np.asarray(train_x)[keep], np.asarray(train_y)[keep], test_x, test_y, n_classes, max_iter=max_iter
        )
        out.append({"fraction": f, "n_kept": float(keep.size), "accuracy": m["accuracy"], "macro_f1": m["macro_f1"]})
    return out


def winner_table(
    summary: Any,
    *,
    group: str = "setting",
    metric: str = "auroc_mean",
    std: str | None = "auroc_std",
    contenders: Any = None,
    family: Any = None,
) -> Any:
    """Per group (e.g. noise setting): the best method, the runner-up, and how KAIROS fares.

    Args:
        summary: a DataFrame with columns ``group``, ``method``, ``metric`` (and ``std``).
        group: column to group by.
        metric: higher-is-better column that decides the winner.
        std: its spread column (reported alongside; ``None`` to skip).
        contenders: methods to consider (default: all in ``summary``).
        family: method -> family (``"kairos"`` or ``"baseline"``, see
            :attr:`kairos_curate.valuation.ValuationMethod.family`); default: every method's
            registered family.

    Returns:
        DataFrame with one row per group: ``winner``, ``winner_score``, ``runner_up``,
        ``runner_up_score``, ``margin`` (winner - runner-up), ``best_kairos``, ``best_kairos_score``,
        ``best_other``, ``best_other_score`` and ``kairos_minus_other`` (negative = KAIROS loses).
    """
    import pandas as pd

    frame = summary if contenders is None else summary[summary["method"].isin(list(contenders))]
    if family is None:
        from kairos_curate.valuation import METHODS

        family = {name: cls.family for name, cls in METHODS.items()}
    rows = []
    for key, grp in frame.groupby(group, sort=False):
        ranked = grp.sort_values(metric, ascending=False, kind="stable")
        if ranked.empty:
            continue
        first = ranked.iloc[0]
        second = ranked.iloc[1] if len(ranked) > 1 else None
        is_kairos = ranked["method"].map(lambda m: family.get(m) == "kairos").to_numpy(dtype=bool)
        fam = ranked[is_kairos]
        other = ranked[~is_kairos]
        row: dict[str, Any] = {group: key, "winner": first["method"], "winner_score": float(first[metric])}
        if std is not None:
            row["winner_std"] = float(first[std])
        row["runner_up"] = None if second is None else second["method"]
        row["runner_up_score"] = float("nan") if second is None else float(second[metric])
        row["margin"] = row["winner_score"] - row["runner_up_score"]
        row["best_kairos"] = fam.iloc[0]["method"] if len(fam) else None
        row["best_kairos_score"] = float(fam.iloc[0][metric]) if len(fam) else float("nan")
        row["best_other"] = other.iloc[0]["method"] if len(other) else None
        row["best_other_score"] = float(other.iloc[0][metric]) if len(other) else float("nan")
        row["kairos_minus_other"] = row["best_kairos_score"] - row["best_other_score"]
        rows.append(row)
    return pd.DataFrame(rows)
