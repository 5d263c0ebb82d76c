"""Selection: from per-sample values to a training subset of size ``k``.

Every policy is one module that registers a :class:`SelectionPolicy` (see :mod:`.base`); its
parameters are its own. :func:`select` checks the inputs, runs the policy named ``policy`` and
reports the class histogram of the selection, warning when a class is starved.

* ``global`` (:mod:`.global_topk`): the ``k`` highest values;
* ``per_class`` (:mod:`.per_class`): proportional class quotas filled by value;
* ``herding`` (:mod:`.herding`): per-class kernel herding towards the reference, among each
  class's top values (``drop_fraction``);
* ``gated_cover`` (:mod:`.gated_cover`): a per-class value gate (by default the contamination
  estimated by ``kairos_calibrated``), near-duplicate collapse, then herding towards the
  retained pool - the project's primary selection.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from kairos_curate.config import ParamsError
from kairos_curate.plugins import import_all
from kairos_curate.selection.base import (
    POLICIES,
    PolicyChoice,
    PolicyParams,
    Selection,
    SelectionContext,
    SelectionPolicy,
    SelectionSpec,
    allocate_quotas,
    get_policy,
    py_scalar,
    register_policy,
)
from kairos_curate.valuation.result import ValuationResult

# Every module of this package is imported, so each policy registers itself: adding a policy is one
# new file (and its parameters under value.selections in params.yaml).
import_all(__name__, __path__)

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
    "select",
    "subset_size",
]


def subset_size(n: int, k: int | None = None, frac: float | None = None) -> int:
    """The subset size: ``k``, or ``frac`` of ``n`` rounded (at least 1); checked against ``n``."""
    if k is not None and frac is not None:
        raise ValueError("give either k or frac, not both")
    if frac is not None:
        if not 0.0 < frac <= 1.0:
            raise ValueError(f"frac must lie in (0, 1], got {frac}")
        k = max(1, round(frac * n))
    if k is None:
        raise ValueError("give the subset size: k=<int> or frac=<float in (0, 1]>")
    if not 1 <= int(k) <= n:
        raise ValueError(f"k must lie in [1, {n}] (the pool size), got {k}")
    return int(k)


def select(
    values: np.ndarray | ValuationResult,
    k: int | None = None,
    *,
    frac: float | None = None,
    policy: str | SelectionPolicy = "global",
    labels: Any = None,
    ids: Any = None,
    reference_labels: Any = None,
    quotas: dict[Any, int] | None = None,
    embeddings: Any = None,
    reference: Any = None,
    bandwidth: float | None = None,
    min_class_share: float = 0.5,
    device: str = "auto",
    seed: int = 0,
    engine: Any = None,
    keep_counts: Mapping[Any, int] | None = None,
    **policy_params: Any,
) -> Selection:
    """Select ``k`` pool points (or a fraction ``frac``) from their values under a policy.

    Parameters
    ----------
    values
        ``(N,)`` values (higher = better) or a :class:`ValuationResult` (its ``values``,
        ``labels``, ``ids`` and ``bandwidth`` become the defaults, and policies may read its
        terms).
    k, frac
        Subset size, or a fraction of the pool (rounded, at least 1); exactly one, unless
        ``quotas`` is given (then ``k`` defaults to their sum).
    policy
        A registered policy name (:data:`POLICIES`) or an instance.
    labels
        ``(N,)`` pool labels; required by class-quota policies, and for class counts.
    ids
        ``(N,)`` sample ids (default: row numbers as strings); ties are broken by id.
    reference_labels
        Reference labels; define the classes and their proportional shares.
    quotas
        Explicit label -> count; overrides the proportional quotas. Without ``quotas`` and
        ``reference_labels``, shares are proportional to the pool's own class counts.
    embeddings, reference
        Pool and reference embeddings (policies that compute kernels need them).
    bandwidth
        RBF sigma for kernel policies (default: the result's, else the median heuristic).
    min_class_share
        Warn when a class gets less than this fraction of its proportional share.
    device, seed
        For kernel policies and random draws.
    engine
        Where a policy's tasks run (:func:`kairos_curate.engine.get_engine`; ``None``: here).
    keep_counts
        Label -> how many rows a gating policy keeps per class (``gated_cover`` with
        ``keep="matched"``, e.g. the ``info["keep_counts"]`` of a ``kairos_calibrated`` result,
        to gate another method's values to the same size).
    **policy_params
        The policy's own parameters (``drop_fraction=0.5`` for ``herding``...); an unknown
        one is an error naming the policy and its parameters.

    Returns
    -------
    Selection
    """
    result: ValuationResult | None = None
    if isinstance(values, ValuationResult):
        result = values
        labels = result.labels if labels is None else labels
        ids = result.ids if ids is None else ids
        if bandwidth is None:
            bandwidth = result.info.get("bandwidth")
        vals = result.values
    else:
        vals = np.asarray(values, dtype=np.float64)
    if vals.ndim != 1 or vals.shape[0] == 0:
        raise ValueError(f"values must be a non-empty 1-D array, got shape {vals.shape}")
    if not np.isfinite(vals).all():
        raise ValueError(f"values has NaN/inf at rows {np.flatnonzero(~np.isfinite(vals))[:10].tolist()}")
    n = vals.shape[0]
    if isinstance(policy, SelectionPolicy):
        if policy_params:
            raise ValueError("give the policy's parameters either to its instance or to select()")
        chooser = policy
    else:
        try:
            chooser = get_policy(policy, policy_params)
        except ParamsError as err:
            raise ParamsError([f"of policy {policy!r}: {line}" for line in err.problems]) from None
    id_arr = np.arange(n).astype(str) if ids is None else np.asarray([str(i) for i in ids])
    if id_arr.shape[0] != n:
        raise ValueError(f"ids has {id_arr.shape[0]} entries but there are {n} values")
    if not 0.0 <= min_class_share <= 1.0:
        raise ValueError(f"min_class_share must lie in [0, 1], got {min_class_share}")
    if k is None and frac is None and quotas is not None:
        k = int(sum(quotas.values()))
    k = subset_size(n, k, frac)
    y = None if labels is None else _label_array(labels, n)
    y_ref = None if reference_labels is None else np.asarray(reference_labels)
    if y is not None and y_ref is not None and (y.dtype.kind in "US") != (y_ref.dtype.kind in "US"):
        y, y_ref = y.astype(str), y_ref.astype(str)
    if chooser.needs_labels and y is None:
        raise ValueError(f"policy={chooser.name!r} needs the pool labels (labels=...)")
    weights = _class_weights(y, y_ref, quotas)
    ctx = SelectionContext(
        values=vals,
        ids=id_arr,
        labels=y,
        reference_labels=y_ref,
        weights=weights,
        quotas=quotas,
        embeddings=embeddings,
        reference=reference,
        bandwidth=bandwidth,
        result=result,
        device=device,
        seed=seed,
        engine=engine,
        keep_counts=None if keep_counts is None else dict(keep_counts),
    )
    choice = chooser.choose(ctx, k)
    chosen = np.asarray(choice.indices, dtype=np.int64)
    total = sum(weights.values())
    expected = {c: w / total for c, w in weights.items()} if total > 0 else {}
    notes = list(choice.notes)
    counts: dict[Any, int] = {}
    if y is not None:
        counts, starved = _class_counts(y, y_ref, weights, expected, chosen, min_class_share)
        notes += [msg + chooser.starvation_hint for msg in starved]
    for msg in notes:
        warnings.warn(msg, UserWarning, stacklevel=2)
    return Selection(
        indices=chosen,
        ids=id_arr[chosen],
        class_counts=counts,
        policy=chooser.name,
        params=chooser.params.model_dump(),
        warnings=notes,
        quotas=choice.quotas,
        expected_share=expected,
        info=choice.info,
        eligible=choice.eligible,
    )


def _label_array(labels: Any, n: int) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.shape != (n,):
        raise ValueError(
            f"labels has {arr.shape[0] if arr.ndim else 0} entries but there are "
            f"{n} values; give one label per pool row"
        )
    return arr


def _class_weights(
    y: np.ndarray | None, y_ref: np.ndarray | None, quotas: Mapping[Any, int] | None
) -> dict[Any, float]:
    """Class -> weight of its proportional share: explicit quotas, else reference, else pool counts."""
    if y is None:
        return {}
    if quotas is not None:
        return {c: float(q) for c, q in quotas.items()}
    source = y_ref if y_ref is not None else y
    cls, cnt = np.unique(source, return_counts=True)
    return {py_scalar(c): float(m) for c, m in zip(cls, cnt, strict=True)}


def _class_counts(
    y: np.ndarray,
    y_ref: np.ndarray | None,
    weights: dict[Any, float],
    expected: dict[Any, float],
    chosen: np.ndarray,
    min_class_share: float,
) -> tuple[dict[Any, int], list[str]]:
    """Selected count of every known class (0 included) and a warning per starved class."""
    known = set(np.unique(y).tolist()) | set(weights)
    if y_ref is not None:
        known |= set(np.unique(y_ref).tolist())
    sel_labels = y[chosen]
    counts = {py_scalar(c): int(np.sum(sel_labels == c)) for c in sorted(known, key=lambda v: (str(type(v)), v))}
    starved = []
    for c, share in expected.items():
        got = counts.get(c, 0)
        if got < min_class_share * share * chosen.shape[0]:
            starved.append(
                f"class {c!r}: {got} of {chosen.shape[0]} selected ({got / chosen.shape[0]:.1%}), "
                f"below {min_class_share:.0%} of its proportional share ({share:.1%})"
            )
    return counts, starved
