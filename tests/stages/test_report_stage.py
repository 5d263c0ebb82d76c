"""The report stage: writes both renderings and the compute figure; clear errors for bad parameters."""

from __future__ import annotations

import pytest

from kairos_curate.config import ParamsError
from kairos_curate.stages import report

from ..fake_datasets import make_report_project


def _params(**report_keys):
    return report.load(
        {"report": {"audit": False, "screenshot": False, **report_keys}, "value": {"primary": "per_class"}}
    )


def test_full_report_writes_html_markdown_and_the_compute_figure(tmp_path):
    root = make_report_project(tmp_path, with_noise=True)
    html_path = report.run(
        _params(title="Capstone", required_metrics=["prepare", "embed", "value", "compare", "finetune"]), root
    )
    html = html_path.read_text()
    assert "<title>Capstone</title>" in html and (root / "reports" / "capstone.md").exists()
    assert (root / "reports" / "figures" / "06_report" / "compute_vs_accuracy.png").exists()
    assert "compute_vs_accuracy" in html or "Compute vs accuracy" in html


def test_required_list_is_enforced(tmp_path):
    root = make_report_project(tmp_path, with_finetune=False)
    with pytest.raises(FileNotFoundError, match="dvc repro finetune"):
        report.run(_params(required_metrics=["finetune"]), root)


def test_screenshot_without_chromium_is_a_clear_error(tmp_path, monkeypatch):
    from kairos_curate.reporting import browser

    root = make_report_project(tmp_path)
    monkeypatch.setattr(browser, "find_chromium", lambda: None)
    with pytest.raises(FileNotFoundError, match=r"report\.screenshot"):
        report.run(_params(screenshot=True), root)


def test_parameters_are_typed_strictly():
    with pytest.raises(ParamsError, match=r"report\.screenshot: Input should be a valid boolean \(got 'false'\)"):
        report.load({"report": {"screenshot": "false"}})
    with pytest.raises(ParamsError, match=r"report\.primary_method: Input should be 'lora' or 'partial'"):
        report.load({"report": {"primary_method": "full"}})
