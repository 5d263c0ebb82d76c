"""The one result type of every valuation method, and the assembly of KAIROS values.

:class:`ValuationResult` holds a value per pool sample (higher = more valuable), keyed by sample
id, with the method's name, its parameters, its wall time and whatever else the method computed:
per-sample ``terms`` (KAIROS's ``b``, ``a``, ``loo``...) and scalar ``info`` (the bandwidth, the
OT distance...). Terms and info are also readable as attributes (``res.b``, ``res.bandwidth``).

All KAIROS back-ends (exact blocked, incremental, random Fourier features) produce kernel means
and hand them to :func:`assemble_result`, so the value formulas live in one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from kairos_curate.valuation.labels import combine_terms
from kairos_curate.valuation.loo import exact_loo, mmd2_from_terms

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["KAIROS_METHOD_OF_MODE", "LABEL_MODES", "ValuationResult", "assemble_result"]

LABEL_MODES = (None, "residual", "class_conditional")

#: Registry name of the KAIROS method for each label mode.
KAIROS_METHOD_OF_MODE = {
    None: "kairos_feature",
    "residual": "kairos_residual",
    "class_conditional": "kairos_class_conditional",
}


@dataclass
class ValuationResult:
    """Per-sample values of one valuation method (higher = more valuable).

    Attributes
    ----------
    method : str
        Registry name of the method (``"kairos_class_conditional"``, ``"knn_shapley"``...).
    values : numpy.ndarray
        ``(N,)`` float64, the value used for ranking; lowest = most suspicious.
    ids : numpy.ndarray or None
        ``(N,)`` sample ids as strings (``None``: row numbers are used where ids are needed).
    labels : numpy.ndarray or None
        ``(N,)`` pool labels as the method saw them.
    params : dict
        The method's parameters.
    seconds : float
        Wall time of the valuation (NaN when not timed).
    terms : dict of str to numpy.ndarray
        Per-sample extras, each ``(N,)``: KAIROS's ``b`` (mean kernel to the reference), ``a``
        (to the pool, self included), ``feature_term`` (``b - a``), ``label_term``, ``loo``
        (exact leave-one-out change of the biased MMD^2; positive = the sample helps).
    info : dict
        Scalar extras: KAIROS's ``bandwidth``, ``label_mode``, ``mmd2``, ``class_mmd2``,
        ``backend`` (``"exact"`` or ``"rff"``); LAVA's ``ot_distance``...
    """

    method: str
    values: np.ndarray
    ids: np.ndarray | None = None
    labels: np.ndarray | None = None
    params: dict[str, Any] = field(default_factory=dict)
    seconds: float = float("nan")
    terms: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.values = np.asarray(self.values, dtype=np.float64)
        n = self.values.shape[0]
        if self.ids is not None:
            self.ids = np.asarray([str(i) for i in self.ids])
            if self.ids.shape != (n,):
                raise ValueError(f"ids has {self.ids.shape[0]} entries but there are {n} values")
        for name, term in self.terms.items():
            if term is not None and np.shape(term) != (n,):
                raise ValueError(f"term {name!r} has shape {np.shape(term)}, expected ({n},)")

    def __getattr__(self, name: str) -> Any:
        # Only called for names that are not fields: terms and info read as attributes.
        if name.startswith("__"):
            raise AttributeError(name)
        for holder in ("terms", "info"):
            store = self.__dict__.get(holder, {})
            if name in store:
                return store[name]
        raise AttributeError(
            f"{type(self).__name__} of method {self.__dict__.get('method')!r} has no term or info "
            f"{name!r}; terms: {sorted(self.__dict__.get('terms', {}))}, "
            f"info: {sorted(self.__dict__.get('info', {}))}"
        )

    def __len__(self) -> int:
        return int(self.values.shape[0])

    def with_ids(self, ids: Any) -> ValuationResult:
        """A copy keyed by ``ids`` (one per sample)."""
        return replace(self, ids=np.asarray([str(i) for i in ids]))

    def _keys(self, ids: Any) -> np.ndarray:
        if ids is not None:
            return np.asarray([str(i) for i in ids])
        if self.ids is not None:
            return self.ids
        return np.arange(len(self))

    def ranking(self, ids: Any = None) -> np.ndarray:
        """Pool indices from most to least valuable; ties broken by id (or row number)."""
        return np.lexsort((self._keys(ids), -self.values))

    def ranks(self, ids: Any = None) -> np.ndarray:
        """Rank of every sample, 1 = most valuable (ties broken by id)."""
        order = self.ranking(ids)
        ranks = np.empty(len(self), dtype=np.int64)
        ranks[order] = np.arange(1, len(self) + 1)
        return ranks

    def to_frame(self, ids: Any = None) -> pd.DataFrame:
        """Table indexed by sample id: ``label`` (if known), every term, ``value``, ``rank``.

        KAIROS results keep the column order ``label, b, a, feature_term, label_term, value, loo,
        rank`` (``label_term`` NaN without labels). The method name, its parameters and its
        scalar info are stored in ``DataFrame.attrs``.
        """
        import pandas as pd

        n = len(self)
        keys = self._keys(ids)
        index = keys.astype(str) if keys.dtype.kind != "U" else keys
        if index.shape[0] != n:
            raise ValueError(f"ids has {index.shape[0]} entries but the result has {n} samples")
        cols: dict[str, Any] = {}
        if self.labels is not None:
            cols["label"] = self.labels
        after_value = {"loo"}
        for name, term in self.terms.items():
            if name not in after_value:
                cols[name] = np.full(n, np.nan) if term is None else term
        cols["value"] = self.values
        for name in after_value & set(self.terms):
            cols[name] = self.terms[name]
        cols["rank"] = self.ranks(index)
        frame = pd.DataFrame(cols, index=pd.Index(index, name="id"))
        frame.attrs.update(method=self.method, params=dict(self.params))
        frame.attrs.update({k: v for k, v in self.info.items() if np.isscalar(v) or v is None})
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
    backend: str = "exact",
    k_self: float = 1.0,
    extra: dict[str, Any] | None = None,
) -> ValuationResult:
    """Turn kernel means into the :class:`ValuationResult` of a KAIROS method.

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
    backend
        ``"exact"`` or ``"rff"``.
    k_self
        ``k(x, x)`` used by the LOO formula.
    extra
        Back-end specific scalar metadata (merged into ``info``).

    Returns
    -------
    ValuationResult
        ``method`` is ``kairos_feature`` / ``kairos_residual`` / ``kairos_class_conditional``;
        terms ``b``, ``a``, ``feature_term``, ``label_term`` (``None`` without a label mode),
        ``loo``; info ``bandwidth``, ``label_mode``, ``mmd2``, ``backend``, ``lam`` and
        ``combine`` (residual), ``class_mmd2`` (class-conditional).
    """
    if label_mode not in LABEL_MODES:
        raise ValueError(f"label_mode must be None, 'residual' or 'class_conditional', got {label_mode!r}")
    b = np.asarray(b, dtype=np.float64)
    a = np.asarray(a, dtype=np.float64)
    feature = b - a
    info: dict[str, Any] = {
        "bandwidth": float(bandwidth),
        "label_mode": label_mode,
        "mmd2": mmd2_from_terms(b, a, c_mean),
        "backend": backend,
        **dict(extra or {}),
    }
    label_term: np.ndarray | None = None
    if label_mode is None:
        values, loo = feature.copy(), exact_loo(b, a, k_self)
    elif label_mode == "residual":
        assert residual is not None
        label_term = -np.asarray(residual, dtype=np.float64)
        values, loo = combine_terms(feature, label_term, lam, combine), exact_loo(b, a, k_self)
        info.update(lam=float(lam), combine=combine)
    else:
        assert b_cc is not None and a_cc is not None and codes is not None
        assert c_cc is not None and classes is not None
        b = np.asarray(b_cc, dtype=np.float64)
        a = np.asarray(a_cc, dtype=np.float64)
        values = b - a
        loo = np.empty_like(values)
        class_mmd2: dict[Any, float] = {}
        for code in np.unique(codes):
            idx = np.flatnonzero(codes == code)
            loo[idx] = exact_loo(b[idx], a[idx], k_self)
            key = classes[code].item() if hasattr(classes[code], "item") else classes[code]
            class_mmd2[key] = mmd2_from_terms(b[idx], a[idx], float(c_cc[code]))
        label_term = values - feature
        info["class_mmd2"] = class_mmd2
    terms: dict[str, Any] = {
        "b": b,
        "a": a,
        "feature_term": feature,
        "label_term": label_term,
        "loo": loo,
    }
    params = {"label_mode": label_mode, "bandwidth": float(bandwidth)}
    if label_mode == "residual":
        params.update(lam=float(lam), combine=combine)
    return ValuationResult(
        method=KAIROS_METHOD_OF_MODE[label_mode],
        values=values,
        labels=labels,
        params=params,
        terms=terms,
        info=info,
    )
