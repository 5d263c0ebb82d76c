"""Stage ``finetune``: train on full / random / curated / oracle subsets (and the noisy pool).

Leakage rules (tested): pool, reference and test share no id and no image (content hash); the
reference is never trained nor evaluated on; every split of a run is drawn from the selected
pool rows only. The oracle is the only subset that reads the ground truth, and it says so.

The selection suite (``suite`` in ``params.yaml``, :mod:`kairos_curate.study.selection_suite`)
runs here too (:func:`run_suite`): it asks the same question as the grid - does training on a
selection beat random subsets, how close does it get to the oracle - over many scenarios, seeds
and budgets, with the same fine-tuning code, hyper-parameters and stem-output cache.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from kairos_curate.config import PATHS
from kairos_curate.data.scenario import check_no_leakage, load_pool_variant, load_scenario
from kairos_curate.io import atomic_path, write_json
from kairos_curate.progress import progress_enabled
from kairos_curate.stages.params import FinetuneStage, load_stage_params
from kairos_curate.stages.suite import run_suite, suite_plan
from kairos_curate.study.finetune_grid import (
    METRICS,
    build_subsets,
    run_grid,
    summarise_grid,
    sweep_subsets,
    variant_features,
)
from kairos_curate.training.backbones import load_backbone
from kairos_curate.training.determinism import numerics_info, pin_cpu_isa
from kairos_curate.training.finetune import compute_stem_features

__all__ = ["load", "run", "run_suite"]


def load(params: Any = None) -> FinetuneStage:
    """The stage's parameters, validated (``None``: read ``params.yaml``); the suite's scenarios and
    the parameters of every registered method and policy its selections name are checked too."""
    stage = load_stage_params("finetune", params)
    suite_plan(stage, check=True)
    return stage


def run(params: FinetuneStage, root: str | Path = ".") -> dict[str, Any]:
    """Run the grid; write ``finetune_runs/summary/sweep.csv`` and ``finetune.json``."""
    isa_pinned = pin_cpu_isa()  # before any kernel runs: the numbers must not depend on the host CPU
    cfg, base, progress = params.finetune, Path(root), progress_enabled()
    scenario = load_scenario(base / PATHS.prepared, base / PATHS.truth)
    check_no_leakage(scenario)
    selections = json.loads((base / PATHS.values / "selections.json").read_text())
    pool_ids = scenario.table("pool")["id"].to_numpy(dtype=str)
    labels, k = scenario.table("pool")["label"].to_numpy(), int(selections["k"])
    subsets = build_subsets(cfg.subsets, selections, pool_ids, k, cfg.random_draws, cfg.seed, scenario.truth)
    if cfg.size_fractions:
        primary = next((s for s in subsets if s.name == params.value.primary), None)
        if primary is None:
            raise ValueError(
                f"finetune.size_fractions sweeps the primary selection {params.value.primary!r}, "
                "which is not in finetune.subsets"
            )
        subsets += sweep_subsets(primary, labels, cfg.size_fractions)
    backbone = load_backbone(cfg.backbone, cfg.weights, cfg.image_size)
    cache = base / PATHS.finetune_cache
    features = {
        "original": compute_stem_features(
            backbone,
            scenario.source("pool"),
            cache_dir=cache,
            progress=progress,
            desc="stem features (pool)",
            device=cfg.device,
        )
    }
    test_features = compute_stem_features(
        backbone,
        scenario.source("test"),
        cache_dir=cache,
        progress=progress,
        desc="stem features (test)",
        device=cfg.device,
    )
    if cfg.noisy_subsets:  # the same pool with extra pixel noise, curated by its own valuation
        variant = load_pool_variant(base / PATHS.noisy_pool, base / PATHS.noisy_truth)
        if not np.array_equal(variant.ids, pool_ids):
            raise ValueError(f"{base / PATHS.noisy_pool} does not match the pool; rerun `dvc repro prepare`")
        features["noisy"] = variant_features(
            backbone, features["original"], scenario.source("pool"), variant.source(), cfg.device
        )
        noisy_selections = json.loads((base / PATHS.values / "selections_noisy.json").read_text())
        subsets += build_subsets(
            cfg.noisy_subsets, noisy_selections, pool_ids, k, cfg.random_draws, cfg.seed, variant.truth, pool="noisy"
        )
    runs = run_grid(
        subsets,
        features,
        labels,
        test_features,
        scenario.table("test")["label"].to_numpy(),
        len(scenario.class_names),
        backbone,
        {m: cfg.config(m) for m in cfg.methods},
        trials=cfg.trials,
        seed=cfg.seed,
        progress=progress,
    )
    summary, sweep = summarise_grid(runs)
    for name, frame in (("finetune_runs", runs), ("finetune_summary", summary), ("finetune_sweep", sweep)):
        with atomic_path(base / PATHS.tables / f"{name}.csv") as tmp:
            frame.to_csv(tmp, index=False)
    metrics: dict[str, Any] = {
        "k": k,
        "pool_size": int(pool_ids.size),
        "trials": cfg.trials,
        "random_draws": cfg.random_draws,
        "trained_layers": backbone.cut,
        "stem_outputs_cached": True,
        "backbone": backbone.name,
        "numerics": {**numerics_info(), "cpu_isa_pinned": isa_pinned},
        "primary": params.value.primary,
        "results": {
            f"{r['pool']}/{r['subset']}/{r['method']}": {
                m: {"mean": r[f"{m}_mean"], "std": r[f"{m}_std"]} for m in METRICS
            }
            for r in summary.to_dict("records")
        },
    }
    write_json(base / PATHS.metrics / "finetune.json", metrics)
    return {"runs": runs, "summary": summary, "sweep": sweep, "metrics": metrics}
