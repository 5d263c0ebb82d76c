"""The report's verdicts, computed from tables: curated vs random/full/oracle, compute saved, the sweep."""

from __future__ import annotations

import numpy as np
import pandas as pd

from kairos_curate.study.verdicts import (
    compare,
    compute_saved,
    gap_closed,
    key_results,
    sweep_sentence,
)

from ..fake_datasets import summary_row


def test_compare_counts_a_difference_only_beyond_the_summed_stds():
    a = pd.Series({"accuracy_mean": 0.80, "accuracy_std": 0.01})
    assert compare(a, pd.Series({"accuracy_mean": 0.77, "accuracy_std": 0.01})) == "beat"
    assert compare(a, pd.Series({"accuracy_mean": 0.79, "accuracy_std": 0.01})) == "was within noise of"
    assert compare(a, pd.Series({"accuracy_mean": 0.83, "accuracy_std": 0.01})) == "lost to"


def test_gap_closed_is_the_share_of_the_random_to_oracle_gap():
    row = lambda m: pd.Series({"accuracy_mean": m})  # noqa: E731
    assert gap_closed(row(0.85), row(0.70), row(0.90)) == np.float64(0.15) / 0.20
    assert np.isnan(gap_closed(row(0.85), row(0.90), row(0.90)))


def test_within_noise_is_mixed():
    summary = pd.DataFrame(
        [
            summary_row("random", "lora", 80, 0.70, 0.7, 0.9, 8.0, std=0.05),
            summary_row("per_class", "lora", 80, 0.72, 0.7, 0.9, 8.0, std=0.05),
        ]
    )
    box = key_results(summary, primary="per_class", method="lora")
    assert box.tone == "mixed" and "within noise" in box.headline


def test_key_results_name_a_missing_primary_and_fall_back():
    summary = pd.DataFrame(
        [
            summary_row("random", "lora", 80, 0.70, 0.7, 0.9, 8.0),
            summary_row("per_class", "lora", 80, 0.80, 0.8, 0.9, 8.0),
        ]
    )
    box = key_results(summary, primary="herding", method="partial")
    assert "selection `herding` not in the results; showing `per_class`" in box.lines[-1]
    assert "method `partial` not in the results; showing `lora`" in box.lines[-1]


def test_compute_saved_ratios():
    summary = pd.DataFrame(
        [
            summary_row("full", "lora", 400, 0.8, 0.8, 0.98, 40.0),
            summary_row("per_class", "lora", 80, 0.85, 0.84, 0.97, 8.0),
        ]
    )
    saved = compute_saved(summary)
    assert len(saved) == 1
    row = saved.iloc[0]
    np.testing.assert_allclose(
        [row["speed-up"], row["time saved"], row["AUC retained"], row["F1 - full F1"]],
        [5.0, 0.8, 0.97 / 0.98, 0.04],
        rtol=1e-12,
    )


def _sweep(*rows: tuple[float, int, float, float]) -> pd.DataFrame:
    return pd.DataFrame(
        [summary_row("per_class", "lora", n, acc, 0.8, 0.9, t, kind="sweep", fraction=f) for f, n, acc, t in rows]
    )


def test_sweep_sentence_picks_the_smallest_fraction_within_level():
    text = sweep_sentence(_sweep((0.25, 20, 0.80, 2.0), (0.5, 40, 0.85, 4.0), (1.0, 80, 0.86, 8.0)), level=0.98)
    assert text.startswith("The top 50% of the curated set (40 samples)")
    assert f"{0.85 / 0.86:.1%}" in text and "50% of its training time" in text


def test_sweep_sentence_when_the_peak_is_the_first_point_within_level():
    text = sweep_sentence(_sweep((0.25, 20, 0.70, 2.0), (1.0, 80, 0.86, 8.0)))
    assert text.startswith("Accuracy peaks at the top 100%")


def _suite_summary(split, scenario, evaluator, rows):
    """Suite summary rows: (selection, method, policy, mean, std, gap_closed)."""
    return pd.DataFrame(
        [
            {
                "split": split,
                "scenario": scenario,
                "budget": 0.2,
                "evaluator": evaluator,
                "selection": name,
                "method": method,
                "policy": policy,
                "accuracy_mean": mean,
                "accuracy_std": std,
                "gap_closed": gap,
            }
            for name, method, policy, mean, std, gap in rows
        ]
    )


def _check(split, scenario, evaluator, other, margin, combined, against="best control", **paired):
    return {
        "split": split,
        "scenario": scenario,
        "budget": 0.2,
        "evaluator": evaluator,
        "against": against,
        "other": other,
        "margin": margin,
        "combined_std": combined,
        "wins": margin > combined,
        **paired,
    }


def test_suite_key_lines_name_the_random_valued_control_and_where_the_primary_loses():
    rows = [
        ("prim", "kairos_calibrated", "gated_cover", 0.90, 0.003, 75.0),
        ("herd_rand", "random", "herding", 0.89, 0.004, 60.0),  # found by method + policy, not by name
        ("rnd", "random", "global", 0.85, 0.01, 0.0),
        ("orc", "random", "global", 0.895, 0.004, 100.0),  # 0.005 < hypot(0.004, 0.004): no room
    ]
    summary = pd.concat(
        [
            _suite_summary("held_out", "default", "lora", rows),
            _suite_summary("development", "default", "lora", [(n, m, p, a + 0.01, s, g) for n, m, p, a, s, g in rows]),
        ]
    )
    checks = pd.DataFrame(
        [
            _check("held_out", "default", "lora", "herd_rand", 0.010, 0.005),
            _check("held_out", "flips", "lora", "cl_filter", -0.030, 0.010),
            _check("held_out", "light", "probe", "herd_rand", 0.002, 0.010),
            _check(
                "held_out",
                "default",
                "lora",
                "herd_rand",
                0.010,
                0.005,
                "herding over random values",
                paired_mean=0.011,
                paired_std=0.002,
                paired_seeds=3,
                seeds_better=3,
            ),
        ]
    )
    from kairos_curate.study.suite_verdicts import suite_key_lines

    lines = suite_key_lines(summary, checks, primary="prim", ceiling="orc")
    assert len(lines) == 4
    dev, held, where, room = lines
    assert "a ceiling (`orc`: they choose by ground truth) beat herding over random values" in room
    assert "in 0 of 1 held-out" in room and "on `default` the best ceiling's margin" in room
    assert "lora `orc` +0.005 vs 0.006 (does not)" in room  # 0.895 - 0.89, hypot(0.004, 0.004)
    assert dev.startswith("Selection suite, `default`, budget 20%, development seeds")
    assert "held-out seeds (never used for tuning)" in held
    # 0.90 - 0.89 = 0.010 > hypot(0.003, 0.004) = 0.005: a win over the random-valued control
    assert "**beat** herding over random values (`herd_rand`, 0.890 ± 0.004; " in held and "75%" in held
    assert "paired over 3 seeds +0.011 ± 0.002, higher on 3 of 3)" in held
    assert "paired" not in dev  # no check row of the development seeds: no paired text
    assert "1 of 3 scenario x evaluator cells" in where
    assert "`flips` lora (lost to `cl_filter`, -0.030)" in where
    assert "`light` probe (was within noise of `herd_rand`, +0.002)" in where
    assert "`default`" not in where.split("ties:**")[1]


def test_suite_key_lines_within_noise_and_absent_suite():
    from kairos_curate.study.suite_verdicts import suite_key_lines

    rows = [("prim", "k", "g", 0.90, 0.01, 50.0), ("herd_rand", "random", "herding", 0.895, 0.01, 40.0)]
    held = suite_key_lines(_suite_summary("held_out", "default", "probe", rows), None, primary="prim")
    assert held and "**was within noise of** herding over random values" in held[0]
    assert suite_key_lines(None, None, primary="prim") == []
    assert suite_key_lines(_suite_summary("held_out", "default", "probe", rows), None, primary="other") == []


def test_room_to_win_takes_the_best_of_every_ceiling():
    from kairos_curate.study.suite_verdicts import suite_key_lines

    rows = [
        ("prim", "kairos_calibrated", "gated_cover", 0.90, 0.003, 75.0),
        ("herd_rand", "random", "herding", 0.89, 0.004, 60.0),
        ("orc", "random", "global", 0.895, 0.004, 100.0),  # no room: 0.005 < 0.0057
        ("orc_cover", "random", "gated_cover", 0.91, 0.004, 120.0),  # room: 0.020 > 0.0057
    ]
    held = _suite_summary("held_out", "default", "lora", rows)
    held["role"] = ["primary", "control", "ceiling", "ceiling"]
    other = _suite_summary("held_out", "flips", "lora", rows[:3]).assign(role=["primary", "control", "ceiling"])
    room = suite_key_lines(pd.concat([held, other]), None, primary="prim", ceiling="orc")[-1]
    assert room.startswith("Room to win: a ceiling (`orc`, `orc_cover`: they choose by ground truth)")
    assert "in 1 of 2 held-out" in room and "lora `orc_cover` +0.020 vs 0.006 (clears it)" in room
