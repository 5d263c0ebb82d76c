"""Stage ``compare``: every valuation method on pool variants with injected problems.

Detection, downstream probe and point removal (:mod:`kairos_curate.study.comparison`); the
stage loads the prepared scenario and its embeddings, embeds corrupted images through the shared
cache, and writes the tables and ``compare.json``.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from kairos_curate.config import PATHS
from kairos_curate.data.noise_settings import parse_setting
from kairos_curate.data.variants import VariantBuilder
from kairos_curate.io import atomic_path, write_json
from kairos_curate.stages.embedder import cached_embedder
from kairos_curate.stages.inputs import load_prepared
from kairos_curate.stages.params import CompareStage, load_stage_params
from kairos_curate.stages.plugins import check_methods, selection_specs
from kairos_curate.study.comparison import (
    ComparisonPlan,
    ComparisonTables,
    run_comparison,
    summarise_comparison,
)
from kairos_curate.study.downstream import LinearProbe

__all__ = ["TABLES", "load", "run"]

#: Table attribute -> file name under ``reports/tables``.
TABLES = {
    "summary": "compare_detection",
    "detection_runs": "compare_detection_runs",
    "settings": "compare_noise_settings",
    "winners": "compare_winners",
    "downstream": "compare_downstream",
    "downstream_runs": "compare_downstream_runs",
    "removal": "compare_point_removal",
    "curve": "compare_found_vs_inspected",
}


def load(params: Any = None) -> CompareStage:
    """The stage's parameters, validated (``None``: read ``params.yaml``), plug-ins and settings checked."""
    stage = load_stage_params("compare", params)
    check_methods(stage.compare.methods, "compare.methods")
    selection_specs(stage.value.selections)
    for name in stage.compare.settings:
        parse_setting(name)
    return stage


def run(params: CompareStage, root: str | Path = ".") -> dict[str, Any]:
    """Run the comparison; write ``reports/tables/compare_*.csv`` and ``compare.json``."""
    import torch
    from threadpoolctl import threadpool_limits

    cfg, base, started = params.compare, Path(root), time.perf_counter()
    plan = ComparisonPlan(
        methods=cfg.methods,
        settings=[parse_setting(s) for s in cfg.settings],
        seeds=[cfg.seed + i for i in range(cfg.n_seeds)],
        downstream_settings=cfg.downstream_settings,
        removal_setting=cfg.removal_setting,
        removal_fractions=cfg.removal_fractions,
        selections=selection_specs(params.value.selections),
        budget=params.value.budget,
        random_draws=cfg.random_draws,
    )
    data = load_prepared(base, truth=True, test=True)
    test = data.scenario.table("test")
    builder = VariantBuilder(
        data.scenario,
        data.pool_x,
        data.ref_x,
        data.test_x,
        cached_embedder(params.embed, base),
        base_size=cfg.base_size,
        noise_fraction=cfg.noise_fraction,
    )
    with ExitStack() as stack:
        if cfg.threads:  # many small kernels and fits: one thread each avoids oversubscription
            previous = torch.get_num_threads()
            torch.set_num_threads(cfg.threads)
            stack.callback(torch.set_num_threads, previous)
            stack.enter_context(threadpool_limits(cfg.threads))
        probe = LinearProbe(
            data.pool_x,
            data.ref_x,
            data.test_x,
            test["label"].to_numpy(),
            len(data.scenario.class_names),
            dim=cfg.probe_dim,
            seed=cfg.seed,
        )
        runs = run_comparison(plan, builder, data.ref_x, data.ref_labels, probe, log=print)
    tables = summarise_comparison(plan, runs)
    for attr, name in TABLES.items():
        with atomic_path(base / PATHS.tables / f"{name}.csv") as tmp:
            getattr(tables, attr).to_csv(tmp, index=False)
    metrics = _metrics(plan, tables, runs.embedded, len(data.pool_ids), builder.base_size, builder.noise_fraction)
    metrics["stage_seconds"] = time.perf_counter() - started
    write_json(base / PATHS.metrics / "compare.json", metrics)
    return {"plan": plan, "tables": tables, "curves": runs.curves, "metrics": metrics}


def _metrics(
    plan: ComparisonPlan, tables: ComparisonTables, embedded: int, n_pool: int, base_size: int, noise_fraction: float
) -> dict[str, Any]:
    detail = tables.detection_runs
    seconds = detail.groupby("method")["seconds"].mean() if len(detail) else {}
    any_problem = tables.settings[tables.settings["problem"] == "any problem"]
    out: dict[str, Any] = {
        "n_pool": n_pool,
        "seeds": list(plan.seeds),
        "settings": [s.name for s in plan.settings],
        "methods": list(plan.methods),
        "base_size": base_size,
        "noise_fraction": noise_fraction,
        "images_embedded_or_looked_up": embedded,
        "method_seconds_mean": {k: float(v) for k, v in dict(seconds).items()},
        "auroc": {
            f"{r['setting']}/{r['method']}": {"mean": r["auroc_mean"], "std": r["auroc_std"], "runs": r["runs"]}
            for r in any_problem.to_dict("records")
        },
        "winners": {
            r["setting"]: {"winner": r["winner"], "margin": r["margin"], "kairos_minus_other": r["kairos_minus_other"]}
            for r in tables.winners.to_dict("records")
        },
    }
    if len(tables.downstream):
        out["downstream_accuracy"] = {
            f"{r['setting']}/{r['method']}/{r['policy']}": r["accuracy_mean"]
            for r in tables.downstream.to_dict("records")
        }
    return out
