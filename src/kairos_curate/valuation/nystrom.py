"""KAIROS for pools beyond exact reach: a Nyström sketch whose sums merge across shards.

With ``m`` landmarks ``L`` (half drawn from the reference, half from the pool by seeded
D^2 (k-means++) sampling), the kernel is replaced by its Nyström approximation
``k~(x, y) = k(x, L) K_LL^+ k(L, y)``, where ``K_LL^+`` is the pseudo-inverse of the landmark
kernel matrix (float64 eigendecomposition; eigenvalues below ``rcond * max`` dropped). Then

* ``a_i ~ k(x_i, L) K_LL^+ s / N`` with ``s = sum_k k(L, x_k)``,
* ``b_i ~ k(x_i, L) K_LL^+ t / M`` with ``t = sum_j k(L, z_j)`` (or exact with ``exact_b``),

so the pool enters only through the ``m``-vector ``s``, a sum over shards: pass 1 adds each
shard's column sums, pass 2 takes one product per row; ``O(N m d + m^3)`` instead of
``O(N^2 d)``. In ``class_conditional`` mode the same landmarks give per-class sums ``s_c``,
``t_c``. :meth:`NystromKairosState.update` only adds to the sums (new points arriving), and
:meth:`~NystromKairosState.result` runs pass 2 over all shards: every ``a_i`` depends on the
whole pool, so old points' values change, as they do exactly. With the local engine the
pass-1 kernel rows are kept in memory when they fit in ``feature_cache_bytes``, so that pass 2
costs only the products.

Error bound (a posteriori, rigorous up to float rounding). ``k~`` is the RKHS projection of
``k`` onto the span of the landmark features, so the residual kernel ``k - k~`` is positive
semi-definite and Cauchy-Schwarz gives ``|k(x, y) - k~(x, y)| <= sqrt(r(x) r(y))`` with
``r(x) = 1 - k~(x, x)`` (RBF: ``k(x, x) = 1``). Hence, for every pool point,

``|a~_i - a_i| <= sqrt(r_i) mean_k sqrt(r_k)``, ``|b~_i - b_i| <= sqrt(r_i) mean_j sqrt(r(z_j))``

and ``|v~_i - v_i|`` is at most their sum (plus ``1e-6`` for the float32 rounding of the
kernel tiles, which the bound does not model). ``bounds=True`` computes ``r`` for every point
(an extra ``O(N m^2)``) and returns the per-point bound in ``result.info["value_bound"]``.
Measured accuracy (``benchmarks/bench_scale.py``, ``reports/benchmarks/scale.md``) chose the
method and the default ``m``: random Fourier features need ``D`` in the thousands for a
Spearman of 0.97, Nyström reaches 0.99+ with ``m`` = 1,000.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from kairos_curate.valuation.bandwidth import resolve_bandwidth
from kairos_curate.valuation.kernels import (
    DEFAULT_MEMORY_BUDGET,
    PRECISIONS,
    as_float_matrix,
    check_same_dim,
    cross_sums,
    kernel_matrix,
)
from kairos_curate.valuation.result import ValuationResult
from kairos_curate.valuation.sharded import DEFAULT_SHARD_SIZE, LabelBook, SpaceSpec, self_task

__all__ = [
    "DEFAULT_LANDMARKS",
    "NystromKairosState",
    "nystrom_kairos_values",
    "select_landmarks",
]

#: Default number of landmarks (chosen by the accuracy measured in bench_scale.py).
DEFAULT_LANDMARKS = 1000
_ROWS = 2048  # rows of one kernel block inside a task
#: Added to the bound for the float32 rounding of the kernel tiles (a few float32 ulps of 1).
_ROUNDING_SLACK = 1e-6


def select_landmarks(
    pool: Any,
    reference: Any,
    n_landmarks: int = DEFAULT_LANDMARKS,
    *,
    reference_share: float = 0.5,
    method: str = "kmeans++",
    sample_size: int | None = None,
    rounds: int = 8,
    seed: int = 0,
) -> np.ndarray:
    """Landmarks: a seeded sample of the reference plus pool points chosen by D^2 sampling.

    Parameters
    ----------
    pool, reference
        ``(N, d)`` and ``(M, d)`` embeddings.
    n_landmarks
        Total landmarks ``m``.
    reference_share
        Fraction of ``m`` drawn (without replacement) from the reference (all of it if smaller).
    method
        ``"kmeans++"``: the pool part by D^2 sampling (k-means++ seeding, in ``rounds`` batches)
        over a uniform sample of ``sample_size`` pool rows (default ``8 m``), with the reference
        landmarks as initial centres, so pool landmarks go where the reference is not;
        ``"random"``: a uniform sample of the pool.
    seed
        Seed of every draw.

    Returns
    -------
    numpy.ndarray
        ``(m', d)`` float64 landmarks, reference part first (``m' <= m`` for tiny inputs).
    """
    x = as_float_matrix(pool, "pool")
    z = as_float_matrix(reference, "reference")
    check_same_dim(x.shape[1], z.shape[1])
    if int(n_landmarks) < 1:
        raise ValueError(f"n_landmarks must be a positive integer, got {n_landmarks}")
    if not 0.0 <= reference_share <= 1.0:
        raise ValueError(f"reference_share must lie in [0, 1], got {reference_share}")
    if method not in ("kmeans++", "random"):
        raise ValueError(f"landmark method must be 'kmeans++' or 'random', got {method!r}")
    rng = np.random.default_rng(seed)
    m = int(n_landmarks)
    m_ref = min(z.shape[0], round(m * reference_share))
    m_pool = min(x.shape[0], m - m_ref)
    lz = z[np.sort(rng.choice(z.shape[0], m_ref, replace=False))].astype(np.float64)
    if m_pool == 0:
        return lz
    if method == "random":
        return np.vstack([lz, x[np.sort(rng.choice(x.shape[0], m_pool, replace=False))]])
    size = min(x.shape[0], int(sample_size) if sample_size else 8 * m_pool)
    cand = torch.from_numpy(x[np.sort(rng.choice(x.shape[0], size, replace=False))].astype(np.float32))
    sq = (cand * cand).sum(1)

    def dist2(centres: torch.Tensor) -> torch.Tensor:
        d2 = sq[:, None] - 2.0 * cand @ centres.T + (centres * centres).sum(1)[None, :]
        return d2.clamp_(min=0.0).min(dim=1).values

    if m_ref:
        d2 = dist2(torch.from_numpy(lz.astype(np.float32)))
    else:
        first = int(rng.integers(size))
        d2 = dist2(cand[first : first + 1])
        d2[first] = 0.0
    chosen: list[int] = [] if m_ref else [first]
    per_round = max(1, math.ceil((m_pool - len(chosen)) / max(1, rounds)))
    while len(chosen) < m_pool:
        p = d2.numpy().astype(np.float64)
        p[chosen] = 0.0
        k = min(per_round, m_pool - len(chosen), int((p > 0).sum()))
        if k == 0:  # the rest are exact duplicates of chosen points
            rest = np.setdiff1d(np.arange(size), chosen)[: m_pool - len(chosen)]
            chosen.extend(int(i) for i in rest)
            break
        pick = rng.choice(size, k, replace=False, p=p / p.sum())
        chosen.extend(int(i) for i in pick)
        d2 = torch.minimum(d2, dist2(cand[torch.from_numpy(pick)]))
    return np.vstack([lz, cand[torch.tensor(chosen)].numpy().astype(np.float64)])


def _rbf64(a: np.ndarray, b: np.ndarray, sigma: float) -> np.ndarray:
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    d2 = (ta * ta).sum(1)[:, None] + (tb * tb).sum(1)[None, :] - 2.0 * ta @ tb.T
    return torch.exp(-d2.clamp_(min=0.0) / (2.0 * sigma**2)).numpy()


def landmark_sums_task(
    spec: SpaceSpec,
    x: np.ndarray,
    codes: np.ndarray | None,
    landmarks: np.ndarray,
    n_classes: int,
    keep_rows: bool,
) -> dict[str, Any]:
    """Pass 1 on one shard: ``sum_k k(L, x_k)`` (per class too) and optionally ``k(x, L)``."""
    space = spec.space()
    p, pl = space.prepare(x), space.prepare(landmarks)
    m = landmarks.shape[0]
    cols = torch.zeros(m, dtype=torch.float64, device=space.device)
    cols_cc = torch.zeros((n_classes, m), dtype=torch.float64, device=space.device) if codes is not None else None
    kept = []
    onehot = None
    if codes is not None:
        onehot = torch.zeros((x.shape[0], n_classes), dtype=torch.float32, device=space.device)
        onehot[torch.arange(x.shape[0]), torch.from_numpy(codes).to(space.device)] = 1.0
    for s in range(0, x.shape[0], _ROWS):
        g = kernel_matrix(space, (p[0][s : s + _ROWS], p[1][s : s + _ROWS]), pl)
        cols += g.sum(0, dtype=torch.float64)
        if cols_cc is not None and onehot is not None:
            cols_cc += (onehot[s : s + _ROWS].T @ g).double()  # <= 2048 positive terms
        if keep_rows:
            kept.append(g.cpu())
    out: dict[str, Any] = {"cols": cols.cpu().numpy()}
    if cols_cc is not None:
        out["cols_cc"] = cols_cc.cpu().numpy()
    if keep_rows:
        out["rows"] = torch.cat(kept).numpy()
    return out


def landmark_dots_task(
    spec: SpaceSpec,
    x: np.ndarray,
    landmarks: np.ndarray,
    weights: np.ndarray,
    features: np.ndarray | None,
    cached_rows: np.ndarray | None,
    reference: np.ndarray | None,
) -> dict[str, np.ndarray]:
    """Pass 2 on one shard: ``k(x, L) @ weights``, the residuals if ``features`` is given
    (``r = 1 - ||k(x, L) @ features||^2``), and exact reference sums if ``reference`` is given."""
    space = spec.space()
    w = torch.from_numpy(weights)
    f = None if features is None else torch.from_numpy(features)
    p = space.prepare(x) if cached_rows is None or reference is not None else None
    pl = None if cached_rows is not None else space.prepare(landmarks)
    dots, resid = [], []
    for s in range(0, x.shape[0], _ROWS):
        if cached_rows is not None:
            g = torch.from_numpy(cached_rows[s : s + _ROWS]).double()
        else:
            assert pl is not None and p is not None
            g = kernel_matrix(space, (p[0][s : s + _ROWS], p[1][s : s + _ROWS]), pl).double().cpu()
        dots.append(g @ w)
        if f is not None:
            phi = g @ f
            resid.append((1.0 - (phi * phi).sum(1)).clamp_(min=0.0))
    out = {"dots": torch.cat(dots).numpy()}
    if f is not None:
        out["residual"] = torch.cat(resid).numpy()
    if reference is not None:
        assert p is not None
        out["b_exact"] = cross_sums(space, p, space.prepare(reference))[0]
    return out


class NystromKairosState:
    """Nyström-sketched KAIROS sums over a sharded, growing pool (see module docs).

    Parameters
    ----------
    reference
        ``(M, d)`` reference embeddings.
    bandwidth
        RBF sigma.
    landmarks
        ``(m, d)`` landmarks (e.g. from :func:`select_landmarks`); fixed for the state's life.
    reference_labels, label_mode, lam, combine
        As in :func:`kairos_curate.valuation.kairos_values`.
    engine
        Engine for the shard tasks (default local).
    shard_size
        Rows per shard.
    rcond
        Relative eigenvalue cut-off of ``K_LL^+``.
    exact_b
        Compute ``b`` exactly (``O(N M d)``) instead of through the landmarks.
    bounds
        Also compute the a-posteriori error bound of every value (extra ``O(N m^2)``).
    feature_cache_bytes
        Local engine: keep pass-1 kernel rows up to this many bytes so pass 2 skips them.
    device, precision, memory_budget_bytes
        Tile-engine settings of the tasks.
    """

    def __init__(
        self,
        reference: Any,
        bandwidth: float,
        landmarks: Any,
        *,
        reference_labels: Any = None,
        label_mode: str | None = None,
        lam: float = 0.97,
        combine: str = "weighted",
        engine: Any = None,
        shard_size: int = DEFAULT_SHARD_SIZE,
        rcond: float = 1e-7,
        exact_b: bool = False,
        bounds: bool = False,
        feature_cache_bytes: int = 1 << 30,
        device: str = "auto",
        precision: str = "fp32",
        memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
        num_gpus: float | None = None,
    ) -> None:
        from kairos_curate.engine import get_engine

        z = np.ascontiguousarray(as_float_matrix(reference, "reference"))
        lm = np.ascontiguousarray(as_float_matrix(landmarks, "landmarks"), dtype=np.float64)
        check_same_dim(lm.shape[1], z.shape[1], pool_name="landmarks")
        sigma = float(bandwidth)
        if not (math.isfinite(sigma) and sigma > 0):
            raise ValueError(f"bandwidth must be a positive finite number, got {bandwidth!r}")
        if int(shard_size) < 1:
            raise ValueError(f"shard_size must be a positive integer, got {shard_size}")
        if not 0.0 < rcond < 1.0:
            raise ValueError(f"rcond must lie in (0, 1), got {rcond}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.book = LabelBook(z, reference_labels, label_mode, lam, combine)
        self.engine = get_engine(engine)
        self.label_mode = label_mode
        self.bandwidth = sigma
        self.shard_size = int(shard_size)
        self.exact_b = bool(exact_b)
        self.bounds = bool(bounds)
        self.dim = z.shape[1]
        self.n_reference = z.shape[0]
        self.spec = SpaceSpec(
            sigma,
            z.mean(axis=0, dtype=np.float64),
            str(device),
            int(memory_budget_bytes),
            None,
            precision,
        )
        self.num_gpus = (1.0 if self.engine.n_gpus() > 0 else 0.0) if num_gpus is None else float(num_gpus)
        self.landmarks = lm
        # K_LL^+ = U U^T with U = V_r / sqrt(w_r); phi(x) = k(x, L) U is the feature map
        k_ll = _rbf64(lm, lm, sigma)
        evals, evecs = np.linalg.eigh(0.5 * (k_ll + k_ll.T))
        keep = evals > rcond * evals.max()
        self.rank = int(keep.sum())
        self._features = evecs[:, keep] / np.sqrt(evals[keep])
        self._cache_left = int(feature_cache_bytes) if self.engine.name == "local" else 0
        self._lm = self.engine.put(lm)
        self._z = z.astype(np.float64)
        self._ref = self.engine.put(z)
        self.n_classes = 0 if self.book.classes is None else len(self.book.classes)
        conditional = label_mode == "class_conditional"
        ref_codes = self.book.reference_codes if conditional else None
        ref_pass, ref_self = (
            self.engine.map(
                landmark_sums_task,
                [(self.spec, self._ref, ref_codes, self._lm, self.n_classes, False)],
            )[0],
            self.engine.map(self_task, [(self.spec, self._ref, ref_codes)])[0],
        )
        self._t = ref_pass["cols"]
        self._t_cc = ref_pass.get("cols_cc")
        self._c_mean = float(ref_self["rows"].sum()) / z.shape[0] ** 2
        self._c_cc: np.ndarray | None = None
        if conditional:
            assert ref_codes is not None
            counts = np.bincount(ref_codes, minlength=self.n_classes)
            self._c_cc = np.bincount(ref_codes, weights=ref_self["rows_cc"], minlength=self.n_classes) / counts**2
        self._s = np.zeros(lm.shape[0])
        self._s_cc = np.zeros((self.n_classes, lm.shape[0]))
        self._shards: list[Any] = []
        self._rows: list[np.ndarray | None] = []
        self._sizes: list[int] = []

    @classmethod
    def from_pool(
        cls,
        pool: Any,
        reference: Any,
        bandwidth: float | str = "median",
        *,
        pool_labels: Any = None,
        n_landmarks: int = DEFAULT_LANDMARKS,
        landmark_method: str = "kmeans++",
        reference_share: float = 0.5,
        seed: int = 0,
        **kwargs: Any,
    ) -> NystromKairosState:
        """Median bandwidth (if asked), landmarks from ``pool`` and ``reference``, then add ``pool``."""
        x = as_float_matrix(pool, "pool")
        z = as_float_matrix(reference, "reference")
        check_same_dim(x.shape[1], z.shape[1])
        sigma = resolve_bandwidth(bandwidth, x, z, seed)
        lm = select_landmarks(x, z, n_landmarks, reference_share=reference_share, method=landmark_method, seed=seed)
        return cls(z, sigma, lm, **kwargs).update(x, pool_labels)

    @property
    def n_pool(self) -> int:
        """Number of pool points added so far."""
        return int(sum(self._sizes))

    def update(self, new_pool_points: Any, new_labels: Any = None) -> NystromKairosState:
        """Add pool points: pass 1 (landmark column sums) over their shards; returns ``self``."""
        x = as_float_matrix(new_pool_points, "pool")
        check_same_dim(x.shape[1], self.dim)
        codes = self.book.add(x, new_labels, self.n_pool)
        conditional = self.label_mode == "class_conditional"
        calls = []
        for start in range(0, x.shape[0], self.shard_size):
            part = np.ascontiguousarray(x[start : start + self.shard_size])
            handle = self.engine.put(part)
            keep = self._cache_left >= part.shape[0] * self.landmarks.shape[0] * 4
            if keep:
                self._cache_left -= part.shape[0] * self.landmarks.shape[0] * 4
            part_codes = codes[start : start + part.shape[0]] if conditional and codes is not None else None
            calls.append((self.spec, handle, part_codes, self._lm, self.n_classes, keep))
            self._shards.append(handle)
            self._sizes.append(part.shape[0])
        for out in self.engine.map(landmark_sums_task, calls, num_gpus=self.num_gpus):
            self._s += out["cols"]
            if conditional:
                self._s_cc += out["cols_cc"]
            self._rows.append(out.get("rows"))
        return self

    def result(self) -> ValuationResult:
        """Pass 2: the :class:`ValuationResult` of the pool so far (``backend == "nystrom"``).

        ``extra`` holds ``n_landmarks``, ``rank`` (eigenvalues kept), ``exact_b`` and, with
        ``bounds=True``, ``value_bound`` (per-point bound on ``|v~ - v|``, label-blind value)
        and ``value_bound_cc`` (class-conditional value).
        """
        n = self.n_pool
        if n == 0:
            raise ValueError("pool is empty; add points with update() first")
        u = self._features
        cols = [self._s / n, self._t / self.n_reference]
        conditional = self.label_mode == "class_conditional"
        codes = self.book.all_codes()
        if conditional:
            assert self.book.reference_codes is not None and self._t_cc is not None
            pool_counts = np.bincount(codes, minlength=self.n_classes)
            ref_counts = np.bincount(self.book.reference_codes, minlength=self.n_classes)
            cols += list(self._s_cc / np.maximum(pool_counts, 1)[:, None])
            cols += list(self._t_cc / ref_counts[:, None])
        weights = u @ (u.T @ np.stack(cols, axis=1))
        feats = u if self.bounds else None
        calls = [
            (self.spec, h, self._lm, weights, feats, rows, self._ref if self.exact_b else None)
            for h, rows in zip(self._shards, self._rows, strict=True)
        ]
        outs = self.engine.map(landmark_dots_task, calls, num_gpus=self.num_gpus)
        dots = np.concatenate([o["dots"] for o in outs])
        a, b = dots[:, 0], dots[:, 1]
        if self.exact_b:
            b = np.concatenate([o["b_exact"] for o in outs]) / self.n_reference
        extra: dict[str, Any] = {
            "engine": self.engine.name,
            "n_landmarks": int(self.landmarks.shape[0]),
            "rank": self.rank,
            "exact_b": self.exact_b,
            "shards": len(self._shards),
        }
        kw: dict[str, Any] = {}
        if conditional:
            c = self.n_classes
            rows = np.arange(n)
            kw = dict(
                a_cc=dots[rows, 2 + codes],
                b_cc=dots[rows, 2 + c + codes],
                c_cc=self._c_cc,
            )
        if self.bounds:
            resid = np.concatenate([o["residual"] for o in outs])
            root = np.sqrt(resid)
            phi_ref = _rbf64(self._z, self.landmarks, self.bandwidth) @ u
            root_ref = np.sqrt(np.clip(1.0 - (phi_ref * phi_ref).sum(1), 0.0, None))
            b_term = 0.0 if self.exact_b else root * root_ref.mean()
            slack = _ROUNDING_SLACK
            extra["value_bound"] = root * root.mean() + b_term + slack
            extra["residual_mean"] = float(resid.mean())
            if conditional:
                assert self.book.reference_codes is not None
                mean_root = np.bincount(codes, weights=root, minlength=self.n_classes) / np.maximum(
                    np.bincount(codes, minlength=self.n_classes), 1
                )
                rc = self.book.reference_codes
                mean_ref = np.bincount(rc, weights=root_ref, minlength=self.n_classes) / np.bincount(
                    rc, minlength=self.n_classes
                )
                extra["value_bound_cc"] = (
                    root * mean_root[codes] + (0.0 if self.exact_b else root * mean_ref[codes]) + slack
                )
        return self.book.assemble(
            b=b,
            a=a,
            c_mean=self._c_mean,
            bandwidth=self.bandwidth,
            backend="nystrom",
            extra=extra,
            **kw,
        )


def nystrom_kairos_values(
    pool: Any,
    reference: Any,
    bandwidth: float | str = "median",
    *,
    n_landmarks: int = DEFAULT_LANDMARKS,
    landmark_method: str = "kmeans++",
    reference_share: float = 0.5,
    pool_labels: Any = None,
    reference_labels: Any = None,
    label_mode: str | None = None,
    lam: float = 0.97,
    combine: str = "weighted",
    engine: Any = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    exact_b: bool = False,
    bounds: bool = False,
    device: str = "auto",
    seed: int = 0,
) -> ValuationResult:
    """Approximate :func:`~kairos_curate.valuation.kairos_values` with a Nyström sketch.

    Parameters are those of :func:`~kairos_curate.valuation.kairos_values` plus
    ``n_landmarks``, ``landmark_method``, ``reference_share`` (see :func:`select_landmarks`),
    ``engine``, ``shard_size``, ``exact_b`` and ``bounds`` (see :class:`NystromKairosState`).
    ``res.backend == "nystrom"``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> res = nystrom_kairos_values(rng.normal(size=(300, 8)), rng.normal(size=(50, 8)),
    ...                             n_landmarks=64, device="cpu")
    >>> res.method, res.values.shape
    ('nystrom', (300,))
    """
    return NystromKairosState.from_pool(
        pool,
        reference,
        bandwidth,
        pool_labels=pool_labels,
        n_landmarks=n_landmarks,
        landmark_method=landmark_method,
        reference_share=reference_share,
        seed=seed,
        reference_labels=reference_labels,
        label_mode=label_mode,
        lam=lam,
        combine=combine,
        engine=engine,
        shard_size=shard_size,
        exact_b=exact_b,
        bounds=bounds,
        device=device,
    ).result()
