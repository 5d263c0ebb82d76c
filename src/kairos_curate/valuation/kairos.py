"""KAIROS values: MMD-based valuation of a pool against a reference (exact, blocked).

See ``DESIGN.md`` ("KAIROS, precisely"). With the RBF kernel ``k``:

* ``b_i = mean_j k(x_i, z_j)`` (closeness to the reference),
* ``a_i = mean_k k(x_i, x_k)`` over the pool, self included (redundancy),
* feature value ``b_i - a_i`` (higher = better; first-order influence on ``MMD^2``),
* ``loo_i = MMD^2(pool without i, ref) - MMD^2(pool, ref)`` exactly (positive = helpful).

The kernel sums are computed tile by tile on CPU or CUDA (:mod:`.kernels`); the pool-pool
sum only over the upper block triangle. Memory beyond the inputs is bounded by
``memory_budget_bytes`` plus ``O((N + M) d)`` for the float32 copies.
"""

from __future__ import annotations

from typing import Any

import torch

from kairos_curate.valuation.incremental import KairosState
from kairos_curate.valuation.kernels import DEFAULT_MEMORY_BUDGET
from kairos_curate.valuation.result import KairosResult

__all__ = ["kairos_values"]


def kairos_values(
    pool: Any,
    reference: Any,
    bandwidth: float | str = "median",
    *,
    pool_labels: Any = None,
    reference_labels: Any = None,
    label_mode: str | None = None,
    lam: float = 0.97,
    combine: str = "weighted",
    device: str | torch.device = "auto",
    block_size: int | None = None,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
    seed: int = 0,
    progress: bool = False,
    precision: str = "fp32",
) -> KairosResult:
    """Value every pool sample by how much it pulls the pool towards the reference.

    Parameters
    ----------
    pool
        ``(N, d)`` pool embeddings (numpy array or torch tensor).
    reference
        ``(M, d)`` clean reference embeddings.
    bandwidth
        RBF sigma, or ``"median"`` for the median pairwise distance over a seeded sample of
        pairs of ``pool ∪ reference`` (see :func:`.median_bandwidth`).
    pool_labels, reference_labels
        One label (int or str) per row; needed by the label modes, and ``pool_labels`` is
        carried into :meth:`KairosResult.to_frame` otherwise.
    label_mode
        ``None`` (feature value ``b - a``); ``"residual"``: ``lam * (b - a) - (1 - lam) *
        ||onehot(y) - p(x)||`` with ``p`` a logistic regression fitted on the reference;
        ``"class_conditional"``: ``b`` against the reference points of the sample's class and
        ``a`` within the pool points of that class.
    lam
        Weight of the feature term in residual mode (0.97 as in the reference implementation).
    combine
        Residual mode only: ``"weighted"`` (raw terms, reference implementation), ``"rank"``
        or ``"zscore"`` (scale-free; see :mod:`.labels`).
    device
        ``"auto"`` (CUDA if available), ``"cpu"`` or ``"cuda"``.
    block_size
        Tile edge; by default derived from ``memory_budget_bytes``.
    memory_budget_bytes
        Bound on the kernel tile buffers (default 256 MiB).
    seed
        Seed of the median heuristic's pair sample.
    progress
        Show a tqdm progress bar over the kernel sums.
    precision
        GEMM precision of the kernel tiles: ``"fp32"`` (default, full float32 products),
        ``"tf32"`` or ``"bf16"`` (faster on GPUs; ranking error against fp32 measured in
        ``benchmarks/bench_kairos.py``).

    Returns
    -------
    KairosResult
        ``b``, ``a``, ``values``, ``loo``, ``bandwidth``, ``feature_term``, ``label_term``...

    Raises
    ------
    ValueError
        NaN/inf rows (named), dimension mismatch, empty inputs, wrong label lengths, pool
        classes missing from the reference in a label mode, a non-positive bandwidth.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> res = kairos_values(rng.normal(size=(50, 8)), rng.normal(size=(20, 8)), device="cpu")
    >>> res.values.shape, bool(res.bandwidth > 0)
    ((50,), True)
    """
    state = KairosState.from_pool(
        pool,
        reference,
        bandwidth,
        pool_labels=pool_labels,
        seed=seed,
        reference_labels=reference_labels,
        label_mode=label_mode,
        lam=lam,
        combine=combine,
        device=device,
        block_size=block_size,
        memory_budget_bytes=memory_budget_bytes,
        progress=progress,
        precision=precision,
    )
    return state.result()
