"""Run one stage: validate its parameters, execute its notebook with papermill, export HTML."""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kairos_curate.config import PATHS, ParamsError, load_params, project_root
from kairos_curate.io import atomic_write
from kairos_curate.stages import STAGES
from kairos_curate.stages.params import stage_data

__all__ = ["export_html", "main", "run_stage"]


class StageError(RuntimeError):
    """A stage could not run; the message says what to do."""


def preflight() -> None:
    """Fail fast, saying what to run, when papermill or the ``python3`` kernel is missing."""
    try:
        import papermill  # noqa: F401
        from jupyter_client.kernelspec import KernelSpecManager
    except ImportError:
        raise StageError("papermill is not installed in this Python: run `make setup` (or use `make repro`)") from None
    if "python3" not in KernelSpecManager().find_kernel_specs():
        raise StageError("no 'python3' Jupyter kernel: run `make setup` (it registers the kernel inside .venv)")


def export_html(notebook: Path, html_path: Path) -> Path:
    """The rendered notebook as a standalone HTML page (figures are embedded PNGs)."""
    from importlib.resources import files

    import nbformat
    from nbconvert import HTMLExporter

    templates = str(files("kairos_curate.reporting").joinpath("templates/nbconvert"))
    exporter = HTMLExporter(template_name="offline", extra_template_basedirs=[templates])
    body, _ = exporter.from_notebook_node(nbformat.read(notebook, as_version=4))
    with atomic_write(html_path, "w") as handle:
        handle.write(body)
    return html_path


def run_stage(stage: str, root: Path | None = None, *, params: dict[str, Any] | None = None) -> Path:
    """Execute ``stage``'s notebook with its parameters; return the rendered notebook's path.

    Parameters
    ----------
    stage
        A key of :data:`~kairos_curate.stages.STAGES`.
    root
        Project root (default: :func:`~kairos_curate.config.project_root`).
    params
        All parameters (default: ``params.yaml`` of ``root``); only the stage's keys are passed.
    """
    import papermill as pm

    if stage not in STAGES:
        raise StageError(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
    base = (root or project_root()).resolve()
    preflight()
    params = load_params(base / "params.yaml") if params is None else params
    # Invalid parameters (types, unknown keys, unknown plug-ins) fail here, before a kernel starts.
    importlib.import_module(f"kairos_curate.stages.{stage}").load(stage_data(stage, params))
    name = STAGES[stage]
    source, rendered = base / "notebooks" / f"{name}.ipynb", base / PATHS.notebooks / f"{name}.ipynb"
    if not source.exists():
        raise StageError(f"{source} not found; the stage `{stage}` runs that notebook")
    rendered.parent.mkdir(parents=True, exist_ok=True)
    # Progress bars would fill the rendered notebook with stderr blocks: off in the kernel.
    os.environ["KAIROS_PROGRESS"] = "0"
    os.environ["TQDM_DISABLE"] = "1"
    with tempfile.TemporaryDirectory(dir=rendered.parent) as tmp:
        partial = Path(tmp) / rendered.name
        try:
            pm.execute_notebook(
                source,
                partial,
                parameters={"params": stage_data(stage, params)},
                kernel_name="python3",
                cwd=str(base),
                progress_bar=False,
                log_output=False,
            )
        except pm.PapermillExecutionError as err:
            failed = rendered.with_suffix(".failed.ipynb")
            shutil.move(partial, failed)
            raise StageError(
                f"stage {stage}: cell {err.exec_count} of {source.name} failed with "
                f"{err.ename}: {err.evalue}\n  the notebook with the error: {failed}"
            ) from None
        os.replace(partial, rendered)
    rendered.with_suffix(".failed.ipynb").unlink(missing_ok=True)
    export_html(rendered, rendered.with_suffix(".html"))
    return rendered


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m kairos_curate.stages <stage>``: run one stage of the pipeline."""
    parser = argparse.ArgumentParser(
        prog="python -m kairos_curate.stages",
        description="Run one DVC stage: validate its params.yaml keys, execute notebooks/<NN>_<stage>.ipynb "
        "with papermill into reports/notebooks/ and export it to HTML. `dvc repro` calls this for every stage.",
    )
    parser.add_argument("stage", choices=list(STAGES), help="the stage to run")
    args = parser.parse_args(argv)
    try:
        path = run_stage(args.stage)
    except (StageError, ParamsError, FileNotFoundError) as err:
        print(f"kairos-curate stage {args.stage}: error: {err}", file=sys.stderr)
        return 1
    print(f"stage {args.stage}: {path} (+ {path.with_suffix('.html').name})")
    return 0
