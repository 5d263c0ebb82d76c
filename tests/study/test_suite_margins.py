from __future__ import annotations

import numpy as np
import pandas as pd

from kairos_curate.study.suite_margins import margin_against, random_valued_herding


def _row(name: str, mean: float, std: float) -> pd.Series:
    return pd.Series({"accuracy_mean": mean, "accuracy_std": std, "runs": 4}, name=name)


def test_margin_against_brute_force():
    m = margin_against(_row("a", 0.90, 0.003), _row("b", 0.89, 0.004))
    np.testing.assert_allclose(m["margin"], 0.90 - 0.89)
    np.testing.assert_allclose(m["combined_std"], np.sqrt(0.003**2 + 0.004**2))
    assert m["wins"] and m["no_harm"] and "paired_mean" not in m
    lost = margin_against(_row("a", 0.85, 0.003), _row("b", 0.89, np.nan))  # a missing std counts as 0
    assert not lost["wins"] and not lost["no_harm"] and lost["combined_std"] == 0.003


def test_paired_view_uses_only_the_seeds_both_ran():
    per_seed = pd.DataFrame({"a": [0.9, 0.8, np.nan], "b": [0.85, 0.82, 0.7]}, index=[0, 1, 2])
    m = margin_against(_row("a", 0.85, 0.07), _row("b", 0.79, 0.08), per_seed)
    diffs = [0.9 - 0.85, 0.8 - 0.82]
    np.testing.assert_allclose([m["paired_mean"], m["paired_std"]], [np.mean(diffs), np.std(diffs, ddof=1)])
    assert m["paired_seeds"] == 2 and m["seeds_better"] == 1


def test_random_valued_herding_is_found_by_what_it_is():
    frame = pd.DataFrame(
        {
            "selection": ["herding_kairos", "global_random", "my_control"],
            "method": ["kairos_class_conditional", "random", "random"],
            "policy": ["herding", "global", "herding"],
        }
    )
    assert random_valued_herding(frame) == "my_control"
    assert random_valued_herding(frame.iloc[:2]) is None
