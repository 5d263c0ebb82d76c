"""dvc.yaml, params.yaml and the notebooks agree; notebooks are thin and committed clean."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DVC = yaml.safe_load((ROOT / "dvc.yaml").read_text())
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
STAGES = DVC["stages"]
EXPECTED_ORDER = ["prepare", "embed", "value", "benchmark", "finetune", "report"]


def _notebook(stage: dict) -> Path:
    match = re.search(r"papermill (notebooks/\S+\.ipynb) (reports/notebooks/\S+\.ipynb)", stage["cmd"])
    assert match, f"stage does not run a papermill notebook: {stage['cmd']}"
    return ROOT / match.group(1)


def _parameters_cell(path: Path) -> ast.Module:
    nb = json.loads(path.read_text())
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"{path.name} must have exactly one cell tagged 'parameters'"
    return ast.parse("".join(cells[0]["source"]))


def test_stages_are_the_six_verbs_in_order():
    assert list(STAGES) == EXPECTED_ORDER


@pytest.mark.parametrize("name", EXPECTED_ORDER)
def test_every_p_name_exists_in_the_parameters_cell(name):
    stage = STAGES[name]
    notebook = _notebook(stage)
    names = re.findall(r"-p (\w+) ", stage["cmd"])
    assert names, f"stage {name} passes no parameters"
    tree = _parameters_cell(notebook)
    defined = {t.id for node in tree.body if isinstance(node, ast.Assign) for t in node.targets
               if isinstance(t, ast.Name)}
    missing = set(names) - defined
    assert not missing, f"{notebook.name}: -p {sorted(missing)} not in its parameters cell (papermill only warns)"


@pytest.mark.parametrize("name", EXPECTED_ORDER)
def test_parameters_cells_hold_literals_only(name):
    for node in _parameters_cell(_notebook(STAGES[name])).body:
        assert isinstance(node, ast.Assign), ast.dump(node)
        ast.literal_eval(node.value)


@pytest.mark.parametrize("name", EXPECTED_ORDER)
def test_params_referenced_by_a_stage_exist(name):
    for ref in re.findall(r"\$\{([\w.]+)\}", STAGES[name]["cmd"]):
        node = PARAMS
        for part in ref.split("."):
            assert part in node, f"stage {name}: ${{{ref}}} is not in params.yaml"
            node = node[part]


@pytest.mark.parametrize("name", EXPECTED_ORDER)
def test_deps_include_the_notebook_and_existing_sources(name):
    stage = STAGES[name]
    notebook = _notebook(stage).relative_to(ROOT).as_posix()
    assert notebook in stage["deps"]
    for dep in stage["deps"]:
        if dep.startswith(("src/", "notebooks/")):
            assert (ROOT / dep).exists(), f"stage {name}: dependency {dep} does not exist"


def test_value_stage_never_depends_on_the_truth():
    assert not any("truth" in d for d in STAGES["value"]["deps"])


def test_notebooks_are_committed_without_outputs():
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        nb = json.loads(path.read_text())
        for cell in nb["cells"]:
            if cell["cell_type"] == "code":
                assert not cell.get("outputs") and cell.get("execution_count") is None, path.name


def test_notebook_code_stays_thin():
    """Notebooks call into src/: no function or class definitions inside them."""
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "code":
                tree = ast.parse("".join(cell["source"]))
                assert not any(isinstance(n, ast.FunctionDef | ast.ClassDef) for n in ast.walk(tree)), path.name


def test_dvc_analytics_are_off():
    config = (ROOT / ".dvc" / "config").read_text()
    assert re.search(r"analytics\s*=\s*false", config)


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
