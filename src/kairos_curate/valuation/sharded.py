"""Exact KAIROS over a pool held in shards: one task per shard pair, on any engine.

The pool is cut into shards of ``shard_size`` rows. The pool-pool kernel sum is the upper
triangle of shard pairs: a *self* task per shard (its own upper block triangle, as
:func:`~kairos_curate.valuation.kernels.self_sums`), a *pair* task per pair of shards
``(s, t)``, ``s < t``, which returns the row sums for ``s`` and the column sums for ``t``, and
a *reference* task per shard for ``b``. Every task runs the existing tile engine
(:mod:`kairos_curate.valuation.kernels`) on its two shards; the driver adds the float64
partial sums in a fixed order, so the local and the Ray engine give the same results
(bit-identical when their processes use the same number of torch threads), and both equal :func:`~kairos_curate.valuation.kairos_values` up to float32 rounding of the tiles
(only the tile boundaries differ).

:meth:`ShardedKairosState.update` appends pool points as new shards: new-vs-old pair tasks add
column sums to the old shards, so the state stays equal to a full recompute (the incremental
update of :class:`~kairos_curate.valuation.KairosState`, distributed). In
``class_conditional`` mode every task also sums within each class (rows of class ``c`` against
columns of class ``c`` only).

Work: ``N (N + shard) / 2 + N M`` kernel entries in ``S (S + 1) / 2 + S`` tasks for ``S``
shards; each task holds two shards (``2 shard d`` floats) and the tile buffers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from kairos_curate.valuation.bandwidth import resolve_bandwidth
from kairos_curate.valuation.kernels import (
    DEFAULT_MEMORY_BUDGET,
    PRECISIONS,
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

__all__ = ["DEFAULT_SHARD_SIZE", "LabelBook", "ShardedKairosState", "SpaceSpec"]

#: Rows per pool shard: a pair task is ``2 * 8192^2 * d`` FLOP (about 1 s on one core at d=768).
DEFAULT_SHARD_SIZE = 8192


@dataclass(frozen=True)
class SpaceSpec:
    """Everything a task needs to rebuild the driver's kernel space on its own device."""

    sigma: float
    shift: np.ndarray
    device: str = "auto"
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET
    block_size: int | None = None
    precision: str = "fp32"

    def space(self) -> KernelSpace:
        """The :class:`KernelSpace` (device resolved where the task runs)."""
        return KernelSpace.create(
            self.sigma,
            self.shift,
            self.device,
            self.memory_budget_bytes,
            self.block_size,
            self.precision,
        )


def _subset(p: tuple[torch.Tensor, torch.Tensor], idx: np.ndarray) -> tuple[torch.Tensor, ...]:
    t = torch.from_numpy(idx).to(p[0].device)
    return p[0][t], p[1][t]


def self_task(spec: SpaceSpec, x: np.ndarray, codes: np.ndarray | None) -> dict[str, np.ndarray]:
    """Row sums of a shard against itself (and within each class when ``codes`` is given)."""
    space = spec.space()
    p = space.prepare(x)
    out = {"rows": self_sums(space, p)}
    if codes is not None:
        cc = np.zeros(x.shape[0])
        for c in np.unique(codes):
            idx = np.flatnonzero(codes == c)
            cc[idx] = self_sums(space, _subset(p, idx))  # type: ignore[arg-type]
        out["rows_cc"] = cc
    return out


def pair_task(
    spec: SpaceSpec,
    xa: np.ndarray,
    codes_a: np.ndarray | None,
    xb: np.ndarray,
    codes_b: np.ndarray | None,
) -> dict[str, np.ndarray]:
    """Row sums for shard ``a`` and column sums for shard ``b`` of the ``a x b`` kernel block."""
    space = spec.space()
    pa, pb = space.prepare(xa), space.prepare(xb)
    rows, cols = cross_sums(space, pa, pb, want_cols=True)
    assert cols is not None
    out = {"rows": rows, "cols": cols}
    if codes_a is not None and codes_b is not None:
        rows_cc = np.zeros(xa.shape[0])
        cols_cc = np.zeros(xb.shape[0])
        for c in np.intersect1d(codes_a, codes_b):
            ia, ib = np.flatnonzero(codes_a == c), np.flatnonzero(codes_b == c)
            r, k = cross_sums(space, _subset(pa, ia), _subset(pb, ib), want_cols=True)  # type: ignore[arg-type]
            assert k is not None
            rows_cc[ia], cols_cc[ib] = r, k
        out.update(rows_cc=rows_cc, cols_cc=cols_cc)
    return out


def reference_task(
    spec: SpaceSpec,
    x: np.ndarray,
    codes: np.ndarray | None,
    reference: np.ndarray,
    reference_codes: np.ndarray | None,
) -> dict[str, np.ndarray]:
    """Row sums of a shard against the reference (and against its class's reference rows)."""
    space = spec.space()
    p, r = space.prepare(x), space.prepare(reference)
    out = {"rows": cross_sums(space, p, r)[0]}
    if codes is not None and reference_codes is not None:
        cc = np.zeros(x.shape[0])
        for c in np.unique(codes):
            idx = np.flatnonzero(codes == c)
            ridx = np.flatnonzero(reference_codes == c)
            cc[idx] = cross_sums(space, _subset(p, idx), _subset(r, ridx))[0]  # type: ignore[arg-type]
        out["rows_cc"] = cc
    return out


class LabelBook:
    """Label bookkeeping shared by the sharded states: codes, residuals, the labels themselves.

    Parameters
    ----------
    reference
        Reference embeddings (for the residual mode's classifier).
    reference_labels, label_mode, lam, combine
        As in :func:`kairos_curate.valuation.kairos_values`.
    """

    def __init__(
        self,
        reference: np.ndarray,
        reference_labels: Any,
        label_mode: str | None,
        lam: float,
        combine: str,
    ) -> None:
        if label_mode not in LABEL_MODES:
            raise ValueError(f"label_mode must be None, 'residual' or 'class_conditional', got {label_mode!r}")
        if combine not in COMBINE_MODES:
            raise ValueError(f"combine must be one of {COMBINE_MODES}, got {combine!r}")
        if not 0.0 <= float(lam) <= 1.0:
            raise ValueError(f"lam must lie in [0, 1], got {lam}")
        self.label_mode = label_mode
        self.lam = float(lam)
        self.combine = combine
        self.classes: np.ndarray | None = None
        self.reference_codes: np.ndarray | None = None
        self.labels: list[np.ndarray] = []
        self.codes: list[np.ndarray] = []
        self.residual: list[np.ndarray] = []
        if label_mode is not None:
            self.reference_codes, self.classes = encode_reference(reference_labels, reference.shape[0])
        if label_mode == "residual":
            assert self.classes is not None and self.reference_codes is not None
            self._proba = fit_reference_classifier(reference, self.reference_codes, len(self.classes))

    def add(self, x: np.ndarray, labels: Any, n_before: int) -> np.ndarray | None:
        """Record the labels of ``x``'s rows; return their codes (``None`` without a mode)."""
        n = x.shape[0]
        labels_arr: np.ndarray | None = None
        codes = None
        if self.label_mode is not None:
            assert self.classes is not None
            codes = encode_pool(labels, self.classes, n)
            labels_arr = np.asarray(labels)
        elif labels is not None:
            labels_arr = np.asarray(labels)
            if labels_arr.shape != (n,):
                raise ValueError(
                    f"pool_labels has {labels_arr.shape[0]} labels but there are "
                    f"{n} rows; give exactly one label per row"
                )
        if n_before and (labels_arr is None) != (not self.labels):
            raise ValueError("give labels with every update or with none")
        if labels_arr is not None:
            self.labels.append(labels_arr)
        if codes is not None:
            self.codes.append(codes)
        if self.label_mode == "residual":
            assert codes is not None
            self.residual.append(residual_norms(self._proba(x), codes))
        return codes

    def all_codes(self) -> np.ndarray:
        """Codes of every pool row so far."""
        return np.concatenate(self.codes) if self.codes else np.zeros(0, dtype=np.int64)

    def assemble(
        self,
        *,
        b: np.ndarray,
        a: np.ndarray,
        c_mean: float,
        bandwidth: float,
        b_cc: np.ndarray | None = None,
        a_cc: np.ndarray | None = None,
        c_cc: np.ndarray | None = None,
        backend: str,
        extra: dict[str, Any],
    ) -> ValuationResult:
        """:func:`assemble_result` with this book's labels and mode."""
        kwargs: dict[str, Any] = {}
        codes = self.all_codes()
        if self.label_mode == "residual":
            kwargs = dict(residual=np.concatenate(self.residual), codes=codes, classes=self.classes)
        elif self.label_mode == "class_conditional":
            kwargs = dict(b_cc=b_cc, a_cc=a_cc, c_cc=c_cc, codes=codes, classes=self.classes)
        return assemble_result(
            b=b,
            a=a,
            c_mean=c_mean,
            bandwidth=bandwidth,
            label_mode=self.label_mode,
            lam=self.lam,
            combine=self.combine,
            labels=np.concatenate(self.labels) if self.labels else None,
            backend=backend,
            extra=extra,
            **kwargs,
        )


class ShardedKairosState:
    """Exact KAIROS sums over a sharded, growing pool; tasks run on an engine.

    Parameters
    ----------
    reference
        ``(M, d)`` reference embeddings.
    bandwidth
        RBF sigma (use :meth:`from_pool` for the median heuristic).
    reference_labels, label_mode, lam, combine
        As in :func:`kairos_curate.valuation.kairos_values`.
    engine
        An engine from :func:`kairos_curate.engine.get_engine` (default: local).
    shard_size
        Rows per pool shard.
    device, block_size, memory_budget_bytes, precision
        Tile-engine settings of every task (``device="auto"``: CUDA where the task runs, if
        there is one).
    num_gpus
        GPUs per task on a Ray cluster (default: 1 when the engine reports GPUs, else 0).
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
        engine: Any = None,
        shard_size: int = DEFAULT_SHARD_SIZE,
        device: str = "auto",
        block_size: int | None = None,
        memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
        precision: str = "fp32",
        num_gpus: float | None = None,
    ) -> None:
        from kairos_curate.engine import get_engine

        z = np.ascontiguousarray(as_float_matrix(reference, "reference"))
        sigma = float(bandwidth)
        if not (math.isfinite(sigma) and sigma > 0):
            raise ValueError(f"bandwidth must be a positive finite number, got {bandwidth!r}")
        if int(shard_size) < 1:
            raise ValueError(f"shard_size must be a positive integer, got {shard_size}")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.book = LabelBook(z, reference_labels, label_mode, lam, combine)
        self.engine = get_engine(engine)
        self.bandwidth = sigma
        self.label_mode = label_mode
        self.shard_size = int(shard_size)
        self.dim = z.shape[1]
        self.n_reference = z.shape[0]
        self.spec = SpaceSpec(
            sigma,
            z.mean(axis=0, dtype=np.float64),
            str(device),
            int(memory_budget_bytes),
            block_size,
            precision,
        )
        self.num_gpus = (1.0 if self.engine.n_gpus() > 0 else 0.0) if num_gpus is None else float(num_gpus)
        self._ref = self.engine.put(z)
        ref_codes = self.book.reference_codes
        conditional = label_mode == "class_conditional"
        (ref_self,) = self.engine.map(self_task, [(self.spec, self._ref, ref_codes if conditional else None)])
        self._c_mean = float(ref_self["rows"].sum()) / z.shape[0] ** 2
        self._c_cc: np.ndarray | None = None
        if conditional:
            assert ref_codes is not None and self.book.classes is not None
            counts = np.bincount(ref_codes, minlength=len(self.book.classes))
            sums = np.bincount(ref_codes, weights=ref_self["rows_cc"], minlength=len(counts))
            self._c_cc = sums / counts**2
        self._shards: list[Any] = []
        self._codes: list[np.ndarray | None] = []
        self._sum_a: list[np.ndarray] = []
        self._sum_b: list[np.ndarray] = []
        self._sum_a_cc: list[np.ndarray] = []
        self._sum_b_cc: list[np.ndarray] = []

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
    ) -> ShardedKairosState:
        """Create a state (median bandwidth over ``pool ∪ reference`` if asked) and add ``pool``."""
        x = as_float_matrix(pool, "pool")
        z = as_float_matrix(reference, "reference")
        check_same_dim(x.shape[1], z.shape[1])
        sigma = resolve_bandwidth(bandwidth, x, z, seed)
        return cls(z, sigma, **kwargs).update(x, pool_labels)

    @property
    def n_pool(self) -> int:
        """Number of pool points added so far."""
        return int(sum(s.shape[0] for s in self._sum_a))

    @property
    def n_shards(self) -> int:
        """Number of pool shards."""
        return len(self._shards)

    def update(self, new_pool_points: Any, new_labels: Any = None) -> ShardedKairosState:
        """Append pool points as new shards and update every sum exactly; returns ``self``.

        Tasks: one self and one reference task per new shard, one pair task per (new, old)
        and per (new, later new) shard pair.
        """
        x = as_float_matrix(new_pool_points, "pool")
        check_same_dim(x.shape[1], self.dim)
        codes = self.book.add(x, new_labels, self.n_pool)
        conditional = self.label_mode == "class_conditional"
        n_old = len(self._shards)
        for start in range(0, x.shape[0], self.shard_size):
            part = np.ascontiguousarray(x[start : start + self.shard_size])
            self._shards.append(self.engine.put(part))
            self._codes.append(None if not conditional or codes is None else codes[start : start + len(part)])
            self._sum_a.append(np.zeros(len(part)))
            self._sum_b.append(np.zeros(len(part)))
            if conditional:
                self._sum_a_cc.append(np.zeros(len(part)))
                self._sum_b_cc.append(np.zeros(len(part)))
        new = range(n_old, len(self._shards))
        jobs: list[tuple[str, int, int]] = []
        for s in new:
            jobs.append(("self", s, s))
            jobs.extend(("pair", s, t) for t in range(s))  # old shards and earlier new ones
            jobs.append(("ref", s, -1))
        ref_codes = self.book.reference_codes if conditional else None
        calls: dict[str, list[tuple[Any, ...]]] = {
            "self": [(self.spec, self._shards[s], self._codes[s]) for k, s, _ in jobs if k == "self"],
            "pair": [
                (self.spec, self._shards[s], self._codes[s], self._shards[t], self._codes[t])
                for k, s, t in jobs
                if k == "pair"
            ],
            "ref": [
                (self.spec, self._shards[s], self._codes[s], self._ref, ref_codes) for k, s, _ in jobs if k == "ref"
            ],
        }
        fns: dict[str, Callable[..., dict[str, np.ndarray]]] = {
            "self": self_task,
            "pair": pair_task,
            "ref": reference_task,
        }
        results = {k: iter(self.engine.map(fns[k], calls[k], num_gpus=self.num_gpus)) for k in fns}
        for kind, s, t in jobs:  # fixed reduction order
            out = next(results[kind])
            if kind == "ref":
                self._sum_b[s] += out["rows"]
                if conditional:
                    self._sum_b_cc[s] += out["rows_cc"]
                continue
            self._sum_a[s] += out["rows"]
            if conditional:
                self._sum_a_cc[s] += out["rows_cc"]
            if kind == "pair":
                self._sum_a[t] += out["cols"]
                if conditional:
                    self._sum_a_cc[t] += out["cols_cc"]
        return self

    def result(self) -> ValuationResult:
        """The :class:`ValuationResult` of the pool so far (``backend == "exact"``).

        Raises
        ------
        ValueError
            No pool point has been added yet.
        """
        n = self.n_pool
        if n == 0:
            raise ValueError("pool is empty; add points with update() first")
        b = np.concatenate(self._sum_b) / self.n_reference
        a = np.concatenate(self._sum_a) / n
        kw: dict[str, Any] = {}
        if self.label_mode == "class_conditional":
            assert self.book.classes is not None and self.book.reference_codes is not None
            codes = self.book.all_codes()
            ref_counts = np.bincount(self.book.reference_codes, minlength=len(self.book.classes))
            pool_counts = np.bincount(codes, minlength=len(self.book.classes))
            kw = dict(
                b_cc=np.concatenate(self._sum_b_cc) / ref_counts[codes],
                a_cc=np.concatenate(self._sum_a_cc) / pool_counts[codes],
                c_cc=self._c_cc,
            )
        return self.book.assemble(
            b=b,
            a=a,
            c_mean=self._c_mean,
            bandwidth=self.bandwidth,
            backend="exact",
            extra={
                "engine": self.engine.name,
                "shards": self.n_shards,
                "shard_size": self.shard_size,
                "precision": self.spec.precision,
            },
            **kw,
        )
