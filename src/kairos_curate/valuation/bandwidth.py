"""Bandwidth of the RBF kernel: the median heuristic.

Convention (used everywhere in the project): ``sigma`` is the median Euclidean distance
``||u - v||`` over pairs of *distinct rows* of the stacked set ``pool ∪ reference`` (self pairs
``u = v`` by index are excluded; duplicate rows still count, with distance 0). When the number
of distinct pairs is at most ``max_pairs`` every pair is used; otherwise ``max_pairs`` pairs are
drawn uniformly (with replacement among pairs, never a self pair) from a seeded generator, so
the result is reproducible. The kernel is then ``exp(-||x - y||^2 / (2 sigma^2))``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from kairos_curate.valuation.kernels import as_float_matrix, check_same_dim

__all__ = ["median_bandwidth", "resolve_bandwidth"]


def median_bandwidth(
    pool: Any,
    reference: Any | None = None,
    *,
    max_pairs: int = 20_000,
    seed: int | np.random.Generator = 0,
) -> float:
    """Median pairwise Euclidean distance over ``pool ∪ reference`` (see module docs).

    Parameters
    ----------
    pool, reference
        ``(N, d)`` and ``(M, d)`` arrays or tensors; ``reference`` may be ``None``.
    max_pairs
        Use every distinct pair up to this many, else a seeded sample of this many pairs.
    seed
        Seed or generator for the pair sample.

    Returns
    -------
    float
        The median distance, strictly positive.

    Raises
    ------
    ValueError
        Fewer than two points, or the median distance is 0 (more than half the sampled pairs
        are identical rows) - pass a numeric bandwidth then.
    """
    x = as_float_matrix(pool, "pool")
    parts = [x]
    if reference is not None:
        z = as_float_matrix(reference, "reference")
        check_same_dim(x.shape[1], z.shape[1])
        parts.append(z)
    n = sum(p.shape[0] for p in parts)
    if n < 2:
        raise ValueError("the median heuristic needs at least two points; pass bandwidth=<float>")
    if max_pairs < 1:
        raise ValueError(f"max_pairs must be positive, got {max_pairs}")
    n_pairs = n * (n - 1) // 2
    if n_pairs <= max_pairs:
        i, j = np.triu_indices(n, k=1)
    else:
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        i = rng.integers(0, n, size=max_pairs)
        j = rng.integers(0, n - 1, size=max_pairs)
        j = j + (j >= i)  # uniform over j != i
    dist = np.empty(i.shape[0])
    for start in range(0, i.shape[0], 2048):
        diff = _rows(parts, i[start : start + 2048]) - _rows(parts, j[start : start + 2048])
        dist[start : start + 2048] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    sigma = float(np.median(dist))
    if not sigma > 0:
        raise ValueError(
            "median pairwise distance is 0 (most sampled pairs are duplicate rows); "
            "pass a positive numeric bandwidth instead of 'median'"
        )
    return sigma


def _rows(parts: list[np.ndarray], idx: np.ndarray) -> np.ndarray:
    """Rows ``idx`` of the vertical stack of ``parts`` (float64), without stacking."""
    out = np.empty((idx.shape[0], parts[0].shape[1]))
    offset = 0
    for part in parts:
        mask = (idx >= offset) & (idx < offset + part.shape[0])
        out[mask] = part[idx[mask] - offset]
        offset += part.shape[0]
    return out


def resolve_bandwidth(
    bandwidth: float | str, pool: np.ndarray, reference: np.ndarray, seed: int
) -> float:
    """Return ``bandwidth`` as a positive float, computing the median heuristic if asked.

    Raises
    ------
    ValueError
        Unknown string, or a non-positive / non-finite number.
    """
    if isinstance(bandwidth, str):
        if bandwidth != "median":
            raise ValueError(f"bandwidth must be 'median' or a positive number, got {bandwidth!r}")
        return median_bandwidth(pool, reference, seed=seed)
    try:
        sigma = float(bandwidth)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"bandwidth must be 'median' or a positive number, got {bandwidth!r}"
        ) from err
    if not (np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"bandwidth must be a positive finite number, got {bandwidth!r}")
    return sigma
