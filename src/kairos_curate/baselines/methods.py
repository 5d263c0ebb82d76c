"""One interface for every valuation method: a value per pool sample and its wall time.

Each method takes a :class:`ValuationInputs` (pool embeddings, the pool's labels as a user has
them, the clean labelled reference, a seed) and returns ``(N,)`` values, higher = more valuable
(lowest = most suspicious). :func:`run_method` times the call and packs a :class:`MethodOutput`.
No method ever receives ground truth.

====================== ==========================================================================
name                   what it computes
====================== ==========================================================================
kairos_feature         KAIROS ``b - a`` (RBF, median bandwidth), labels unused
kairos_residual        KAIROS label mode ``lam (b - a) - (1 - lam) ||onehot(y) - p(x)||``,
                       ``lam = 0.97`` as the reference implementation (raw terms)
kairos_class_conditional KAIROS with the class-conditional kernel (pool class c vs reference class c)
random                 uniform random values (seeded): the chance baseline
nearest_reference      minus the distance to the nearest reference embedding
knn_shapley            closed-form KNN-Shapley on the labelled reference (K = 10)
lava                   LAVA: calibrated OT gradient with a label cost (:mod:`.lava`)
confident_learning     cleanlab label-quality score from cross-validated probabilities
====================== ==========================================================================
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["METHODS", "MethodOutput", "MethodSpec", "ValuationInputs", "run_method"]


@dataclass(frozen=True)
class ValuationInputs:
    """What a valuation method may see.

    Attributes
    ----------
    pool : numpy.ndarray
        ``(N, d)`` pool embeddings.
    pool_labels : numpy.ndarray
        ``(N,)`` labels as given (possibly noisy).
    reference : numpy.ndarray
        ``(M, d)`` clean reference embeddings.
    reference_labels : numpy.ndarray
        ``(M,)`` reference labels.
    seed : int
        Seed of any random choice the method makes.
    """

    pool: np.ndarray
    pool_labels: np.ndarray
    reference: np.ndarray
    reference_labels: np.ndarray
    seed: int = 0


@dataclass
class MethodOutput:
    """A method's values and how long it took.

    Attributes
    ----------
    name : str
        Registry name.
    values : numpy.ndarray
        ``(N,)`` float64, higher = more valuable.
    seconds : float
        Wall time of the call.
    info : dict
        Method-specific extras (e.g. bandwidth, number of label issues).
    """

    name: str
    values: np.ndarray
    seconds: float
    info: dict[str, Any] = field(default_factory=dict)


MethodFn = Callable[[ValuationInputs], tuple[np.ndarray, dict[str, Any]]]


@dataclass(frozen=True)
class MethodSpec:
    """A registered method: its function, whether its output depends on the seed, and a summary."""

    fn: MethodFn
    seeded: bool
    description: str


def _kairos(label_mode: str | None) -> MethodFn:
    def method(inp: ValuationInputs) -> tuple[np.ndarray, dict[str, Any]]:
        from kairos_curate.valuation import kairos_values

        res = kairos_values(
            inp.pool,
            inp.reference,
            "median",
            pool_labels=inp.pool_labels,
            reference_labels=inp.reference_labels,
            label_mode=label_mode,
            lam=0.97,
            seed=inp.seed,
        )
        return np.asarray(res.values, dtype=np.float64), {
            "bandwidth": float(res.bandwidth),
            "label_mode": label_mode or "none",
        }

    return method


def _random(inp: ValuationInputs) -> tuple[np.ndarray, dict[str, Any]]:
    return np.asarray(np.random.default_rng(inp.seed).random(inp.pool.shape[0])), {}


def _nearest_reference(inp: ValuationInputs) -> tuple[np.ndarray, dict[str, Any]]:
    x = np.asarray(inp.pool, dtype=np.float64)
    z = np.asarray(inp.reference, dtype=np.float64)
    z_sq = (z * z).sum(1)
    out = np.empty(x.shape[0])
    for lo in range(0, x.shape[0], 2048):
        xb = x[lo : lo + 2048]
        d2 = (xb * xb).sum(1)[:, None] + z_sq[None, :] - 2.0 * xb @ z.T
        out[lo : lo + 2048] = np.sqrt(np.maximum(d2.min(axis=1), 0.0))
    return -out, {}


def _knn_shapley(inp: ValuationInputs) -> tuple[np.ndarray, dict[str, Any]]:
    from kairos_curate.valuation import knn_shapley

    return np.asarray(
        knn_shapley(inp.pool, inp.pool_labels, inp.reference, inp.reference_labels, k=10),
        dtype=np.float64,
    ), {"k": 10}


def _lava(inp: ValuationInputs) -> tuple[np.ndarray, dict[str, Any]]:
    from kairos_curate.baselines.lava import lava_values

    res = lava_values(inp.pool, inp.pool_labels, inp.reference, inp.reference_labels, seed=inp.seed)
    return res.values, {**res.info, "ot_distance": res.ot_distance}


def _confident_learning(inp: ValuationInputs) -> tuple[np.ndarray, dict[str, Any]]:
    from kairos_curate.baselines.confident_learning import confident_learning

    res = confident_learning(inp.pool, inp.pool_labels, seed=inp.seed)
    return res.values, res.info


METHODS: dict[str, MethodSpec] = {
    "kairos_feature": MethodSpec(_kairos(None), False, "KAIROS b - a (labels unused)"),
    "kairos_residual": MethodSpec(
        _kairos("residual"), False, "KAIROS residual label mode, lam = 0.97"
    ),
    "kairos_class_conditional": MethodSpec(
        _kairos("class_conditional"), False, "KAIROS class-conditional kernel"
    ),
    "random": MethodSpec(_random, True, "uniform random values"),
    "nearest_reference": MethodSpec(
        _nearest_reference, False, "minus distance to the nearest reference"
    ),
    "knn_shapley": MethodSpec(_knn_shapley, False, "closed-form KNN-Shapley, K = 10"),
    "lava": MethodSpec(_lava, False, "LAVA: calibrated OT gradient with label cost (exact OT)"),
    "confident_learning": MethodSpec(
        _confident_learning, True, "cleanlab self-confidence from 5-fold logistic regression"
    ),
}


def run_method(name: str, inputs: ValuationInputs) -> MethodOutput:
    """Run the registered method ``name`` on ``inputs`` and time it.

    Parameters
    ----------
    name
        A key of :data:`METHODS`.
    inputs
        Pool, labels, reference and seed.

    Returns
    -------
    MethodOutput

    Raises
    ------
    ValueError
        Unknown name (the message lists the known ones), or the method returned the wrong shape
        or non-finite values.
    """
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known: {sorted(METHODS)}")
    start = time.perf_counter()
    values, info = METHODS[name].fn(inputs)
    seconds = time.perf_counter() - start
    values = np.asarray(values, dtype=np.float64)
    n = inputs.pool.shape[0]
    if values.shape != (n,):
        raise ValueError(f"method {name!r} returned shape {values.shape}, expected ({n},)")
    if not np.isfinite(values).all():
        raise ValueError(f"method {name!r} returned NaN/inf values")
    return MethodOutput(name=name, values=values, seconds=seconds, info=info)
