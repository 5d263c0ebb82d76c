"""Squared Euclidean distances in numpy, shared by the methods, the policies and the audit."""

from __future__ import annotations

import numpy as np

__all__ = ["sq_dists"]


def sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances ``||a_i - b_j||^2`` (GEMM expansion, clamped at 0), in the
    inputs' dtype."""
    return np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T, 0.0)
