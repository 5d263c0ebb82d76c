"""KAIROS values: MMD-based valuation of a pool against a reference (exact, blocked).

With the RBF kernel ``k(x, y) = exp(-||x - y||^2 / (2 sigma^2))``:

* ``b_i = mean_j k(x_i, z_j)`` (closeness to the reference),
* ``a_i = mean_k k(x_i, x_k)`` over the pool, self included (redundancy),
* feature value ``b_i - a_i`` (higher = better; first-order influence on ``MMD^2``),
* ``loo_i = MMD^2(pool without i, ref) - MMD^2(pool, ref)`` exactly (positive = helpful).

The kernel sums are computed tile by tile on CPU or CUDA (:mod:`.kernels`); the pool-pool
sum only over the upper block triangle. Memory beyond the inputs is bounded by
``memory_budget_bytes`` plus ``O((N + M) d)`` for the float32 copies.

Three registered valuation methods share this core: ``kairos_feature`` (labels unused),
``kairos_residual`` (the authors' label term, ``lam = 0.97``) and ``kairos_class_conditional``
(pool class c against reference class c).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch

from kairos_curate.valuation.base import (
    MethodParams,
    ValuationInputs,
    ValuationMethod,
    register_method,
)
from kairos_curate.valuation.incremental import KairosState
from kairos_curate.valuation.kernels import DEFAULT_MEMORY_BUDGET
from kairos_curate.valuation.result import ValuationResult

__all__ = ["KairosClassConditional", "KairosFeature", "KairosMethod", "KairosResidual", "kairos_values"]


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
) -> ValuationResult:
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
        carried into :meth:`ValuationResult.to_frame` otherwise.
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
    ValuationResult
        ``values``; terms ``b``, ``a``, ``feature_term``, ``label_term``, ``loo``; info
        ``bandwidth``, ``label_mode``, ``mmd2``... (also readable as ``res.b``, ``res.bandwidth``).

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


class KairosParams(MethodParams):
    """Parameters shared by the KAIROS methods."""

    #: RBF sigma, or ``"median"`` (median heuristic over a seeded sample of pairs).
    bandwidth: float | Literal["median"] = "median"


class KairosMethod(ValuationMethod):
    """Base of the registered KAIROS methods: one label mode of :func:`kairos_values`.

    :meth:`kairos_arguments` is what a method passes to :func:`kairos_values` besides the two
    embedding matrices, so other entry points (the sharded and Nyström paths of
    :func:`kairos_curate.engine.valuation.value_method_with_engine`) run the same method.
    """

    label_mode: ClassVar[str | None] = None
    family = "kairos"
    Params = KairosParams

    def _extra(self) -> dict[str, Any]:
        return {}

    def kairos_arguments(self, inputs: ValuationInputs) -> dict[str, Any]:
        """Keyword arguments of :func:`kairos_values` (bandwidth, labels, label mode...) for ``inputs``."""
        return dict(
            bandwidth=self.params.bandwidth,
            pool_labels=inputs.pool_labels,
            reference_labels=inputs.reference_labels,
            label_mode=self.label_mode,
            seed=inputs.seed,
            device=inputs.device,
            **self._extra(),
        )

    def fit(self, inputs: ValuationInputs) -> ValuationResult:
        """KAIROS values of ``inputs.pool`` against ``inputs.reference`` (see :func:`kairos_values`)."""
        return kairos_values(inputs.pool, inputs.reference, **self.kairos_arguments(inputs))


@register_method
class KairosFeature(KairosMethod):
    """KAIROS feature value ``b - a``: closeness to the reference minus redundancy in the pool."""

    name = "kairos_feature"
    description = "KAIROS b - a (labels unused)"
    needs_labels = False


class KairosResidualParams(KairosParams):
    """Residual mode: ``lam (b - a) - (1 - lam) ||onehot(y) - p(x)||``."""

    lam: float = 0.97
    combine: Literal["weighted", "rank", "zscore"] = "weighted"


@register_method
class KairosResidual(KairosMethod):
    """KAIROS with the authors' label term (a logistic regression fitted on the reference)."""

    name = "kairos_residual"
    description = "KAIROS residual label mode, lam = 0.97 (raw terms, as the reference code)"
    label_mode = "residual"
    Params = KairosResidualParams

    def _extra(self) -> dict[str, Any]:
        return {"lam": self.params.lam, "combine": self.params.combine}


@register_method
class KairosClassConditional(KairosMethod):
    """KAIROS with the class-conditional kernel: pool class c against reference class c."""

    name = "kairos_class_conditional"
    description = "KAIROS class-conditional kernel"
    label_mode = "class_conditional"
