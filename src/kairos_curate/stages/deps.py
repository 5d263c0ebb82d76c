"""Each stage's source dependencies, computed from imports, so that ``dvc.yaml`` cannot drift.

A stage runs its notebook, its stage module and the runner; the files they import inside this
package, transitively (every ``import`` statement counts, also inside functions, and importing
``a.b.c`` runs the ``__init__.py`` of ``a`` and ``a.b``), plus the data files those modules read
(templates, the taxonomy), are the stage's source closure. :func:`stage_closure` computes it;
``python -m kairos_curate.stages.deps --check`` fails naming every file a stage runs but
``dvc.yaml`` does not list, and ``--write`` rewrites the ``deps`` of every stage (keeping the
non-source deps and comments).
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from kairos_curate.stages import STAGES

__all__ = ["PACKAGE", "covered", "minimal_cover", "missing_deps", "stage_closure", "stage_sources"]

PACKAGE = "kairos_curate"
SRC = Path("src") / PACKAGE
#: Data files (relative to the package) that a module reads at run time.
DATA_FILES = {
    "reporting/report.py": ("reporting/templates",),
    "data/adapters.py": ("resources",),
    "study/decisions.py": ("study/selection_decisions.yaml",),
}


def _module_file(src: Path, module: str) -> Path | None:
    """The file of ``module`` (dotted, inside the package) under ``src``, if it exists."""
    parts = module.split(".")[1:]
    base = src.joinpath(*parts) if parts else src
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imported_modules(code: str, current: str | None = None) -> set[str]:
    """Package modules named by the import statements of ``code`` (``from a import b`` also
    yields ``a.b``, which is a module when ``b`` is one)."""
    out: set[str] = set()
    try:
        tree = ast.parse(code)
    except SyntaxError:
        tree = ast.parse("\n".join(line for line in code.splitlines() if not line.lstrip().startswith(("%", "!"))))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names if alias.name.split(".")[0] == PACKAGE)
        elif isinstance(node, ast.ImportFrom):
            name = node.module or ""
            if node.level and current:
                anchor = current.split(".")[: -node.level]
                name = ".".join([*anchor, name] if name else anchor)
            if name.split(".")[0] == PACKAGE:
                out.add(name)
                out.update(f"{name}.{alias.name}" for alias in node.names)
    return out


def _with_parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


def _module_name(src: Path, file: Path) -> str:
    rel = file.relative_to(src).with_suffix("")
    parts = [PACKAGE, *rel.parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def closure(src: Path, roots: Iterable[str]) -> set[Path]:
    """Files under ``src`` run when the modules ``roots`` are imported (transitively).

    Importing a plug-in package (:data:`kairos_curate.plugins.PLUGIN_PACKAGES`) imports all its
    modules, so all of them are in the closure.
    """
    from kairos_curate.plugins import PLUGIN_PACKAGES

    seen: set[Path] = set()
    todo = [m for root in roots for m in _with_parents(root)]
    while todo:
        module = todo.pop()
        file = _module_file(src, module)
        if file is None or file in seen:
            continue
        seen.add(file)
        if module in PLUGIN_PACKAGES:
            todo += [_module_name(src, f) for f in file.parent.glob("*.py") if not f.name.startswith("_")]
        current = _module_name(src, file)
        package = current if file.name == "__init__.py" else current.rsplit(".", 1)[0]
        for module in _imported_modules(file.read_text(), package + ".x"):
            todo.extend(_with_parents(module))
    return seen


def notebook_code(path: Path) -> str:
    """The code cells of a notebook, joined."""
    cells = json.loads(path.read_text())["cells"]
    return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")


def stage_sources(root: Path, stage: str) -> list[str]:
    """Non-package sources of ``stage``: its notebook."""
    return [f"notebooks/{STAGES[stage]}.ipynb"]


def stage_closure(root: Path, stage: str) -> set[str]:
    """Every package file (and read data folder) ``stage`` runs, as paths relative to ``root``."""
    src = root / SRC
    roots = {f"{PACKAGE}.stages.{stage}", f"{PACKAGE}.stages.runner", f"{PACKAGE}.stages.__main__"}
    roots |= _imported_modules(notebook_code(root / stage_sources(root, stage)[0]))
    files = closure(src, roots)
    out = {f.relative_to(root).as_posix() for f in files}
    for module, folders in DATA_FILES.items():
        if (src / module) in files:
            out.update((SRC / folder).as_posix() for folder in folders)
    return out


def covered(path: str, deps: Iterable[str]) -> bool:
    """Whether ``path`` is a dep or lies under a dep folder."""
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


def minimal_cover(root: Path, files: set[str]) -> list[str]:
    """Few paths covering ``files``: a package folder whenever every source file under it is needed."""
    src = root / SRC
    chosen = set(files)
    for folder in sorted(
        (p for p in src.rglob("*") if p.is_dir() and p.name != "__pycache__"), key=lambda p: -len(p.parts)
    ):
        rel = folder.relative_to(root).as_posix()
        inside = [f.relative_to(root).as_posix() for f in folder.rglob("*.py")]
        if inside and all(covered(f, chosen) for f in inside):
            chosen = {c for c in chosen if not covered(c, [rel])} | {rel}
    return sorted(chosen)


def _dvc_stages(root: Path) -> dict[str, list[str]]:
    import yaml

    doc = yaml.safe_load((root / "dvc.yaml").read_text())
    return {
        name: [next(iter(d)) if isinstance(d, dict) else str(d) for d in stage.get("deps", [])]
        for name, stage in doc["stages"].items()
    }


def missing_deps(root: Path) -> dict[str, list[str]]:
    """Stage -> source files it runs that its ``dvc.yaml`` deps do not cover (empty = all good)."""
    listed = _dvc_stages(root)
    out = {}
    for stage in STAGES:
        needed = stage_closure(root, stage) | set(stage_sources(root, stage))
        gaps = sorted(p for p in needed if not covered(p, listed.get(stage, [])))
        if gaps:
            out[stage] = gaps
    return out


def write_deps(root: Path) -> None:
    """Rewrite the source deps of every stage in ``dvc.yaml`` (other deps and comments stay)."""
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 120
    yaml.indent(mapping=2, sequence=4, offset=2)
    path = root / "dvc.yaml"
    doc = yaml.load(path.read_text())
    for stage in STAGES:
        deps = doc["stages"][stage].setdefault("deps", [])
        keep = [d for d in deps if not str(d).startswith(("src/", "notebooks/"))]
        sources = stage_sources(root, stage) + minimal_cover(root, stage_closure(root, stage))
        deps.clear()
        deps.extend([*sources, *keep])
    with open(path, "w") as handle:
        yaml.dump(doc, handle)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m kairos_curate.stages.deps [--check | --write]``."""
    parser = argparse.ArgumentParser(
        prog="python -m kairos_curate.stages.deps",
        description="Check or rewrite the source deps of every stage in dvc.yaml "
        "from the imports of its notebook and stage module.",
    )
    parser.add_argument("--write", action="store_true", help="rewrite dvc.yaml's source deps")
    parser.add_argument("--root", type=Path, default=Path("."), help="project root (default: .)")
    args = parser.parse_args(argv)
    if args.write:
        write_deps(args.root)
    gaps = missing_deps(args.root)
    for stage, files in gaps.items():
        print(f"stage {stage} runs but does not depend on: {', '.join(files)}", file=sys.stderr)
    if gaps:
        print("fix: python -m kairos_curate.stages.deps --write", file=sys.stderr)
    return 1 if gaps else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
