"""The selection suite's runner on a tiny configuration, its subset description and its tables."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd
import pytest

from kairos_curate.data.scenario_config import ExtraProblemsConfig, ScenarioConfig
from kairos_curate.data.suite_scenario import PoolTruth
from kairos_curate.selection import (
    POLICIES,
    PolicyChoice,
    PolicyParams,
    SelectionContext,
    SelectionPolicy,
    register_policy,
)
from kairos_curate.study import selection_suite as suite_mod
from kairos_curate.study.selection_suite import (
    FineTuner,
    SuitePlan,
    SuiteSelection,
    describe_subset,
    estimate_seconds,
    run_suite,
    summarise_suite,
)
from kairos_curate.valuation import METHODS, ValuationInputs, ValuationResult
from kairos_curate.valuation.base import MethodParams, ValuationMethod, register_method
from tests.conftest import SMALL_SCENARIO, requires_fashion_mnist

BASE = ScenarioConfig.from_params(SMALL_SCENARIO)


class _CountingMethod(ValuationMethod):
    """Random values, and per-class keep counts in ``info`` (as the calibrated method reports them)."""

    name = "suite_test_counts"
    description = "test only: random values and keep counts"
    seeded = True
    Params = MethodParams

    def fit(self, inputs: ValuationInputs) -> ValuationResult:
        rng = np.random.default_rng(inputs.seed)
        counts = {int(c): int(n) // 2 for c, n in zip(*np.unique(inputs.pool_labels, return_counts=True), strict=True)}
        return ValuationResult(self.name, values=rng.random(inputs.pool.shape[0]), info={"keep_counts": counts})


class _TopPolicy(SelectionPolicy):
    name = "suite_test_top"
    description = "test only: the k best values"
    Params = PolicyParams

    def choose(self, ctx: SelectionContext, k: int) -> PolicyChoice:
        return PolicyChoice(indices=ctx.order[:k])


@pytest.fixture(autouse=True, scope="module")
def _toy_plug_ins():
    """The toy method and policy are registered only while this module's tests run."""
    register_method(_CountingMethod)
    register_policy(_TopPolicy)
    yield
    METHODS.pop(_CountingMethod.name)
    POLICIES.pop(_TopPolicy.name)


def fake_embed(ids: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """14 x 14 mean-pooled pixels, unit norm: a cheap stand-in for the encoder."""
    x = pixels.reshape(len(pixels), 14, 2, 14, 2).mean(axis=(2, 4)).reshape(len(pixels), -1).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


ENTRIES: dict[str, dict[str, Any]] = {
    "herding_kairos": {"method": "kairos_class_conditional", "policy": "herding", "drop_fraction": 0.5},
    "random": {"method": "random", "policy": "global"},
    "per_class_random": {"method": "random", "policy": "per_class"},
    "counts": {"method": "suite_test_counts", "policy": "suite_test_top"},
    "matched": {"method": "random", "policy": "suite_test_top", "keep_counts_from": "counts"},
    "ghost": {"method": "no_such_method", "policy": "global"},
    "ghost_user": {"method": "random", "policy": "global", "keep_counts_from": "ghost"},
    "no_drop": {"method": "kairos_class_conditional", "policy": "herding", "role": "ablation"},
    "oracle": {"method": "random", "policy": "global", "oracle": True, "role": "ceiling"},
}


def make_plan(evaluators=("probe",), trials=1, scenarios=None, names=None) -> SuitePlan:
    names = names or list(ENTRIES)
    return SuitePlan(
        scenarios=scenarios
        or {
            "default": ({}, ExtraProblemsConfig()),
            "dups": ({}, ExtraProblemsConfig(duplicate_sources_per_class=2, copies_per_source=5)),
        },
        seeds={"development": [0], "held_out": [1000]},
        budgets=[0.2],
        selections={n: SuiteSelection.from_mapping(n, ENTRIES[n], primary=n == "herding_kairos") for n in names},
        evaluators=list(evaluators),
        trials=trials,
        primary="herding_kairos",
        baseline="random",
        ceiling="oracle",
    )


def test_unregistered_plug_ins_and_their_dependants_are_skipped_visibly():
    plan = make_plan()
    skipped = plan.skipped()
    assert set(skipped) == {"ghost", "ghost_user"}
    assert "no_such_method" in skipped["ghost"] and "ghost" in skipped["ghost_user"]
    order = [s.name for s in plan.runnable()]
    assert order.index("counts") < order.index("matched") and "ghost" not in order
    spec = plan.selections["herding_kairos"]
    assert spec.role == "primary" and spec.policy_params == {"drop_fraction": 0.5}
    assert plan.selections["oracle"].uses_ground_truth and not spec.uses_ground_truth


@requires_fashion_mnist
def test_the_suite_runs_a_tiny_configuration(monkeypatch):
    seen: dict[str, Any] = {}
    real_select = suite_mod.select

    def spy(result, k, **kw):
        if "keep_counts" in kw:  # the contract: select(keep_counts=...) takes the source's counts
            seen["keep_counts"] = kw.pop("keep_counts")
        return real_select(result, k, **kw)

    monkeypatch.setattr(suite_mod, "select", spy)
    plan = make_plan()
    out = run_suite(plan, BASE, fake_embed)
    runs = pd.DataFrame(out.runs)
    ran = [s.name for s in plan.runnable()]
    assert len(runs) == 2 * 2 * len(ran)  # scenarios x seeds x selections x one probe row
    assert {r["selection"] for r in out.skipped} == {"ghost", "ghost_user"}
    assert set(runs["split"]) == {"development", "held_out"}
    assert seen["keep_counts"] and all(isinstance(v, int) for v in seen["keep_counts"].values())
    setups = pd.DataFrame(out.setups).set_index(["scenario", "seed"])
    n_pool = setups["n_pool"]
    for r in runs.itertuples():
        assert r.k == round(0.2 * n_pool[(r.scenario, r.seed)])
    oracle = runs[runs["selection"] == "oracle"]
    assert (oracle["precision"] == 1.0).all() and oracle["uses_ground_truth"].all()
    assert not runs.loc[runs["selection"] != "oracle", "uses_ground_truth"].any()
    assert (runs.loc[runs["scenario"] == "default", "n_near_duplicate"] == 0).all()
    assert setups.loc[("dups", 0), "pool_near_duplicate"] == 6 * 2 * 5
    tables = summarise_suite(runs, plan)
    summary = tables.summary.set_index(["split", "scenario", "selection"])
    assert summary.loc[("development", "default", "random"), "runs"] == 1
    gap = tables.summary.dropna(subset=["gap_closed"])
    assert np.allclose(gap.loc[gap["selection"] == "random", "gap_closed"], 0.0)
    assert np.allclose(gap.loc[gap["selection"] == "oracle", "gap_closed"], 100.0)
    checks = tables.checks
    assert set(checks["against"]) == {"best control", "baseline"} and set(checks["split"]) == {
        "development",
        "held_out",
    }
    best = checks[checks["against"] == "best control"]
    assert set(best["other"]) <= {"random", "per_class_random", "counts", "matched"}  # never a ceiling or ablation
    assert set(tables.ablations["selection"]) == {"no_drop"} and set(tables.ablations["other"]) == {"herding_kairos"}


@pytest.mark.slow
@requires_fashion_mnist
def test_fine_tuning_trials_are_rows_with_their_own_seeds():
    from kairos_curate.training.backbones import load_backbone
    from kairos_curate.training.config import FinetuneConfig

    tuner = FineTuner(
        load_backbone("efficientnet-lite0", image_size=32),
        {"lora": FinetuneConfig(method="lora", epochs=1, device="cpu", threads=1)},
        device="cpu",
    )
    plan = make_plan(
        evaluators=("lora",),
        trials=2,
        scenarios={"default": ({}, ExtraProblemsConfig())},
        names=["herding_kairos", "random", "oracle"],
    )
    plan = dataclasses.replace(plan, seeds={"development": [0], "held_out": []})
    runs = pd.DataFrame(run_suite(plan, BASE, fake_embed, tuner).runs)
    assert len(runs) == 3 * 2 and set(runs["trial"]) == {0, 1}
    assert runs["accuracy"].between(0, 1).all() and (runs["train_s"] > 0).all()
    with pytest.raises(ValueError, match="FineTuner"):
        run_suite(plan, BASE, fake_embed)


def test_describe_subset_against_brute_force():
    rng = np.random.default_rng(0)
    n, classes = 40, 3
    x = rng.normal(size=(n, 5))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = rng.integers(0, classes, n)
    kinds = rng.choice(["clean", "clean", "label flipped", "off-task", "near-duplicate"], n)
    truth = PoolTruth(kinds, labels.copy(), kinds, np.full(n, -1))
    rows = np.flatnonzero(labels != 2)[:10]  # class 2 gets nothing
    d = describe_subset(rows, labels, truth, x, classes)
    assert d["precision"] == np.mean(kinds[rows] == "clean") and d["k"] == 10
    assert d["n_off_task"] == np.sum(kinds[rows] == "off-task") and d["count_c2"] == 0 and d["min_class_count"] == 0
    dists = []
    for i in np.flatnonzero(kinds == "clean"):
        same = rows[labels[rows] == labels[i]]
        dists.append(min(np.linalg.norm(x[i] - x[j]) for j in same) if same.size else 2.0)
    assert d["clean_coverage_dist"] == pytest.approx(np.mean(dists))
    assert d["classes_covered"] == len({labels[r] for r in rows if kinds[r] == "clean"})


def _runs(acc: dict[str, list[float]]) -> pd.DataFrame:
    rows = []
    for name, values in acc.items():
        role = {"p": "primary", "oracle": "ceiling", "abl": "ablation"}.get(name, "control")
        for seed, a in enumerate(values):
            rows.append(
                {
                    "split": "development",
                    "scenario": "s",
                    "budget": 0.2,
                    "evaluator": "probe",
                    "selection": name,
                    "seed": seed,
                    "trial": 0,
                    "role": role,
                    "method": "m",
                    "policy": "p",
                    "uses_ground_truth": name == "oracle",
                    "k": 10,
                    "accuracy": a,
                    "macro_f1": a,
                    "auc": a,
                    "precision": 1.0,
                    "min_class_count": 1,
                    "classes_covered": 2,
                    "clean_coverage_dist": 0.1,
                    "value_s": 0.1,
                    "select_s": 0.1,
                    "train_s": 1.0,
                }
            )
    return pd.DataFrame(rows)


def test_gap_closed_and_the_done_when_margin():
    plan = SuitePlan({}, {}, [0.2], {}, ["probe"], 1, primary="p", baseline="random", ceiling="oracle")
    tables = summarise_suite(
        _runs({"p": [0.8, 0.82], "random": [0.6, 0.62], "c": [0.7, 0.74], "oracle": [0.9, 0.92], "abl": [0.75, 0.75]}),
        plan,
    )
    gap = tables.summary.set_index("selection")["gap_closed"]
    assert gap["p"] == pytest.approx(100 * (0.81 - 0.61) / (0.91 - 0.61))
    best = tables.checks[tables.checks["against"] == "best control"].iloc[0]
    assert best["other"] == "c" and best["margin"] == pytest.approx(0.81 - 0.72)
    assert best["combined_std"] == pytest.approx(np.hypot(np.std([0.8, 0.82], ddof=1), np.std([0.7, 0.74], ddof=1)))
    assert bool(best["wins"])
    ablation = tables.ablations.iloc[0]
    assert ablation["selection"] == "abl" and ablation["margin"] == pytest.approx(0.75 - 0.81)


def test_estimate_scales_with_the_plan():
    runs = _runs({"p": [0.8, 0.8], "random": [0.6, 0.6]})
    setups = pd.DataFrame([{"n_pool": 50, "build_s": 1.0, "embed_s": 2.0, "stems_s": 0.0}])
    one = estimate_seconds(
        runs, setups, scenarios=1, seeds=1, budgets=[0.2], selections=2, evaluators=["probe"], trials=1
    )
    two = estimate_seconds(
        runs, setups, scenarios=2, seeds=3, budgets=[0.2, 0.4], selections=2, evaluators=["probe"], trials=1
    )
    assert one["setup_s"] == pytest.approx(3.0) and two["setup_s"] == pytest.approx(18.0)
    assert two["evaluate_s"] == pytest.approx(one["evaluate_s"] * 6 * 3)  # 6 runs, 3x the selected samples
    tuned = runs.assign(evaluator="lora")
    both = estimate_seconds(
        tuned, setups, scenarios=1, seeds=1, budgets=[0.2], selections=2, evaluators=["lora", "partial"], trials=2
    )
    assert both["assumed_like_measured"] == ["partial"]
    assert both["evaluate_s"] == pytest.approx(2 * 2 * one["evaluate_s"])  # two evaluators x two trials


def test_checks_carry_the_paired_view_against_random_valued_herding():
    # three seeds x two trials; "hr" herds over random values (found by method + policy)
    acc = {
        "p": [[0.80, 0.84], [0.86, 0.86], [0.70, 0.72]],
        "hr": [[0.79, 0.81], [0.85, 0.83], [0.72, 0.74]],
        "random": [[0.6, 0.6], [0.6, 0.62], [0.5, 0.52]],
    }
    runs = _runs({name: [a for seed in values for a in seed] for name, values in acc.items()})
    runs["seed"] = runs.groupby("selection").cumcount() // 2
    runs["trial"] = runs.groupby("selection").cumcount() % 2
    runs.loc[runs["selection"] == "hr", ["method", "policy"]] = ["random", "herding"]
    plan = SuitePlan({}, {}, [0.2], {}, ["probe"], 2, primary="p", baseline="random", ceiling="oracle")
    checks = summarise_suite(runs, plan).checks.set_index("against")
    assert set(checks.index) == {"best control", "baseline", "herding over random values"}
    row = checks.loc["herding over random values"]
    diffs = [np.mean(acc["p"][s]) - np.mean(acc["hr"][s]) for s in range(3)]  # brute force, per seed
    assert row["other"] == "hr" and row["paired_seeds"] == 3
    np.testing.assert_allclose(row["paired_mean"], np.mean(diffs), rtol=0, atol=1e-12)
    np.testing.assert_allclose(row["paired_std"], np.std(diffs, ddof=1), rtol=0, atol=1e-12)
    assert row["seeds_better"] == sum(d > 0 for d in diffs) == 2
    # the verdict stays on the combined std of the unpaired runs, which the shared seed spread inflates
    flat_p, flat_hr = np.ravel(acc["p"]), np.ravel(acc["hr"])
    np.testing.assert_allclose(row["combined_std"], np.hypot(np.std(flat_p, ddof=1), np.std(flat_hr, ddof=1)))
    assert row["paired_std"] < row["combined_std"]
    one = summarise_suite(runs[runs["seed"] == 0], plan).checks.set_index("against").loc["baseline"]
    assert one["paired_seeds"] == 1 and np.isnan(one["paired_std"])
