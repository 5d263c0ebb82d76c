"""``herding``: per-class kernel herding towards each class's reference, among its top values.

Each class gets the proportional quota of :mod:`.per_class`, but its subset ``S`` is grown
greedily so that ``MMD^2(S, reference of that class)`` falls as much as possible at each step,
which penalises redundancy *inside the subset*; first, the lowest-valued ``drop_fraction`` of
each class is dropped (with ``drop_fraction = 0`` herding never looks at the values). Adding ``x``
to ``S`` (``|S| = t``) changes the biased MMD^2 by a term minimised by
``argmin_x 2 sum_{s in S} k(x, s) + k(x, x) - 2 (t + 1) b(x)``, ``b(x)`` the mean kernel to the
class's reference.

At scale: each pick costs one kernel row over the class's candidates, so a class of ``n_c`` rows
costs ``O(n_c q_c d)``. With ``partition_size``, a larger class is cut into seeded random
partitions of at most that many candidates; each herds its share of the quota towards the whole
class reference, and the picks are interleaved (first pick of every partition, then the second,
...). Every class (or partition) is one task on the engine of :func:`~kairos_curate.selection.select`
(``engine=``; in this process by default), so the result is the same on every engine. Unsplit,
the picks are exact greedy herding; split, MMD is convex, so the selection's MMD to the reference
is at most the worst partition's (the loss against exact herding is measured in
``benchmarks/bench_scale.py``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from kairos_curate.selection.base import (
    PolicyChoice,
    PolicyParams,
    SelectionContext,
    SelectionPolicy,
    allocate_quotas,
    candidates_by_class,
    class_quotas,
    register_policy,
)
from kairos_curate.valuation.bandwidth import median_bandwidth
from kairos_curate.valuation.kernels import (
    KernelSpace,
    as_float64_matrix,
    check_same_dim,
    cross_sums,
    kernel_matrix,
)

__all__ = ["Herding", "HerdingParams", "herd", "herd_rows", "interleave"]


class HerdingParams(PolicyParams):
    """Herding's parameters."""

    #: Drop this lowest-valued fraction of each class before herding (0 = values unused).
    drop_fraction: float = 0.0
    #: Herd a class with more candidates than this in random partitions (``None``: never split).
    partition_size: int | None = None


@register_policy
class Herding(SelectionPolicy):
    """Greedy per-class kernel herding towards the class's reference."""

    name = "herding"
    description = "per-class kernel herding towards the reference, among the top values"
    needs_embeddings = True
    Params = HerdingParams

    def __init__(self, params: Any = None) -> None:
        super().__init__(params)
        if not 0.0 <= self.params.drop_fraction < 1.0:
            raise ValueError(f"policy herding: drop_fraction must lie in [0, 1), got {self.params.drop_fraction}")
        if self.params.partition_size is not None and self.params.partition_size < 1:
            raise ValueError(f"policy herding: partition_size must be >= 1 (or null), got {self.params.partition_size}")

    def choose(self, ctx: SelectionContext, k: int) -> PolicyChoice:
        """Drop each class's lowest values, allocate quotas, herd within each class."""
        by_class, notes = candidates_by_class(ctx)
        if self.params.drop_fraction:
            keep = 1.0 - self.params.drop_fraction
            by_class = {c: v[: math.ceil(len(v) * keep)] for c, v in by_class.items()}
        quotas, more = class_quotas(ctx, k, by_class)
        chosen, split = herd(by_class, quotas, ctx, self.params.partition_size)
        eligible = np.zeros(ctx.n, dtype=bool)
        for rows in by_class.values():
            eligible[rows] = True
        info = {"partitioned_classes": split} if split else {}
        return PolicyChoice(indices=chosen, quotas=quotas, notes=notes + more, eligible=eligible, info=info)


def herd_rows(
    candidates: np.ndarray, reference: np.ndarray, quota: int, sigma: float, shift: np.ndarray, device: str = "auto"
) -> np.ndarray:
    """Greedy herding of ``quota`` rows of ``candidates`` towards ``reference`` (one task).

    Step ``t`` picks ``argmin_x 2 sum_{s in S} k(x, s) + k(x, x) - 2 (t + 1) b(x)``; ties go to the
    first row. Returns row positions in pick order.
    """
    space = KernelSpace.create(sigma, shift, device)
    xc = space.prepare(candidates)
    b = torch.from_numpy(cross_sums(space, xc, space.prepare(reference))[0] / reference.shape[0]).to(space.device)
    running = torch.zeros(candidates.shape[0], dtype=torch.float64, device=space.device)
    taken = torch.zeros(candidates.shape[0], dtype=torch.bool, device=space.device)
    picks = []
    for t in range(min(int(quota), candidates.shape[0])):
        score = 2.0 * running + 1.0 - 2.0 * (t + 1) * b
        score = score.masked_fill(taken, math.inf)
        j = int(torch.argmin(score))
        picks.append(j)
        taken[j] = True
        running += kernel_matrix(space, xc, (xc[0][j : j + 1], xc[1][j : j + 1]))[:, 0].double()
    return np.asarray(picks, dtype=np.int64)


def interleave(parts: list[np.ndarray]) -> np.ndarray:
    """Round-robin merge: the first element of every part, then the second, ..."""
    if not parts:
        return np.zeros(0, dtype=np.int64)
    longest = max(len(p) for p in parts)
    return np.asarray([p[i] for i in range(longest) for p in parts if i < len(p)], dtype=np.int64)


def herd(
    by_class: dict[Any, np.ndarray], quotas: dict[Any, int], ctx: SelectionContext, partition_size: int | None = None
) -> tuple[np.ndarray, list[Any]]:
    """Per-class herding (see the module docs); returns pool indices and the classes that were split.

    Parameters
    ----------
    by_class
        Class -> candidate pool rows.
    quotas
        Class -> how many to pick.
    ctx
        Embeddings, reference, reference labels, bandwidth (median heuristic if ``None``),
        device, ids (argmin ties go to the smallest id), the engine of the tasks.
    partition_size
        Most candidates per task (``None``: one task per class).
    """
    if ctx.embeddings is None or ctx.reference is None or ctx.reference_labels is None:
        raise ValueError("policy='herding' needs embeddings=, reference= and reference_labels=")
    x = as_float64_matrix(ctx.embeddings, "embeddings")
    z = as_float64_matrix(ctx.reference, "reference")
    check_same_dim(x.shape[1], z.shape[1], "embeddings")
    y_ref = ctx.reference_labels
    if y_ref.shape != (z.shape[0],):
        raise ValueError(f"reference_labels has {y_ref.shape[0]} labels but reference has {z.shape[0]} rows")
    sigma = median_bandwidth(x, z, seed=ctx.seed) if ctx.bandwidth is None else float(ctx.bandwidth)
    shift = z.mean(axis=0)
    calls: list[tuple[Any, ...]] = []
    layout: list[tuple[Any, np.ndarray]] = []  # (class, candidate rows of the task)
    split: list[Any] = []
    for ci, (c, cand) in enumerate(by_class.items()):
        q = quotas.get(c, 0)
        if q <= 0 or cand.size == 0:
            continue
        ref_c = z[y_ref == c]
        if ref_c.shape[0] == 0:
            raise ValueError(f"class {c!r} has no reference points; herding needs them")
        cand = cand[np.argsort(ctx.ids[cand], kind="stable")]  # argmin ties -> smallest id
        parts = [cand]
        if partition_size is not None and cand.size > partition_size:
            split.append(c)
            perm = np.random.default_rng([ctx.seed, ci]).permutation(cand.size)
            parts = [cand[np.sort(p)] for p in np.array_split(perm, math.ceil(cand.size / partition_size))]
        part_q = allocate_quotas(
            q, {i: float(len(p)) for i, p in enumerate(parts)}, {i: len(p) for i, p in enumerate(parts)}
        )
        for i, rows in enumerate(parts):
            if part_q[i] > 0:
                calls.append((x[rows], ref_c, part_q[i], sigma, shift, ctx.device))
                layout.append((c, rows))
    if ctx.engine is None:
        results = [herd_rows(*call) for call in calls]
    else:
        gpus = 1.0 if ctx.engine.n_gpus() > 0 else 0.0
        results = ctx.engine.map(
            herd_rows,
            [tuple(ctx.engine.put(a) if isinstance(a, np.ndarray) else a for a in call) for call in calls],
            num_gpus=gpus,
        )
    per_class: dict[Any, list[np.ndarray]] = {}
    for (c, rows), picks in zip(layout, results, strict=True):
        per_class.setdefault(c, []).append(rows[picks])
    chosen = [interleave(per_class[c]) for c in by_class if c in per_class]
    return (np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)), split
