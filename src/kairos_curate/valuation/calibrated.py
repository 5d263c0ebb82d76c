"""``kairos_calibrated``: two KAIROS statistics calibrated against the clean reference.

A raw KAIROS value says how much a point pulls its class's pool towards the class's reference,
but not whether that is *unusual for a clean point*. This method answers the second question
with conformal p-values, calibrated on the reference itself (it is known clean) by cross-fitting
(leave-one-out on the reference).

RBF kernel ``k(x, x') = exp(-||x - x'||^2 / (2 sigma^2))``, ``sigma`` the median heuristic
(or a number). For a pool point ``x_i`` shown with label ``c``, ``R_c`` the reference of class
``c`` and ``P_c`` the pool points shown with ``c``:

* **feature statistic** (the class-conditional witness): ``v_i = b_i - a_i`` with
  ``b_i = mean_{z in R_c} k(x_i, z)`` and ``a_i = mean_{x in P_c, x != x_i} k(x_i, x)``: the
  MMD witness function between ``R_c`` and ``P_c`` at ``x_i`` (KAIROS class-conditional value,
  self term left out);
* **label statistic** (``label_model``):

  * ``parzen``: ``l_i = log B_c(x_i) - log sum_c' B_c'(x_i)``, ``B_c'(x) = mean_{z in R_c'}
    k_l(x, z)``: the reference's kernel (Parzen) posterior of the shown label, with its own
    bandwidth ``sigma_l`` = the multiple of ``sigma`` in :data:`LABEL_BANDWIDTH_GRID` that
    maximises the reference's leave-one-out label log-likelihood (:func:`label_bandwidth`);
  * ``crossfit``: ``l_i = log p(c | x_i)`` of a multinomial logistic regression fitted on the
    pool (shown labels) *and* the reference together, cross-fitted: every pool and reference
    point gets its probability from the fold model that did not see it
    (:func:`crossfit_label_statistics`). Thousands of pool images instead of a few dozen
    reference images per class; the reference's out-of-fold values are its calibration draws.

Calibration. A reference point ``z`` of class ``c`` gets the same two statistics as if it were
a pool point of class ``c``, leaving itself out of the reference (``b`` and ``B_c`` over
``R_c`` minus ``z``; ``a`` over all of ``P_c``; ``crossfit``: out of fold). Those are draws of what a clean point's
statistics look like. A pool statistic ``t`` of class ``c`` becomes the *smoothed* conformal
p-value against its class's reference values ``r_1..r_M``
``p(t) = (1/2 + sum_j Phi((t - r_j) / h)) / (M + 1)`` (Silverman's ``h`` of the ``r_j``):
near the conformal ``(1 + #{r_j <= t}) / (M + 1)`` but continuous, so the many points below
the whole reference do not tie. The two p-values combine by a *calibrated minimum*: the
minimum of a point's two p-values, itself turned into a smoothed p-value against the
reference's leave-one-out minima (each reference point's two p-values against the other
reference points of its class); ``combine="min"`` keeps the plain minimum instead (a row then
passes the level gate only if each p-value does). ``gates`` keeps one gate only (its p-value as is).

Contamination. Per class, Storey's estimate of the clean share
``pi_c = min(1, #{p > 1/2} / (n_c / 2))`` (``info["clean_share"]``) and the gate's size
(``info["keep_counts"]``; the policy ``gated_cover`` keeps that many highest p-values of the
class): with ``keep_rule="level"`` (the default) the number of rows whose p-value exceeds
``level`` - a conformal test at that level, which drops about ``level`` of the clean rows
whatever the class's contamination; with ``keep_rule="storey"`` ``round(pi_c n_c)``, which
follows the estimated contamination but drops clean rows wherever the pool's clean images
differ a little from the reference's (their p-values are then not quite uniform).

Re-valuation after removal (``revalue`` rounds, off by default). The redundancy term ``a``
averages over a contaminated class: off-task clusters inflate it where they sit. Each round
recomputes ``a`` (pool and reference calibration alike) over the rows the estimated gate keeps,
then the p-values and the gate.

Everything is float64; kernel blocks are evaluated per class, in row chunks of bounded size.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from kairos_curate.valuation.bandwidth import resolve_bandwidth
from kairos_curate.valuation.base import ValuationInputs, ValuationMethod, register_method
from kairos_curate.valuation.distances import sq_dists
from kairos_curate.valuation.kairos import KairosParams
from kairos_curate.valuation.kernels import as_float64_matrix, check_same_dim
from kairos_curate.valuation.labels import encode_labels
from kairos_curate.valuation.result import ValuationResult

__all__ = [
    "LABEL_BANDWIDTH_GRID",
    "STOREY_LAMBDA",
    "CalibratedParams",
    "KairosCalibrated",
    "calibrated_values",
    "crossfit_label_statistics",
    "estimated_keep",
    "label_bandwidth",
    "label_statistics",
    "level_keep",
    "rbf",
    "silverman_bandwidth",
    "smoothed_loo_p",
    "smoothed_p",
    "smoothed_p_by_class",
    "sq_dists",
    "storey_clean_share",
    "witness_statistics",
]

#: Multiples of the median-heuristic sigma the label bandwidth is chosen from.
LABEL_BANDWIDTH_GRID = (0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0)
#: Storey's lambda: p-values above it are counted as clean.
STOREY_LAMBDA = 0.5
#: Bound on one float64 kernel chunk (bytes); small inputs are one chunk.
_CHUNK_BYTES = 64 * 2**20
_TINY = 1e-300  # keeps log() finite where every kernel value underflows


def rbf(a: np.ndarray, b: np.ndarray, sigma: float) -> np.ndarray:
    """RBF kernel matrix ``exp(-||a_i - b_j||^2 / (2 sigma^2))`` in float64."""
    return np.exp(-(1.0 / (2 * sigma * sigma)) * sq_dists(a, b))


def _scalar(v: Any) -> Any:
    """A numpy scalar as the Python scalar (class keys of the info dicts)."""
    return v.item() if isinstance(v, np.generic) else v


def _step(n_cols: int) -> int:
    """Rows per float64 chunk of ``n_cols`` columns within :data:`_CHUNK_BYTES`."""
    return max(1, _CHUNK_BYTES // (8 * max(n_cols, 1)))


# ----------------------------------------------------------------------------- statistics


def witness_statistics(
    x: np.ndarray,
    codes: np.ndarray,
    z: np.ndarray,
    ref_codes: np.ndarray,
    sigma: float,
    retained: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Class-conditional witness ``v = b - a`` of the pool and, leave-one-out, of the reference.

    Parameters
    ----------
    x, codes
        ``(N, d)`` pool embeddings (float64) and their class codes.
    z, ref_codes
        ``(M, d)`` reference embeddings and codes (every class with at least two points).
    sigma
        RBF bandwidth.
    retained
        Optional ``(N,)`` boolean mask: ``a`` (of pool and reference points alike) is the mean
        kernel to the class's *retained* pool points only (re-valuation after a gate).

    Returns
    -------
    v, ref_v
        ``(N,)`` ``b_i - a_i`` (``a`` without the self term) and ``(M,)`` the same for every
        reference point against the other reference points of its class and all of the class's
        (retained) pool points.
    """
    kept = np.ones(x.shape[0], dtype=bool) if retained is None else np.asarray(retained, dtype=bool)
    n, m = x.shape[0], z.shape[0]
    b = np.zeros(n)
    ra_sum = np.zeros(m)
    for start in range(0, n, _step(m)):
        rows = slice(start, start + _step(m))
        kxz = rbf(x[rows], z, sigma)
        cx = codes[rows]
        for c in np.unique(ref_codes):
            mr = ref_codes == c
            own = cx == c
            to_class = kxz[:, mr]
            b[start + np.flatnonzero(own)] = to_class.mean(1)[own]
            ra_sum[mr] += to_class[own & kept[rows]].sum(0)
    ref_b = np.zeros(m)
    ref_a = np.zeros(m)
    kzz = rbf(z, z, sigma)
    for c in np.unique(ref_codes):
        mr = ref_codes == c
        # leave-one-out: the point's own kernel value (1) is taken out of its class's mean
        ref_b[mr] = (kzz[:, mr][mr].sum(1) - 1.0) / (mr.sum() - 1)
        ref_a[mr] = ra_sum[mr] / max(int(((codes == c) & kept).sum()), 1)
    a = np.zeros(n)
    for c in np.unique(codes):
        members = np.flatnonzero(codes == c)
        xc = x[members[kept[members]]]
        step = _step(xc.shape[0])
        for start in range(0, members.size, step):
            block = members[start : start + step]
            # self term (1) left out: a clean point is not redundant with itself
            own = kept[block].astype(np.float64)
            sums = rbf(x[block], xc, sigma).sum(1) - own
            a[block] = sums / np.maximum(xc.shape[0] - own, 1.0)
    return b - a, ref_b - ref_a


def _loo_class_means(kzz: np.ndarray, ref_codes: np.ndarray, n_classes: int) -> np.ndarray:
    """``(M, C)`` mean kernel of each reference point to each reference class, itself left out
    (``kzz`` has a zero diagonal)."""
    return np.stack(
        [
            kzz[:, ref_codes == c].sum(1) / np.maximum((ref_codes == c).sum() - (ref_codes == c), 1)
            for c in range(n_classes)
        ],
        1,
    )


def label_bandwidth(
    z: np.ndarray, ref_codes: np.ndarray, sigma: float, grid: tuple[float, ...] = LABEL_BANDWIDTH_GRID
) -> float:
    """Bandwidth of the label statistic, chosen on the clean reference alone.

    The multiple ``g`` of ``sigma`` in ``grid`` that maximises the mean leave-one-out
    log-likelihood of the reference labels under the Parzen classifier
    ``p(c | z) = B_c(z) / sum_c' B_c'(z)`` (``B_c`` the mean kernel to the other reference points
    of class ``c``); the first of equal maxima. Returns ``g * sigma``.
    """
    d = sq_dists(z, z)
    n_classes = int(ref_codes.max()) + 1
    rows = np.arange(ref_codes.size)
    best, arg = -np.inf, 1.0
    for mult in grid:
        s = mult * sigma
        kzz = np.exp(-d / (2 * s * s))
        np.fill_diagonal(kzz, 0.0)
        means = _loo_class_means(kzz, ref_codes, n_classes)
        ll = np.mean(np.log(means[rows, ref_codes] + _TINY) - np.log(means.sum(1) + _TINY))
        if ll > best:
            best, arg = ll, mult
    return arg * sigma


def label_statistics(
    x: np.ndarray, codes: np.ndarray, z: np.ndarray, ref_codes: np.ndarray, sigma_label: float
) -> tuple[np.ndarray, np.ndarray]:
    """Kernel label posterior ``l = log B_c(x) - log sum_c' B_c'(x)`` of the shown class ``c``.

    Returns ``(N,)`` for the pool and ``(M,)`` for the reference, whose points leave themselves
    out of ``B``.
    """
    n_classes = int(ref_codes.max()) + 1
    lab = np.zeros(x.shape[0])
    for start in range(0, x.shape[0], _step(z.shape[0])):
        rows = slice(start, start + _step(z.shape[0]))
        kxz = rbf(x[rows], z, sigma_label)
        means = np.stack([kxz[:, ref_codes == c].mean(1) for c in range(n_classes)], 1)
        own = means[np.arange(means.shape[0]), codes[rows]]
        lab[rows] = np.log(own + _TINY) - np.log(means.sum(1) + _TINY)
    kzz = rbf(z, z, sigma_label)
    np.fill_diagonal(kzz, 0.0)
    means = _loo_class_means(kzz, ref_codes, n_classes)
    ref_lab = np.log(means[np.arange(ref_codes.size), ref_codes] + _TINY) - np.log(means.sum(1) + _TINY)
    return lab, ref_lab


def crossfit_label_statistics(
    x: np.ndarray,
    codes: np.ndarray,
    z: np.ndarray,
    ref_codes: np.ndarray,
    n_classes: int,
    *,
    n_folds: int = 5,
    pca_dim: int | None = 64,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Cross-fitted ``log p(c | x)`` of the shown class under a logistic regression on pool + reference.

    The pool (with its shown, possibly wrong labels) and the reference are pooled, optionally
    projected on the ``pca_dim`` principal components of that union (unsupervised), and split
    into ``n_folds`` folds stratified by label (seeded ``seed``); each point's probability
    comes from the model fitted on the other folds
    (:func:`~kairos_curate.valuation.confident_learning.cross_val_proba`), so a reference
    point's value is an honest draw of a clean point's.

    Returns ``(N,)`` for the pool and ``(M,)`` for the reference.
    """
    from threadpoolctl import threadpool_limits

    from kairos_curate.valuation.confident_learning import cross_val_proba

    feats = np.concatenate([x, z])
    labels = np.concatenate([codes, ref_codes])
    counts = np.bincount(labels, minlength=n_classes)
    if counts.min() < n_folds:
        raise ValueError(
            f"label_model='crossfit': a class has {int(counts.min())} pool + reference images, fewer "
            f"than its {n_folds} folds; use label_model='parzen'"
        )
    # Small dense fits: one BLAS thread is faster than oversubscribed cores (and order-stable).
    with threadpool_limits(1, user_api="blas"):
        if pca_dim is not None and 0 < int(pca_dim) < min(feats.shape):
            from sklearn.decomposition import PCA

            feats = PCA(n_components=int(pca_dim), svd_solver="randomized", random_state=seed).fit_transform(feats)
        proba = cross_val_proba(feats, labels, n_classes, n_folds=n_folds, seed=seed)
    own = np.log(proba[np.arange(labels.size), labels] + _TINY)
    return own[: x.shape[0]], own[x.shape[0] :]


# ----------------------------------------------------------------------------- calibration


def silverman_bandwidth(r: np.ndarray) -> float:
    """Silverman's rule ``0.9 min(sd, IQR / 1.34) n^(-1/5)`` (sd alone when the IQR is 0),
    at least ``1e-12``."""
    r = np.asarray(r, dtype=np.float64)
    sd = float(np.std(r, ddof=1)) if r.size > 1 else 0.0
    iqr = float(np.subtract(*np.percentile(r, [75, 25]))) / 1.34
    s = min(sd, iqr) if iqr > 0 else sd
    return max(0.9 * s * r.size ** (-0.2), 1e-12)


def smoothed_p(t: np.ndarray, calibration: np.ndarray) -> np.ndarray:
    """Smoothed conformal p-values of ``t`` against clean calibration values (higher = cleaner).

    ``p(t) = (1/2 + sum_j Phi((t - r_j) / h)) / (M + 1)`` with Silverman's ``h`` of the ``M``
    calibration values ``r_j``: continuous and increasing in ``t``, in ``(0, 1)``.
    """
    from scipy.special import ndtr

    t = np.asarray(t, dtype=np.float64)
    r = np.asarray(calibration, dtype=np.float64)
    h = silverman_bandwidth(r)
    out = np.empty(t.shape[0])
    step = _step(r.size)
    for start in range(0, t.shape[0], step):
        part = t[start : start + step]
        out[start : start + step] = (0.5 + ndtr((part[:, None] - r[None, :]) / h).sum(1)) / (r.size + 1)
    return out


def smoothed_p_by_class(
    t: np.ndarray, codes: np.ndarray, calibration: np.ndarray, calibration_codes: np.ndarray
) -> np.ndarray:
    """:func:`smoothed_p` of every pool statistic against the calibration values of its class."""
    out = np.ones(t.shape[0])
    for c in np.unique(codes):
        mask = codes == c
        out[mask] = smoothed_p(t[mask], calibration[calibration_codes == c])
    return out


def smoothed_loo_p(calibration: np.ndarray, calibration_codes: np.ndarray) -> np.ndarray:
    """Each calibration value's :func:`smoothed_p` against the *other* values of its class."""
    out = np.ones(calibration.shape[0])
    for c in np.unique(calibration_codes):
        idx = np.flatnonzero(calibration_codes == c)
        values = calibration[idx]
        for j, i in enumerate(idx):
            out[i] = smoothed_p(values[j : j + 1], np.delete(values, j))[0]
    return out


def storey_clean_share(p: np.ndarray, codes: np.ndarray, n_classes: int, lam: float = STOREY_LAMBDA) -> np.ndarray:
    """Storey's estimate of each class's clean share ``#{p > lam} / ((1 - lam) n_c)``, at most 1
    (1 for a class without points): p-values of clean points are uniform, bad points' are small."""
    out = np.ones(n_classes)
    for c in range(n_classes):
        mask = codes == c
        if mask.any():
            out[c] = min(1.0, float((p[mask] > lam).mean()) / (1 - lam))
    return out


def estimated_keep(share: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Per class code, how many Storey's gate keeps: ``round(pi_c n_c)``."""
    counts = np.bincount(codes, minlength=share.size)
    return np.asarray([round(float(share[c] * counts[c])) for c in range(share.size)], dtype=np.int64)


def level_keep(p: np.ndarray, codes: np.ndarray, n_classes: int, level: float) -> np.ndarray:
    """Per class code, how many p-values exceed ``level`` (the conformal gate's size)."""
    return np.bincount(codes[p > level], minlength=n_classes).astype(np.int64)


# ----------------------------------------------------------------------------- the method


def _combined_p(
    v: np.ndarray,
    ref_v: np.ndarray,
    p_label: np.ndarray,
    ref_lab: np.ndarray,
    codes: np.ndarray,
    ref_codes: np.ndarray,
    gates: str,
    combine: str = "calibrated_min",
) -> tuple[np.ndarray, np.ndarray]:
    """The feature p-value and the value of ``gates`` (the label p-value is fixed)."""
    p_feature = smoothed_p_by_class(v, codes, ref_v, ref_codes)
    if gates == "feature":
        return p_feature, p_feature
    if gates == "label":
        return p_feature, p_label
    if combine == "min":  # a row must pass each gate on its own
        return p_feature, np.minimum(p_feature, p_label)
    # the worse of the two gates, calibrated again: a clean point's minimum is not uniform
    ref_min = np.minimum(smoothed_loo_p(ref_v, ref_codes), smoothed_loo_p(ref_lab, ref_codes))
    return p_feature, smoothed_p_by_class(np.minimum(p_feature, p_label), codes, ref_min, ref_codes)


def _kept_rows(p: np.ndarray, codes: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Boolean mask of the ``keep[c]`` highest p-values of every class (ties: lower row first)."""
    kept = np.zeros(p.shape[0], dtype=bool)
    for c in np.unique(codes):
        members = np.flatnonzero(codes == c)
        order = members[np.argsort(-p[members], kind="stable")]
        kept[order[: int(keep[c])]] = True
    return kept


def calibrated_values(
    pool: Any,
    reference: Any,
    pool_labels: Any,
    reference_labels: Any,
    *,
    bandwidth: float | str = "median",
    gates: Literal["both", "feature", "label"] = "both",
    label_model: Literal["parzen", "crossfit"] = "parzen",
    revalue: int = 0,
    keep_rule: Literal["level", "storey"] = "level",
    level: float = 0.1,
    combine: Literal["calibrated_min", "min"] = "calibrated_min",
    seed: int = 0,
) -> ValuationResult:
    """Calibrated KAIROS evidence of every pool point (see the module docs).

    Parameters
    ----------
    pool, reference
        ``(N, d)`` pool and ``(M, d)`` clean reference embeddings.
    pool_labels, reference_labels
        One label per row; every pool class needs at least two reference points (the
        calibration leaves one out).
    bandwidth
        RBF sigma of the feature statistic, or ``"median"``; the label statistic's bandwidth
        is a multiple of it chosen on the reference (:func:`label_bandwidth`).
    gates
        ``"both"`` (calibrated minimum of the two p-values), ``"feature"`` or ``"label"``.
    label_model
        The label statistic: ``"parzen"`` (kernel posterior of the reference) or ``"crossfit"``
        (logistic regression on pool + reference, out of fold; every class needs at least 5
        pool + reference images).
    revalue
        Rounds of re-valuation after removal: the witness's redundancy term ``a`` (of pool and
        reference alike) is recomputed over the rows the estimated gate keeps, then the p-values
        and the gate; 0 = none. The label statistic does not depend on the pool's rows and stays.
    keep_rule, level
        The gate's size per class (``info["keep_counts"]``): ``"level"`` = the rows whose p-value
        exceeds ``level`` (in ``(0, 1)``), ``"storey"`` = ``round(pi_c n_c)``.
    combine
        ``gates="both"`` only: ``"calibrated_min"`` (the minimum of the two p-values calibrated
        again against the reference's leave-one-out minima) or ``"min"`` (the plain minimum: the
        level gate then needs each p-value above ``level``; no longer uniform on clean rows, so
        Storey's share reads low).
    seed
        Seed of the median heuristic's pair sample (and of ``crossfit``'s folds and PCA).

    Returns
    -------
    ValuationResult
        ``values``: the (combined) p-value, higher = cleaner; terms ``witness``,
        ``label_statistic``, ``p_feature``, ``p_label``; info ``bandwidth``,
        ``label_bandwidth`` (``parzen``), ``label_model``, ``gates``, ``keep_rule``, ``level``,
        ``clean_share`` (class -> Storey's pi) and ``keep_counts`` (class -> rows the gate keeps).

    Raises
    ------
    ValueError
        Missing labels, pool classes absent from the reference, a class with fewer than two
        reference points, bad embeddings or bandwidth, unknown ``gates`` or ``label_model``.
    """
    if gates not in ("both", "feature", "label"):
        raise ValueError(f"gates must be 'both', 'feature' or 'label', got {gates!r}")
    if label_model not in ("parzen", "crossfit"):
        raise ValueError(f"label_model must be 'parzen' or 'crossfit', got {label_model!r}")
    if combine not in ("calibrated_min", "min"):
        raise ValueError(f"combine must be 'calibrated_min' or 'min', got {combine!r}")
    if keep_rule not in ("level", "storey"):
        raise ValueError(f"keep_rule must be 'level' or 'storey', got {keep_rule!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1) (a p-value threshold, e.g. 0.1), got {level!r}")
    if int(revalue) != revalue or revalue < 0:
        raise ValueError(f"revalue must be a whole number of rounds >= 0, got {revalue!r}")
    if pool_labels is None or reference_labels is None:
        raise ValueError(
            "kairos_calibrated needs pool_labels and reference_labels (it calibrates each class "
            "against its own reference images); give both, or use kairos_feature without labels"
        )
    x = as_float64_matrix(pool, "pool")
    z = as_float64_matrix(reference, "reference")
    check_same_dim(x.shape[1], z.shape[1])
    codes, ref_codes, classes = encode_labels(pool_labels, reference_labels, x.shape[0], z.shape[0])
    ref_counts = np.bincount(ref_codes, minlength=classes.size)
    if ref_counts.min() < 2:
        small = classes[int(ref_counts.argmin())]
        raise ValueError(
            f"reference class {_scalar(small)!r} has {int(ref_counts.min())} image(s); "
            "kairos_calibrated calibrates on the reference leaving one out, so every class needs "
            "at least 2 reference images"
        )
    sigma = resolve_bandwidth(bandwidth, x, z, seed)
    v, ref_v = witness_statistics(x, codes, z, ref_codes, sigma)
    sigma_label = float("nan")
    if label_model == "parzen":
        sigma_label = label_bandwidth(z, ref_codes, sigma)
        lab, ref_lab = label_statistics(x, codes, z, ref_codes, sigma_label)
    else:
        lab, ref_lab = crossfit_label_statistics(x, codes, z, ref_codes, classes.size, seed=seed)
    p_label = smoothed_p_by_class(lab, codes, ref_lab, ref_codes)
    p_feature, p = _combined_p(v, ref_v, p_label, ref_lab, codes, ref_codes, gates, combine)

    def gate(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        share = storey_clean_share(p, codes, classes.size)
        if keep_rule == "storey":
            return share, estimated_keep(share, codes)
        return share, level_keep(p, codes, classes.size, level)

    share, keep = gate(p)
    for _ in range(int(revalue)):
        v, ref_v = witness_statistics(x, codes, z, ref_codes, sigma, retained=_kept_rows(p, codes, keep))
        p_feature, p = _combined_p(v, ref_v, p_label, ref_lab, codes, ref_codes, gates, combine)
        share, keep = gate(p)
    labels = [_scalar(c) for c in classes]
    return ValuationResult(
        method="kairos_calibrated",
        values=p,
        labels=np.asarray(pool_labels),
        params={
            "bandwidth": bandwidth,
            "gates": gates,
            "label_model": label_model,
            "revalue": int(revalue),
            "keep_rule": keep_rule,
            "level": float(level),
            "combine": combine,
        },
        terms={"witness": v, "label_statistic": lab, "p_feature": p_feature, "p_label": p_label},
        info={
            "bandwidth": float(sigma),
            "label_bandwidth": float(sigma_label),
            "label_mode": "calibrated",
            "label_model": label_model,
            "gates": gates,
            "keep_rule": keep_rule,
            "level": float(level),
            "clean_share": {c: float(s) for c, s in zip(labels, share, strict=True)},
            "keep_counts": {c: int(n) for c, n in zip(labels, keep, strict=True)},
            "n_keep": int(keep.sum()),
        },
    )


class CalibratedParams(KairosParams):
    """``kairos_calibrated``'s parameters."""

    #: ``both`` (calibrated minimum of the feature and label p-values), ``feature`` or ``label``.
    gates: Literal["both", "feature", "label"] = "both"
    #: The label statistic: ``parzen`` (reference kernel posterior) or ``crossfit`` (pool + reference logistic regression).
    label_model: Literal["parzen", "crossfit"] = "parzen"
    #: Rounds of re-valuation after removal (the witness recomputed over the gate's kept rows).
    revalue: int = 0
    #: The gate's size: rows with p-value above ``level`` (``level``), or Storey's ``round(pi_c n_c)``.
    keep_rule: Literal["level", "storey"] = "level"
    #: ``keep_rule="level"``: the p-value a row must exceed to stay.
    level: float = 0.1
    #: ``gates="both"``: ``calibrated_min`` (the two p-values' minimum, calibrated again) or ``min``.
    combine: Literal["calibrated_min", "min"] = "calibrated_min"


@register_method
class KairosCalibrated(ValuationMethod):
    """KAIROS witness and kernel label posterior as reference-calibrated p-values (higher = cleaner)."""

    name = "kairos_calibrated"
    description = "KAIROS witness + label posterior, conformal p-values calibrated on the reference"
    family = "kairos"
    Params = CalibratedParams

    def fit(self, inputs: ValuationInputs) -> ValuationResult:
        """Calibrated p-values of the pool (see :func:`calibrated_values`)."""
        return calibrated_values(
            inputs.pool,
            inputs.reference,
            inputs.pool_labels,
            inputs.reference_labels,
            bandwidth=self.params.bandwidth,
            gates=self.params.gates,
            label_model=self.params.label_model,
            revalue=self.params.revalue,
            keep_rule=self.params.keep_rule,
            level=self.params.level,
            combine=self.params.combine,
            seed=inputs.seed,
        )
