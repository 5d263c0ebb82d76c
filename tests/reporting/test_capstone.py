"""The capstone report's content: built from a fake finished project, every number computed."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from kairos_curate.io import write_json
from kairos_curate.reporting.capstone import build_capstone
from kairos_curate.reporting.report import Callout, Note
from kairos_curate.reporting.tables import detection_table

from ..fake_datasets import make_report_project


def _text(html: str) -> str:
    return re.sub(r"<[^>]+>", "", html)


def _key(root, **kw) -> Callout:
    return next(b for b in build_capstone(root, "T", primary="per_class", **kw).lead if isinstance(b, Callout))


def test_key_results_are_computed_from_the_table(tmp_path):
    box = _key(make_report_project(tmp_path))
    assert box.tone == "good"
    # AUC retained 0.970 / 0.980, time reduced 1 - 8/40: computed, not typed.
    assert f"{0.970 / 0.980:.1%}" in box.headline and f"{1 - 8 / 40:.1%}" in box.headline
    text = " ".join(box.lines)
    assert "**beat**" in text and "0.850 ± 0.010 vs 0.700 ± 0.010" in text
    assert "closed 75% of the random-to-oracle gap" in text  # (0.85 - 0.70) / (0.90 - 0.70)
    assert "`global` lost to random" in text
    # the detection bullet names the value stage's method and the best method
    assert "kairos_class_conditional" in text and "knn_shapley" in text


def test_key_results_are_honest_when_curation_loses(tmp_path):
    box = _key(make_report_project(tmp_path, curated_acc=0.60, random_acc=0.75))
    assert box.tone == "bad" and box.headline.startswith("Curation did not pay off")
    assert "lost to" in " ".join(box.lines)


def test_key_results_mention_noise_robustness_and_detection_precision(tmp_path):
    text = " ".join(_key(make_report_project(tmp_path, with_noise=True)).lines)
    assert "Robustness: On the noisy pool with lora" in text and "beat full (0.780 vs 0.750)" in text
    assert "81% are real problems" in text  # precision_at_k of kairos_class_conditional (0.91 - 0.1)


def test_every_section_in_both_formats(tmp_path):
    root = make_report_project(tmp_path, with_noise=True)
    rep = build_capstone(root, "Capstone", primary="per_class")
    html, md = rep.to_html(), rep.to_markdown(root / "reports")
    for section in (
        "The challenge",
        "Datasets and class overlap",
        "The pipeline",
        "Valuation results",
        "Robustness to noise",
        "Fine-tuning: curated vs full vs random",
        "Results across data sizes",
        "Compute saved",
        "Data audit",
        "Limitations",
        "Provenance",
    ):
        assert f">{section}</h2>" in html and f"## {section}" in md
    assert "src='http" not in html and 'src="http' not in html  # self-contained
    assert "0.850 ± 0.010" in html and "fine-tuning on the pool with added pixel noise" in _text(html).lower()
    assert "params.yaml sha256" in html and "63.000" in html  # wall times 10.5 + 21 + 31.5
    assert "pool_problems.png" in html and "dvc repro prepare" in html  # a missing figure names its stage


def test_missing_required_metrics_fail_clearly(tmp_path):
    root = make_report_project(tmp_path)
    (root / "reports" / "metrics" / "value.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"value\.json.*dvc repro value"):
        build_capstone(root)
    root2 = make_report_project(tmp_path / "b", with_finetune=False)
    with pytest.raises(FileNotFoundError, match="dvc repro finetune"):
        build_capstone(root2, required=["finetune"])


def test_missing_optional_inputs_become_notes(tmp_path):
    rep = build_capstone(make_report_project(tmp_path, with_finetune=False), "T")
    box = next(b for b in rep.lead if isinstance(b, Callout))
    assert box.tone == "info" and "dvc repro finetune" in box.headline
    assert any(isinstance(b, Note) and "finetune.json" in b.text for b in rep.lead)
    html = rep.to_html()
    assert "Compute saved" in html and "Sizes sweep missing" in html


def test_malformed_metrics_name_the_stage(tmp_path):
    root = make_report_project(tmp_path)
    write_json(root / "reports" / "metrics" / "prepare.json", {"reference": 1})
    with pytest.raises(ValueError, match="dvc repro prepare"):
        build_capstone(root)


def test_notebook_pages_are_linked_when_exported(tmp_path):
    root = make_report_project(tmp_path)
    assert "No exported notebook pages yet" in build_capstone(root).to_html()
    (root / "reports" / "notebooks" / "03_value.html").write_text("<html></html>")
    html = build_capstone(root).to_html()
    assert "<a href='notebooks/03_value.html'>03_value</a>" in html


def test_detection_table_is_sorted_by_auroc_on_all_problems(tmp_path):
    root = make_report_project(tmp_path)
    table = detection_table(pd.read_csv(root / "reports" / "tables" / "compare_detection.csv"))
    assert list(table.columns) == ["method", "any problem", "pixel noise", "label flipped"]
    assert table["method"].tolist() == ["knn_shapley", "kairos_class_conditional", "random"]
    assert table.loc[0, "any problem"] == "0.950 ± 0.000"


def test_data_audit_section_counts_each_issue_type_and_shows_its_scores(tmp_path):
    root = make_report_project(tmp_path)
    assert "Not run yet" in build_capstone(root).to_html()
    audit_dir = root / "reports" / "audit"
    audit_dir.mkdir(parents=True)
    pd.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "value": [0.3, 0.2, 0.1, 0.0],
            "rank": [1, 2, 3, 4],
            "is_corrupted": [False, True, False, False],
            "is_off_task": [False, False, True, True],
            "is_mislabelled": [False, False, False, False],
            "is_near_duplicate": [False, True, False, True],
            "keep": [True, False, False, False],
        }
    ).to_csv(audit_dir / "flags.csv", index=False)
    text = _text(build_capstone(root).to_html())
    assert "4 samples; flagged 1 corrupted, 2 off-task, 0 mislabelled, 2 near-duplicate; 1 kept" in text
    pd.DataFrame(
        {"issue_type": ["off_task"], "n_true": [3], "n_flagged": [2], "precision": [1.0], "recall": [0.667]}
    ).to_csv(root / "reports" / "tables" / "audit_scores.csv", index=False)
    html = build_capstone(root).to_html()
    assert "the audit never read it" in html and "0.667" in html


def _suite_project(root):
    """A fake project with the selection suite's tables and metrics (written by summarise_suite)."""
    import numpy as np

    from kairos_curate.study.selection_suite import SuitePlan, summarise_suite

    rows = []
    acc = {
        "calibrated": 0.85,
        "random": 0.70,
        "herding_kairos": 0.80,
        "herding_random_values": 0.78,
        "oracle": 0.90,
        "no_gate": 0.82,
    }
    role = {"calibrated": "primary", "oracle": "ceiling", "no_gate": "ablation"}
    rng = np.random.default_rng(0)
    for split, seeds in (("development", [0, 1]), ("held_out", [1000, 1001])):
        for seed in seeds:
            for budget in (0.1, 0.2):
                for evaluator in ("probe", "lora"):
                    for name, a in acc.items():
                        rows.append(
                            {
                                "split": split,
                                "scenario": "default",
                                "seed": seed,
                                "budget": budget,
                                "evaluator": evaluator,
                                "selection": name,
                                "role": role.get(name, "control"),
                                "method": "random" if name == "herding_random_values" else "m",
                                "policy": "herding" if name == "herding_random_values" else "p",
                                "uses_ground_truth": name == "oracle",
                                "k": 80,
                                "trial": 0,
                                "accuracy": a + rng.normal(0, 0.005),
                                "macro_f1": a,
                                "auc": a,
                                "precision": 1.0 if name == "oracle" else 0.9,
                                "min_class_count": 5,
                                "classes_covered": 6,
                                "clean_coverage_dist": 0.3,
                            }
                        )
    plan = SuitePlan(
        {}, {}, [0.1, 0.2], {}, ["probe", "lora"], 1, primary="calibrated", baseline="random", ceiling="oracle"
    )
    tables = summarise_suite(pd.DataFrame(rows), plan)
    folder = root / "reports" / "tables"
    tables.summary.to_csv(folder / "suite_summary.csv", index=False)
    tables.checks.to_csv(folder / "suite_checks.csv", index=False)
    tables.ablations.to_csv(folder / "suite_ablations.csv", index=False)
    pd.DataFrame(
        [
            {
                "selection": "lava_cover",
                "method": "lava",
                "policy": "gated_cover",
                "role": "control",
                "reason": "selection policy 'gated_cover' not registered",
            }
        ]
    ).to_csv(folder / "suite_skipped.csv", index=False)
    write_json(
        root / "reports" / "metrics" / "suite.json",
        {
            "profile": "small",
            "scenarios": ["default"],
            "seeds": {"development": [0, 1], "held_out": [1000, 1001]},
            "budgets": [0.1, 0.2],
            "evaluators": ["probe", "lora"],
            "trials": 1,
            "primary": "calibrated",
            "baseline": "random",
            "ceiling": "oracle",
            "seconds": 600.0,
            "estimated_full_seconds": {"total_s": 36000.0},
            "skipped": {"lava_cover": "..."},
        },
    )
    return tables.summary


def test_suite_section_shows_both_seed_splits_the_checks_and_every_skip(tmp_path):
    root = make_report_project(tmp_path)
    _suite_project(root)
    html = build_capstone(root, "T", primary="per_class").to_html()
    text = _text(html)
    assert ">Selection suite: many scenarios, development and held-out seeds</h2>" in html
    assert "accuracy (dev)" in text and "accuracy (held-out)" in text and "gap closed (held-out)" in text
    assert "oracle (uses ground truth)" in text and "100%" in text
    assert "lava_cover" in text and "not registered" in text  # a skipped selection is listed, not dropped
    assert "best control (herding_kairos)" in text and "wins" in text
    assert "no_gate" in text and "10.0 h" in text and "10.0 min" in text
    assert "suite_budget_curve.png" in html
    # the decision log: every choice of the study, in order, with the seeds already seen
    assert "How the primary was chosen" in text and "results seen" in text
    assert "development + held-out" in text and "label_model crossfit" in text


def test_key_results_carry_the_suite_verdicts_on_held_out_seeds(tmp_path):
    root = make_report_project(tmp_path)
    _suite_project(root)
    key_box = " ".join(_key(root).lines).replace("`", "").replace("**", "")
    assert "Selection suite, default, budget 20%, held-out seeds (never used for tuning): calibrated" in key_box
    assert "beat herding over random values (herding_random_values" in key_box
    assert "beat the best control by more than the combined std in 2 of 2 scenario x evaluator cells" in key_box
    assert "development seeds" in key_box
    assert "a ceiling (oracle: they choose by ground truth) beat herding over random values" in key_box


def test_suite_section_says_when_it_did_not_run(tmp_path):
    root = make_report_project(tmp_path)
    assert "Suite results missing" in _text(build_capstone(root, "T", primary="per_class").to_html())
    write_json(root / "reports" / "metrics" / "suite.json", {"profile": "disabled"})
    assert "`suite.profile` is `disabled`" in build_capstone(root, "T", primary="per_class").to_markdown(
        root / "reports"
    )


def test_suite_budget_curve_draws_each_selection_per_split(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from kairos_curate.reporting.plots import suite_budget_curve

    summary = _suite_project(make_report_project(tmp_path))
    ax = suite_budget_curve(summary)
    assert ax.get_xlabel().startswith("budget") and "lora" in ax.get_title()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "oracle (uses truth)" in labels and len(labels) == 6  # one entry per selection
    assert len(ax.containers) == 12  # development and held-out line per selection
    handles, names = ax.get_legend_handles_labels()
    colours = {name: handle.lines[0].get_color() for handle, name in zip(handles, names, strict=True)}
    methods = [c for label, c in colours.items() if "uses truth" not in label]
    assert len(set(methods)) == len(methods)  # no two selections share a colour
    from matplotlib.colors import to_rgb

    assert all(max(to_rgb(c)) - min(to_rgb(c)) > 0.02 for c in methods)  # greys mark the ceilings


def test_suite_budget_curve_gives_nine_selections_nine_colours_and_keeps_grey_for_the_ceilings():
    import pandas as pd
    from matplotlib.colors import to_rgb

    from kairos_curate.reporting.plots import suite_budget_curve

    names = [f"s{i}" for i in range(9)] + ["oracle"]
    summary = pd.DataFrame(
        [
            {
                "scenario": "default",
                "evaluator": "lora",
                "selection": name,
                "uses_ground_truth": name == "oracle",
                "split": split,
                "budget": budget,
                "accuracy_mean": 0.8,
                "accuracy_std": 0.01,
            }
            for name in names
            for split in ("development", "held_out")
            for budget in (0.1, 0.2)
        ]
    )
    handles, labels = suite_budget_curve(summary).get_legend_handles_labels()
    colours = {label: to_rgb(h.lines[0].get_color()) for h, label in zip(handles, labels, strict=True)}
    methods = [c for label, c in colours.items() if "uses truth" not in label]
    assert len(methods) == 9 and len(set(methods)) == 9  # the 8th selection used to get the ceilings' grey
    assert all(max(c) - min(c) > 0.02 for c in methods)
    assert max(colours["oracle (uses truth)"]) - min(colours["oracle (uses truth)"]) < 0.02
