"""Exact KNN-Shapley values in closed form (Jia et al., VLDB 2019, Theorem 1).

For the utility of a K-nearest-neighbour classifier on one validation point ``(z, y)``,
``U(S) = (1 / K) sum_{k <= min(K, |S|)} 1[y_{alpha_k(S)} = y]`` (``alpha_k(S)``: the k-th
nearest point of ``S`` to ``z``, Euclidean distance, ties broken by pool index), the Shapley
value of every pool point follows from one sort. With ``alpha_1 .. alpha_N`` the pool sorted
by distance to ``z``::

    s(alpha_N) = 1[y_{alpha_N} = y] min(K, N) / (N K)      (= 1[...] / N when N >= K)
    s(alpha_i) = s(alpha_{i+1}) + (1[y_{alpha_i} = y] - 1[y_{alpha_{i+1}} = y]) / K * min(K, i) / i

The value over a validation set (here: the reference with its labels) is the mean over its
points. Distances come from one GEMM per block of validation points; the recursion is a
reversed cumulative sum, in float64.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from kairos_curate.valuation.base import (
    MethodParams,
    ValuationInputs,
    ValuationMethod,
    register_method,
)
from kairos_curate.valuation.kernels import as_float64_matrix, check_same_dim, resolve_device
from kairos_curate.valuation.labels import _as_label_array
from kairos_curate.valuation.result import ValuationResult

__all__ = ["KnnShapley", "knn_shapley"]


def knn_shapley(
    pool: Any,
    pool_labels: Any,
    reference: Any,
    reference_labels: Any,
    k: int = 10,
    *,
    device: str | torch.device = "auto",
    block_size: int | None = None,
    memory_budget_bytes: int = 256 * 2**20,
    progress: bool = False,
) -> np.ndarray:
    """Exact KNN-Shapley value of every pool point, validated on the labelled reference.

    Parameters
    ----------
    pool
        ``(N, d)`` pool embeddings.
    pool_labels
        ``(N,)`` pool labels (ints or strings).
    reference
        ``(M, d)`` validation embeddings (the clean reference).
    reference_labels
        ``(M,)`` validation labels.
    k
        Number of neighbours ``K``.
    device
        ``"auto"``, ``"cpu"`` or ``"cuda"``.
    block_size
        Validation points per block; default from ``memory_budget_bytes``.
    memory_budget_bytes
        Bound on the per-block buffers.
    progress
        Show a tqdm bar over validation blocks.

    Returns
    -------
    numpy.ndarray
        ``(N,)`` float64 Shapley values (higher = more valuable); they sum to the mean KNN
        accuracy of the full pool on the validation set.
    """
    x = as_float64_matrix(pool, "pool")
    z = as_float64_matrix(reference, "reference")
    check_same_dim(x.shape[1], z.shape[1])
    if int(k) < 1:
        raise ValueError(f"k must be a positive integer, got {k}")
    y_pool = _as_label_array(pool_labels, "pool_labels", x.shape[0])
    y_ref = _as_label_array(reference_labels, "reference_labels", z.shape[0])
    if (y_pool.dtype.kind in "US") != (y_ref.dtype.kind in "US"):
        y_pool, y_ref = y_pool.astype(str), y_ref.astype(str)
    _, codes = np.unique(np.concatenate([y_pool, y_ref]), return_inverse=True)
    code_pool = codes[: x.shape[0]]
    code_ref = codes[x.shape[0] :]
    dev = resolve_device(device)
    n = x.shape[0]
    if block_size is None:
        block_size = max(1, int(memory_budget_bytes // (40 * n)))
    shift = z.mean(axis=0)
    xt = torch.from_numpy((x - shift).astype(np.float32)).to(dev)
    zt = torch.from_numpy((z - shift).astype(np.float32)).to(dev)
    hx = (xt * xt).sum(dim=1)
    yp = torch.from_numpy(code_pool).to(dev)
    yr = torch.from_numpy(code_ref).to(dev)
    i = torch.arange(1, n + 1, dtype=torch.float64, device=dev)
    weight = (torch.clamp(i, max=float(k)) / (float(k) * i))[:-1]  # min(K, i) / (K i), i < N
    values = torch.zeros(n, dtype=torch.float64, device=dev)
    starts = range(0, z.shape[0], block_size)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, desc="KNN-Shapley", leave=False)
    for s in starts:
        zb = zt[s : s + block_size]
        dist = torch.addmm(hx.unsqueeze(0), zb, xt.T, alpha=-2.0)  # ||x||^2 - 2 z.x (+const)
        order = torch.argsort(dist, dim=1, stable=True)
        match = (yp[order] == yr[s : s + block_size].unsqueeze(1)).double()
        steps = (match[:, :-1] - match[:, 1:]) * weight
        s_sorted = torch.empty_like(match)
        s_sorted[:, -1] = match[:, -1] * (min(k, n) / (n * k))
        if n > 1:
            tail = torch.flip(torch.cumsum(torch.flip(steps, dims=[1]), dim=1), dims=[1])
            s_sorted[:, :-1] = tail + s_sorted[:, -1:]
        values.index_add_(0, order.reshape(-1), s_sorted.reshape(-1))
    return (values / z.shape[0]).cpu().numpy()


class KnnShapleyParams(MethodParams):
    """KNN-Shapley's parameters."""

    #: Neighbours of the K-NN utility.
    k: int = 10


@register_method
class KnnShapley(ValuationMethod):
    """Closed-form KNN-Shapley of every pool point, the labelled reference as validation set."""

    name = "knn_shapley"
    description = "closed-form KNN-Shapley, K = 10"
    Params = KnnShapleyParams

    def fit(self, inputs: ValuationInputs) -> ValuationResult:
        """KNN-Shapley values (mean over the reference points)."""
        values = knn_shapley(
            inputs.pool,
            inputs.pool_labels,
            inputs.reference,
            inputs.reference_labels,
            k=self.params.k,
            device=inputs.device,
        )
        return ValuationResult(self.name, values=values, info={"k": self.params.k})
