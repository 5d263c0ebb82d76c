"""The report document: sections of blocks, rendered through Jinja2 templates to HTML and Markdown.

The content (which sections, which numbers) is built elsewhere (:mod:`.capstone`); this module
only knows how blocks look. The HTML is one self-contained file (figures inlined as base64 PNG);
the Markdown twin links the figure files. Block types of a :class:`Section`:

* ``str`` - a paragraph in the inline markup of :mod:`kairos_curate.study.verdicts`: ``code``
  in backticks, **bold**, and ``[text](href)`` links;
* :class:`pandas.DataFrame` - a table;
* :class:`Figure` (or a :class:`pathlib.Path`) - a PNG; a missing file becomes a note naming the
  stage that makes it;
* :class:`Callout` - the highlighted key-results box; :class:`Note` - a warning paragraph;
* :class:`Flow` - the pipeline as boxes; ``list`` of ``str`` - a bulleted list.

A provenance block records the git revision, a hash of ``params.yaml``, the date, the hardware
and each stage's wall time (from the rendered notebooks' papermill metadata).
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
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd

from kairos_curate.config import PATHS
from kairos_curate.io import atomic_write

__all__ = [
    "NOTEBOOK_STAGE",
    "Callout",
    "Figure",
    "Flow",
    "Note",
    "Report",
    "Section",
    "inline_html",
    "inline_markdown",
    "load_metrics",
    "provenance",
    "stage_wall_times",
]

#: Rendered notebook -> the DVC stage that renders it (and writes ``reports/figures/<notebook>/``).
NOTEBOOK_STAGE = {
    "01_prepare": "prepare",
    "02_embed": "embed",
    "03_value": "value",
    "04_compare": "compare",
    "05_finetune": "finetune",
    "06_report": "report",
}


@dataclass
class Figure:
    """A PNG figure with a caption; ``stage`` names the DVC stage that makes it."""

    path: Path
    caption: str = ""
    stage: str | None = None


@dataclass
class Callout:
    """A highlighted box: a title, a headline sentence and bullet lines; ``tone`` picks the colour
    (``good``, ``mixed``, ``bad`` or ``info``)."""

    title: str
    headline: str
    lines: list[str] = field(default_factory=list)
    tone: str = "info"


@dataclass
class Note:
    """A warning paragraph, e.g. an optional input that is missing and which stage makes it."""

    text: str


@dataclass
class Flow:
    """The pipeline as a row of boxes: ``(name, text)`` per step."""

    steps: list[tuple[str, str]]


@dataclass
class Section:
    """A report section: a title and blocks (see the module docs for the block types)."""

    title: str
    blocks: list[Any] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        """The HTML id of the section heading."""
        return re.sub(r"[^a-z0-9]+", "-", self.title.lower()).strip("-")


_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")


def inline_html(text: str) -> str:
    """The inline markup as HTML (escaped first: text never injects markup of its own)."""
    out = html.escape(str(text), quote=False)
    out = _CODE.sub(r"<code>\1</code>", out)
    out = _BOLD.sub(r"<b>\1</b>", out)
    return _LINK.sub(lambda m: f"<a href='{html.escape(m.group(2))}'>{m.group(1)}</a>", out)


def inline_markdown(text: str) -> str:
    """The inline markup is Markdown already."""
    return str(text)


def _figure_stage(path: Path) -> str | None:
    return NOTEBOOK_STAGE.get(path.parent.name)


def _short(path: Path) -> str:
    """``path`` from its ``reports/`` folder on (the project-relative name a reader knows)."""
    parts = path.parts
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "reports":
            return Path(*parts[i:]).as_posix()
    return path.as_posix()


def _table_markdown(frame: pd.DataFrame) -> str:
    try:
        return str(frame.to_markdown(index=False, floatfmt=".3f"))
    except ImportError:  # tabulate missing
        return frame.to_string(index=False)


@cache
def _environment() -> Any:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(
        loader=PackageLoader("kairos_curate.reporting", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["inline"] = lambda text: __import__("markupsafe").Markup(inline_html(text))
    return env


@cache
def _markdown_environment() -> Any:
    from jinja2 import Environment, PackageLoader, StrictUndefined

    return Environment(
        loader=PackageLoader("kairos_curate.reporting", "templates"),
        autoescape=False,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _block(block: Any, fmt: str, figure_root: Path | None) -> dict[str, Any]:
    """A block as the template sees it: ``kind`` plus what that kind needs."""
    if isinstance(block, pd.DataFrame):
        if fmt == "html":
            return {
                "kind": "table",
                "html": block.to_html(index=False, border=0, escape=True, float_format=lambda v: f"{v:.3f}"),
            }
        return {"kind": "table", "markdown": _table_markdown(block)}
    if isinstance(block, Path):
        block = Figure(block)
    if isinstance(block, Figure):
        caption = block.caption or block.path.stem.replace("_", " ")
        if not block.path.exists():
            return {
                "kind": "missing_figure",
                "path": _short(block.path),
                "stage": block.stage or _figure_stage(block.path),
            }
        if fmt == "html":
            return {"kind": "figure", "caption": caption, "data": base64.b64encode(block.path.read_bytes()).decode()}
        rel = Path(os.path.relpath(block.path, figure_root)).as_posix() if figure_root else block.path.as_posix()
        return {"kind": "figure", "caption": caption, "href": rel}
    if isinstance(block, Callout):
        return {
            "kind": "callout",
            "title": block.title,
            "headline": block.headline,
            "lines": block.lines,
            "tone": block.tone,
        }
    if isinstance(block, Note):
        return {"kind": "note", "text": block.text}
    if isinstance(block, Flow):
        return {"kind": "flow", "steps": block.steps}
    if isinstance(block, list):
        return {"kind": "list", "entries": [str(item) for item in block]}
    return {"kind": "paragraph", "text": str(block)}


@dataclass
class Report:
    """Sections rendered to HTML (self-contained) and Markdown.

    ``subtitle`` and the ``lead`` blocks (the key-results :class:`Callout`) come before the table
    of contents, on the first screen.
    """

    title: str
    sections: list[Section] = field(default_factory=list)
    lead: list[Any] = field(default_factory=list)
    subtitle: str = ""

    def _context(self, fmt: str, figure_root: Path | None) -> dict[str, Any]:
        return {
            "title": self.title,
            "subtitle": self.subtitle,
            "lead": [_block(b, fmt, figure_root) for b in self.lead],
            "sections": [
                {"title": s.title, "anchor": s.anchor, "blocks": [_block(b, fmt, figure_root) for b in s.blocks]}
                for s in self.sections
            ],
        }

    def to_html(self) -> str:
        """One HTML document with figures inlined as base64 PNG."""
        from importlib.resources import files

        css = files("kairos_curate.reporting").joinpath("templates/report.css").read_text()
        return str(_environment().get_template("report.html.j2").render(css=css, **self._context("html", None)))

    def to_markdown(self, figure_root: Path) -> str:
        """Markdown; figures are linked relative to ``figure_root``."""
        return str(_markdown_environment().get_template("report.md.j2").render(**self._context("md", figure_root)))

    def write(self, html_path: Path, md_path: Path) -> None:
        """Write both renderings atomically."""
        with atomic_write(html_path, "w") as handle:
            handle.write(self.to_html())
        with atomic_write(md_path, "w") as handle:
            handle.write(self.to_markdown(md_path.parent))


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
    for stem in NOTEBOOK_STAGE:
        path = notebook_dir / f"{stem}.ipynb"
        if not path.exists():
            continue
        try:
            meta = json.loads(path.read_text()).get("metadata", {}).get("papermill", {})
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if meta.get("duration") is None:
            continue
        rows.append(
            {
                "stage": NOTEBOOK_STAGE[stem],
                "notebook": stem,
                "wall time (s)": float(meta["duration"]),
                "ended": str(meta.get("end_time", ""))[:19].replace("T", " "),
            }
        )
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
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
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
