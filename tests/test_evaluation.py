"""Metrics against brute-force definitions (float64, small inputs)."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from kairos_curate.evaluation import (
    classification_metrics,
    detection_curve,
    detection_metrics,
    mean_std,
    probe_metrics,
    removal_curve,
    winner_table,
)


def _brute_auroc(scores, bad):
    pos, neg = scores[bad], scores[~bad]
    wins = [1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg)]
    return float(np.mean(wins))


def test_detection_metrics_match_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(5):
        scores = rng.integers(0, 6, size=40).astype(float)  # ties on purpose
        bad = rng.random(40) < 0.3
        m = detection_metrics(scores, bad, ks={"k5": 5})
        assert_allclose(m["auroc"], _brute_auroc(scores, bad))
        order = np.argsort(-scores, kind="stable")
        assert_allclose(m["precision_at_k5"], bad[order[:5]].mean())
        assert_allclose(m["recall_at_k5"], bad[order[:5]].sum() / bad.sum())


def test_detection_metrics_perfect_and_errors():
    bad = np.array([True, True, False, False, False])
    m = detection_metrics(np.array([5.0, 4, 1, 2, 0]), bad)
    assert m["auroc"] == 1.0 and m["precision_at_k_bad"] == 1.0 and m["average_precision"] == 1.0
    with pytest.raises(ValueError, match="NaN"):
        detection_metrics(np.array([np.nan, 1, 2, 3, 4]), bad)
    with pytest.raises(ValueError, match="both bad and clean"):
        detection_metrics(np.ones(3), np.zeros(3, bool))


def test_detection_curve_endpoints_and_monotone():
    bad = np.array([False, True, False, True])
    x, found = detection_curve(np.array([0.1, 0.9, 0.2, 0.8]), bad, points=5)
    assert_allclose(x, [0, 0.25, 0.5, 0.75, 1.0])
    assert_allclose(found, [0, 0.5, 1.0, 1.0, 1.0])


def test_classification_metrics_by_hand():
    y = np.array([0, 1, 2, 2])
    proba = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.5, 0.1, 0.4]])
    m = classification_metrics(y, proba)
    assert_allclose(m["accuracy"], 0.75)
    # per class F1: class0 p=1/2 r=1 -> 2/3; class1 1; class2 p=1 r=1/2 -> 2/3
    assert_allclose(m["macro_f1"], (2 / 3 + 1 + 2 / 3) / 3)
    aucs = []
    for c in range(3):
        aucs.append(_brute_auroc(proba[:, c], y == c))
    assert_allclose(m["auc"], np.mean(aucs))
    binary = classification_metrics(np.array([0, 1, 1]), np.array([[0.9, 0.1], [0.4, 0.6], [0.7, 0.3]]))
    assert_allclose(binary["auc"], _brute_auroc(np.array([0.1, 0.6, 0.3]), np.array([False, True, True])))
    assert np.isnan(classification_metrics(np.array([0, 0]), np.array([[0.9, 0.1], [0.8, 0.2]]))["auc"])


def test_mean_std_uses_sample_std():
    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)
    assert mean_std([4.0]) == (4.0, 0.0)


def test_probe_metrics_on_separable_data_and_single_class():
    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(-3, 0.3, size=(20, 2)), rng.normal(3, 0.3, size=(20, 2))]
    y = np.repeat([0, 1], 20)
    assert probe_metrics(x, y, x, y, 2)["accuracy"] == 1.0
    single = probe_metrics(x[:20], y[:20], x, y, 2)
    assert single["accuracy"] == pytest.approx(0.5)


def test_removal_curve_removes_the_right_rows():
    rng = np.random.default_rng(1)
    x = np.r_[rng.normal(-3, 0.3, size=(20, 2)), rng.normal(3, 0.3, size=(20, 2))]
    y = np.repeat([0, 1], 20)
    values = np.r_[np.zeros(20), np.ones(20)]  # class 1 most valuable
    high = removal_curve(values, x, y, x, y, [0.0, 0.5], 2, remove="high")
    low = removal_curve(values, x, y, x, y, [0.0, 0.5], 2, remove="low")
    assert [r["n_kept"] for r in high] == [40, 20]
    assert high[0]["accuracy"] == 1.0
    assert high[1]["accuracy"] == pytest.approx(0.5) and low[1]["accuracy"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="remove"):
        removal_curve(values, x, y, x, y, [0.1], 2, remove="middle")


def test_winner_table_matches_brute_force():
    frame = pd.DataFrame(
        {
            "setting": ["a"] * 3 + ["b"] * 3,
            "method": ["kairos_feature", "lava", "knn_shapley"] * 2,
            "auroc_mean": [0.9, 0.8, 0.7, 0.6, 0.95, 0.5],
            "auroc_std": 0.01,
        }
    )
    table = winner_table(frame).set_index("setting")
    assert table.loc["a", "winner"] == "kairos_feature" and table.loc["a", "margin"] == pytest.approx(0.1)
    assert table.loc["b", "winner"] == "lava" and table.loc["b", "kairos_minus_other"] == pytest.approx(-0.35)
