"""Mean ± std summaries of run tables (one row per group; ``runs`` = rows in the group)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from kairos_curate.evaluation import mean_std

__all__ = ["summarise"]


def summarise(
    frame: pd.DataFrame,
    keys: Sequence[str],
    metrics: Sequence[str],
    carry: Sequence[str] = (),
) -> pd.DataFrame:
    """Mean and sample std (ddof=1) of ``metrics`` over the rows of each ``keys`` group.

    Parameters
    ----------
    frame
        One row per run.
    keys
        Grouping columns (kept, in order of first appearance).
    metrics
        Columns summarised as ``<metric>_mean`` and ``<metric>_std``; absent ones are skipped.
    carry
        Columns constant within a group, copied from its first row (e.g. ``n_selected``).
    """
    out = []
    for key, grp in frame.groupby(list(keys), sort=False):
        row: dict[str, Any] = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
        row["runs"] = len(grp)
        for column in carry:
            row[column] = grp[column].iloc[0]
        for metric in metrics:
            if metric in grp:
                row[f"{metric}_mean"], row[f"{metric}_std"] = mean_std(grp[metric])
        out.append(row)
    return pd.DataFrame(out)
