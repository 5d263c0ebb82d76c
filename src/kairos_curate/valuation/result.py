"""The KAIROS result object and the assembly of values from kernel means.

All valuation back-ends (exact blocked, incremental, random Fourier features) produce kernel
means and hand them to :func:`assemble_result`, so the value formulas live in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from kairos_curate.valuation.labels import combine_terms
from kairos_curate.valuation.loo import exact_loo, mmd2_from_terms

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["LABEL_MODES", "KairosResult", "assemble_result"]

LABEL_MODES = (None, "residual", "class_conditional")


@dataclass
class KairosResult:
    """Per-sample KAIROS terms for a pool, valued against a reference.

    Attributes
    ----------
    b : numpy.ndarray
        ``(N,)`` mean kernel to the reference (in ``class_conditional`` mode: to the reference
        points of the sample's own class).
    a : numpy.ndarray
        ``(N,)`` mean kernel to the pool, self included (``class_conditional``: to the pool
        points of the same class).
    values : numpy.ndarray
        ``(N,)`` the value used for ranking; higher = more valuable.
    loo : numpy.ndarray
        ``(N,)`` exact ``MMD^2(pool without i, ref) - MMD^2(pool, ref)`` (biased V-statistic;
        ``class_conditional``: of the sample's own class). Positive = removing the point moves
        the pool away from the reference = the point helps.
    bandwidth : float
        The RBF ``sigma`` used.
    feature_term : numpy.ndarray
        ``(N,)`` label-blind ``b - a``.
    label_term : numpy.ndarray or None
        ``(N,)`` the label part (higher = better): ``-||onehot(y) - p(x)||`` in residual mode;
        ``values - feature_term`` (what conditioning on labels changes) in class-conditional
        mode; ``None`` without labels.
    label_mode : str or None
        ``None``, ``"residual"`` or ``"class_conditional"``.
    lam, combine
        Residual mode's weight and combination rule (``None`` in other modes).
    mmd2 : float
        Biased label-blind ``MMD^2(pool, reference)``.
    class_mmd2 : dict or None
        Per-class biased ``MMD^2`` (class-conditional mode).
    labels : numpy.ndarray or None
        The pool labels, if given.
    method : str
        ``"exact"`` or ``"rff"``.
    """

    b: np.ndarray
    a: np.ndarray
    values: np.ndarray
    loo: np.ndarray
    bandwidth: float
    feature_term: np.ndarray
    label_term: np.ndarray | None = None
    label_mode: str | None = None
    lam: float | None = None
    combine: str | None = None
    mmd2: float = float("nan")
    class_mmd2: dict[Any, float] | None = None
    labels: np.ndarray | None = None
    method: str = "exact"
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def ranking(self, ids: Any = None) -> np.ndarray:
        """Pool indices from most to least valuable; ties broken by id (or index)."""
        keys = np.arange(len(self)) if ids is None else np.asarray([str(i) for i in ids])
        return np.lexsort((keys, -self.values))

    def ranks(self, ids: Any = None) -> np.ndarray:
        """Rank of every sample, 1 = most valuable (ties broken by id)."""
        order = self.ranking(ids)
        ranks = np.empty(len(self), dtype=np.int64)
        ranks[order] = np.arange(1, len(self) + 1)
        return ranks

    def to_frame(self, ids: Any = None) -> pd.DataFrame:
        """Table indexed by sample id with every term, the value, the LOO and the rank.

        Columns: ``label`` (if labels were given), ``b``, ``a``, ``feature_term``,
        ``label_term`` (NaN without labels), ``value``, ``loo``, ``rank`` (1 = most valuable).
        ``label_mode``, ``bandwidth``, ``method``, ``lam`` and ``combine`` are stored in
        ``DataFrame.attrs``.
        """
        import pandas as pd

        n = len(self)
        if ids is None:
            ids = np.arange(n).astype(str)
        ids = np.asarray([str(i) for i in ids])
        if ids.shape[0] != n:
            raise ValueError(f"ids has {ids.shape[0]} entries but the result has {n} samples")
        cols: dict[str, Any] = {}
        if self.labels is not None:
            cols["label"] = self.labels
        cols["b"] = self.b
        cols["a"] = self.a
        cols["feature_term"] = self.feature_term
        cols["label_term"] = np.full(n, np.nan) if self.label_term is None else self.label_term
        cols["value"] = self.values
        cols["loo"] = self.loo
        cols["rank"] = self.ranks(ids)
        frame = pd.DataFrame(cols, index=pd.Index(ids, name="id"))
        frame.attrs.update(
            label_mode=str(self.label_mode),
            bandwidth=self.bandwidth,
            method=self.method,
            lam=self.lam,
            combine=self.combine,
            mmd2=self.mmd2,
        )
        return frame


def assemble_result(
    *,
    b: np.ndarray,
    a: np.ndarray,
    c_mean: float,
    bandwidth: float,
    label_mode: str | None = None,
    lam: float = 0.97,
    combine: str = "weighted",
    labels: np.ndarray | None = None,
    codes: np.ndarray | None = None,
    classes: np.ndarray | None = None,
    b_cc: np.ndarray | None = None,
    a_cc: np.ndarray | None = None,
    c_cc: np.ndarray | None = None,
    residual: np.ndarray | None = None,
    method: str = "exact",
    k_self: float = 1.0,
    extra: dict[str, Any] | None = None,
) -> KairosResult:
    """Turn kernel means into a :class:`KairosResult` (the value formulas live here).

    Parameters
    ----------
    b, a
        Label-blind kernel means to the reference and to the pool.
    c_mean
        Mean reference-reference kernel (for ``mmd2``).
    bandwidth
        The sigma used.
    label_mode, lam, combine
        See :func:`kairos_curate.valuation.kairos_values`.
    labels, codes, classes
        Original pool labels, their codes, and the class of each code.
    b_cc, a_cc, c_cc
        Class-conditional kernel means and per-class reference means (class-conditional mode).
    residual
        ``||onehot(y) - p(x)||`` (residual mode).
    method
        Name of the back-end.
    k_self
        ``k(x, x)`` used by the LOO formula.
    extra
        Back-end specific metadata.
    """
    b = np.asarray(b, dtype=np.float64)
    a = np.asarray(a, dtype=np.float64)
    feature = b - a
    mmd2 = mmd2_from_terms(b, a, c_mean)
    common: dict[str, Any] = dict(
        bandwidth=float(bandwidth),
        feature_term=feature,
        mmd2=mmd2,
        labels=labels,
        method=method,
        extra=dict(extra or {}),
    )
    if label_mode is None:
        return KairosResult(b=b, a=a, values=feature.copy(), loo=exact_loo(b, a, k_self), **common)
    if label_mode == "residual":
        assert residual is not None
        label_term = -np.asarray(residual, dtype=np.float64)
        values = combine_terms(feature, label_term, lam, combine)
        return KairosResult(
            b=b,
            a=a,
            values=values,
            loo=exact_loo(b, a, k_self),
            label_term=label_term,
            label_mode="residual",
            lam=float(lam),
            combine=combine,
            **common,
        )
    if label_mode == "class_conditional":
        assert b_cc is not None and a_cc is not None and codes is not None
        assert c_cc is not None and classes is not None
        b_cc = np.asarray(b_cc, dtype=np.float64)
        a_cc = np.asarray(a_cc, dtype=np.float64)
        values = b_cc - a_cc
        loo = np.empty_like(values)
        class_mmd2: dict[Any, float] = {}
        for code in np.unique(codes):
            idx = np.flatnonzero(codes == code)
            loo[idx] = exact_loo(b_cc[idx], a_cc[idx], k_self)
            key = classes[code].item() if hasattr(classes[code], "item") else classes[code]
            class_mmd2[key] = mmd2_from_terms(b_cc[idx], a_cc[idx], float(c_cc[code]))
        return KairosResult(
            b=b_cc,
            a=a_cc,
            values=values,
            loo=loo,
            label_term=values - feature,
            label_mode="class_conditional",
            class_mmd2=class_mmd2,
            **common,
        )
    raise ValueError(
        f"label_mode must be None, 'residual' or 'class_conditional', got {label_mode!r}"
    )
