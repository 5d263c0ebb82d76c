"""``suite`` in params.yaml: strict validation, the profiles, and the plan the finetune stage builds."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from kairos_curate.config import ParamsError, validate_params
from kairos_curate.stages import finetune
from kairos_curate.stages.params import SeedsParams, SuiteParams
from tests.conftest import ROOT

PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
#: The selection names the parallel policy work writes against (issue 15).
CONTRACT = {
    "calibrated",
    "herding_random_values",
    "herding_kairos",
    "random",
    "per_class_random",
    "knn_shapley_cover",
    "lava_cover",
    "confident_learning_cover",
    "random_values_cover",
    "cl_filter_cover",
    "oracle",
    "oracle_cover",
    "no_label_gate",
    "no_feature_gate",
    "no_gate",
    "no_dedup",
    "fixed_drop",
    "storey_gate",
}


def suite(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(PARAMS["suite"])
    data.update(changes)
    return data


def test_params_yaml_suite_is_valid_and_holds_the_contract():
    p = validate_params(SuiteParams, PARAMS["suite"], "suite")
    assert set(p.selections) == CONTRACT and len(p.scenarios) == 10 and p.budgets == [0.05, 0.1, 0.2, 0.4]
    assert p.selections["knn_shapley_cover"]["keep_counts_from"] == "calibrated"
    assert p.scenarios["flip_confusable"].extra.confusable_flip_fraction == 0.3
    assert p.profile == "small"  # the default dvc repro runs the small configuration


def test_profiles_pick_what_runs_and_the_seeds():
    seeds = SeedsParams()
    small = validate_params(SuiteParams, PARAMS["suite"], "suite").active(seeds)
    assert small["scenarios"] == ["default", "clean"] and small["budgets"] == [0.1, 0.2, 0.4]
    assert small["seeds"] == {"development": [0, 1], "held_out": [2000, 2001]}
    full = validate_params(SuiteParams, suite(profile="full"), "suite").active(seeds)
    assert len(full["scenarios"]) == 10 and set(full["selections"]) == CONTRACT and full["trials"] == 3
    assert full["seeds"] == {"development": [0, 1, 2, 1000, 1001, 1002, 3, 4, 5], "held_out": [2000, 2001, 2002]}
    off = validate_params(SuiteParams, suite(profile="disabled"), "suite").active(seeds)
    assert off["scenarios"] == [] and off["trials"] == 0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"profile": "huge"}, "profile"),
        ({"budgets": [0.0]}, "budgets"),
        ({"scenarios": {"x": {"scenario": {"seed": 3}}}}, "seed"),
        ({"scenarios": {"x": {"extra": {"motion_blur_fractoin": 0.1}}}}, "motion_blur_fractoin"),
        ({"primary": "nope"}, "primary"),
        ({"ceiling": "random"}, "oracle"),
        ({"small": {**PARAMS["suite"]["small"], "selections": ["random", "oracle"]}}, "primary"),
        ({"small": {**PARAMS["suite"]["small"], "scenarios": ["nowhere"]}}, "nowhere"),
        (
            {
                "primary": "herding_kairos",
                "small": {
                    **PARAMS["suite"]["small"],
                    "selections": ["herding_kairos", "random", "oracle", "lava_cover"],
                },
            },
            "keep counts",
        ),
    ],
)
def test_suite_params_are_strict(change, message):
    with pytest.raises(ParamsError, match=message):
        validate_params(SuiteParams, suite(**change), "suite")


def test_selection_entries_are_checked():
    sel = copy.deepcopy(PARAMS["suite"]["selections"])
    for entry, message in (
        ({"policy": "global"}, "method"),
        ({"method": "random", "policy": "global", "oracle": True}, "ceiling"),
        ({"method": "random", "policy": "global", "keep_counts_from": "gone"}, "gone"),
        ({"method": "random", "policy": "global", "role": "hero"}, "role"),
    ):
        with pytest.raises(ParamsError, match=message):
            validate_params(SuiteParams, suite(selections={**sel, "bad": entry}), "suite")


def test_the_stage_checks_scenarios_and_registered_plug_ins_before_any_work():
    params = copy.deepcopy(PARAMS)
    plan = finetune.suite_plan(finetune.load(params))
    assert list(plan.scenarios) == ["default", "clean"] and plan.primary == "calibrated"
    assert all(s.uses_ground_truth == (s.name in ("oracle", "oracle_cover")) for s in plan.selections.values())
    bad = copy.deepcopy(PARAMS)
    bad["suite"]["selections"]["herding_kairos"]["drop_fraction"] = 1.5
    with pytest.raises(ParamsError, match="herding_kairos"):
        finetune.load(bad)
    bad = copy.deepcopy(PARAMS)
    bad["suite"]["selections"]["per_class_random"]["drop_fraction"] = 0.5  # not a per_class parameter; full only
    with pytest.raises(ParamsError, match="per_class_random"):
        finetune.load(bad)
    bad = copy.deepcopy(PARAMS)
    bad["suite"]["scenarios"]["clean"]["scenario"]["pool_per_task_class"] = 0
    with pytest.raises(ParamsError, match="clean"):
        finetune.load(bad)


def test_a_disabled_suite_writes_empty_tables_and_says_so(tmp_path):
    import json

    import pandas as pd

    from kairos_curate.stages.suite import SUITE_TABLES

    params = copy.deepcopy(PARAMS)
    params["suite"]["profile"] = "disabled"
    out = finetune.run_suite(finetune.load(params), root=tmp_path)
    assert json.loads((tmp_path / "reports/metrics/suite.json").read_text())["profile"] == "disabled"
    for name in SUITE_TABLES.values():
        assert (tmp_path / "reports/tables" / f"{name}.csv").exists()
    assert out["runs"].empty and list(pd.read_csv(tmp_path / "reports/tables/suite_skipped.csv").columns) == [
        "selection",
        "method",
        "policy",
        "role",
        "reason",
    ]
