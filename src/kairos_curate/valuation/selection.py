"""Choosing a subset from per-sample values: global top-k, per-class quotas, kernel herding.

Individually top-ranked points are prototypes and often near-duplicates of each other, and when
off-task images crowd one class's neighbourhood the pool-density term ``a`` pushes that class's
genuine samples down, so a global top-k can drop a class entirely. :func:`select` therefore
offers three policies and always reports the class histogram of the selection:

* ``"global"``: the ``k`` highest values (ties broken by id);
* ``"per_class"``: quotas proportional to the reference's class counts (or given ``quotas``),
  filled by value within each class; quotas are allocated by largest remainder and capped by the
  number of pool points of the class, the rest going to the classes with the largest deficit;
* ``"herding"``: the same quotas, but each class's subset ``S`` is grown greedily (kernel
  herding) so that ``MMD^2(S, reference of that class)`` falls as much as possible at each step,
  which penalises redundancy *inside the subset*; optionally after dropping the lowest-valued
  ``drop_fraction`` of each class. Adding ``x`` to ``S`` (``|S| = t``) changes the biased MMD^2
  by a term that is minimised by ``argmin_x 2 sum_{s in S} k(x, s) + k(x, x) - 2 (t + 1) b(x)``
  with ``b(x)`` the mean kernel to the class's reference.

A class whose share of the selection falls below ``min_class_share`` times its proportional
share triggers a :class:`UserWarning`, also recorded in :attr:`SelectionResult.warnings`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from kairos_curate.valuation.bandwidth import median_bandwidth
from kairos_curate.valuation.kernels import (
    KernelSpace,
    as_float64_matrix,
    cross_sums,
    kernel_matrix,
)
from kairos_curate.valuation.result import KairosResult

__all__ = ["POLICIES", "SelectionResult", "allocate_quotas", "select"]

POLICIES = ("global", "per_class", "herding")


def _py(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


@dataclass
class SelectionResult:
    """A chosen subset of the pool.

    Attributes
    ----------
    indices : numpy.ndarray
        Row indices into the pool, in selection order (best first / herding order).
    ids : numpy.ndarray
        The ids of those rows (strings).
    class_counts : dict
        Label -> number selected, for every known class (0 included); empty without labels.
    policy : str
        ``"global"``, ``"per_class"`` or ``"herding"``.
    warnings : list of str
        Class-share and quota warnings (also emitted with :func:`warnings.warn`).
    quotas : dict or None
        Label -> quota used (per_class / herding).
    expected_share : dict
        Label -> proportional share the warning threshold refers to.
    """

    indices: np.ndarray
    ids: np.ndarray
    class_counts: dict[Any, int]
    policy: str
    warnings: list[str] = field(default_factory=list)
    quotas: dict[Any, int] | None = None
    expected_share: dict[Any, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (class keys as strings)."""
        return {
            "policy": self.policy,
            "k": int(self.indices.shape[0]),
            "indices": [int(i) for i in self.indices],
            "ids": [str(i) for i in self.ids],
            "class_counts": {str(c): int(n) for c, n in self.class_counts.items()},
            "quotas": None
            if self.quotas is None
            else {str(c): int(n) for c, n in self.quotas.items()},
            "expected_share": {str(c): float(s) for c, s in self.expected_share.items()},
            "warnings": list(self.warnings),
        }


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


def _label_array(labels: Any, n: int) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.shape != (n,):
        raise ValueError(
            f"labels has {arr.shape[0] if arr.ndim else 0} entries but there are "
            f"{n} values; give one label per pool row"
        )
    return arr


def select(
    values: np.ndarray | KairosResult,
    k: int | None = None,
    *,
    frac: float | None = None,
    policy: str = "global",
    labels: Any = None,
    ids: Any = None,
    reference_labels: Any = None,
    quotas: dict[Any, int] | None = None,
    embeddings: Any = None,
    reference: Any = None,
    bandwidth: float | None = None,
    drop_fraction: float = 0.0,
    min_class_share: float = 0.5,
    device: str | torch.device = "auto",
    seed: int = 0,
) -> SelectionResult:
    """Select ``k`` pool points (or a fraction ``frac``) from their values under a policy.

    Parameters
    ----------
    values
        ``(N,)`` values (higher = better) or a :class:`KairosResult` (its ``values``, ``labels``
        and ``bandwidth`` become the defaults).
    k, frac
        Subset size, or a fraction of the pool (rounded, at least 1); exactly one, unless
        ``quotas`` is given (then ``k`` defaults to their sum).
    policy
        ``"global"``, ``"per_class"`` or ``"herding"`` (see module docs).
    labels
        ``(N,)`` pool labels; required by ``per_class``/``herding``, and for class counts.
    ids
        ``(N,)`` sample ids (default: row numbers as strings); ties are broken by id.
    reference_labels
        Reference labels; define the classes and their proportional shares.
    quotas
        Explicit label -> count; overrides the proportional quotas. Without ``quotas`` and
        ``reference_labels``, shares are proportional to the pool's own class counts.
    embeddings, reference
        Pool and reference embeddings; required by ``herding``.
    bandwidth
        RBF sigma for herding (default: the result's, else the median heuristic).
    drop_fraction
        Herding only: drop this lowest-valued fraction of each class before herding.
    min_class_share
        Warn when a class gets less than this fraction of its proportional share.
    device
        Device for herding kernels.
    seed
        Seed of the median heuristic (herding without a bandwidth).

    Returns
    -------
    SelectionResult
    """
    if isinstance(values, KairosResult):
        if labels is None:
            labels = values.labels
        if bandwidth is None:
            bandwidth = values.bandwidth
        vals = np.asarray(values.values, dtype=np.float64)
    else:
        vals = np.asarray(values, dtype=np.float64)
    if vals.ndim != 1 or vals.shape[0] == 0:
        raise ValueError(f"values must be a non-empty 1-D array, got shape {vals.shape}")
    if not np.isfinite(vals).all():
        raise ValueError(
            f"values has NaN/inf at rows {np.flatnonzero(~np.isfinite(vals))[:10].tolist()}"
        )
    n = vals.shape[0]
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    id_arr = np.arange(n).astype(str) if ids is None else np.asarray([str(i) for i in ids])
    if id_arr.shape[0] != n:
        raise ValueError(f"ids has {id_arr.shape[0]} entries but there are {n} values")
    if not 0.0 <= min_class_share <= 1.0:
        raise ValueError(f"min_class_share must lie in [0, 1], got {min_class_share}")
    if k is None and frac is None and quotas is None:
        raise ValueError("give the subset size: k=<int> or frac=<float in (0, 1]>")
    if k is not None and frac is not None:
        raise ValueError("give either k or frac, not both")
    if frac is not None:
        if not 0.0 < frac <= 1.0:
            raise ValueError(f"frac must lie in (0, 1], got {frac}")
        k = max(1, round(frac * n))
    if k is None:
        assert quotas is not None
        k = int(sum(quotas.values()))
    if not 1 <= int(k) <= n:
        raise ValueError(f"k must lie in [1, {n}] (the pool size), got {k}")
    k = int(k)
    # order by value (desc), ties by id
    order = np.lexsort((id_arr, -vals))
    y = None if labels is None else _label_array(labels, n)
    y_ref = None if reference_labels is None else np.asarray(reference_labels)
    if y is not None and y_ref is not None and (y.dtype.kind in "US") != (y_ref.dtype.kind in "US"):
        y, y_ref = y.astype(str), y_ref.astype(str)

    # classes and their proportional shares
    weights: dict[Any, float] = {}
    if y is not None:
        if quotas is not None:
            weights = {c: float(q) for c, q in quotas.items()}
        elif y_ref is not None:
            cls, cnt = np.unique(y_ref, return_counts=True)
            weights = {_py(c): float(m) for c, m in zip(cls, cnt, strict=True)}
        else:
            cls, cnt = np.unique(y, return_counts=True)
            weights = {_py(c): float(m) for c, m in zip(cls, cnt, strict=True)}
    total_w = sum(weights.values())
    expected = {c: w / total_w for c, w in weights.items()} if total_w > 0 else {}
    notes: list[str] = []

    used_quotas: dict[Any, int] | None = None
    if policy == "global":
        chosen = order[:k]
    else:
        if y is None:
            raise ValueError(f"policy={policy!r} needs the pool labels (labels=...)")
        by_class = {c: order[y[order] == c] for c in weights}
        eligible = sum(len(v) for v in by_class.values())
        if eligible < n:
            notes.append(
                f"{n - eligible} pool point(s) carry labels outside the quota classes "
                "and cannot be selected under this policy"
            )
        if policy == "herding" and drop_fraction:
            if not 0.0 <= drop_fraction < 1.0:
                raise ValueError(f"drop_fraction must lie in [0, 1), got {drop_fraction}")
            by_class = {
                c: v[: math.ceil(len(v) * (1.0 - drop_fraction))] for c, v in by_class.items()
            }
        capacity = {c: len(v) for c, v in by_class.items()}
        if quotas is not None:
            used_quotas = {c: min(int(q), capacity[c]) for c, q in quotas.items()}
            for c, q in quotas.items():
                if int(q) > capacity[c]:
                    notes.append(
                        f"class {c!r}: quota {q} exceeds its {capacity[c]} "
                        "available pool point(s); took all of them"
                    )
        else:
            used_quotas = allocate_quotas(k, weights, capacity)
            for c in weights:
                ideal = k * expected[c]
                if capacity[c] < ideal:
                    notes.append(
                        f"class {c!r}: only {capacity[c]} pool point(s) available "
                        f"for a proportional quota of {ideal:.1f}"
                    )
        if policy == "per_class":
            parts = [by_class[c][: used_quotas[c]] for c in weights]
            chosen = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
            chosen = chosen[np.lexsort((id_arr[chosen], -vals[chosen]))]
        else:
            chosen = _herding(
                by_class, used_quotas, y_ref, embeddings, reference, bandwidth, id_arr, device, seed
            )
    chosen = np.asarray(chosen, dtype=np.int64)

    counts: dict[Any, int] = {}
    if y is not None:
        known = set(np.unique(y).tolist()) | set(weights)
        if y_ref is not None:
            known |= set(np.unique(y_ref).tolist())
        sel_labels = y[chosen]
        for c in sorted(known, key=lambda v: (str(type(v)), v)):
            counts[_py(c)] = int(np.sum(sel_labels == c))
        for c, share in expected.items():
            got = counts.get(c, 0)
            if got < min_class_share * share * chosen.shape[0]:
                msg = (
                    f"class {c!r}: {got} of {chosen.shape[0]} selected "
                    f"({got / chosen.shape[0]:.1%}), below {min_class_share:.0%} of its "
                    f"proportional share ({share:.1%})"
                )
                if policy == "global":
                    msg += "; consider policy='per_class' or 'herding'"
                notes.append(msg)
    for msg in notes:
        warnings.warn(msg, UserWarning, stacklevel=2)
    return SelectionResult(
        indices=chosen,
        ids=id_arr[chosen],
        class_counts=counts,
        policy=policy,
        warnings=notes,
        quotas=used_quotas,
        expected_share=expected,
    )


def _herding(
    by_class: dict[Any, np.ndarray],
    quotas: dict[Any, int],
    y_ref: np.ndarray | None,
    embeddings: Any,
    reference: Any,
    bandwidth: float | None,
    ids: np.ndarray,
    device: str | torch.device,
    seed: int,
) -> np.ndarray:
    """Greedy kernel herding per class (see module docs); returns pool indices."""
    if embeddings is None or reference is None or y_ref is None:
        raise ValueError("policy='herding' needs embeddings=, reference= and reference_labels=")
    x = as_float64_matrix(embeddings, "embeddings")
    z = as_float64_matrix(reference, "reference")
    if x.shape[1] != z.shape[1]:
        raise ValueError(f"embeddings have dimension {x.shape[1]} but reference has {z.shape[1]}")
    if y_ref.shape != (z.shape[0],):
        raise ValueError(
            f"reference_labels has {y_ref.shape[0]} labels but reference has {z.shape[0]} rows"
        )
    sigma = median_bandwidth(x, z, seed=seed) if bandwidth is None else float(bandwidth)
    space = KernelSpace.create(sigma, z.mean(axis=0), device)
    chosen: list[np.ndarray] = []
    for c, cand in by_class.items():
        q = quotas.get(c, 0)
        if q <= 0 or cand.size == 0:
            continue
        ref_c = z[y_ref == c]
        if ref_c.shape[0] == 0:
            raise ValueError(f"class {c!r} has no reference points; herding needs them")
        cand = cand[np.argsort(ids[cand], kind="stable")]  # argmin ties -> smallest id
        xc = space.prepare(x[cand])
        b = torch.from_numpy(cross_sums(space, xc, space.prepare(ref_c))[0] / ref_c.shape[0]).to(
            space.device
        )
        running = torch.zeros(cand.shape[0], dtype=torch.float64, device=space.device)
        taken = torch.zeros(cand.shape[0], dtype=torch.bool, device=space.device)
        picks = []
        for t in range(min(q, cand.shape[0])):
            score = 2.0 * running + 1.0 - 2.0 * (t + 1) * b
            score = score.masked_fill(taken, math.inf)
            j = int(torch.argmin(score))
            picks.append(j)
            taken[j] = True
            row = kernel_matrix(space, xc, (xc[0][j : j + 1], xc[1][j : j + 1]))
            running += row[:, 0].double()
        chosen.append(cand[np.asarray(picks, dtype=np.int64)])
    return np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)
