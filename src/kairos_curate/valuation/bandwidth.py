"""Bandwidth of the RBF kernel: the median heuristic.

Convention (used everywhere in the project): ``sigma`` is the median Euclidean distance
``||u - v||`` over pairs of *distinct rows* of the stacked set ``pool ∪ reference`` (self pairs
``u = v`` by index are excluded; duplicate rows still count, with distance 0). When the number
of distinct pairs is at most ``max_pairs`` every pair is used; otherwise ``max_pairs`` pairs are
drawn uniformly (with replacement among pairs, never a self pair) from a seeded generator, so
the result is reproducible. The kernel is then ``exp(-||x - y||^2 / (2 sigma^2))``.

Usable range (:func:`usable_bandwidth_range`, checked by :func:`resolve_bandwidth` for every
numeric bandwidth): on the same seeded pair sample, a bandwidth is refused when the kernel
*underflows* - fewer than 1% of the sampled pairs at a positive distance get a kernel value of
at least ``1e-12``, so b and a are sums of zeros and every value comes out 0 or NaN - or when
it *saturates* - more than 99% of those pairs get a kernel value within ``1e-4`` of 1, so the
values differ only in float32 rounding noise. The range is therefore
``[q01 / sqrt(2 ln 1e12), q99 / sqrt(2e-4)]`` for the 1st and 99th percentile distances
``q01``, ``q99``; the median heuristic always lies inside it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from kairos_curate.valuation.kernels import as_float_matrix, check_same_dim

__all__ = ["check_bandwidth", "median_bandwidth", "resolve_bandwidth", "usable_bandwidth_range"]

#: A kernel value below this is "no contribution" (underflow side of the usable range).
UNDERFLOW_KERNEL = 1e-12
#: ``1 - k`` below this is "no resolution left in float32" (saturation side).
SATURATION_GAP = 1e-4


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
    dist = _pair_distances(pool, reference, max_pairs=max_pairs, seed=seed)
    sigma = float(np.median(dist))
    if not (dist > 0).any():
        raise ValueError(
            "every sampled pair of embeddings is identical (distance 0): there is "
            "nothing to value; check that the embeddings are not all the same row"
        )
    if not sigma > 0:
        raise ValueError(
            "median pairwise distance is 0 (most sampled pairs are duplicate rows); "
            "pass a positive numeric bandwidth instead of 'median'"
        )
    return sigma


def _pair_distances(pool: Any, reference: Any | None, *, max_pairs: int, seed: int | np.random.Generator) -> np.ndarray:
    """Euclidean distances of the seeded pair sample described in the module docs."""
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
    return dist


def usable_bandwidth_range(
    pool: Any,
    reference: Any | None = None,
    *,
    max_pairs: int = 20_000,
    seed: int | np.random.Generator = 0,
) -> tuple[float, float]:
    """The interval of bandwidths whose kernel neither underflows nor saturates on these points.

    See the module docs for the definition. Returns ``(low, high)``.

    Raises
    ------
    ValueError
        Fewer than two points, or every sampled pair is a duplicate (distance 0).
    """
    dist = _pair_distances(pool, reference, max_pairs=max_pairs, seed=seed)
    positive = dist[dist > 0]
    if positive.size == 0:
        raise ValueError(
            "every sampled pair of embeddings is identical (distance 0): there is "
            "nothing to value; check that the embeddings are not all the same row"
        )
    q01, q99 = (float(v) for v in np.quantile(positive, [0.01, 0.99]))
    low = q01 / math.sqrt(2.0 * math.log(1.0 / UNDERFLOW_KERNEL))
    high = q99 / math.sqrt(2.0 * SATURATION_GAP)
    return low, high


def check_bandwidth(
    sigma: float,
    pool: Any,
    reference: Any | None = None,
    *,
    seed: int | np.random.Generator = 0,
    name: str = "bandwidth",
) -> None:
    """Raise if the RBF kernel with bandwidth ``sigma`` underflows or saturates on these points.

    ``name`` is how the message refers to the bandwidth (``bandwidth``, ``--bandwidth``).

    Raises
    ------
    ValueError
        ``sigma`` lies outside :func:`usable_bandwidth_range`; the message gives the range and
        the median heuristic's value.
    """
    low, high = usable_bandwidth_range(pool, reference, seed=seed)
    if low <= sigma <= high:
        return
    median = median_bandwidth(pool, reference, seed=seed)
    if sigma < low:
        what = (
            "too small: the RBF kernel underflows (below 1e-12 for more than 99% of sampled "
            "pairs), so every value would be 0 or NaN"
        )
    else:
        what = (
            "too large: the RBF kernel saturates (within 1e-4 of 1 for more than 99% of "
            "sampled pairs), so the values would differ only by rounding noise"
        )
    raise ValueError(
        f"{name}={sigma:.4g} is {what}; use a bandwidth between {low:.4g} and {high:.4g} for "
        f"these embeddings, or 'median' ({median:.4g})"
    )


def _rows(parts: list[np.ndarray], idx: np.ndarray) -> np.ndarray:
    """Rows ``idx`` of the vertical stack of ``parts`` (float64), without stacking."""
    out = np.empty((idx.shape[0], parts[0].shape[1]))
    offset = 0
    for part in parts:
        mask = (idx >= offset) & (idx < offset + part.shape[0])
        out[mask] = part[idx[mask] - offset]
        offset += part.shape[0]
    return out


def resolve_bandwidth(bandwidth: float | str, pool: np.ndarray, reference: np.ndarray, seed: int) -> float:
    """Return ``bandwidth`` as a positive float, computing the median heuristic if asked.

    A numeric bandwidth is checked against :func:`usable_bandwidth_range`.

    Raises
    ------
    ValueError
        Unknown string, a non-positive / non-finite number, or a bandwidth outside the usable
        range (the message gives the range).
    """
    if isinstance(bandwidth, str):
        if bandwidth != "median":
            raise ValueError(f"bandwidth must be 'median' or a positive number, got {bandwidth!r}")
        return median_bandwidth(pool, reference, seed=seed)
    try:
        sigma = float(bandwidth)
    except (TypeError, ValueError) as err:
        raise ValueError(f"bandwidth must be 'median' or a positive number, got {bandwidth!r}") from err
    if not (np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"bandwidth must be a positive finite number, got {bandwidth!r}")
    check_bandwidth(sigma, pool, reference, seed=seed)
    return sigma
