"""Result tables formatted for reading: ``mean ± std`` strings, rounded, in a fixed column order."""

from __future__ import annotations

import numpy as np
import pandas as pd

from kairos_curate.study.verdicts import pm

__all__ = ["METRIC_LABELS", "detection_table", "poster_table", "suite_checks_table", "suite_table", "sweep_table"]

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


#: The two kinds of seed of the selection study, as column labels.
SPLIT_LABELS = (("development", "dev"), ("held_out", "held-out"))


def suite_table(summary: pd.DataFrame, evaluator: str, budget: float) -> pd.DataFrame:
    """The selection suite at one budget and evaluator: one row per scenario x selection; accuracy
    and macro-F1 as ``mean ± std`` over seed x trial, gap closed (random -> oracle) and precision,
    development and held-out seeds in separate columns. Oracle rows are marked as using ground truth."""
    frame = summary[(summary["evaluator"] == evaluator) & np.isclose(summary["budget"], budget)]
    rows = []
    for (scenario, selection), grp in frame.groupby(["scenario", "selection"], sort=False):
        first = grp.iloc[0]
        row = {
            "scenario": scenario,
            "selection": f"{selection} (uses ground truth)" if bool(first["uses_ground_truth"]) else selection,
            "role": first["role"],
        }
        for split, label in SPLIT_LABELS:
            part = grp[grp["split"] == split]
            if part.empty:
                continue
            r = part.iloc[0]
            row[f"accuracy ({label})"] = pm(r["accuracy_mean"], r["accuracy_std"])
            row[f"macro-F1 ({label})"] = pm(r["macro_f1_mean"], r["macro_f1_std"])
            row[f"gap closed ({label})"] = "" if pd.isna(r["gap_closed"]) else f"{r['gap_closed']:.0f}%"
            row[f"precision ({label})"] = f"{r['precision_mean']:.3f}"
            row[f"runs ({label})"] = int(r["runs"])
        rows.append(row)
    return pd.DataFrame(rows)


def suite_checks_table(checks: pd.DataFrame) -> pd.DataFrame:
    """The done-when checks: the primary against the best control and the baseline (and herding over
    random values, where the suite has it), margin vs the combined std, per split, scenario, budget
    and evaluator; with the paired view (per-seed differences: mean ± std, seeds won) where the
    checks carry it."""
    table = pd.DataFrame(
        {
            "seeds": checks["split"].map(dict(SPLIT_LABELS)).fillna(checks["split"]).to_numpy(),
            "scenario": checks["scenario"].to_numpy(),
            "budget": [f"{b:.0%}" for b in checks["budget"]],
            "evaluator": checks["evaluator"].to_numpy(),
            "selection": checks["selection"].to_numpy(),
            "against": [f"{a} ({o})" for a, o in zip(checks["against"], checks["other"], strict=True)],
            "mean ± std": [pm(m, s) for m, s in zip(checks["mean"], checks["std"], strict=True)],
            "other": [pm(m, s) for m, s in zip(checks["other_mean"], checks["other_std"], strict=True)],
            "margin": [f"{m:+.3f}" for m in checks["margin"]],
            "combined std": [f"{c:.3f}" for c in checks["combined_std"]],
            "verdict": [
                "wins" if w else ("within noise" if h else "loses")
                for w, h in zip(checks["wins"], checks["no_harm"], strict=True)
            ],
        }
    )
    if "paired_mean" in checks:
        table["paired (seeds won)"] = [
            "" if pd.isna(m) else f"{m:+.3f}{f' ± {s:.3f}' if n > 1 else ''} ({int(w)} of {int(n)})"
            for m, s, n, w in zip(
                checks["paired_mean"], checks["paired_std"], checks["paired_seeds"], checks["seeds_better"], strict=True
            )
        ]
    return table
