"""Stage ``report``: audit the prepared pool, write the capstone report, check the pages in a browser.

The content is :func:`kairos_curate.reporting.capstone.build_capstone`'s; this stage adds the
compute-vs-accuracy figure, renders both formats, and (``report.screenshot``) opens the report,
the audit gallery and every exported notebook page in headless Chromium: every image must
decode and no console error may occur; the first screen of each is saved.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from kairos_curate.config import PATHS
from kairos_curate.data.scenario import load_scenario
from kairos_curate.io import atomic_path
from kairos_curate.stages.inputs import load_prepared
from kairos_curate.stages.params import ReportStage, load_stage_params

__all__ = ["check_pages", "load", "run", "run_audit"]


def run_audit(root: Path, flag_fraction: float, seed: int) -> Path:
    """Audit the prepared pool (gallery + ``flags.csv`` in ``reports/audit``), then score each issue
    type's flag against the truth table (``reports/tables/audit_scores.csv``). The audit itself
    sees only what a user has; the truth is read afterwards, to score it."""
    from kairos_curate.audit import audit
    from kairos_curate.audit_scoring import score_audit

    data = load_prepared(root)
    scenario = data.scenario
    result = audit(
        data.pool_x,
        data.ref_x,
        scenario.source("pool"),
        data.pool_ids,
        labels=data.pool_labels,
        reference_labels=data.ref_labels,
        reference_images=scenario.source("reference"),
        reference_ids=scenario.table("reference")["id"].to_numpy(dtype=str),
        class_names=scenario.class_names,
        out_dir=root / "reports" / "audit",
        flag_fraction=flag_fraction,
        title="KAIROS data audit: the prepared pool",
        seed=seed,
    )
    truth = load_scenario(root / PATHS.prepared, root / PATHS.truth).truth
    with atomic_path(root / PATHS.tables / "audit_scores.csv") as tmp:
        score_audit(result.table, truth).to_csv(tmp, index=False)
    return Path(result.html_path)


def check_pages(pages: list[tuple[Path, Path]]) -> None:
    """Open each ``(page, screenshot)`` in headless Chromium; raise naming the first page that fails."""
    from kairos_curate.reporting import browser

    if browser.find_chromium() is None:
        raise FileNotFoundError(
            "report.screenshot is true but no Chromium was found: run `make setup` "
            "(installs Debian's chromium), set $CHROMIUM, or set report.screenshot: false"
        )
    for (page, _), check in zip(pages, browser.check_pages(pages), strict=True):
        print(
            f"browser check of {page.name}: {len(check.images)} images, {len(check.broken_images)} broken, "
            f"{len(check.console_errors)} console errors"
        )
        if not check.ok:
            raise RuntimeError(
                f"{page} failed the browser check: broken images {check.broken_images}, "
                f"console errors {check.console_errors}"
            )


def _read_optional(path: Path) -> pd.DataFrame | None:
    """A table that may be absent or empty (no sizes sweep configured)."""
    try:
        frame = pd.read_csv(path)
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return None
    return frame if not frame.empty else None


def load(params: Any = None) -> ReportStage:
    """The stage's parameters, validated (``None``: read ``params.yaml``)."""
    return load_stage_params("report", params)


def run(params: ReportStage, root: str | Path = ".") -> Path:
    """Write ``reports/capstone.html`` and ``.md`` (after the audit, if enabled); return the HTML path."""
    from kairos_curate.reporting.capstone import build_capstone
    from kairos_curate.reporting.plots import compute_vs_accuracy, figure_of, save_figure

    cfg, base = params.report, Path(root)
    audit_html = run_audit(base, cfg.audit_flag_fraction, cfg.seed) if cfg.audit else None
    summary_path, sweep_path = base / PATHS.tables / "finetune_summary.csv", base / PATHS.tables / "finetune_sweep.csv"
    if summary_path.exists():
        summary = pd.read_csv(summary_path)
        sweep = _read_optional(sweep_path)
        ax = compute_vs_accuracy(summary[summary["pool"] == "original"], sweep)
        save_figure(figure_of(ax), base / PATHS.figures / "06_report" / "compute_vs_accuracy.png")
    report = build_capstone(
        base, cfg.title, required=cfg.required_metrics, primary=params.value.primary, primary_method=cfg.primary_method
    )
    html_path = base / "reports" / "capstone.html"
    report.write(html_path, base / "reports" / "capstone.md")
    if cfg.screenshot:
        shots = base / "reports" / "screenshots"
        pages = [(html_path, shots / "capstone.png")]
        pages += [(audit_html, shots / "audit.png")] if audit_html is not None else []
        pages += [
            (page, shots / "notebooks" / f"{page.stem}.png")
            for page in sorted((base / PATHS.notebooks).glob("0[1-5]_*.html"))
        ]
        check_pages(pages)
    return html_path
