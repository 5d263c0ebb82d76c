"""The capstone report: built from fake metrics/tables/figures in tmp_path, numbers computed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from kairos_curate.io import write_json
from kairos_curate.pipeline import report as report_stage
from kairos_curate.reporting.report import Callout, Note, Report, Section, stage_wall_times

METRICS = ("accuracy", "macro_f1", "auc", "train_time_s")


def _png(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(path)


def _summary_row(config: str, method: str, n: int, acc: float, f1: float, auc: float, time_s: float,
                 std: float = 0.01) -> dict:
    row = {"config": config, "method": method, "runs": 3, "n_selected": n, "trainable_params": 1000}
    for metric, mean in zip(METRICS, (acc, f1, auc, time_s), strict=True):
        row[f"{metric}_mean"] = mean
        row[f"{metric}_std"] = std if metric != "train_time_s" else 0.1
    return row


def make_project(root: Path, *, curated_acc: float = 0.85, random_acc: float = 0.70, with_finetune: bool = True,
                 with_sweep: bool = True, with_noise: bool = False) -> Path:
    """A fake project tree: the five stages' metrics, tables, figures and rendered notebooks."""
    (root / "params.yaml").write_text("report:\n  title: x\n")
    m = root / "reports" / "metrics"
    write_json(m / "prepare.json", {"pool": 400, "pool_noisy": 120, "pool_noisy_fraction": 0.3,
                                    "pool_off_task": 60, "pool_pixel_noise": 40, "pool_label_flipped": 20,
                                    "reference": 60, "test": 90, "severity_unit_pixel_std": 89.0,
                                    "n_task_classes": 6})
    write_json(m / "embed.json", {"encoder": "efficientnet-lite0", "dim": 1280, "image_size": 96, "device": "cpu",
                                  "images_per_second": 300.0})
    write_json(m / "value.json", {"bandwidth": 1.2, "k": 80, "label_mode": "class_conditional", "pool_size": 400,
                                  "value_seconds": 0.5, "selections": {
                                      "per_class": {"classes_missing": 0, "smallest_class_count": 10, "warnings": 0},
                                      "global": {"classes_missing": 1, "smallest_class_count": 0, "warnings": 2}}})
    write_json(m / "benchmark.json", {"n_pool": 400, "n_bad": 120, "seeds": [0, 1, 2], "auroc": {
        "kairos_class_conditional/any problem": {"mean": 0.91, "std": 0.0, "runs": 1},
        "random/any problem": {"mean": 0.5, "std": 0.01, "runs": 3}}})
    tables = root / "reports" / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    det = []
    for method, auroc in (("kairos_class_conditional", 0.91), ("knn_shapley", 0.95), ("random", 0.5)):
        for problem in ("any problem", "pixel noise", "label flipped"):
            det.append({"method": method, "problem": problem, "runs": 1, "auroc_mean": auroc, "auroc_std": 0.0,
                        "average_precision_mean": 0.5, "average_precision_std": 0.0,
                        "precision_at_k_bad_mean": auroc - 0.1, "precision_at_k_bad_std": 0.0,
                        "recall_at_k_bad_mean": 0.4, "recall_at_k_bad_std": 0.0,
                        "seconds_mean": 0.1, "seconds_std": 0.0})
    pd.DataFrame(det).to_csv(tables / "benchmark_detection.csv", index=False)
    if with_finetune:
        write_json(m / "finetune.json", {"k": 80, "pool_size": 400, "trials": 3, "random_draws": 5,
                                         "trained_layers": "conv_head + head", "stem_outputs_cached": True,
                                         "backbone": "efficientnet-lite0", "results": {}})
        rows = [
            _summary_row("full", "lora", 400, 0.80, 0.79, 0.980, 40.0),
            _summary_row("random", "lora", 80, random_acc, 0.69, 0.950, 8.0),
            _summary_row("kairos_per_class", "lora", 80, curated_acc, 0.84, 0.970, 8.0),
            _summary_row("kairos_global", "lora", 80, 0.60, 0.55, 0.900, 8.0),
            _summary_row("oracle", "lora", 80, 0.90, 0.89, 0.990, 8.0),
            _summary_row("full", "partial", 400, 0.82, 0.81, 0.985, 50.0),
            _summary_row("kairos_per_class", "partial", 80, 0.81, 0.80, 0.975, 10.0),
        ]
        if with_noise:
            rows.append(_summary_row("noisy_full", "lora", 400, 0.75, 0.74, 0.96, 40.0))
            rows.append(_summary_row("noisy_kairos_per_class", "lora", 80, 0.78, 0.77, 0.965, 8.0))
        pd.DataFrame(rows).to_csv(tables / "finetune_summary.csv", index=False)
        if with_sweep:
            pd.DataFrame([_summary_row("sweep:0.25", "lora", 20, 0.84, 0.83, 0.96, 2.0),
                          _summary_row("sweep:0.5", "lora", 40, 0.86, 0.85, 0.97, 4.0),
                          _summary_row("sweep:1", "lora", 80, 0.85, 0.84, 0.97, 8.0)]).to_csv(
                tables / "finetune_sweep.csv", index=False)
    for k, rel in enumerate(("01_eda/class_overlap.png", "02_embed/tsne.png", "03_value/value_terms.png",
                             "04_benchmark/found_vs_inspected.png")):
        _png(root / "reports" / "figures" / rel, k)
    nb = root / "reports" / "notebooks"
    nb.mkdir(parents=True, exist_ok=True)
    for k, stem in enumerate(("01_eda", "02_embed", "03_value")):
        (nb / f"{stem}.ipynb").write_text(json.dumps({"cells": [], "metadata": {"papermill": {
            "duration": 10.5 * (k + 1), "end_time": "2026-01-01T00:00:00"}}}))
    return root


def _text(html: str) -> str:
    return re.sub(r"<[^>]+>", "", html)


def test_key_results_are_computed_from_the_table(tmp_path):
    root = make_project(tmp_path)
    rep = report_stage.build_report(root, "T")
    box = next(b for b in rep.lead if isinstance(b, Callout))
    assert box.tone == "good"
    # AUC retained 0.970 / 0.980, time reduced 1 - 8/40: computed, not typed.
    assert f"{0.970 / 0.980:.1%}" in box.headline
    assert f"{1 - 8 / 40:.1%}" in box.headline
    text = " ".join(box.lines)
    assert "beat" in text and "0.850 ± 0.010 vs 0.700 ± 0.010" in text
    # oracle gap closed: (0.85 - 0.70) / (0.90 - 0.70) = 75%
    assert "closed 75% of the random-to-oracle gap" in text
    assert "<code>global</code> lost to random" in text
    # detection bullet uses the value stage's label mode and names the best method
    assert "kairos_class_conditional" in text and "knn_shapley" in text


def test_key_results_are_honest_when_curation_loses(tmp_path):
    root = make_project(tmp_path, curated_acc=0.60, random_acc=0.75)
    box = next(b for b in report_stage.build_report(root, "T").lead if isinstance(b, Callout))
    assert box.tone == "bad"
    assert box.headline.startswith("Curation did not pay off")
    assert "lost to" in " ".join(box.lines)


def test_within_noise_is_mixed():
    summary = pd.DataFrame([_summary_row("random", "lora", 80, 0.70, 0.7, 0.9, 8.0, std=0.05),
                            _summary_row("kairos_per_class", "lora", 80, 0.72, 0.7, 0.9, 8.0, std=0.05)])
    box = report_stage.key_results(summary, primary_config="kairos_per_class", primary_method="lora")
    assert box.tone == "mixed" and "within noise" in box.headline


def test_compute_saved_ratios():
    summary = pd.DataFrame([_summary_row("full", "lora", 400, 0.8, 0.8, 0.98, 40.0),
                            _summary_row("kairos_per_class", "lora", 80, 0.85, 0.84, 0.97, 8.0)])
    saved = report_stage.compute_saved(summary)
    assert len(saved) == 1
    row = saved.iloc[0]
    np.testing.assert_allclose([row["speed-up"], row["time saved"], row["AUC retained"], row["F1 - full F1"]],
                               [5.0, 0.8, 0.97 / 0.98, 0.04], rtol=1e-12)


def test_sweep_sentence_picks_the_smallest_fraction_within_level():
    sweep = pd.DataFrame([_summary_row("sweep:0.25", "lora", 20, 0.80, 0.8, 0.9, 2.0),
                          _summary_row("sweep:0.5", "lora", 40, 0.85, 0.8, 0.9, 4.0),
                          _summary_row("sweep:1", "lora", 80, 0.86, 0.8, 0.9, 8.0)])
    table, text = report_stage.sweep_summary(sweep, level=0.98)
    assert list(table["N"]) == [20, 40, 80]
    assert text.startswith("The top 50% of the curated set (40 samples)")
    assert f"{0.85 / 0.86:.1%}" in text and "50% of its training time" in text


def test_split_noise_rows():
    summary = pd.DataFrame([_summary_row("full", "lora", 4, 0.8, 0.8, 0.9, 1.0),
                            _summary_row("noisy_full", "lora", 4, 0.7, 0.7, 0.9, 1.0),
                            _summary_row("noise:random", "lora", 4, 0.6, 0.6, 0.9, 1.0)])
    clean, noisy = report_stage.split_noise_rows(summary)
    assert clean["config"].tolist() == ["full"]
    assert noisy["config"].tolist() == ["full", "random"]


def test_full_report_writes_html_and_markdown(tmp_path):
    root = make_project(tmp_path, with_noise=True)
    html_path = report_stage.run({"title": "Capstone", "required_metrics": "prepare,embed,value,benchmark,finetune"},
                                 root=root)
    html = html_path.read_text()
    md = (root / "reports" / "capstone.md").read_text()
    for section in ("The challenge", "Datasets and class overlap", "The pipeline", "Valuation results",
                    "Robustness to noise", "Fine-tuning: curated vs full vs random", "Results across data sizes",
                    "Compute saved", "Limitations", "Provenance"):
        assert f">{section}</h2>" in html and f"## {section}" in md
    # self-contained: figures inlined, nothing fetched
    assert "data:image/png;base64," in html and "src='http" not in html and 'src="http' not in html
    assert (root / "reports" / "figures" / "06_report" / "compute_vs_accuracy.png").exists()
    # poster format and the noise table
    assert "0.850 ± 0.010" in html and "fine-tuning on the pool with added pixel noise" in _text(html).lower()
    # provenance: params hash and the wall times of the rendered notebooks (10.5 + 21 + 31.5 = 63)
    assert "params.yaml sha256" in html and "63.000" in html
    # figures that were not produced say which stage makes them
    assert "pool_problems.png" in html and "dvc repro prepare" in html
    # the key results come before the table of contents (first screen)
    assert html.index("Key results") < html.index("class='toc'")
    assert "> **Key results**" in md


def test_missing_required_metrics_fail_clearly(tmp_path):
    root = make_project(tmp_path)
    (root / "reports" / "metrics" / "value.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"value\.json.*dvc repro value"):
        report_stage.build_report(root)


def test_required_list_is_enforced(tmp_path):
    root = make_project(tmp_path, with_finetune=False)
    with pytest.raises(FileNotFoundError, match="dvc repro finetune"):
        report_stage.run({"required_metrics": "prepare,embed,value,benchmark,finetune"}, root=root)


def test_missing_optional_inputs_become_notes(tmp_path):
    root = make_project(tmp_path, with_finetune=False)
    rep = report_stage.build_report(root, "T")
    box = next(b for b in rep.lead if isinstance(b, Callout))
    assert box.tone == "info" and "dvc repro finetune" in box.headline
    assert any(isinstance(b, Note) and "finetune.json" in b.text for b in rep.lead)
    html = rep.to_html()
    assert "Compute saved" in html and "Sizes sweep missing" in html


def test_malformed_metrics_name_the_stage(tmp_path):
    root = make_project(tmp_path)
    write_json(root / "reports" / "metrics" / "prepare.json", {"reference": 1})
    with pytest.raises(ValueError, match="dvc repro prepare"):
        report_stage.build_report(root)


def test_stage_wall_times_reads_papermill_metadata(tmp_path):
    root = make_project(tmp_path)
    walls = stage_wall_times(root / "reports" / "notebooks")
    assert walls["stage"].tolist() == ["prepare", "embed", "value"]
    np.testing.assert_allclose(walls["wall time (s)"], [10.5, 21.0, 31.5])


def test_markdown_strips_tags_and_links_figures(tmp_path):
    fig = tmp_path / "figs" / "a_plot.png"
    _png(fig, 0)
    rep = Report("R", [Section("S", ["<b>bold</b> &amp; <code>x</code>", fig, Note("missing <code>y</code>")])])
    md = rep.to_markdown(tmp_path)
    assert "bold & `x`" in md and "![a plot](figs/a_plot.png)" in md and "**Note:** missing `y`" in md


def test_sweep_sentence_when_the_peak_is_the_first_point_within_level():
    sweep = pd.DataFrame([_summary_row("sweep:0.25", "lora", 20, 0.70, 0.7, 0.9, 2.0),
                          _summary_row("sweep:1", "lora", 80, 0.86, 0.8, 0.9, 8.0)])
    _, text = report_stage.sweep_summary(sweep)
    assert text.startswith("Accuracy peaks at the top 100%")


def test_detection_table_is_sorted_by_auroc_on_all_problems(tmp_path):
    root = make_project(tmp_path)
    det = pd.read_csv(root / "reports" / "tables" / "benchmark_detection.csv")
    table = report_stage.detection_table(det)
    assert list(table.columns) == ["method", "any problem", "pixel noise", "label flipped"]
    assert table["method"].tolist() == ["knn_shapley", "kairos_class_conditional", "random"]
    assert table.loc[0, "any problem"] == "0.950 ± 0.000"


def test_screenshot_without_chromium_is_a_clear_error(tmp_path, monkeypatch):
    from kairos_curate.reporting import browser

    root = make_project(tmp_path)
    monkeypatch.setattr(browser, "find_chromium", lambda: None)
    with pytest.raises(FileNotFoundError, match=r"report\.screenshot"):
        report_stage.run({"screenshot": True}, root=root)


def test_boolean_parameters_as_dvc_passes_them(tmp_path):
    root = make_project(tmp_path)
    report_stage.run({"screenshot": "false"}, root=root)  # DVC renders YAML false as "false"
    assert not (root / "reports" / "screenshots" / "capstone.png").exists()
    with pytest.raises(ValueError, match=r"report\.screenshot"):
        report_stage.run({"screenshot": "maybe"}, root=root)


def test_key_results_mention_noise_robustness_and_detection_precision(tmp_path):
    root = make_project(tmp_path, with_noise=True)
    box = next(b for b in report_stage.build_report(root, "T").lead if isinstance(b, Callout))
    text = " ".join(box.lines)
    assert "Robustness: On the noisy pool with lora" in text and "beat full (0.780 vs 0.750)" in text
    assert "81% are real problems" in text  # precision_at_k of kairos_class_conditional (0.91 - 0.1)


def test_data_audit_section_counts_the_flags(tmp_path):
    root = make_project(tmp_path)
    html = report_stage.build_report(root).to_html()
    assert "Not run yet" in html and "kairos-curate audit" in html
    audit_dir = root / "reports" / "audit"
    audit_dir.mkdir(parents=True)
    pd.DataFrame({"id": ["a", "b", "c", "d"], "value": [0.3, 0.2, 0.1, 0.0], "rank": [1, 2, 3, 4],
                  "flag": ["", "near_duplicate_of:a", "low_value", "low_value;near_duplicate_of:a"],
                  "keep": [True, False, False, False]}).to_csv(audit_dir / "flags.csv", index=False)
    text = _text(report_stage.build_report(root).to_html())
    assert "4 samples, 2 flagged low_value, 2 flagged as near-duplicates, 1 kept" in text
