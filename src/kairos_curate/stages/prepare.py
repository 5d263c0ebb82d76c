"""Stage ``prepare``: build the scenario that ``scenario.source`` names, its truth table and the
noisy pool variant; write them with the stage's metrics."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from kairos_curate.config import PATHS
from kairos_curate.data.scenario import PoolVariant, Scenario, add_pool_noise, build_scenario
from kairos_curate.io import write_json
from kairos_curate.progress import progress_enabled
from kairos_curate.stages.params import PrepareStage, ScenarioParams, load_stage_params

__all__ = ["build", "load", "run"]


def build(params: ScenarioParams, root: Path) -> Scenario:
    """The scenario of ``params.source`` (real datasets write their corrupted copies under root)."""
    if params.source == "fashion_mnist":
        return build_scenario(params.fashion_mnist)
    from kairos_curate.data.real_scenario import build_real_scenario

    out = root / PATHS.prepared
    shutil.rmtree(out / "images", ignore_errors=True)  # corrupted copies of an earlier build
    return build_real_scenario(params.inaturalist, out, root=root, progress=progress_enabled())


def noisy_variant(scenario: Scenario, params: ScenarioParams, image_dir: Path | None = None) -> PoolVariant:
    """The pool with extra pixel noise (seeded by the source's seed + 1)."""
    return add_pool_noise(
        scenario,
        params.noisy_variant.fraction,
        params.noisy_variant.severities,
        seed=params.config.seed + 1,
        image_dir=image_dir,
    )


def load(params: Any = None) -> PrepareStage:
    """The stage's parameters, validated (``None``: read ``params.yaml``)."""
    return load_stage_params("prepare", params)


def run(params: ScenarioParams, root: str | Path = ".") -> Scenario:
    """Build and write the scenario, its truth table, the noisy variant and ``prepare.json``."""
    base = Path(root)
    scenario = build(params, base)
    scenario.save(base / PATHS.prepared, base / PATHS.truth)
    shutil.rmtree(base / PATHS.noisy_pool / "images", ignore_errors=True)
    variant = noisy_variant(scenario, params, image_dir=base / PATHS.noisy_pool / "images")
    variant.save(base / PATHS.noisy_pool, base / PATHS.noisy_truth)
    counts = scenario.info["counts"]
    metrics: dict[str, Any] = {
        "source": params.source,
        **counts,
        "pool_noisy_fraction": counts["pool_noisy"] / counts["pool"],
        "pool_off_task_fraction": counts["pool_off_task"] / counts["pool"],
        "severity_unit_pixel_std": scenario.info["severity_unit_pixel_std"],
        "n_task_classes": len(scenario.class_names),
        "noisy_variant": variant.info,
        **{
            k: scenario.info[k]
            for k in ("skipped", "pool_dropped_equal_to_reference_or_test", "taxonomy_version")
            if k in scenario.info
        },
    }
    write_json(base / PATHS.metrics / "prepare.json", metrics)
    return scenario
