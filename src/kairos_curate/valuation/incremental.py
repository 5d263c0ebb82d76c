"""Incremental KAIROS: append pool points and keep every kernel sum exact.

:class:`KairosState` keeps, for every pool point, the float64 *sums* ``sum_j k(x_i, z_j)`` and
``sum_k k(x_i, x_k)`` (and their class-conditional versions). Appending ``n`` points costs one
pass over ``n x (N + n + M)`` kernel entries: the new rows against the old pool (whose column
sums update the old points), the new points among themselves (upper block triangle) and the new
points against the reference. :meth:`KairosState.result` then equals a full recompute with the
same bandwidth up to float32 rounding of the kernel tiles. The full computation
(:func:`kairos_curate.valuation.kairos_values`) is this state fed with the whole pool at once.

The bandwidth and the centring vector (the reference mean) are fixed when the state is created.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from kairos_curate.valuation.bandwidth import resolve_bandwidth
from kairos_curate.valuation.kernels import (
    DEFAULT_MEMORY_BUDGET,
    KernelSpace,
    as_float_matrix,
    check_same_dim,
    cross_sums,
    self_sums,
)
from kairos_curate.valuation.labels import (
    COMBINE_MODES,
    encode_pool,
    encode_reference,
    fit_reference_classifier,
    residual_norms,
)
from kairos_curate.valuation.result import LABEL_MODES, ValuationResult, assemble_result

__all__ = ["KairosState"]

Prepared = tuple[torch.Tensor, torch.Tensor]


def _progress_bar(enabled: bool, total: int, desc: str) -> Any:
    if not enabled or total <= 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="k", unit_scale=True, leave=False)


class KairosState:
    """Running KAIROS sums for a growing pool valued against a fixed reference.

    Parameters
    ----------
    reference
        ``(M, d)`` reference embeddings (array or tensor).
    bandwidth
        RBF sigma (positive float). Use :meth:`from_pool` for the median heuristic.
    reference_labels
        One label per reference row (needed by the label modes).
    label_mode
        ``None``, ``"residual"`` or ``"class_conditional"``.
    lam, combine
        Residual mode weighting (see :mod:`kairos_curate.valuation.labels`).
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    block_size
        Tile edge; default from ``memory_budget_bytes``.
    memory_budget_bytes
        Bound on the tile buffers.
    precision
        GEMM precision of the kernel tiles: ``"fp32"`` (default), ``"tf32"`` or ``"bf16"``
        (see :mod:`kairos_curate.valuation.kernels`).
    progress
        Show a tqdm bar over kernel entries during updates.

    Examples
    --------
    >>> state = KairosState(reference, bandwidth=1.0)          # doctest: +SKIP
    >>> state.update(first_batch).update(second_batch)        # doctest: +SKIP
    >>> res = state.result()                                  # doctest: +SKIP
    """

    def __init__(
        self,
        reference: Any,
        bandwidth: float,
        *,
        reference_labels: Any = None,
        label_mode: str | None = None,
        lam: float = 0.97,
        combine: str = "weighted",
        device: str | torch.device = "auto",
        block_size: int | None = None,
        memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
        progress: bool = False,
        precision: str = "fp32",
    ) -> None:
        if label_mode not in LABEL_MODES:
            raise ValueError(f"label_mode must be None, 'residual' or 'class_conditional', got {label_mode!r}")
        if combine not in COMBINE_MODES:
            raise ValueError(f"combine must be one of {COMBINE_MODES}, got {combine!r}")
        if not 0.0 <= float(lam) <= 1.0:
            raise ValueError(f"lam must lie in [0, 1], got {lam}")
        z = as_float_matrix(reference, "reference")
        sigma = float(bandwidth)
        if not (math.isfinite(sigma) and sigma > 0):
            raise ValueError(f"bandwidth must be a positive finite number, got {bandwidth!r}")
        self.bandwidth = sigma
        self.label_mode = label_mode
        self.lam = float(lam)
        self.combine = combine
        self.progress = progress
        self.dim = z.shape[1]
        self.n_reference = z.shape[0]
        self.space = KernelSpace.create(
            sigma,
            z.mean(axis=0, dtype=np.float64),
            device,
            memory_budget_bytes,
            block_size,
            precision,
        )
        self._ref = self.space.prepare(z)
        self._c_mean = float(self_sums(self.space, self._ref).sum()) / z.shape[0] ** 2
        self._pool: Prepared | None = None
        self._sum_a = np.zeros(0)
        self._sum_b = np.zeros(0)
        self._labels: list[np.ndarray] = []
        self._codes = np.zeros(0, dtype=np.int64)
        self._classes: np.ndarray | None = None
        if label_mode is not None:
            ref_codes, classes = encode_reference(reference_labels, z.shape[0])
            self._classes = classes
            self._ref_codes = ref_codes
        if label_mode == "residual":
            self._proba = fit_reference_classifier(z, self._ref_codes, len(classes))
            self._residual = np.zeros(0)
        if label_mode == "class_conditional":
            self._ref_by_class: list[Prepared] = []
            c_cc = np.zeros(len(classes))
            for code in range(len(classes)):
                idx = torch.from_numpy(np.flatnonzero(self._ref_codes == code)).to(self.space.device)
                prep = (self._ref[0][idx], self._ref[1][idx])
                self._ref_by_class.append(prep)
                c_cc[code] = self_sums(self.space, prep).sum() / idx.shape[0] ** 2
            self._c_cc = c_cc
            self._sum_a_cc = np.zeros(0)
            self._sum_b_cc = np.zeros(0)

    @classmethod
    def from_pool(
        cls,
        pool: Any,
        reference: Any,
        bandwidth: float | str = "median",
        *,
        pool_labels: Any = None,
        seed: int = 0,
        **kwargs: Any,
    ) -> KairosState:
        """Create a state (median bandwidth over ``pool ∪ reference`` if asked) and add ``pool``.

        Keyword arguments are those of :class:`KairosState`.
        """
        x = as_float_matrix(pool, "pool")
        z = as_float_matrix(reference, "reference")
        check_same_dim(x.shape[1], z.shape[1])
        sigma = resolve_bandwidth(bandwidth, x, z, seed)
        state = cls(z, sigma, **kwargs)
        return state.update(x, pool_labels)

    @property
    def n_pool(self) -> int:
        """Number of pool points added so far."""
        return int(self._sum_a.shape[0])

    def update(self, new_pool_points: Any, new_labels: Any = None) -> KairosState:
        """Append pool points (and their labels) and update every sum exactly.

        Cost: ``O(n (N + n + M) d)`` for ``n`` new points and ``N`` old ones. Returns ``self``.

        Raises
        ------
        ValueError
            Bad rows, dimension mismatch, label length, or classes unknown to the reference.
        """
        x = as_float_matrix(new_pool_points, "pool")
        check_same_dim(x.shape[1], self.dim)
        n_new, n_old = x.shape[0], self.n_pool
        labels_arr: np.ndarray | None = None
        codes: np.ndarray | None = None
        if self.label_mode is not None:
            assert self._classes is not None
            codes = encode_pool(new_labels, self._classes, n_new)
            labels_arr = np.asarray(new_labels)
        elif new_labels is not None:
            labels_arr = np.asarray(new_labels)
            if labels_arr.shape != (n_new,):
                raise ValueError(
                    f"pool_labels has {labels_arr.shape[0]} labels but there are "
                    f"{n_new} rows; give exactly one label per row"
                )
        if self.n_pool and (labels_arr is None) != (not self._labels):
            raise ValueError("give labels with every update or with none")
        total = n_new * (n_old + (n_new + min(self.space.tile, 256)) // 2 + self.n_reference)
        if self.label_mode == "class_conditional":
            total *= 2
        bar = _progress_bar(self.progress, total, "KAIROS kernel sums")
        try:
            new = self.space.prepare(x)
            sum_a = self_sums(self.space, new, progress=bar)
            if self._pool is not None:
                rows, cols = cross_sums(self.space, new, self._pool, want_cols=True, progress=bar)
                assert cols is not None
                sum_a += rows
                self._sum_a += cols
            sum_b, _ = cross_sums(self.space, new, self._ref, progress=bar)
            if self.label_mode == "class_conditional":
                assert codes is not None
                self._update_class_conditional(new, codes, bar)
        finally:
            if bar is not None:
                bar.close()
        self._pool = (
            new if self._pool is None else (torch.cat([self._pool[0], new[0]]), torch.cat([self._pool[1], new[1]]))
        )
        self._sum_a = np.concatenate([self._sum_a, sum_a])
        self._sum_b = np.concatenate([self._sum_b, sum_b])
        if labels_arr is not None:
            self._labels.append(labels_arr)
        if codes is not None:
            self._codes = np.concatenate([self._codes, codes])
        if self.label_mode == "residual":
            assert codes is not None
            self._residual = np.concatenate([self._residual, residual_norms(self._proba(x), codes)])
        return self

    def _update_class_conditional(self, new: Prepared, codes: np.ndarray, bar: Any) -> None:
        sum_a = np.zeros(codes.shape[0])
        sum_b = np.zeros(codes.shape[0])
        device = self.space.device
        for code in np.unique(codes):
            idx_new = np.flatnonzero(codes == code)
            t_new = torch.from_numpy(idx_new).to(device)
            sub = (new[0][t_new], new[1][t_new])
            sa = self_sums(self.space, sub, progress=bar)
            idx_old = np.flatnonzero(self._codes == code)
            if idx_old.size:
                assert self._pool is not None
                t_old = torch.from_numpy(idx_old).to(device)
                old = (self._pool[0][t_old], self._pool[1][t_old])
                rows, cols = cross_sums(self.space, sub, old, want_cols=True, progress=bar)
                assert cols is not None
                sa += rows
                self._sum_a_cc[idx_old] += cols
            sum_a[idx_new] = sa
            sum_b[idx_new] = cross_sums(self.space, sub, self._ref_by_class[code], progress=bar)[0]
        self._sum_a_cc = np.concatenate([self._sum_a_cc, sum_a])
        self._sum_b_cc = np.concatenate([self._sum_b_cc, sum_b])

    def result(self) -> ValuationResult:
        """The :class:`ValuationResult` of the pool so far.

        Raises
        ------
        ValueError
            No pool point has been added yet.
        """
        n = self.n_pool
        if n == 0:
            raise ValueError("pool is empty; add points with update() first")
        labels = np.concatenate(self._labels) if self._labels else None
        b = self._sum_b / self.n_reference
        a = self._sum_a / n
        kwargs: dict[str, Any] = {}
        if self.label_mode == "residual":
            kwargs = dict(residual=self._residual, codes=self._codes, classes=self._classes)
        elif self.label_mode == "class_conditional":
            ref_counts = np.bincount(self._ref_codes, minlength=len(self._c_cc))
            pool_counts = np.bincount(self._codes, minlength=len(self._c_cc))
            kwargs = dict(
                b_cc=self._sum_b_cc / ref_counts[self._codes],
                a_cc=self._sum_a_cc / pool_counts[self._codes],
                c_cc=self._c_cc,
                codes=self._codes,
                classes=self._classes,
            )
        return assemble_result(
            b=b,
            a=a,
            c_mean=self._c_mean,
            bandwidth=self.bandwidth,
            label_mode=self.label_mode,
            lam=self.lam,
            combine=self.combine,
            labels=labels,
            backend="exact",
            extra={
                "device": str(self.space.device),
                "tile": self.space.tile,
                "precision": self.space.precision,
            },
            **kwargs,
        )
