"""``herding``: per-class kernel herding towards each class's reference, among its top values.

Each class gets the proportional quota of :mod:`.per_class`, but its subset ``S`` is grown
greedily so that ``MMD^2(S, reference of that class)`` falls as much as possible at each step,
which penalises redundancy *inside the subset*; first, the lowest-valued ``drop_fraction`` of
each class is dropped (with ``drop_fraction = 0`` herding never looks at the values). Adding ``x``
to ``S`` (``|S| = t``) changes the biased MMD^2 by a term minimised by
``argmin_x 2 sum_{s in S} k(x, s) + k(x, x) - 2 (t + 1) b(x)``, ``b(x)`` the mean kernel to the
class's reference.
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

__all__ = ["Herding", "HerdingParams", "herd"]


class HerdingParams(PolicyParams):
    """Herding's parameters."""

    #: Drop this lowest-valued fraction of each class before herding (0 = values unused).
    drop_fraction: float = 0.0


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
            raise ValueError(
                f"policy herding: drop_fraction must lie in [0, 1), got {self.params.drop_fraction}"
            )

    def choose(self, ctx: SelectionContext, k: int) -> PolicyChoice:
        """Drop each class's lowest values, allocate quotas, herd within each class."""
        by_class, notes = candidates_by_class(ctx)
        if self.params.drop_fraction:
            keep = 1.0 - self.params.drop_fraction
            by_class = {c: v[: math.ceil(len(v) * keep)] for c, v in by_class.items()}
        quotas, more = class_quotas(ctx, k, by_class)
        chosen = herd(by_class, quotas, ctx)
        eligible = np.zeros(ctx.n, dtype=bool)
        for rows in by_class.values():
            eligible[rows] = True
        return PolicyChoice(indices=chosen, quotas=quotas, notes=notes + more, eligible=eligible)


def herd(by_class: dict[Any, np.ndarray], quotas: dict[Any, int], ctx: SelectionContext) -> np.ndarray:
    """Greedy kernel herding per class (see the module docs); returns pool indices.

    Parameters
    ----------
    by_class
        Class -> candidate pool rows.
    quotas
        Class -> how many to pick.
    ctx
        Embeddings, reference, reference labels, bandwidth (median heuristic if ``None``),
        device, ids (argmin ties go to the smallest id).
    """
    if ctx.embeddings is None or ctx.reference is None or ctx.reference_labels is None:
        raise ValueError("policy='herding' needs embeddings=, reference= and reference_labels=")
    x = as_float64_matrix(ctx.embeddings, "embeddings")
    z = as_float64_matrix(ctx.reference, "reference")
    check_same_dim(x.shape[1], z.shape[1], "embeddings")
    y_ref = ctx.reference_labels
    if y_ref.shape != (z.shape[0],):
        raise ValueError(
            f"reference_labels has {y_ref.shape[0]} labels but reference has {z.shape[0]} rows"
        )
    sigma = median_bandwidth(x, z, seed=ctx.seed) if ctx.bandwidth is None else float(ctx.bandwidth)
    space = KernelSpace.create(sigma, z.mean(axis=0), ctx.device)
    chosen: list[np.ndarray] = []
    for c, cand in by_class.items():
        q = quotas.get(c, 0)
        if q <= 0 or cand.size == 0:
            continue
        ref_c = z[y_ref == c]
        if ref_c.shape[0] == 0:
            raise ValueError(f"class {c!r} has no reference points; herding needs them")
        cand = cand[np.argsort(ctx.ids[cand], kind="stable")]  # argmin ties -> smallest id
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
