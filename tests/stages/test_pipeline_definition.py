"""dvc.yaml, params.yaml, the typed parameters and the notebooks agree; deps cannot drift."""

from __future__ import annotations

import ast
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from kairos_curate.config import load_params
from kairos_curate.stages import STAGES
from kairos_curate.stages.deps import covered, missing_deps, stage_closure
from kairos_curate.stages.params import STAGE_SECTIONS, load_stage_params

from ..conftest import ROOT

DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())
ORDER = ["prepare", "embed", "value", "compare", "finetune", "report"]


def _deps(stage: str) -> list[str]:
    return [next(iter(d)) if isinstance(d, dict) else str(d) for d in DVC["stages"][stage]["deps"]]


def _params(stage: str) -> list[str]:
    return [next(iter(p)) if isinstance(p, dict) else str(p) for p in DVC["stages"][stage].get("params", [])]


def _code_cells(path: Path) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


def test_stages_are_the_six_verbs_in_order_and_named_as_their_notebooks():
    assert list(DVC["stages"]) == ORDER == list(STAGES)
    for stage, notebook in STAGES.items():
        assert notebook.split("_", 1)[1] == stage
        assert DVC["stages"][stage]["cmd"] == f"python -m kairos_curate.stages {stage}"
        assert (ROOT / "notebooks" / f"{notebook}.ipynb").exists()


@pytest.mark.parametrize("stage", ORDER)
def test_each_stage_depends_on_exactly_the_params_it_reads(stage):
    assert _params(stage) == list(STAGE_SECTIONS[stage])


@pytest.mark.parametrize("stage", ORDER)
def test_params_yaml_is_valid_for_every_stage(stage):
    import importlib

    importlib.import_module(f"kairos_curate.stages.{stage}").load(load_params(ROOT / "params.yaml"))


@pytest.mark.parametrize("stage", ORDER)
def test_parameters_cells_hold_one_literal(stage):
    nb = json.loads((ROOT / "notebooks" / f"{STAGES[stage]}.ipynb").read_text())
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, "exactly one cell tagged 'parameters'"
    body = ast.parse("".join(cells[0]["source"])).body
    assert len(body) == 1 and isinstance(body[0], ast.Assign) and body[0].targets[0].id == "params"  # type: ignore[attr-defined]
    ast.literal_eval(body[0].value)


def test_every_stage_covers_its_import_closure():
    assert missing_deps(ROOT) == {}


def test_the_closure_check_fails_when_a_dep_is_removed(tmp_path):
    """Remove one source dep of `value` from a copy of dvc.yaml: the check names that file."""
    for name in ("src", "notebooks", "dvc.yaml"):
        source = ROOT / name
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, tmp_path / name)
    doc = yaml.safe_load((tmp_path / "dvc.yaml").read_text())
    removed = "src/kairos_curate/config.py"
    doc["stages"]["value"]["deps"].remove(removed)
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    assert missing_deps(tmp_path) == {"value": [removed]}


def test_the_closure_follows_imports_inside_functions_and_plug_in_packages():
    closure = stage_closure(ROOT, "value")
    assert "src/kairos_curate/selection/herding.py" in closure  # plug-ins load with their package
    assert "src/kairos_curate/valuation/lava.py" in closure
    assert "src/kairos_curate/stages/value.py" in closure and "src/kairos_curate/stages/runner.py" in closure
    assert not any(p.startswith("src/kairos_curate/training/finetune") for p in closure)  # value trains nothing
    report = stage_closure(ROOT, "report")
    assert "src/kairos_curate/reporting/templates" in report  # data files a module reads
    assert covered("src/kairos_curate/reporting/templates/report.html.j2", _deps("report"))


def test_value_stage_never_depends_on_the_truth():
    assert not any("truth" in d for d in _deps("value"))


def test_notebooks_are_committed_without_outputs_and_stay_thin():
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = json.loads(path.read_text())
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                assert not cell.get("outputs") and cell.get("execution_count") is None, path.name
                tree = ast.parse("".join(cell["source"]))
                assert not any(isinstance(n, ast.FunctionDef | ast.ClassDef) for n in ast.walk(tree)), path.name


def test_every_notebook_opens_with_its_question_and_ends_with_what_it_shows():
    for path in sorted((ROOT / "notebooks").glob("0[1-5]_*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        assert cells[0]["cell_type"] == "markdown" and "**Question.**" in "".join(cells[0]["source"]), path.name
        assert "## What this shows" in "".join(cells[-2]["source"]) and "takeaways" in "".join(cells[-1]["source"])


def _statements(source: str) -> int:
    """Statements (not docstrings), counted once per line: the size of the code, whatever the
    formatter does to the width of a call."""
    tree = ast.parse(source)

    def docstring(n: ast.AST) -> bool:
        return isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)

    return len({n.lineno for n in ast.walk(tree) if isinstance(n, ast.stmt) and not docstring(n)})


def test_statement_counter_counts_code_not_layout():
    assert _statements('"""doc"""\nx = f(\n    1,\n    2,\n)\nif x:\n    y = 1\n') == 3


def test_stage_modules_stay_small():
    for stage in STAGES:
        count = _statements((ROOT / "src" / "kairos_curate" / "stages" / f"{stage}.py").read_text())
        assert count <= 80, f"stages/{stage}.py has {count} statements: move logic into kairos_curate.study"


def test_dvc_analytics_are_off():
    config = (ROOT / ".dvc" / "config").read_text()
    assert re.search(r"analytics\s*=\s*false", config)


def test_stage_params_reject_unknown_keys_and_wrong_types():
    from kairos_curate.config import ParamsError

    with pytest.raises(ParamsError, match=r"finetune\.epoch: unknown key"):
        load_stage_params("finetune", {"finetune": {"epoch": 3}})
    with pytest.raises(ParamsError, match=r"finetune\.epochs: Input should be a valid integer \(got '3'\)"):
        load_stage_params("finetune", {"finetune": {"epochs": "3"}})
    with pytest.raises(ParamsError, match=r"value\.primary: 'x' is not one of the selections"):
        load_stage_params("value", {"value": {"primary": "x"}})
    with pytest.raises(ParamsError, match=r"seeds"):
        from kairos_curate.config import validate_params
        from kairos_curate.stages.params import SeedsParams

        validate_params(SeedsParams, {"development": [0, 1], "held_out": [1]}, "seeds")


def test_params_yaml_has_no_duplicate_keys():
    """PyYAML keeps the last of two equal keys silently; a duplicate is always an editing mistake."""

    class StrictLoader(yaml.SafeLoader):
        pass

    def mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
        keys = [loader.construct_object(k, deep=deep) for k, _ in node.value]
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        assert not duplicates, f"params.yaml repeats {duplicates} in one section"
        return yaml.SafeLoader.construct_mapping(loader, node, deep)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, mapping)
    yaml.load((ROOT / "params.yaml").read_text(), StrictLoader)
