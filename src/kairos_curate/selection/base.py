"""The selection contract: a policy turns per-sample values into a subset of size ``k``.

A policy is one module with one :class:`SelectionPolicy` subclass decorated with
:func:`register_policy`. It owns its parameters (a pydantic model, validated strictly) and
implements ``choose(context, k) -> PolicyChoice``. :func:`kairos_curate.selection.select` does
everything policies share: it checks the inputs, builds the :class:`SelectionContext` (values,
ids, labels, class weights), calls the policy, then counts classes, warns about starved classes
and returns a :class:`Selection`.

Adding a policy::

    @register_policy
    class MyPolicy(SelectionPolicy):
        name = "my_policy"
        description = "what it does, in one line"

        class Params(PolicyParams):
            strength: float = 1.0

        def choose(self, ctx: SelectionContext, k: int) -> PolicyChoice:
            return PolicyChoice(indices=ctx.order[:k])
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import numpy as np

from kairos_curate.config import ParamsError
from kairos_curate.plugins import Plugin, PluginParams, Registry
from kairos_curate.valuation.result import ValuationResult

__all__ = [
    "POLICIES",
    "PolicyChoice",
    "PolicyParams",
    "Selection",
    "SelectionContext",
    "SelectionPolicy",
    "SelectionSpec",
    "allocate_quotas",
    "get_policy",
    "register_policy",
]


def py_scalar(v: Any) -> Any:
    """A numpy scalar as the Python scalar (class keys of dicts)."""
    return v.item() if isinstance(v, np.generic) else v


@dataclass
class Selection:
    """A chosen subset of the pool.

    Attributes
    ----------
    indices : numpy.ndarray
        Row indices into the pool, in selection order (best first / greedy order).
    ids : numpy.ndarray
        The ids of those rows (strings).
    class_counts : dict
        Label -> number selected, for every known class (0 included); empty without labels.
    policy : str
        Registry name of the policy.
    params : dict
        The policy's parameters.
    warnings : list of str
        Class-share and quota warnings (also emitted with :func:`warnings.warn`).
    quotas : dict or None
        Label -> quota used (class-quota policies).
    expected_share : dict
        Label -> proportional share the warning threshold refers to.
    info : dict
        Policy-specific diagnostics (e.g. how many samples a gate let in per class).
    eligible : numpy.ndarray or None
        ``(N,)`` bool: the rows the policy let compete for the budget (``None``: all); a row
        outside it was dropped by the policy's gate, not by the budget.
    """

    indices: np.ndarray
    ids: np.ndarray
    class_counts: dict[Any, int]
    policy: str
    params: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    quotas: dict[Any, int] | None = None
    expected_share: dict[Any, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    eligible: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (class keys as strings)."""
        return {
            "policy": self.policy,
            "params": dict(self.params),
            "k": int(self.indices.shape[0]),
            "indices": [int(i) for i in self.indices],
            "ids": [str(i) for i in self.ids],
            "class_counts": {str(c): int(n) for c, n in self.class_counts.items()},
            "quotas": None if self.quotas is None else {str(c): int(n) for c, n in self.quotas.items()},
            "expected_share": {str(c): float(s) for c, s in self.expected_share.items()},
            "warnings": list(self.warnings),
            "info": _json_ready(self.info),
            "eligible": None if self.eligible is None else int(self.eligible.sum()),
        }


def _json_ready(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | np.ndarray):
        return [_json_ready(v) for v in obj]
    return py_scalar(obj)


@dataclass(frozen=True)
class SelectionContext:
    """Everything a policy may look at; built and checked by :func:`~kairos_curate.selection.select`.

    Attributes
    ----------
    values
        ``(N,)`` float64 values, higher = better.
    ids
        ``(N,)`` sample ids (strings); ties are broken by id.
    labels
        ``(N,)`` pool labels as a user has them, or ``None``.
    reference_labels
        ``(M,)`` reference labels, or ``None``.
    weights
        Class -> proportional weight of the class quotas (explicit quotas, else reference class
        counts, else pool class counts); empty without labels.
    quotas
        Explicit class -> count, if given.
    embeddings, reference
        Pool and reference embeddings, if given.
    bandwidth
        RBF sigma (the valuation's, if it had one).
    result
        The full valuation result when one was given (policies may read its terms).
    device, seed
        For policies that compute kernels or draw at random.
    engine
        Where a policy's tasks run (:mod:`kairos_curate.engine`; ``None``: in this process).
    keep_counts
        Class -> how many rows a gating policy keeps (``gated_cover``'s ``keep="matched"``: the
        same gate size for any method's values), if given.
    """

    values: np.ndarray
    ids: np.ndarray
    labels: np.ndarray | None
    reference_labels: np.ndarray | None
    weights: dict[Any, float]
    quotas: dict[Any, int] | None = None
    embeddings: Any = None
    reference: Any = None
    bandwidth: float | None = None
    result: ValuationResult | None = None
    device: str = "auto"
    seed: int = 0
    engine: Any = None
    keep_counts: dict[Any, int] | None = None

    @property
    def n(self) -> int:
        """Pool size."""
        return int(self.values.shape[0])

    @cached_property
    def order(self) -> np.ndarray:
        """Pool indices by value, best first; ties broken by id."""
        return np.lexsort((self.ids, -self.values))

    def by_class(self) -> dict[Any, np.ndarray]:
        """Class -> its pool indices, best value first, for every quota class."""
        assert self.labels is not None
        order = self.order
        return {c: order[self.labels[order] == c] for c in self.weights}


@dataclass
class PolicyChoice:
    """What a policy returns: the chosen rows and what :class:`Selection` reports about them."""

    indices: np.ndarray
    quotas: dict[Any, int] | None = None
    notes: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    #: ``(N,)`` bool: rows the policy let compete (its gate); ``None`` = every row.
    eligible: np.ndarray | None = None


#: Base of every policy's parameter model: strict, unknown keys rejected.
PolicyParams = PluginParams


class SelectionPolicy(Plugin, ABC):
    """A registered selection policy; subclasses set the class attributes and ``choose``.

    Class attributes
    ----------------
    name, description
        Registry name and one line for tables and ``--help``.
    needs_labels
        Whether pool labels are required.
    needs_embeddings
        Whether pool and reference embeddings (and reference labels) are required.
    starvation_hint
        Appended to the warning about a starved class.
    Params
        Pydantic model of the policy's parameters (their only defaults).
    """

    needs_labels: ClassVar[bool] = True
    needs_embeddings: ClassVar[bool] = False
    starvation_hint: ClassVar[str] = ""

    @abstractmethod
    def choose(self, ctx: SelectionContext, k: int) -> PolicyChoice:
        """Pick ``k`` pool rows (fewer only when not enough are eligible)."""


#: Registry: policy name -> class. Filled by :func:`register_policy` at import of each module.
POLICIES: Registry[type[SelectionPolicy]] = Registry("selection policy", "policy")

#: Class decorator: add a :class:`SelectionPolicy` subclass to :data:`POLICIES`.
register_policy = POLICIES.register


def get_policy(name: str, params: Mapping[str, Any] | None = None) -> SelectionPolicy:
    """An instance of the registered policy ``name`` with validated ``params``."""
    return POLICIES.create(name, params)


#: Keys of a selection entry that are not the policy's parameters.
SPEC_KEYS = ("policy", "method", "method_params")


@dataclass(frozen=True)
class SelectionSpec:
    """A named way to select: a policy and its parameters (one entry of ``value.selections``),
    optionally with the valuation method whose values it needs.

    Attributes
    ----------
    name
        What the selection is called in tables and ``selections.json`` (e.g. ``herding``).
    policy
        Registry name of the policy.
    params
        The policy's parameters (validated when the spec is made).
    method
        A registered valuation method this selection values with (e.g. ``gated_cover`` with
        ``kairos_calibrated``, whose result carries the gate's keep counts); ``None``: it takes
        the values it is given (``value.method`` in the value stage, every method in the
        comparison).
    method_params
        That method's parameters.
    """

    name: str
    policy: str
    params: dict[str, Any] = field(default_factory=dict)
    method: str | None = None
    method_params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        get_policy(self.policy, self.params)  # fail early, naming the policy and the parameter
        if self.method is not None:
            from kairos_curate.valuation import get_method  # the valuation package imports this one

            try:
                get_method(self.method, self.method_params)
            except ParamsError as err:
                raise ParamsError(
                    [line if line.startswith("method:") else f"method_params.{line}" for line in err.problems]
                ) from None
        elif self.method_params:
            raise ValueError("method_params is given without a method")

    @classmethod
    def from_mapping(cls, name: str, entry: Mapping[str, Any]) -> SelectionSpec:
        """From ``{policy: <name>, [method: <name>, method_params: {...},] <param>: <value>, ...}``
        (a ``value.selections`` entry)."""
        if not isinstance(entry, Mapping) or "policy" not in entry:
            raise ParamsError(
                f"{name}: must be a mapping with a 'policy' key (one of "
                f"{', '.join(sorted(POLICIES))}) and that policy's parameters; got {entry!r}"
            )
        params = {k: v for k, v in entry.items() if k not in SPEC_KEYS}
        method = entry.get("method")
        method_params = entry.get("method_params") or {}
        if not isinstance(method_params, Mapping):
            raise ParamsError(f"{name}.method_params: must be a mapping, got {method_params!r}")
        try:
            return cls(name, str(entry["policy"]), params, None if method is None else str(method), dict(method_params))
        except ParamsError as err:
            raise ParamsError([f"{name}.{line}" for line in err.problems]) from None
        except ValueError as err:
            raise ParamsError(f"{name}: {err}") from None

    def policy_instance(self) -> SelectionPolicy:
        """A fresh instance of the policy with these parameters."""
        return get_policy(self.policy, self.params)

    def uses(self, method: str, method_params: Mapping[str, Any] | None = None) -> bool:
        """Whether values of ``method`` (with ``method_params``) are the ones this spec wants."""
        return self.method is None or (self.method == method and dict(self.method_params) == dict(method_params or {}))


def allocate_quotas(k: int, weights: dict[Any, float], capacity: dict[Any, int]) -> dict[Any, int]:
    """Split ``k`` over classes proportionally to ``weights``, capped by ``capacity``.

    Floors of the ideal shares first, then one unit at a time to the class with the largest
    deficit (ideal minus allocated) that still has capacity; ties go to the earlier class.
    """
    classes = list(weights)
    w = np.array([max(float(weights[c]), 0.0) for c in classes])
    cap = np.array([int(capacity.get(c, 0)) for c in classes])
    if w.sum() <= 0:
        raise ValueError("class weights for the quotas are all zero")
    ideal = k * w / w.sum()
    alloc = np.minimum(np.floor(ideal).astype(np.int64), cap)
    remaining = min(k, int(cap.sum())) - int(alloc.sum())
    while remaining > 0:
        deficit = np.where(alloc < cap, ideal - alloc, -np.inf)
        deficit = np.where(w > 0, deficit, np.where(alloc < cap, -1e18, -np.inf))
        j = int(np.argmax(deficit))
        alloc[j] += 1
        remaining -= 1
    return {c: int(a) for c, a in zip(classes, alloc, strict=True)}


def class_quotas(ctx: SelectionContext, k: int, candidates: dict[Any, np.ndarray]) -> tuple[dict[Any, int], list[str]]:
    """Quotas for ``k`` over the classes of ``candidates`` (class -> eligible rows), with notes.

    Explicit ``ctx.quotas`` are capped by what each class has; otherwise ``k`` is split in
    proportion to ``ctx.weights`` (:func:`allocate_quotas`).
    """
    notes: list[str] = []
    capacity = {c: len(v) for c, v in candidates.items()}
    if ctx.quotas is not None:
        used = {c: min(int(q), capacity[c]) for c, q in ctx.quotas.items()}
        for c, q in ctx.quotas.items():
            if int(q) > capacity[c]:
                notes.append(
                    f"class {c!r}: quota {q} exceeds its {capacity[c]} available pool point(s); took all of them"
                )
        return used, notes
    used = allocate_quotas(k, ctx.weights, capacity)
    total = sum(ctx.weights.values())
    for c, w in ctx.weights.items():
        ideal = k * w / total
        if capacity[c] < ideal:
            notes.append(
                f"class {c!r}: only {capacity[c]} pool point(s) available for a proportional quota of {ideal:.1f}"
            )
    return used, notes


def candidates_by_class(ctx: SelectionContext) -> tuple[dict[Any, np.ndarray], list[str]]:
    """Class -> rows best first (:meth:`SelectionContext.by_class`), and a note on rows whose
    label is no quota class (they cannot be selected by a class-quota policy)."""
    by_class = ctx.by_class()
    eligible = sum(len(v) for v in by_class.values())
    notes = []
    if eligible < ctx.n:
        notes.append(
            f"{ctx.n - eligible} pool point(s) carry labels outside the quota classes and cannot "
            "be selected under this policy"
        )
    return by_class, notes
