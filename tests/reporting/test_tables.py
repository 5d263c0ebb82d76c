from __future__ import annotations

import numpy as np
import pandas as pd

from kairos_curate.reporting.tables import suite_checks_table


def _checks(**paired) -> pd.DataFrame:
    row = {
        "split": "held_out",
        "scenario": "default",
        "budget": 0.2,
        "evaluator": "lora",
        "selection": "prim",
        "against": "herding over random values",
        "other": "hr",
        "mean": 0.901,
        "std": 0.007,
        "other_mean": 0.893,
        "other_std": 0.009,
        "margin": 0.008,
        "combined_std": 0.0114,
        "wins": False,
        "no_harm": True,
    }
    return pd.DataFrame([{**row, **paired}])


def test_checks_table_shows_the_verdict_and_the_paired_view():
    table = suite_checks_table(_checks(paired_mean=0.008, paired_std=0.004, paired_seeds=2, seeds_better=2))
    row = table.iloc[0]
    assert row["against"] == "herding over random values (hr)" and row["verdict"] == "within noise"
    assert row["margin"] == "+0.008" and row["combined std"] == "0.011"
    assert row["paired (seeds won)"] == "+0.008 ± 0.004 (2 of 2)"
    one = suite_checks_table(_checks(paired_mean=-0.002, paired_std=np.nan, paired_seeds=1, seeds_better=0))
    assert one.iloc[0]["paired (seeds won)"] == "-0.002 (0 of 1)"
    assert "paired (seeds won)" not in suite_checks_table(_checks())  # tables from before the paired view
