"""Metrics: classification quality of a trained model, and how well scores flag bad samples."""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, average_precision_score, f1_score, roc_auc_score

__all__ = ["classification_metrics", "detection_curve", "detection_metrics", "mean_std"]


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
    out = {"auroc": float(roc_auc_score(bad, s)), "average_precision": float(average_precision_score(bad, s)),
           "n_bad": float(n_bad), "n": float(bad.size)}
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
