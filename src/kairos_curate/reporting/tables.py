"""Result tables formatted for reading: ``mean ± std`` strings, rounded, in a fixed column order."""

from __future__ import annotations

import pandas as pd

from kairos_curate.study.verdicts import pm

__all__ = ["METRIC_LABELS", "detection_table", "poster_table", "sweep_table"]

#: Run metric -> column label, and digits shown.
METRIC_LABELS = (
    ("accuracy", "Accuracy", 3),
    ("macro_f1", "F1 (macro)", 3),
    ("auc", "AUC (OvR)", 3),
    ("train_time_s", "Train time (s)", 2),
)


def poster_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The poster's table: Subset, Method, N, runs and every metric as ``mean ± std``."""
    out = pd.DataFrame(
        {
            "Subset": summary["subset"].to_numpy(),
            "Method": summary["method"].to_numpy(),
            "N": summary["n_selected"].astype(int).to_numpy(),
            "runs": summary["runs"].to_numpy(),
        }
    )
    for metric, label, digits in METRIC_LABELS:
        out[label] = [
            pm(m, s, digits) for m, s in zip(summary[f"{metric}_mean"], summary[f"{metric}_std"], strict=True)
        ]
    return out


def sweep_table(sweep: pd.DataFrame) -> pd.DataFrame:
    """The sizes curve: fraction of the curated set, N and every metric as ``mean ± std``."""
    frame = sweep.sort_values("fraction")
    table = pd.DataFrame(
        {
            "fraction of curated set": [f"{f:.0%}" for f in frame["fraction"]],
            "N": frame["n_selected"].astype(int).to_numpy(),
        }
    )
    for metric, label, digits in METRIC_LABELS:
        table[label] = [pm(m, s, digits) for m, s in zip(frame[f"{metric}_mean"], frame[f"{metric}_std"], strict=True)]
    return table


def detection_table(detection: pd.DataFrame, metric: str = "auroc") -> pd.DataFrame:
    """Methods x problems, ``mean ± std`` of ``metric``, methods ranked on the first problem."""
    cells = detection.assign(
        cell=[pm(m, s) for m, s in zip(detection[f"{metric}_mean"], detection[f"{metric}_std"], strict=True)]
    )
    table = cells.pivot(index="method", columns="problem", values="cell")
    order = [p for p in ("any problem", "pixel noise", "label flipped", "off-task") if p in table.columns]
    table = table[order + [c for c in table.columns if c not in order]]
    best = detection[detection["problem"] == (order[0] if order else detection["problem"].iloc[0])]
    ranking = best.sort_values(f"{metric}_mean", ascending=False)["method"].tolist()
    out = table.loc[ranking].reset_index()
    out.columns.name = None
    return out
