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

:func:`value_method_with_engine` runs a *registered* KAIROS method (``kairos_feature``,
``kairos_residual``, ``kairos_class_conditional``, with its ``method_params``) through this
table, timed and checked as :func:`kairos_curate.valuation.value` does; the ``value`` stage of
the pipeline calls it when ``engine.name`` is ``ray`` or the pool exceeds
``engine.sketch_above`` (``params.yaml``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kairos_curate.engine import get_engine
from kairos_curate.valuation.nystrom import DEFAULT_LANDMARKS, NystromKairosState
from kairos_curate.valuation.result import ValuationResult
from kairos_curate.valuation.sharded import DEFAULT_SHARD_SIZE, ShardedKairosState

__all__ = ["METHODS", "value_method_with_engine", "value_with_engine"]

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
        raise ValueError(f"method must be one of {METHODS}, got {method!r} (--method exact|nystrom)")
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


def value_method_with_engine(
    name: str,
    inputs: Any,
    params: Mapping[str, Any] | None = None,
    *,
    engine: Any = "local",
    ray_address: str | None = None,
    method: str = "exact",
    shard_size: int = DEFAULT_SHARD_SIZE,
    n_landmarks: int = DEFAULT_LANDMARKS,
    memory_budget_bytes: int | None = None,
) -> ValuationResult:
    """A registered KAIROS method on ``inputs``, computed by :func:`value_with_engine`.

    Same result type, metadata (``method``, ``params``, ``seconds``, ``ids``, ``labels``) and
    checks as ``kairos_curate.valuation.value(name, inputs, params)``; the values equal that
    call's to float tolerance for ``method="exact"`` (on either engine).

    Parameters
    ----------
    name
        A registered KAIROS method (``kairos_feature``, ``kairos_residual``,
        ``kairos_class_conditional``).
    inputs
        A :class:`kairos_curate.valuation.ValuationInputs`.
    params
        The method's parameters (e.g. ``{"bandwidth": "median"}``), validated by the method.
    engine, ray_address, method, shard_size, n_landmarks, memory_budget_bytes
        As in :func:`value_with_engine` (``method``: ``"exact"`` or ``"nystrom"``).

    Raises
    ------
    ValueError
        ``name`` is not a KAIROS method (only those have a sharded / sketched path), or an
        invalid ``method``/``engine``.
    """
    from kairos_curate.valuation import value
    from kairos_curate.valuation.base import ValuationInputs, ValuationMethod, get_method
    from kairos_curate.valuation.kairos import KairosMethod

    instance = get_method(name, params)
    if not isinstance(instance, KairosMethod):
        raise ValueError(
            f"valuation method {name!r} has no distributed path; engine 'ray' and "
            "engine.sketch_above apply to the KAIROS methods (kairos_feature, kairos_residual, "
            "kairos_class_conditional)"
        )
    eng = get_engine(engine, ray_address) if isinstance(engine, str) or engine is None else engine

    def fit(method_: ValuationMethod, data: ValuationInputs) -> ValuationResult:
        assert isinstance(method_, KairosMethod)
        args = method_.kairos_arguments(data)
        bandwidth = args.pop("bandwidth")
        return value_with_engine(
            data.pool,
            data.reference,
            bandwidth,
            engine=eng,
            method=method,
            shard_size=shard_size,
            n_landmarks=n_landmarks,
            memory_budget_bytes=memory_budget_bytes,
            **args,
        )

    return value(instance, inputs, fit=fit)


def value_routed(
    name: str, inputs: Any, params: Mapping[str, Any] | None = None, *, engine: Any, runner: Any = None, note: str = ""
) -> tuple[ValuationResult, str]:
    """Value with the path ``engine`` (the ``engine`` params section) picks; return the result and
    the path (``"local"``, ``"exact"`` or ``"nystrom"``).

    Only the KAIROS kernel sums (:class:`~kairos_curate.valuation.kairos.KairosMethod`) have a
    distributed or sketched path; every other method runs in this process exactly as
    :func:`kairos_curate.valuation.value` (with a printed note when a Ray engine was asked for).
    ``runner`` is the started engine (``None``: the local one).
    """
    from kairos_curate.valuation import get_method, value
    from kairos_curate.valuation.kairos import KairosMethod

    family = "kairos" if isinstance(get_method(name, params), KairosMethod) else "other"
    path = engine.value_path(family, int(inputs.pool.shape[0]))
    if path == "local":
        if engine.name == "ray":
            print(f"NOTE {note}: {name} has no distributed path; valued in this process")
        return value(name, inputs, params), path
    result = value_method_with_engine(
        name,
        inputs,
        params,
        engine=runner or "local",
        method=path,
        shard_size=engine.shard_size,
        n_landmarks=engine.landmarks,
    )
    return result, path
