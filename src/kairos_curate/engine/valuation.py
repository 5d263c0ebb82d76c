"""KAIROS valuation behind the engine switch: ``engine`` x ``method``.

=========  ======================================================  ==========================
method     ``engine="local"``                                      ``engine="ray"``
=========  ======================================================  ==========================
exact      :func:`~kairos_curate.valuation.kairos_values` (today's  shard-pair tasks
           single-process path, unchanged)                         (:class:`ShardedKairosState`)
nystrom    :class:`NystromKairosState`, tasks in this process      the same tasks on Ray
=========  ======================================================  ==========================

Exact results agree across engines to float tolerance (the sharded sums differ from the
single-process ones only in the float32 rounding of differently cut tiles); the Nyström sketch
equal across engines (bit for bit at equal torch thread counts).
"""

from __future__ import annotations

from typing import Any

from kairos_curate.engine import get_engine
from kairos_curate.valuation.nystrom import DEFAULT_LANDMARKS, NystromKairosState
from kairos_curate.valuation.result import ValuationResult
from kairos_curate.valuation.sharded import DEFAULT_SHARD_SIZE, ShardedKairosState

__all__ = ["METHODS", "value_with_engine"]

#: Valuation methods of :func:`value_with_engine`.
METHODS = ("exact", "nystrom")


def value_with_engine(
    pool: Any,
    reference: Any,
    bandwidth: float | str = "median",
    *,
    engine: Any = "local",
    ray_address: str | None = None,
    method: str = "exact",
    pool_labels: Any = None,
    reference_labels: Any = None,
    label_mode: str | None = None,
    lam: float = 0.97,
    combine: str = "weighted",
    device: str = "auto",
    memory_budget_bytes: int | None = None,
    precision: str = "fp32",
    shard_size: int = DEFAULT_SHARD_SIZE,
    n_landmarks: int = DEFAULT_LANDMARKS,
    seed: int = 0,
    progress: bool = False,
) -> ValuationResult:
    """Value ``pool`` against ``reference`` on an engine (see the module table).

    Parameters
    ----------
    pool, reference, bandwidth, pool_labels, reference_labels, label_mode, lam, combine,
    device, precision, seed, progress
        As in :func:`kairos_curate.valuation.kairos_values` (``progress`` only on the
        single-process exact path).
    engine
        ``"local"``, ``"ray"`` or an engine from :func:`kairos_curate.engine.get_engine`.
    ray_address
        With ``engine="ray"``: ``None`` starts a local cluster, else the cluster to join.
    method
        ``"exact"`` or ``"nystrom"`` (sketch for pools beyond exact reach).
    memory_budget_bytes
        Bound on each task's tile buffers (default 256 MiB).
    shard_size
        Rows per task shard (sharded paths).
    n_landmarks
        Nyström landmarks.

    Raises
    ------
    ValueError
        Unknown ``method``/``engine``, or an address with the local engine.
    """
    from kairos_curate.valuation import kairos_values
    from kairos_curate.valuation.kernels import DEFAULT_MEMORY_BUDGET

    if method not in METHODS:
        raise ValueError(
            f"method must be one of {METHODS}, got {method!r} (--method exact|nystrom)"
        )
    budget = DEFAULT_MEMORY_BUDGET if memory_budget_bytes is None else int(memory_budget_bytes)
    eng = get_engine(engine, ray_address) if isinstance(engine, str) or engine is None else engine
    labels = dict(
        pool_labels=pool_labels,
        reference_labels=reference_labels,
        label_mode=label_mode,
        lam=lam,
        combine=combine,
        device=device,
        seed=seed,
    )
    if method == "exact" and eng.name == "local":
        return kairos_values(
            pool,
            reference,
            bandwidth,
            memory_budget_bytes=budget,
            precision=precision,
            progress=progress,
            **labels,
        )
    if method == "exact":
        return ShardedKairosState.from_pool(
            pool,
            reference,
            bandwidth,
            engine=eng,
            shard_size=shard_size,
            memory_budget_bytes=budget,
            precision=precision,
            **labels,
        ).result()
    return NystromKairosState.from_pool(
        pool,
        reference,
        bandwidth,
        n_landmarks=n_landmarks,
        engine=eng,
        shard_size=shard_size,
        memory_budget_bytes=budget,
        precision=precision,
        **labels,
    ).result()
