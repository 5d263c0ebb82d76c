"""The valuation contract: what a method may see, what it returns, and the registry of methods.

A method is one module with one :class:`ValuationMethod` subclass decorated with
:func:`register_method`. It declares its parameters as a pydantic model (validated strictly: an
unknown or mistyped parameter is an error naming it) and implements ``fit(inputs) ->
ValuationResult``. :func:`value` runs any registered method by name, times it and checks its
output, so the value stage, the method comparison, the selection and the audit all go through
the same door. No method ever receives ground truth: :class:`ValuationInputs` has no place
for it.

Adding a method::

    @register_method
    class MyMethod(ValuationMethod):
        name = "my_method"
        description = "what it computes, in one line"

        class Params(MethodParams):
            k: int = 10

        def fit(self, inputs: ValuationInputs) -> ValuationResult:
            return ValuationResult(self.name, values=...)
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from kairos_curate.plugins import Plugin, PluginParams, Registry
from kairos_curate.valuation.result import ValuationResult

__all__ = [
    "METHODS",
    "MethodParams",
    "ValuationInputs",
    "ValuationMethod",
    "get_method",
    "register_method",
    "value",
]


@dataclass(frozen=True)
class ValuationInputs:
    """What a valuation method may see: what a user has, never ground truth.

    Attributes
    ----------
    pool : numpy.ndarray
        ``(N, d)`` pool embeddings.
    pool_labels : numpy.ndarray or None
        ``(N,)`` labels as given (possibly noisy); ``None`` if the user has none.
    reference : numpy.ndarray
        ``(M, d)`` clean reference embeddings.
    reference_labels : numpy.ndarray or None
        ``(M,)`` reference labels.
    seed : int
        Seed of any random choice the method makes.
    ids : numpy.ndarray or None
        ``(N,)`` pool sample ids (carried into the result).
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"`` for methods that compute on a device.
    """

    pool: np.ndarray
    pool_labels: np.ndarray | None
    reference: np.ndarray
    reference_labels: np.ndarray | None
    seed: int = 0
    ids: np.ndarray | None = None
    device: str = "auto"


#: Base of every method's parameter model: strict, unknown keys rejected.
MethodParams = PluginParams


class ValuationMethod(Plugin, ABC):
    """A registered valuation method; subclasses set the class attributes and ``fit``.

    Class attributes
    ----------------
    name
        Registry name.
    description
        One line for tables and ``--help``.
    seeded
        Whether the output depends on ``inputs.seed`` (deterministic methods run once per pool).
    needs_labels
        Whether ``pool_labels`` and ``reference_labels`` are required.
    family
        ``"kairos"`` for the KAIROS methods, ``"baseline"`` for the others (comparison tables
        put the best of each family side by side).
    Params
        Pydantic model of the method's parameters (defaults live there and only there).
    """

    seeded: ClassVar[bool] = False
    needs_labels: ClassVar[bool] = True
    family: ClassVar[str] = "baseline"

    @abstractmethod
    def fit(self, inputs: ValuationInputs) -> ValuationResult:
        """Value every pool sample of ``inputs``; higher = more valuable."""


#: Registry: method name -> class. Filled by :func:`register_method` at import of each module.
METHODS: Registry[type[ValuationMethod]] = Registry("valuation method", "method")

#: Class decorator: add a :class:`ValuationMethod` subclass to :data:`METHODS`.
register_method = METHODS.register


def get_method(name: str, params: Mapping[str, Any] | None = None) -> ValuationMethod:
    """An instance of the registered method ``name`` with validated ``params``."""
    return METHODS.create(name, params)


def value(
    method: str | ValuationMethod,
    inputs: ValuationInputs,
    params: Mapping[str, Any] | None = None,
    *,
    fit: Callable[[ValuationMethod, ValuationInputs], ValuationResult] | None = None,
) -> ValuationResult:
    """Run a valuation method on ``inputs``, time it and check what it returns.

    Parameters
    ----------
    method
        A registered name (see :data:`METHODS`) or an instance.
    inputs
        Pool, labels, reference, seed.
    params
        The method's parameters (with a name; an instance carries its own).
    fit
        Computes the values instead of the method's own ``fit`` (called as ``fit(instance,
        inputs)``), e.g. the same KAIROS method on a Ray cluster
        (:func:`kairos_curate.engine.valuation.value_method_with_engine`); the result is timed
        and checked the same way.

    Returns
    -------
    ValuationResult
        With ``method``, ``params``, ``seconds``, ``ids`` and ``labels`` filled in.

    Raises
    ------
    ValueError
        Unknown method or parameter, missing labels for a method that needs them, or an output
        of the wrong shape or with NaN/inf values.
    """
    instance = get_method(method, params) if isinstance(method, str) else method
    if instance.needs_labels and (inputs.pool_labels is None or inputs.reference_labels is None):
        raise ValueError(
            f"valuation method {instance.name!r} needs pool and reference labels; give both "
            "or use a label-blind method such as kairos_feature or nearest_reference"
        )
    start = time.perf_counter()
    result = instance.fit(inputs) if fit is None else fit(instance, inputs)
    seconds = time.perf_counter() - start
    n = inputs.pool.shape[0]
    if result.values.shape != (n,):
        raise ValueError(f"method {instance.name!r} returned shape {result.values.shape}, expected ({n},)")
    if not np.isfinite(result.values).all():
        bad = np.flatnonzero(~np.isfinite(result.values))
        raise ValueError(
            f"method {instance.name!r} returned NaN/inf values at rows {bad[:10].tolist()}; "
            "check the inputs and the method's parameters (e.g. the bandwidth)"
        )
    result.method = instance.name
    result.params = instance.params.model_dump()
    result.seconds = seconds
    if inputs.ids is not None:
        result.ids = np.asarray([str(i) for i in inputs.ids])
    if result.labels is None and inputs.pool_labels is not None:
        result.labels = np.asarray(inputs.pool_labels)
    return result
