"""The selection suite's verdicts for the report's key results, computed from the suite's tables.

Kept apart from :mod:`.verdicts` because only the report reads them (every stage imports
:mod:`.verdicts` through the tables, so a change here reruns the report stage alone).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from kairos_curate.study.suite_margins import RANDOM_VALUED_HERDING, margin_against, random_valued_herding
from kairos_curate.study.verdicts import pm

__all__ = ["suite_key_lines"]

#: The two kinds of seed, in the words of the key results.
_SPLIT_WORDS = {"development": "development seeds", "held_out": "held-out seeds (never used for tuning)"}


def _paired(check: pd.Series | None) -> str:
    """The paired view of a check row: the per-seed difference's mean ± std and the seeds won."""
    if check is None or pd.isna(check.get("paired_mean", np.nan)):
        return ""
    n = int(check["paired_seeds"])
    spread = f" ± {check['paired_std']:.3f}" if n > 1 else ""
    return f"; paired over {n} seeds {check['paired_mean']:+.3f}{spread}, higher on {int(check['seeds_better'])} of {n}"


def _verdict(margin: float, combined: float) -> str:
    if margin > combined:
        return "beat"
    if margin < -combined:
        return "lost to"
    return "was within noise of"


def suite_key_lines(
    summary: pd.DataFrame | None,
    checks: pd.DataFrame | None,
    *,
    primary: str,
    scenario: str = "default",
    budget: float = 0.2,
    ceiling: str | None = None,
) -> list[str]:
    """The selection suite in the key results: the primary on ``scenario`` against herding over
    random values (the control of the central claim) and the best control, with the gap closed,
    per evaluator and seed split; then every scenario x evaluator of the held-out seeds where the
    primary did *not* beat the best control by more than the combined std ("where it still loses").

    ``summary`` and ``checks`` are the suite's tables (:func:`.selection_suite.summarise_suite`).
    The random-valued herding control is the selection with method ``random`` and policy
    ``herding``. Verdicts use the combined std ``sqrt(std_a^2 + std_b^2)``, as the checks do.
    With ``ceiling`` (the ground-truth selection), a last line says in how many held-out cells the
    ceiling itself beat the random-valued herding control by that margin: how much room the
    measurement leaves for any method.
    Returns no lines when the suite did not run or the primary is missing.
    """
    if summary is None or summary.empty or primary not in set(summary["selection"]):
        return []
    budgets = sorted(summary["budget"].unique())
    at = min(budgets, key=lambda b: abs(b - budget))
    frame = summary[np.isclose(summary["budget"], at)]
    lines = []
    control_name = random_valued_herding(frame)
    for split, words in _SPLIT_WORDS.items():
        part = frame[(frame["split"] == split) & (frame["scenario"] == scenario)]
        if part.empty or primary not in set(part["selection"]):
            continue
        cells = []
        for evaluator, grp in part.groupby("evaluator", sort=False):
            by = grp.set_index("selection")
            row = by.loc[primary]
            text = f"{evaluator} {pm(row['accuracy_mean'], row['accuracy_std'])}"
            if control_name is not None and control_name in by.index:
                other = by.loc[control_name]
                m = margin_against(row, other)
                text += (
                    f" **{_verdict(m['margin'], m['combined_std'])}** herding over random values "
                    f"(`{control_name}`, {pm(other['accuracy_mean'], other['accuracy_std'])}"
                    f"{_paired(_check_row(checks, split, scenario, at, evaluator, RANDOM_VALUED_HERDING))})"
                )
            best = _check_row(checks, split, scenario, at, evaluator, "best control")
            if best is not None:
                text += f", {_verdict(best['margin'], best['combined_std'])} the best control (`{best['other']}`)"
            if pd.notna(row.get("gap_closed", np.nan)):
                text += f", {row['gap_closed']:.0f}% of the random-to-oracle gap closed"
            cells.append(text)
        lines.append(f"Selection suite, `{scenario}`, budget {at:.0%}, {words}: `{primary}` " + "; ".join(cells) + ".")
    if checks is not None and not checks.empty:
        held = checks[
            (checks["split"] == "held_out") & np.isclose(checks["budget"], at) & (checks["against"] == "best control")
        ]
        if len(held):
            won = held[held["wins"].astype(bool)]
            rest = held[~held["wins"].astype(bool)]
            line = (
                f"Held-out, budget {at:.0%}: `{primary}` beat the best control by more than the combined std in "
                f"{len(won)} of {len(held)} scenario x evaluator cells."
            )
            if len(rest):
                line += (
                    " **Where it still loses or only ties:** "
                    + "; ".join(
                        f"`{r.scenario}` {r.evaluator} ({_verdict(r.margin, r.combined_std)} `{r.other}`, "
                        f"{r.margin:+.3f})"
                        for r in rest.itertuples()
                    )
                    + "."
                )
            lines.append(line)
    held_frame = frame[frame["split"] == "held_out"]
    if ceiling is not None and control_name is not None and not held_frame.empty:
        lines += _room_lines(held_frame, ceiling, control_name, scenario)
    return lines


def _room_lines(held: pd.DataFrame, ceiling: str, control: str, scenario: str) -> list[str]:
    """How much room the measurement leaves: in how many held-out cells the best ceiling (``ceiling``
    and every other selection of role ``ceiling``: they choose by ground truth) beat the random-valued
    herding ``control`` by more than the combined std, with the ``scenario``'s cells spelled out."""
    names = [ceiling]
    if "role" in held:
        names += [str(n) for n in dict.fromkeys(held.loc[held["role"] == "ceiling", "selection"]) if n != ceiling]
    n_wins, n_cells, cells = 0, 0, []
    for (scen, evaluator), grp in held.groupby(["scenario", "evaluator"], sort=False):
        by = grp.set_index("selection")
        present = [n for n in names if n in by.index]
        if not present or control not in by.index:
            continue
        margins = [(margin_against(by.loc[n], by.loc[control]), n) for n in present]
        best, name = max(margins, key=lambda t: t[0]["margin"] - t[0]["combined_std"])
        n_cells += 1
        n_wins += int(best["wins"])
        if scen == scenario:
            verdict = "clears it" if best["wins"] else "does not"
            cells.append(f"{evaluator} `{name}` {best['margin']:+.3f} vs {best['combined_std']:.3f} ({verdict})")
    if not n_cells:
        return []
    line = (
        f"Room to win: a ceiling ({', '.join(f'`{n}`' for n in names)}: they choose by ground truth) beat herding "
        f"over random values by more than the combined std in {n_wins} of {n_cells} held-out scenario x evaluator "
        "cells"
    )
    if cells:
        line += f"; on `{scenario}` the best ceiling's margin vs the combined std: " + "; ".join(cells)
    return [
        line + ". Where no ceiling clears that bar, even choosing by ground truth is not shown to beat the control."
    ]


def _check_row(
    checks: pd.DataFrame | None, split: str, scenario: str, budget: float, evaluator: str, against: str
) -> pd.Series | None:
    """The suite check of the primary ``against`` a control in one cell, or None."""
    if checks is None or checks.empty:
        return None
    rows = checks[
        (checks["split"] == split)
        & (checks["scenario"] == scenario)
        & np.isclose(checks["budget"], budget)
        & (checks["evaluator"] == evaluator)
        & (checks["against"] == against)
    ]
    return rows.iloc[0] if len(rows) else None
