"""The capstone report: one self-contained HTML file (figures inlined) and a Markdown twin.

Everything in it is read from the pipeline's metrics, tables and figures; nothing is typed by
hand. A provenance block records the git revision, a hash of ``params.yaml``, the date, the
hardware and each stage's wall time (from the rendered notebooks' papermill metadata).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import html
import json
import os
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from kairos_curate.config import PATHS
from kairos_curate.io import atomic_write

__all__ = ["Report", "Section", "provenance", "stage_wall_times"]

STAGES = ("01_eda", "02_embed", "03_value", "04_benchmark", "05_finetune", "06_report")

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#1f2328;line-height:1.5}
h1{border-bottom:3px solid #2f6f4f;padding-bottom:.3em}h2{color:#2f6f4f;margin-top:2em}
table{border-collapse:collapse;margin:1em 0;font-size:.9em}th,td{border:1px solid #d0d7de;padding:4px 8px;
text-align:right}th{background:#f6f8fa}td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}.note{background:#fff8e6;border-left:4px solid #d29922;
padding:.5em 1em}.prov{font-size:.85em;color:#57606a}code{background:#f6f8fa;padding:0 3px}
"""


@dataclass
class Section:
    """A report section: a title and blocks (paragraph strings, DataFrames or figure paths)."""

    title: str
    blocks: list[Any] = field(default_factory=list)


@dataclass
class Report:
    """Sections rendered to HTML (self-contained) and Markdown."""

    title: str
    sections: list[Section] = field(default_factory=list)

    def to_html(self) -> str:
        """Render as one HTML document with figures inlined as base64 PNG."""
        parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
                 f"<style>{_CSS}</style></head><body><h1>{html.escape(self.title)}</h1>"]
        for section in self.sections:
            parts.append(f"<h2>{html.escape(section.title)}</h2>")
            for block in section.blocks:
                if isinstance(block, pd.DataFrame):
                    parts.append(block.to_html(index=False, border=0, float_format=lambda v: f"{v:.3f}"))
                elif isinstance(block, Path):
                    if block.exists():
                        data = base64.b64encode(block.read_bytes()).decode()
                        parts.append(f"<figure><img alt='{html.escape(block.stem)}' src='data:image/png;base64,{data}'>"
                                     f"<figcaption>{html.escape(block.stem.replace('_', ' '))}</figcaption></figure>")
                    else:
                        parts.append(f"<p class='note'>figure {html.escape(str(block))} was not produced</p>")
                else:
                    parts.append(f"<p>{block}</p>")
        parts.append("</body></html>")
        return "\n".join(parts)

    def to_markdown(self, figure_root: Path) -> str:
        """Render as Markdown; figures are linked relative to ``figure_root``."""
        lines = [f"# {self.title}", ""]
        for section in self.sections:
            lines += [f"## {section.title}", ""]
            for block in section.blocks:
                if isinstance(block, pd.DataFrame):
                    lines.append(block.to_markdown(index=False, floatfmt=".3f") if _has_tabulate() else block.to_string(index=False))
                elif isinstance(block, Path):
                    lines.append(f"![{block.stem}]({os.path.relpath(block, figure_root)})")
                else:
                    lines.append(_strip_tags(str(block)))
                lines.append("")
        return "\n".join(lines)

    def write(self, html_path: Path, md_path: Path) -> None:
        """Write both renderings atomically."""
        with atomic_write(html_path, "w") as handle:
            handle.write(self.to_html())
        with atomic_write(md_path, "w") as handle:
            handle.write(self.to_markdown(md_path.parent))


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


def _strip_tags(text: str) -> str:
    import re

    return re.sub(r"<[^>]+>", "", text)


def stage_wall_times(notebook_dir: Path) -> pd.DataFrame:
    """Wall time of each rendered stage notebook (papermill's recorded duration)."""
    rows = []
    for stem in STAGES:
        path = notebook_dir / f"{stem}.ipynb"
        if not path.exists():
            continue
        meta = json.loads(path.read_text()).get("metadata", {}).get("papermill", {})
        rows.append({"stage notebook": stem, "wall time (s)": meta.get("duration"), "ended": meta.get("end_time")})
    return pd.DataFrame(rows)


def provenance(root: Path) -> dict[str, str]:
    """Git revision, params.yaml hash, date, and hardware of this run."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
        rev += " (uncommitted changes)" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        rev = "unknown (not a git checkout)"
    params = root / "params.yaml"
    digest = hashlib.sha256(params.read_bytes()).hexdigest()[:16] if params.exists() else "missing"
    try:
        import torch

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    except ImportError:
        gpu = "unknown"
    return {
        "git revision": rev,
        "params.yaml sha256": digest,
        "date (UTC)": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "CPU": f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical cores",
        "GPU": gpu,
        "python": platform.python_version(),
    }


def load_metrics(root: Path) -> dict[str, Any]:
    """All ``reports/metrics/*.json`` files keyed by stage."""
    folder = root / PATHS.metrics
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}
