"""LAVA: data values from the optimal-transport distance between the pool and a clean reference.

Just et al. (ICLR 2023) value a training point by how much the optimal-transport (OT) distance
between the labelled training distribution and a labelled validation distribution changes when
that point's probability mass grows. Here the training set is the pool and the validation set is
the clean reference. The ground cost between a pool point ``(x_i, y_i)`` and a reference point
``(z_j, c_j)`` is

    C_ij = ||x_i - z_j||^2 + label_weight * W(y_i, c_j),

where ``W(c, c')`` is the OT distance (squared Euclidean ground cost) between the pool points
labelled ``c`` and the reference points labelled ``c'`` - a pool point whose label disagrees
with the reference points it resembles is expensive to transport. Solving the exact OT problem
with uniform masses gives dual potentials ``f_i`` (one per pool point, defined up to a shared
constant). The *calibrated gradient* of the OT cost with respect to the mass of point ``i``,
when the mass is taken evenly from all other points, is

    g_i = f_i - sum_{j != i} f_j / (N - 1) = (N f_i - sum_j f_j) / (N - 1),

invariant to the shared constant. A point with a large ``g_i`` increases the distance to the
clean reference, so the LAVA value is ``-g_i`` (higher = more valuable).

Differences from the authors' code (documented, not hidden): the exact network-simplex solver
(``ot.emd``) replaces entropic Sinkhorn, and the class-to-class distances ``W`` may use a seeded
subsample of at most ``max_per_class`` points per class to bound their cost.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kairos_curate.valuation.base import (
    MethodParams,
    ValuationInputs,
    ValuationMethod,
    register_method,
)
from kairos_curate.valuation.distances import sq_dists
from kairos_curate.valuation.result import ValuationResult

__all__ = ["Lava", "calibrated_gradient", "label_distances", "lava_values"]


def calibrated_gradient(potentials: np.ndarray) -> np.ndarray:
    """``g_i = f_i - sum_{j != i} f_j / (N - 1)`` for dual potentials ``f`` (``N >= 2``)."""
    f = np.asarray(potentials, dtype=np.float64)
    if f.ndim != 1 or f.shape[0] < 2:
        raise ValueError(f"potentials must be a 1-D array of at least 2 values; got shape {f.shape}")
    n = f.shape[0]
    return (n * f - f.sum()) / (n - 1)


def label_distances(
    pool: np.ndarray,
    pool_labels: np.ndarray,
    reference: np.ndarray,
    reference_labels: np.ndarray,
    classes: np.ndarray,
    *,
    max_per_class: int | None = 200,
    seed: int = 0,
) -> np.ndarray:
    """Class-to-class OT distances ``W[c, c']`` (squared Euclidean ground cost, uniform masses).

    Parameters
    ----------
    pool, reference
        ``(N, d)`` and ``(M, d)`` float64 embeddings.
    pool_labels, reference_labels
        Labels; every class in ``classes`` must occur on both sides.
    classes
        The label order of the output rows/columns.
    max_per_class
        Subsample each class to at most this many points (seeded); ``None`` uses all.
    seed
        Seed of the subsample.

    Returns
    -------
    numpy.ndarray
        ``(C, C)`` with ``W[a, b]`` the distance between pool class ``classes[a]`` and reference
        class ``classes[b]``.
    """
    import ot

    rng = np.random.default_rng(seed)

    def members(x: np.ndarray, y: np.ndarray, c: Any) -> np.ndarray:
        idx = np.flatnonzero(y == c)
        if max_per_class is not None and idx.size > max_per_class:
            idx = np.sort(rng.choice(idx, size=max_per_class, replace=False))
        return x[idx]

    xs = [members(pool, pool_labels, c) for c in classes]
    zs = [members(reference, reference_labels, c) for c in classes]
    out = np.zeros((len(classes), len(classes)))
    for a, xa in enumerate(xs):
        for b, zb in enumerate(zs):
            cost = sq_dists(xa, zb)
            out[a, b] = float(
                ot.emd2(
                    np.full(xa.shape[0], 1.0 / xa.shape[0]),
                    np.full(zb.shape[0], 1.0 / zb.shape[0]),
                    cost,
                )
            )
    return out


def lava_values(
    pool: Any,
    pool_labels: Any,
    reference: Any,
    reference_labels: Any,
    *,
    label_weight: float = 1.0,
    max_per_class: int | None = 200,
    num_iter_max: int = 1_000_000,
    seed: int = 0,
) -> ValuationResult:
    """LAVA values of every pool point against the labelled reference (see the module docs).

    Parameters
    ----------
    pool
        ``(N, d)`` pool embeddings (``N >= 2``).
    pool_labels
        ``(N,)`` pool labels (what the user has; may be noisy).
    reference
        ``(M, d)`` clean reference embeddings.
    reference_labels
        ``(M,)`` reference labels; every pool label must occur among them.
    label_weight
        Weight of the class-to-class distance in the ground cost (0 = features only).
    max_per_class
        Points per class used for the class-to-class distances (``None``: all).
    num_iter_max
        Iteration cap of the network-simplex solver.
    seed
        Seed of the class subsample.

    Returns
    -------
    ValuationResult
        ``values = -gradient``; terms ``gradient`` (calibrated gradient of the OT distance
        w.r.t. each pool point's mass) and ``potentials`` (dual potentials of the pool side);
        info ``ot_distance``, ``label_distance`` (``(C, C)`` class-to-class OT distances),
        ``classes`` (labels indexing it) and solver details.
    """
    import ot

    x = np.asarray(pool, dtype=np.float64)
    z = np.asarray(reference, dtype=np.float64)
    if x.ndim != 2 or z.ndim != 2 or x.shape[1] != z.shape[1]:
        raise ValueError(f"pool and reference must be 2-D with the same width; got {x.shape} and {z.shape}")
    if x.shape[0] < 2 or z.shape[0] < 1:
        raise ValueError(f"need at least 2 pool rows and 1 reference row; got {x.shape[0]} and {z.shape[0]}")
    if not (np.isfinite(x).all() and np.isfinite(z).all()):
        raise ValueError("pool or reference contains NaN/inf")
    y = np.asarray(pool_labels)
    yr = np.asarray(reference_labels)
    if y.shape != (x.shape[0],) or yr.shape != (z.shape[0],):
        raise ValueError(
            f"pool_labels must have shape ({x.shape[0]},) and reference_labels ({z.shape[0]},); "
            f"got {y.shape} and {yr.shape}"
        )
    if not label_weight >= 0:
        raise ValueError(f"label_weight must be >= 0; got {label_weight}")
    classes = np.unique(yr)
    missing = sorted(set(np.unique(y).tolist()) - set(classes.tolist()))
    if missing:
        raise ValueError(
            f"pool labels {missing[:5]} do not occur in reference_labels; LAVA needs every pool class in the reference"
        )
    w = label_distances(x, y, z, yr, classes, max_per_class=max_per_class, seed=seed)
    yi = np.searchsorted(classes, y)
    ri = np.searchsorted(classes, yr)
    cost = sq_dists(x, z) + label_weight * w[yi][:, ri]
    a = np.full(x.shape[0], 1.0 / x.shape[0])
    b = np.full(z.shape[0], 1.0 / z.shape[0])
    plan, log = ot.emd(a, b, cost, numItermax=int(num_iter_max), log=True)
    if log.get("warning"):
        raise RuntimeError(f"LAVA: the OT solver did not converge ({log['warning']}); raise num_iter_max")
    f = np.asarray(log["u"], dtype=np.float64)
    grad = calibrated_gradient(f)
    return ValuationResult(
        method="lava",
        values=-grad,
        terms={"gradient": grad, "potentials": f},
        info={
            "ot_distance": float(log["cost"]),
            "label_distance": w,
            "classes": classes,
            "solver": "ot.emd (exact)",
            "label_weight": float(label_weight),
            "max_per_class": max_per_class,
            "transported_pairs": int((plan > 0).sum()),
        },
    )


class LavaParams(MethodParams):
    """LAVA's parameters (see :func:`lava_values`)."""

    label_weight: float = 1.0
    max_per_class: int | None = 200


@register_method
class Lava(ValuationMethod):
    """LAVA: calibrated gradient of a label-aware optimal-transport distance to the reference."""

    name = "lava"
    description = "LAVA: calibrated OT gradient with label cost (exact OT)"
    Params = LavaParams

    def fit(self, inputs: ValuationInputs) -> ValuationResult:
        """LAVA values of ``inputs.pool`` against the labelled reference."""
        return lava_values(
            inputs.pool,
            inputs.pool_labels,
            inputs.reference,
            inputs.reference_labels,
            label_weight=self.params.label_weight,
            max_per_class=self.params.max_per_class,
            seed=inputs.seed,
        )
