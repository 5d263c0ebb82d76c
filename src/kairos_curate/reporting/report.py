"""The capstone report: one self-contained HTML file (figures inlined) and a Markdown twin.

Everything in it is read from the pipeline's metrics, tables and figures; nothing is typed by
hand. A provenance block records the git revision, a hash of ``params.yaml``, the date, the
hardware and each stage's wall time (from the rendered notebooks' papermill metadata).

Blocks of a :class:`Section`:

* ``str`` - a paragraph (may hold inline HTML; tags are stripped in Markdown);
* :class:`pandas.DataFrame` - a table;
* :class:`Figure` or :class:`pathlib.Path` - a PNG figure (inlined as base64 in HTML); a missing
  file becomes a note saying which stage makes it;
* :class:`Callout` - a highlighted box (the key results), a block quote in Markdown;
* :class:`Note` - a warning paragraph (missing optional inputs);
* ``list`` of ``str`` - a bulleted list.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import html
import json
import os
import platform
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from kairos_curate.config import PATHS
from kairos_curate.io import atomic_write

__all__ = [
    "STAGES",
    "Callout",
    "Figure",
    "Note",
    "Report",
    "Section",
    "load_metrics",
    "provenance",
    "stage_wall_times",
]

STAGES = ("01_eda", "02_embed", "03_value", "04_benchmark", "05_finetune", "06_report")
#: DVC stage that renders each notebook (and writes ``reports/figures/<notebook>/``).
NOTEBOOK_STAGE = {"01_eda": "prepare", "02_embed": "embed", "03_value": "value", "04_benchmark": "benchmark",
                  "05_finetune": "finetune", "06_report": "report"}

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:0 auto;
padding:0 1em 2em;color:#1f2328;line-height:1.5}
h1{border-bottom:3px solid #2f6f4f;padding-bottom:.2em;margin:.6em 0 .2em;font-size:1.8em}
h2{color:#2f6f4f;margin-top:2em}.subtitle{color:#57606a;margin:0 0 .8em;font-size:.95em}
table{border-collapse:collapse;margin:1em 0;font-size:.88em}th,td{border:1px solid #d0d7de;padding:3px 8px;
text-align:right}th{background:#f6f8fa}td:first-child,th:first-child{text-align:left}
td:nth-child(2):not(:only-child){text-align:left}
figure{margin:1em 0}img{max-width:100%;border:1px solid #eee}figcaption{font-size:.85em;color:#57606a}
.note{background:#fff8e6;border-left:4px solid #d29922;padding:.5em 1em}
.callout{border-radius:8px;padding:.6em 1.2em;margin:.6em 0 1em;border:2px solid}
.callout h3{margin:.2em 0 .4em;font-size:1.15em}.callout ul{margin:.2em 0;padding-left:1.2em}
.callout .headline{font-size:1.1em;font-weight:600;margin:.2em 0 .4em}
.good{background:#eefbf3;border-color:#2f6f4f}.mixed{background:#fff8e6;border-color:#d29922}
.bad{background:#fff1f0;border-color:#cf222e}.info{background:#f6f8fa;border-color:#d0d7de}
nav.toc{font-size:.88em;columns:2;background:#f6f8fa;padding:.4em 1em .4em 2em;border-radius:6px}
nav.toc ol{margin:0}.flow{display:flex;flex-wrap:wrap;gap:.4em;align-items:stretch;margin:1em 0}
.flow div{border:1px solid #2f6f4f;border-radius:6px;padding:.3em .6em;font-size:.85em;background:#f3fbf6;
max-width:175px}.flow div b{display:block;color:#2f6f4f}.flow span{align-self:center;color:#2f6f4f}
code{background:#f6f8fa;padding:0 3px}
"""


@dataclass
class Figure:
    """A PNG figure with a caption; ``stage`` names the DVC stage that makes it."""

    path: Path
    caption: str = ""
    stage: str | None = None


@dataclass
class Callout:
    """A highlighted box: a title, a headline sentence and bullet lines; ``tone`` picks the colour.

    ``tone`` is ``"good"``, ``"mixed"``, ``"bad"`` or ``"info"``.
    """

    title: str
    headline: str
    lines: list[str] = field(default_factory=list)
    tone: str = "info"


@dataclass
class Note:
    """A warning paragraph, e.g. an optional input that is missing and which stage makes it."""

    text: str


@dataclass
class Section:
    """A report section: a title and blocks (see the module docs for the block types)."""

    title: str
    blocks: list[Any] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        """The HTML id of the section heading."""
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")


def _figure_stage(path: Path) -> str | None:
    return NOTEBOOK_STAGE.get(path.parent.name)


def _short(path: Path) -> str:
    """``path`` from its ``reports/`` folder on (the project-relative name a reader knows)."""
    parts = path.parts
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "reports":
            return Path(*parts[i:]).as_posix()
    return path.as_posix()


@dataclass
class Report:
    """Sections rendered to HTML (self-contained) and Markdown.

    ``lead`` blocks are shown before the table of contents (the first screen): a subtitle
    string and the key-results :class:`Callout`.
    """

    title: str
    sections: list[Section] = field(default_factory=list)
    lead: list[Any] = field(default_factory=list)

    def _html_block(self, block: Any) -> str:
        if isinstance(block, pd.DataFrame):
            return str(block.to_html(index=False, border=0, escape=True, float_format=lambda v: f"{v:.3f}"))
        if isinstance(block, Path):
            block = Figure(block)
        if isinstance(block, Figure):
            caption = block.caption or block.path.stem.replace("_", " ")
            if block.path.exists():
                data = base64.b64encode(block.path.read_bytes()).decode()
                return (f"<figure><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>"
                        f"<figcaption>{html.escape(caption)}</figcaption></figure>")
            stage = block.stage or _figure_stage(block.path)
            hint = f"; run <code>dvc repro {stage}</code>" if stage else ""
            return f"<p class='note'>Figure <code>{html.escape(_short(block.path))}</code> was not produced{hint}.</p>"
        if isinstance(block, Callout):
            items = "".join(f"<li>{line}</li>" for line in block.lines)
            return (f"<div class='callout {block.tone}' id='key-results'><h3>{html.escape(block.title)}</h3>"
                    f"<div class='headline'>{block.headline}</div><ul>{items}</ul></div>")
        if isinstance(block, Note):
            return f"<p class='note'>{block.text}</p>"
        if isinstance(block, list):
            return "<ul>" + "".join(f"<li>{item}</li>" for item in block) + "</ul>"
        text = str(block)
        return text if text.startswith("<div") else f"<p>{text}</p>"

    def to_html(self) -> str:
        """Render as one HTML document with figures inlined as base64 PNG."""
        parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'>"
                 f"<meta name='viewport' content='width=device-width,initial-scale=1'>"
                 f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head><body>"
                 f"<h1>{html.escape(self.title)}</h1>"]
        for i, block in enumerate(self.lead):
            if i == 0 and isinstance(block, str):
                parts.append(f"<p class='subtitle'>{block}</p>")
            else:
                parts.append(self._html_block(block))
        if self.sections:
            links = "".join(f"<li><a href='#{s.anchor}'>{html.escape(s.title)}</a></li>" for s in self.sections)
            parts.append(f"<nav class='toc'><ol>{links}</ol></nav>")
        for section in self.sections:
            parts.append(f"<h2 id='{section.anchor}'>{html.escape(section.title)}</h2>")
            parts.extend(self._html_block(block) for block in section.blocks)
        parts.append("</body></html>")
        return "\n".join(parts)

    def _md_block(self, block: Any, figure_root: Path) -> str:
        if isinstance(block, pd.DataFrame):
            return str(block.to_markdown(index=False, floatfmt=".3f")) if _has_tabulate() else block.to_string(index=False)
        if isinstance(block, Path):
            block = Figure(block)
        if isinstance(block, Figure):
            caption = block.caption or block.path.stem.replace("_", " ")
            if not block.path.exists():
                stage = block.stage or _figure_stage(block.path)
                return f"> **Note:** figure `{_short(block.path)}` was not produced" + (
                    f"; run `dvc repro {stage}`." if stage else ".")
            return f"![{caption}]({Path(os.path.relpath(block.path, figure_root)).as_posix()})"
        if isinstance(block, Callout):
            lines = [f"> **{block.title}**", ">", f"> {_strip_tags(block.headline)}", ">"]
            lines += [f"> - {_strip_tags(line)}" for line in block.lines]
            return "\n".join(lines)
        if isinstance(block, Note):
            return f"> **Note:** {_strip_tags(block.text)}"
        if isinstance(block, list):
            return "\n".join(f"- {_strip_tags(str(item))}" for item in block)
        return _strip_tags(str(block))

    def to_markdown(self, figure_root: Path) -> str:
        """Render as Markdown; figures are linked relative to ``figure_root``."""
        lines = [f"# {self.title}", ""]
        for block in self.lead:
            lines += [self._md_block(block, figure_root), ""]
        for section in self.sections:
            lines += [f"## {section.title}", ""]
            for block in section.blocks:
                lines += [self._md_block(block, figure_root), ""]
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
    text = re.sub(r"<code>(.*?)</code>", r"`\1`", text)
    text = re.sub(r"<br\s*/?>", "\n", text)
    return html.unescape(re.sub(r"<[^>]+>", "", text))


def stage_wall_times(notebook_dir: Path) -> pd.DataFrame:
    """Wall time of each rendered stage notebook (papermill's recorded duration).

    Parameters
    ----------
    notebook_dir
        Folder of the rendered notebooks (``reports/notebooks``).

    Returns
    -------
    pandas.DataFrame
        Columns ``stage``, ``notebook``, ``wall time (s)``, ``ended``; one row per rendered
        notebook that carries papermill metadata.
    """
    rows = []
    for stem in STAGES:
        path = notebook_dir / f"{stem}.ipynb"
        if not path.exists():
            continue
        try:
            meta = json.loads(path.read_text()).get("metadata", {}).get("papermill", {})
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if meta.get("duration") is None:
            continue
        rows.append({"stage": NOTEBOOK_STAGE[stem], "notebook": stem, "wall time (s)": float(meta["duration"]),
                     "ended": str(meta.get("end_time", ""))[:19].replace("T", " ")})
    return pd.DataFrame(rows, columns=["stage", "notebook", "wall time (s)", "ended"])


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(root: Path) -> dict[str, str]:
    """Git revision, params.yaml hash, date, and hardware of this run.

    Parameters
    ----------
    root
        Project root (a git checkout holding ``params.yaml``).

    Returns
    -------
    dict
        ``git revision``, ``params.yaml sha256`` (first 16 hex digits), ``date (UTC)``, ``CPU``,
        ``GPU``, ``python``, ``torch``.
    """
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
        torch_version = str(torch.__version__)
    except ImportError:
        gpu, torch_version = "unknown", "not installed"
    return {
        "git revision": rev,
        "params.yaml sha256": digest,
        "date (UTC)": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "CPU": f"{_cpu_name()}, {os.cpu_count()} logical cores",
        "GPU": gpu,
        "python": platform.python_version(),
        "torch": torch_version,
    }


def load_metrics(root: Path) -> dict[str, Any]:
    """All ``reports/metrics/*.json`` files keyed by stage.

    Raises
    ------
    ValueError
        A metrics file is not valid JSON (names the file and the stage to rerun).
    """
    folder = root / PATHS.metrics
    out: dict[str, Any] = {}
    for p in sorted(folder.glob("*.json")):
        try:
            out[p.stem] = json.loads(p.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{p} is not valid JSON ({err}); rerun `dvc repro {p.stem}`") from None
    return out
