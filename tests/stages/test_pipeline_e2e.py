"""End-to-end: the real `dvc repro` on a tiny configuration, in a scratch copy of the project.

Runs all six stages (papermill notebooks, real Fashion-MNIST, real EfficientNet-Lite0 weights),
then checks that the outputs exist and make sense, that a second `dvc repro` does nothing, and
that changing one parameter invalidates only the stages that depend on it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from ..conftest import ROOT, copy_project, requires_fashion_mnist

pytestmark = [pytest.mark.slow, requires_fashion_mnist]

#: The tiny configuration (nested overrides of params.yaml).
TINY = {
    "scenario": {
        "fashion_mnist": {
            "pool_per_task_class": 30,
            "pool_per_offtask_class": 15,
            "reference_per_class": 8,
            "test_per_class": 15,
            "pixel_noise_fraction": 0.15,
        }
    },
    "embed": {"image_size": 64, "batch_size": 32},
    "value": {"budget": 0.3},
    "compare": {"n_seeds": 2},
    "finetune": {
        "image_size": 64,
        "methods": ["lora"],
        "epochs": 3,
        "trials": 1,
        "random_draws": 2,
        "size_fractions": [0.5, 1.0],
    },
    # The selection suite's small profile on the tiny scenario sizes: one seed per split.
    "suite": {"small": {"seeds_per_split": 1}},
}


def deep_update(target: dict, overrides: dict) -> dict:
    """``target`` with nested ``overrides`` written in."""
    for key, value in overrides.items():
        if isinstance(value, dict):
            deep_update(target.setdefault(key, {}), value)
        else:
            target[key] = value
    return target


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    env.pop("KAIROS_ROOT", None)
    return env


def _dvc(project: Path, *args: str, timeout: int = 1200) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "dvc"), *args],
        cwd=project,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"dvc {' '.join(args)} failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def init_and_repro(dest: Path) -> None:
    """Make ``dest`` a git + DVC project (analytics off), run `dvc repro` once, check every stage ran."""
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    _dvc(dest, "init", "-q")
    _dvc(dest, "config", "core.analytics", "false")
    start = time.perf_counter()
    result = _dvc(dest, "repro")
    (dest / "first_repro_seconds.txt").write_text(f"{time.perf_counter() - start:.1f}")
    assert all(
        f"Running stage '{s}'" in result.stdout for s in ("prepare", "embed", "value", "compare", "finetune", "report")
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A scratch copy of the project with tiny parameters, after one full `dvc repro`."""
    dest = tmp_path_factory.mktemp("project")
    copy_project(dest)
    params = deep_update(yaml.safe_load((ROOT / "params.yaml").read_text()), TINY)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    init_and_repro(dest)
    return dest


def test_every_stage_wrote_its_outputs(project):
    for stage in ("01_prepare", "02_embed", "03_value", "04_compare", "05_finetune", "06_report"):
        rendered = json.loads((project / "reports" / "notebooks" / f"{stage}.ipynb").read_text())
        assert rendered["metadata"]["papermill"]["exception"] is None, stage
        assert (project / "reports" / "notebooks" / f"{stage}.html").exists(), stage
    for metric in ("prepare", "embed", "value", "compare", "finetune"):
        assert (project / "reports" / "metrics" / f"{metric}.json").exists()
    assert len(list((project / "reports" / "figures").rglob("*.png"))) >= 8


def test_outputs_make_sense(project):
    prepare = json.loads((project / "reports/metrics/prepare.json").read_text())
    assert prepare["pool"] == 6 * 30 + 4 * 15 and prepare["reference"] == 6 * 8
    embed = json.loads((project / "reports/metrics/embed.json").read_text())
    assert embed["dim"] == 1280 and embed["encoder"] == "efficientnet-lite0"
    value = json.loads((project / "reports/metrics/value.json").read_text())
    assert value["k"] == round(0.3 * prepare["pool"])
    assert value["selections"]["per_class"]["classes_missing"] == 0
    selections = json.loads((project / "data/values/selections.json").read_text())
    pool_ids = set(pd.read_parquet(project / "data/prepared/samples.parquet").query("split == 'pool'")["id"])
    for policy in ("global", "per_class", "herding", "calibrated"):
        assert len(selections[policy]["ids"]) == value["k"]
        assert set(selections[policy]["ids"]) <= pool_ids
    assert value["primary"] == "calibrated" and selections["calibrated"]["method"] == "kairos_calibrated"
    assert selections["herding"]["method"] == value["method"] == "kairos_class_conditional"
    assert (project / "data/values/values_kairos_calibrated.parquet").exists()
    detection = pd.read_csv(project / "reports/tables/compare_detection.csv").set_index(["method", "problem"])
    # heavy pixel noise is far from the clean reference: every KAIROS variant must find it
    assert detection.loc[("kairos_feature", "pixel noise"), "auroc_mean"] > 0.7
    assert detection.loc[("random", "any problem"), "runs"] == 2
    summary = pd.read_csv(project / "reports/tables/finetune_summary.csv")
    ft = yaml.safe_load((project / "params.yaml").read_text())["finetune"]
    assert set(summary.loc[summary["pool"] == "original", "subset"]) == set(ft["subsets"])
    assert set(summary.loc[summary["pool"] == "noisy", "subset"]) == set(ft["noisy_subsets"])
    assert summary["accuracy_mean"].between(0, 1).all()
    original = summary[summary["pool"] == "original"].set_index("subset")
    assert original.loc["full", "accuracy_mean"] > 1 / 6  # above chance on 6 classes
    runs = pd.read_csv(project / "reports/tables/finetune_runs.csv")
    assert runs.loc[runs["kind"] == "oracle", "uses_ground_truth"].all()
    assert not runs.loc[runs["kind"] != "oracle", "uses_ground_truth"].any()
    sweep = pd.read_csv(project / "reports/tables/finetune_sweep.csv")
    assert sorted(sweep["fraction"]) == [0.5, 1.0] and set(sweep["subset"]) == {"calibrated"}
    html = (project / "reports/capstone.html").read_text()
    assert "Provenance" in html and html.count("data:image/png;base64,") >= 6
    assert "was not produced" not in html
    assert (project / "reports/capstone.md").read_text().startswith("# ")
    flags = pd.read_csv(project / "reports/audit/flags.csv")
    assert len(flags) == prepare["pool"] and (project / "reports/audit/audit.html").exists()
    assert (project / "reports/screenshots/capstone.png").stat().st_size > 10_000
    assert len(list((project / "reports/screenshots/notebooks").glob("0*.png"))) == 5


def test_second_repro_does_nothing(project):
    start = time.perf_counter()
    result = _dvc(project, "repro")
    elapsed = time.perf_counter() - start
    assert "Running stage" not in result.stdout
    assert elapsed < 30, f"a no-op repro took {elapsed:.1f} s"


def test_changing_one_parameter_invalidates_only_its_dependants(project):
    params_file = project / "params.yaml"
    original = params_file.read_text()
    params = yaml.safe_load(original)
    params["finetune"]["epochs"] = 4
    params_file.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        status = json.loads(_dvc(project, "status", "--json").stdout)
        assert set(status) == {"finetune"}  # report is downstream, it shows once finetune reruns
        params["value"]["budget"] = 0.25  # read by value and compare, not by finetune
        params_file.write_text(yaml.safe_dump(params, sort_keys=False))
        status = json.loads(_dvc(project, "status", "--json").stdout)
        assert set(status) == {"finetune", "value", "compare"}
        params["value"]["budget"] = 0.3
        params["value"]["method_params"] = {"bandwidth": 1.5}  # read by value alone
        params_file.write_text(yaml.safe_dump(params, sort_keys=False))
        status = json.loads(_dvc(project, "status", "--json").stdout)
        assert set(status) == {"finetune", "value"}
    finally:
        params_file.write_text(original)


def test_editing_an_imported_module_makes_its_stages_stale(project):
    """A comment appended to a module changes its hash: every stage that imports it is stale."""
    module = project / "src" / "kairos_curate" / "selection" / "herding.py"
    original = module.read_text()
    module.write_text(original + "\n# touched\n")
    try:
        status = json.loads(_dvc(project, "status", "--json").stdout)
        assert {"value", "compare"} <= set(status) and "prepare" not in status and "embed" not in status
    finally:
        module.write_text(original)


def test_rendered_notebooks_read_well(project):
    """Opened as HTML: inline figures, no error outputs, no stderr wall (progress bars are off)."""
    expected_images = {"01_prepare": 4, "02_embed": 3, "03_value": 2, "04_compare": 6, "05_finetune": 3}
    for stem, least in expected_images.items():
        nb = json.loads((project / "reports" / "notebooks" / f"{stem}.ipynb").read_text())
        outputs = [o for c in nb["cells"] for o in c.get("outputs", [])]
        images = sum("image/png" in o.get("data", {}) for o in outputs)
        assert images >= least, f"{stem}: {images} inline figures"
        assert not any(o.get("output_type") == "error" for o in outputs), stem
        for o in outputs:
            if o.get("name") == "stderr":
                assert "".join(o["text"]).count("\n") <= 3, f"{stem}: stderr block {''.join(o['text'])[:300]!r}"
        html = (project / "reports" / "notebooks" / f"{stem}.html").read_text()
        assert html.count("data:image/png;base64,") >= least, stem
        assert "cdnjs.cloudflare.com/ajax/libs/require.js" not in html
        assert "What this shows" in html


def test_deleted_input_gives_a_clear_error(project, tmp_path):
    """Running a stage's code without its inputs says which stage to run."""
    from kairos_curate.stages import value

    with pytest.raises(FileNotFoundError, match="dvc repro"):
        value.run(value.load({"value": {}}).value, root=tmp_path)


def test_finetune_stage_gives_the_same_metrics_twice(project):
    """Same seeds, same metrics (train time aside). Runs last: it rewrites the project's outputs."""
    from kairos_curate.stages import finetune

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["finetune"].update(subsets=["random", "per_class"], noisy_subsets=[], size_fractions=[])
    cfg = finetune.load(params)
    first = finetune.run(cfg, root=project)["runs"]
    second = finetune.run(cfg, root=project)["runs"]
    columns = ["subset", "draw", "trial", "accuracy", "macro_f1", "auc", "best_epoch", "n_train"]
    pd.testing.assert_frame_equal(first[columns], second[columns])
