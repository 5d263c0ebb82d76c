"""End to end: the finetune stage's selection suite on a tiny configuration, real encoder and backbone."""

from __future__ import annotations

import copy
import json

import pandas as pd
import pytest
import yaml

from kairos_curate.selection import POLICIES
from kairos_curate.stages import finetune
from kairos_curate.stages.suite import SUITE_TABLES
from kairos_curate.valuation import METHODS

from ..conftest import ROOT, requires_fashion_mnist

pytestmark = [pytest.mark.slow, requires_fashion_mnist]


def tiny_params() -> dict:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params = copy.deepcopy(params)
    params["scenario"]["fashion_mnist"].update(
        pool_per_task_class=30, pool_per_offtask_class=15, reference_per_class=8, test_per_class=10
    )
    params["embed"].update(image_size=32, batch_size=32)
    params["finetune"].update(image_size=32, epochs=1)
    params["suite"]["small"].update(seeds_per_split=1)
    return params


def test_the_small_suite_writes_its_tables_and_lists_every_skip(tmp_path):
    params = tiny_params()
    out = finetune.run_suite(finetune.load(params), root=tmp_path, log=lambda line: None)
    tables = tmp_path / "reports" / "tables"
    for name in SUITE_TABLES.values():
        assert (tables / f"{name}.csv").exists()
    small = params["suite"]["small"]
    entries = params["suite"]["selections"]
    unregistered = {
        n for n in small["selections"] if entries[n]["method"] not in METHODS or entries[n]["policy"] not in POLICIES
    }
    metrics = json.loads((tmp_path / "reports" / "metrics" / "suite.json").read_text())
    assert unregistered <= set(metrics["skipped"])  # never silent
    assert set(pd.read_csv(tables / "suite_skipped.csv")["selection"]) == set(metrics["skipped"])
    runs = pd.read_csv(tables / "suite_runs.csv")
    ran = set(small["selections"]) - set(metrics["skipped"])
    assert set(runs["selection"]) == ran and set(runs["split"]) == {"development", "held_out"}
    evaluators = set(small["evaluators"])
    assert "probe" in evaluators and len(evaluators) > 1  # the profile fine-tunes, not only probes
    assert set(runs["evaluator"]) == evaluators and set(runs["scenario"]) == {"default", "clean"}
    # scenarios x seeds x budgets x selections x (one probe + `trials` runs of each fine-tuning evaluator)
    per_subset = 1 + (len(evaluators) - 1) * small["trials"]
    assert len(runs) == 2 * 2 * len(small["budgets"]) * len(ran) * per_subset
    clean = runs[runs["scenario"] == "clean"]
    assert (clean["precision"] == 1.0).all()
    assert runs.loc[runs["selection"].isin(["oracle", "oracle_cover"]), "uses_ground_truth"].all()
    assert metrics["estimated_full_seconds"]["total_s"] > metrics["seconds"] > 0
    summary = pd.read_csv(tables / "suite_summary.csv")
    assert set(summary["split"]) == {"development", "held_out"}
    assert out["summary"].shape == summary.shape
