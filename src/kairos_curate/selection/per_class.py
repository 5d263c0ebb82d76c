"""``per_class``: class quotas proportional to the reference's class counts, filled by value.

Quotas are allocated by largest remainder and capped by the pool points of each class, the rest
going to the classes with the largest deficit; within a class the highest values win.
"""

from __future__ import annotations

import numpy as np

from kairos_curate.selection.base import (
    PolicyChoice,
    SelectionContext,
    SelectionPolicy,
    candidates_by_class,
    class_quotas,
    register_policy,
)

__all__ = ["PerClass"]


@register_policy
class PerClass(SelectionPolicy):
    """Fill proportional class quotas with each class's highest values."""

    name = "per_class"
    description = "per-class quotas filled by value"

    def choose(self, ctx: SelectionContext, k: int) -> PolicyChoice:
        """Each class's best ``quota`` rows, listed best value first."""
        by_class, notes = candidates_by_class(ctx)
        quotas, more = class_quotas(ctx, k, by_class)
        parts = [by_class[c][: quotas[c]] for c in ctx.weights]
        chosen = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        chosen = chosen[np.lexsort((ctx.ids[chosen], -ctx.values[chosen]))]
        return PolicyChoice(indices=chosen, quotas=quotas, notes=notes + more)
