"""The selection suite's part of the ``finetune`` stage: its plan from ``params.yaml``, its run and outputs.

:func:`suite_plan` turns the active profile of ``suite`` (with ``seeds`` and
``scenario.fashion_mnist``) into a :class:`~kairos_curate.study.selection_suite.SuitePlan`,
checking every scenario and every registered plug-in's parameters; :func:`run_suite` runs it with
the ``embed`` section's encoder (through the shared embedding cache) and the ``finetune``
section's backbone and hyper-parameters (stem outputs cached), and writes
``reports/tables/suite_*.csv`` and ``reports/metrics/suite.json``.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pandas as pd

from kairos_curate.config import PATHS, ParamsError
from kairos_curate.data.scenario_config import ScenarioConfig
from kairos_curate.io import atomic_path, write_json
from kairos_curate.stages.embedder import cached_embedder
from kairos_curate.stages.params import FinetuneStage
from kairos_curate.study.selection_suite import (
    FineTuner,
    SuitePlan,
    SuiteRuns,
    SuiteSelection,
    estimate_seconds,
    summarise_suite,
)
from kairos_curate.study.selection_suite import run_suite as run_suite_plan
from kairos_curate.training.backbones import load_backbone

__all__ = ["SUITE_TABLES", "run_suite", "suite_plan"]

#: Suite table -> file name under ``reports/tables``.
SUITE_TABLES = {
    "runs": "suite_runs",
    "summary": "suite_summary",
    "checks": "suite_checks",
    "ablations": "suite_ablations",
    "skipped": "suite_skipped",
    "setups": "suite_setups",
}


def suite_plan(params: FinetuneStage, *, check: bool = False) -> SuitePlan:
    """The selection suite's plan: the active profile of ``suite`` over the ``seeds``.

    With ``check``, every scenario is validated against ``scenario.fashion_mnist`` and every
    selection's method and policy parameters against their registries (for those registered).
    """
    suite, active = params.suite, params.suite.active(params.seeds)
    problems = []
    if check:
        for name, entry in suite.scenarios.items():
            try:
                fields = {**asdict(params.scenario.fashion_mnist), **entry.scenario}
                ScenarioConfig.from_params(
                    {k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()},
                    where=f"suite.scenarios.{name}.scenario",
                )
            except (ParamsError, ValueError) as err:
                problems.append(str(err))
    specs = {
        name: SuiteSelection.from_mapping(name, entry, primary=name == suite.primary)
        for name, entry in suite.selections.items()
    }
    for name, spec in specs.items() if check else ():  # every selection, also those of the other profile
        try:
            spec.check()
        except (ParamsError, ValueError) as err:
            problems.append(f"suite.selections.{name}: {err}")
    selections = {name: specs[name] for name in active["selections"]}
    if problems:
        raise ParamsError(problems)
    return SuitePlan(
        scenarios={n: (suite.scenarios[n].scenario, suite.scenarios[n].extra) for n in active["scenarios"]},
        seeds=active["seeds"],
        budgets=active["budgets"],
        selections=selections,
        evaluators=active["evaluators"],
        trials=active["trials"],
        primary=suite.primary,
        baseline=suite.baseline,
        ceiling=suite.ceiling,
        probe_dim=suite.probe_dim,
    )


def run_suite(params: FinetuneStage, root: str | Path = ".", *, log: Any = print) -> dict[str, Any]:
    """Run the selection suite's active profile; write ``reports/tables/suite_*.csv`` and ``suite.json``.

    ``suite.profile: disabled`` writes empty tables and says so in ``suite.json``.
    """
    import torch
    from threadpoolctl import threadpool_limits

    base, started, suite = Path(root), time.perf_counter(), params.suite
    plan = suite_plan(params)
    runs = SuiteRuns()
    if plan.scenarios:
        tuner = None
        if plan.fine_tuning:
            backbone = load_backbone(params.finetune.backbone, params.finetune.weights, params.finetune.image_size)
            configs = {
                m: replace(params.finetune.config(m), threads=suite.threads or params.finetune.config(m).threads)
                for m in plan.fine_tuning
            }
            tuner = FineTuner(
                backbone,
                configs,
                cache_dir=base / PATHS.finetune_cache,
                device=params.finetune.device,
                threads=suite.threads or None,
            )
        with ExitStack() as stack:
            if suite.threads:  # many small fits: one thread each avoids oversubscription
                previous = torch.get_num_threads()
                torch.set_num_threads(suite.threads)
                stack.callback(torch.set_num_threads, previous)
                stack.enter_context(threadpool_limits(suite.threads))
            runs = run_suite_plan(
                plan, params.scenario.fashion_mnist, cached_embedder(params.embed, base), tuner, log=log
            )
    frames = {
        "runs": pd.DataFrame(runs.runs),
        "setups": pd.DataFrame(runs.setups),
        "skipped": pd.DataFrame(runs.skipped, columns=["selection", "method", "policy", "role", "reason"]),
    }
    tables = summarise_suite(frames["runs"], plan)
    frames.update(summary=tables.summary, checks=tables.checks, ablations=tables.ablations)
    for attr, name in SUITE_TABLES.items():
        with atomic_path(base / PATHS.tables / f"{name}.csv") as tmp:
            frames[attr].to_csv(tmp, index=False)
    seconds = time.perf_counter() - started
    metrics: dict[str, Any] = {
        "profile": suite.profile,
        "scenarios": list(plan.scenarios),
        "seeds": {k: list(v) for k, v in plan.seeds.items()},
        "budgets": list(plan.budgets),
        "selections": list(plan.selections),
        "evaluators": list(plan.evaluators),
        "trials": plan.trials,
        "primary": plan.primary,
        "baseline": plan.baseline,
        "ceiling": plan.ceiling,
        "skipped": {r["selection"]: r["reason"] for r in runs.skipped},
        "seconds": seconds,
        "stem_outputs_cached": bool(plan.fine_tuning),
        "runs": len(runs.runs),
    }
    if runs.runs:
        # The full profile's cost from this run's per-run costs (all selections, as if registered).
        metrics["estimated_full_seconds"] = estimate_seconds(
            frames["runs"],
            frames["setups"],
            scenarios=len(suite.scenarios),
            seeds=len(params.seeds.development) + len(params.seeds.held_out),
            budgets=suite.budgets,
            selections=len(suite.selections),
            evaluators=suite.evaluators,
            trials=suite.trials,
        )
        metrics["checks"] = {
            f"{r['split']}/{r['scenario']}/{r['budget']}/{r['evaluator']}/{r['against']}": {
                "margin": r["margin"],
                "combined_std": r["combined_std"],
                "wins": bool(r["wins"]),
            }
            for r in tables.checks.to_dict("records")
        }
    write_json(base / PATHS.metrics / "suite.json", metrics)
    return {"plan": plan, **frames, "metrics": metrics}
