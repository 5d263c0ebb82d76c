"""``global``: the ``k`` highest values, ties broken by id (the poster's top-k).

Individually top-ranked points are prototypes of each other, and when off-task images crowd one
class's neighbourhood the pool-density term pushes that class's genuine samples down, so a
global top-k can drop a class entirely (:func:`~kairos_curate.selection.select` warns).
"""

from __future__ import annotations

from kairos_curate.selection.base import (
    PolicyChoice,
    SelectionContext,
    SelectionPolicy,
    register_policy,
)

__all__ = ["GlobalTopK"]


@register_policy
class GlobalTopK(SelectionPolicy):
    """Take the ``k`` highest-valued samples."""

    name = "global"
    description = "global top-k by value"
    needs_labels = False
    starvation_hint = "; consider policy='per_class' or 'herding'"

    def choose(self, ctx: SelectionContext, k: int) -> PolicyChoice:
        """The first ``k`` of the value order."""
        return PolicyChoice(indices=ctx.order[:k])
