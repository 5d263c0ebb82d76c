"""Label handling for KAIROS: encoding, the residual label term and scale-free combination.

Residual mode (as in the KAIROS authors' reference evaluator): a multinomial logistic regression
is fitted on the *reference* embeddings and labels; for a pool point with label ``y_i`` the
residual is ``r_i = onehot(y_i) - p(x_i)`` and the label term is ``-||r_i||_2`` (higher = the
label agrees with what the reference predicts). Values are then combined with the feature term
``b - a`` by one of:

* ``"weighted"`` (default, the reference implementation): ``lam * (b - a) + (1 - lam) * label``
  i.e. ``lam * (b - a) - (1 - lam) * ||r||``. Not scale-free: ``b - a`` is typically of order
  ``1e-2`` while ``||r||`` lies in ``[0, sqrt(2)]``, so even ``lam = 0.97`` lets the label term
  dominate the ranking.
* ``"rank"``: each term is replaced by its average rank scaled to ``(0, 1]`` before weighting;
  invariant to any increasing transform of either term.
* ``"zscore"``: each term is standardised (mean 0, std 1) before weighting; invariant to affine
  rescaling of either term.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.stats import rankdata

__all__ = [
    "COMBINE_MODES",
    "combine_terms",
    "encode_labels",
    "encode_pool",
    "encode_reference",
    "fit_reference_classifier",
    "residual_norms",
]

COMBINE_MODES = ("weighted", "rank", "zscore")


def _as_label_array(labels: Any, name: str, n: int) -> np.ndarray:
    if hasattr(labels, "detach"):
        labels = labels.detach().cpu().numpy()
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one label per row (1-D), got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(
            f"{name} has {arr.shape[0]} labels but there are {n} rows; give exactly one "
            "label per embedding row, in the same order"
        )
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN/inf labels at rows {np.flatnonzero(~np.isfinite(arr))[:10].tolist()}")
    if arr.dtype.kind == "O":
        arr = np.asarray([str(v) for v in arr])
    return arr


def encode_reference(reference_labels: Any, n_reference: int) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes of the reference labels and the sorted reference classes.

    Raises
    ------
    ValueError
        Missing labels or a wrong length.
    """
    if reference_labels is None:
        raise ValueError(
            "a label mode needs reference_labels (one per reference row); pass them, "
            "or use label_mode=None for the feature-only value"
        )
    y_ref = _as_label_array(reference_labels, "reference_labels", n_reference)
    classes = np.unique(y_ref)
    return np.searchsorted(classes, y_ref), classes


def encode_pool(pool_labels: Any, classes: np.ndarray, n_pool: int) -> np.ndarray:
    """Integer codes of the pool labels over the reference ``classes``.

    Raises
    ------
    ValueError
        Missing labels, a wrong length, or pool classes that the reference does not have.
    """
    if pool_labels is None:
        raise ValueError(
            "a label mode needs pool_labels (one per pool row); pass them, "
            "or use label_mode=None for the feature-only value"
        )
    y_pool = _as_label_array(pool_labels, "pool_labels", n_pool)
    if (y_pool.dtype.kind in "US") != (classes.dtype.kind in "US"):
        if classes.dtype.kind in "US":
            y_pool = y_pool.astype(str)
        else:
            try:
                y_pool = y_pool.astype(classes.dtype)
            except ValueError as err:
                raise ValueError(
                    "pool_labels are strings but reference_labels are numbers; use the same label type for both"
                ) from err
    missing = np.setdiff1d(np.unique(y_pool), classes)
    if missing.size:
        shown = ", ".join(repr(v.item() if hasattr(v, "item") else v) for v in missing[:10])
        raise ValueError(
            f"pool_labels has {missing.size} class(es) absent from reference_labels: {shown}; "
            "a label mode values points against their own class in the reference, so drop "
            "those pool rows or add reference examples of those classes"
        )
    return np.searchsorted(classes, y_pool)


def encode_labels(
    pool_labels: Any, reference_labels: Any, n_pool: int, n_reference: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Map pool and reference labels to integer codes over the reference's classes.

    Parameters
    ----------
    pool_labels, reference_labels
        One label per row (ints or strings), in the row order of the embeddings.
    n_pool, n_reference
        Number of rows, to check the lengths.

    Returns
    -------
    pool_codes, reference_codes, classes
        ``classes[code]`` is the original label; ``classes`` are the sorted reference classes.

    Raises
    ------
    ValueError
        Missing labels, wrong lengths, or pool classes that the reference does not have.
    """
    ref_codes, classes = encode_reference(reference_labels, n_reference)
    return encode_pool(pool_labels, classes, n_pool), ref_codes, classes


def fit_reference_classifier(
    reference: np.ndarray,
    reference_codes: np.ndarray,
    n_classes: int,
    *,
    C: float = 1.0,
    max_iter: int = 1000,
) -> Callable[[np.ndarray], np.ndarray]:
    """Fit the residual mode's logistic regression on the reference.

    Parameters
    ----------
    reference
        ``(M, d)`` float64 reference embeddings.
    reference_codes
        Integer class codes in ``[0, n_classes)``.
    n_classes
        Number of reference classes.
    C, max_iter
        Passed to :class:`sklearn.linear_model.LogisticRegression` (L2, lbfgs, multinomial).

    Returns
    -------
    callable
        Maps ``(n, d)`` embeddings to ``(n, n_classes)`` class probabilities.
    """
    present = np.unique(reference_codes)
    if present.size == 1:
        only = int(present[0])

        def constant(x: np.ndarray) -> np.ndarray:
            proba = np.zeros((x.shape[0], n_classes))
            proba[:, only] = 1.0
            return proba

        return constant
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=C, max_iter=max_iter)
    model.fit(reference, reference_codes)

    def predict(x: np.ndarray) -> np.ndarray:
        proba = np.zeros((x.shape[0], n_classes))
        proba[:, model.classes_] = model.predict_proba(x)
        return proba

    return predict


def residual_norms(proba: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """``||onehot(y_i) - p(x_i)||_2`` for class probabilities ``proba`` and label codes."""
    onehot = np.zeros_like(proba)
    onehot[np.arange(proba.shape[0]), codes] = 1.0
    return np.asarray(np.linalg.norm(onehot - proba, axis=1), dtype=np.float64)


def _rank01(t: np.ndarray) -> np.ndarray:
    return np.asarray(rankdata(t, method="average"), dtype=np.float64) / t.shape[0]


def _zscore(t: np.ndarray) -> np.ndarray:
    std = float(t.std())
    return (t - t.mean()) / std if std > 0 else np.zeros_like(t)


def combine_terms(feature: np.ndarray, label: np.ndarray, lam: float, combine: str = "weighted") -> np.ndarray:
    """Combine the feature term and the label term (both: higher = better) into one value.

    ``lam * T(feature) + (1 - lam) * T(label)`` with ``T`` the identity (``"weighted"``),
    the scaled average rank (``"rank"``) or the z-score (``"zscore"``); see module docs.
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must lie in [0, 1], got {lam}")
    if combine == "weighted":
        return lam * feature + (1.0 - lam) * label
    if combine == "rank":
        return lam * _rank01(feature) + (1.0 - lam) * _rank01(label)
    if combine == "zscore":
        return lam * _zscore(feature) + (1.0 - lam) * _zscore(label)
    raise ValueError(f"combine must be one of {COMBINE_MODES}, got {combine!r}")
