"""The fine-tuning grid: leakage rules (ids and pixel hashes), subsets, summaries, the sizes sweep."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kairos_curate.data.scenario import check_no_leakage
from kairos_curate.reporting.tables import poster_table
from kairos_curate.study.finetune_grid import (
    build_subsets,
    summarise_grid,
    sweep_subsets,
    top_fraction_per_class,
)

from ..conftest import requires_fashion_mnist


@requires_fashion_mnist
def test_the_default_scenario_has_no_leakage(small_scenario):
    check_no_leakage(small_scenario)


@requires_fashion_mnist
def test_leakage_by_id_is_caught(small_scenario):
    leaky = small_scenario.samples.copy()
    test_id = leaky.loc[leaky["split"] == "test", "id"].iloc[0]
    leaky.loc[leaky.index[leaky["split"] == "pool"][0], "id"] = test_id
    broken = type(small_scenario)(
        samples=leaky,
        pixels=small_scenario.pixels,
        truth=small_scenario.truth,
        class_names=small_scenario.class_names,
        info=small_scenario.info,
    )
    with pytest.raises(RuntimeError, match="ids in both test and pool"):
        check_no_leakage(broken)


@requires_fashion_mnist
def test_leakage_by_pixels_is_caught(small_scenario):
    pixels = small_scenario.pixels.copy()
    ref_row = np.flatnonzero(small_scenario.split_mask("reference"))[0]
    test_row = np.flatnonzero(small_scenario.split_mask("test"))[0]
    pixels[test_row] = pixels[ref_row]
    broken = type(small_scenario)(
        samples=small_scenario.samples,
        pixels=pixels,
        truth=small_scenario.truth,
        class_names=small_scenario.class_names,
        info=small_scenario.info,
    )
    with pytest.raises(RuntimeError, match="content hash"):
        check_no_leakage(broken)


def _selections(ids):
    return {"per_class": {"ids": list(ids[:5])}, "global": {"ids": list(ids[-5:])}}


def test_subsets_only_hold_pool_rows_and_oracle_only_clean_ones():
    ids = np.array([f"p{i}" for i in range(20)])
    truth = pd.DataFrame({"id": ids, "noisy": [i % 3 == 0 for i in range(20)]})
    built = build_subsets(
        ["full", "random", "per_class", "global", "oracle"],
        _selections(ids),
        ids,
        k=5,
        random_draws=4,
        seed=0,
        truth=truth,
    )
    subsets = {s.name: s for s in built}
    assert [s.kind for s in built] == ["full", "random", "curated", "curated", "oracle"]
    assert np.array_equal(subsets["full"].draws[0], np.arange(20))
    assert len(subsets["random"].draws) == 4
    assert all(d.size == 5 and np.unique(d).size == 5 for d in subsets["random"].draws)
    assert ids[subsets["per_class"].draws[0]].tolist() == [f"p{i}" for i in range(5)]  # best-first order kept
    oracle = subsets["oracle"].draws[0]
    assert not truth["noisy"].to_numpy()[oracle].any()
    assert [s.uses_ground_truth for s in built] == [False, False, False, False, True]
    again = build_subsets(["random"], {}, ids, 5, 4, 0, None)[0]
    assert all(np.array_equal(a, b) for a, b in zip(again.draws, subsets["random"].draws, strict=True))
    sweep = sweep_subsets(subsets["per_class"], np.zeros(20, dtype=int), [0.4, 1.0])
    assert [(s.kind, s.fraction, s.draws[0].size) for s in sweep] == [("sweep", 0.4, 2), ("sweep", 1.0, 5)]


def test_subset_errors_say_what_is_missing():
    ids = np.array(["a", "b", "c"])
    with pytest.raises(
        ValueError, match=r"'herding' is neither full, random, oracle nor a selection .*has global, per_class"
    ):
        build_subsets(["herding"], _selections(ids), ids, 2, 1, 0, None)
    with pytest.raises(ValueError, match="truth"):
        build_subsets(["oracle"], {}, ids, 2, 1, 0, None)


def test_summary_is_mean_and_sample_std_over_runs():
    runs = pd.DataFrame(
        {
            "pool": "original",
            "subset": ["random"] * 3 + ["full"],
            "kind": ["random"] * 3 + ["full"],
            "fraction": 1.0,
            "method": ["lora"] * 4,
            "n_selected": [5, 5, 5, 20],
            "uses_ground_truth": False,
            "accuracy": [0.5, 0.6, 0.7, 0.9],
            "macro_f1": [0.4, 0.5, 0.6, 0.8],
            "auc": [0.8, 0.8, 0.8, 0.9],
            "train_time_s": [1.0, 2.0, 3.0, 10.0],
            "trainable_params": [7] * 4,
        }
    )
    summary, sweep = summarise_grid(runs)
    assert sweep.empty
    summary = summary.set_index("subset")
    assert summary.loc["random", "accuracy_mean"] == pytest.approx(0.6)
    assert summary.loc["random", "accuracy_std"] == pytest.approx(0.1)
    assert summary.loc["full", "accuracy_std"] == 0.0 and summary.loc["random", "runs"] == 3
    table = poster_table(summary.reset_index())
    assert table.loc[table["Subset"] == "random", "Accuracy"].item() == "0.600 ± 0.100"


def test_sweep_prefix_keeps_every_class_in_proportion():
    labels = np.array([0] * 10 + [1] * 10 + [2] * 20)
    ordered = np.arange(40)  # class after class, best first within each class
    half = top_fraction_per_class(ordered, labels, 0.5)
    assert np.bincount(labels[half]).tolist() == [5, 5, 10]
    assert half.tolist()[:5] == [0, 1, 2, 3, 4]  # the best of each class, not the first rows overall
    assert top_fraction_per_class(ordered, labels, 1.0).tolist() == ordered.tolist()
    with pytest.raises(ValueError, match="size_fractions"):
        top_fraction_per_class(ordered, labels, 0.0)
