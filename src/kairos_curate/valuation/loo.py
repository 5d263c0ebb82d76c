"""Exact leave-one-out change of the biased (V-statistic) MMD^2, in closed form.

With ``b_i = mean_j k(x_i, z_j)``, ``a_i = mean_k k(x_i, x_k)`` (self included),
``abar = mean(a)`` and ``bbar = mean(b)``::

    LOO_i = MMD^2(pool without i, ref) - MMD^2(pool, ref)
          = 2 (b_i - bbar) / (N - 1) + (k(x_i, x_i) - 2 N a_i + (2N - 1) abar) / (N - 1)^2

Sign convention: a **positive** ``LOO_i`` means that removing point ``i`` moves the pool
*away* from the reference, i.e. the point was helpful; higher = more valuable, like ``values``.
The formula is exact because MMD^2 is quadratic in the pool's empirical distribution.
"""

from __future__ import annotations

import numpy as np

__all__ = ["exact_loo", "mmd2_from_terms"]


def exact_loo(b: np.ndarray, a: np.ndarray, k_self: float = 1.0) -> np.ndarray:
    """Exact LOO change of the biased MMD^2 from the kernel means (see module docs).

    Parameters
    ----------
    b, a
        ``(N,)`` mean kernel to the reference and mean kernel to the pool (self included).
    k_self
        ``k(x, x)``; 1 for the RBF kernel.

    Returns
    -------
    numpy.ndarray
        ``(N,)`` float64; all NaN when ``N < 2`` (the MMD of an empty pool is undefined).
    """
    b = np.asarray(b, dtype=np.float64)
    a = np.asarray(a, dtype=np.float64)
    n = b.shape[0]
    if n < 2:
        return np.full(n, np.nan)
    abar, bbar = a.mean(), b.mean()
    return 2.0 * (b - bbar) / (n - 1) + (k_self - 2.0 * n * a + (2.0 * n - 1.0) * abar) / (n - 1) ** 2


def mmd2_from_terms(b: np.ndarray, a: np.ndarray, c_mean: float) -> float:
    """Biased MMD^2 ``mean(a) - 2 mean(b) + mean_{j,l} k(z_j, z_l)`` from the kernel means."""
    return float(np.mean(a) - 2.0 * np.mean(b) + c_mean)
