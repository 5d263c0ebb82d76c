"""Stage ``benchmark``: how well each valuation method flags the injected problems.

Every method returns a value per pool sample (higher = more valuable); the benchmark ranks by
the negated value (lowest value = most suspicious) and scores that ranking against the ground
truth, per kind of problem (pixel noise, label flips, off-task images) and for all of them.
Methods see only embeddings and the labels a user has; the truth is used for scoring alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kairos_curate.config import PATHS, parse_list
from kairos_curate.data.scenario import load_scenario
from kairos_curate.evaluation import detection_curve, detection_metrics, mean_std
from kairos_curate.io import atomic_path, write_json
from kairos_curate.pipeline.embed import nearest_reference_distance
from kairos_curate.pipeline.value import aligned_embeddings

__all__ = ["METHODS", "problem_masks", "run"]

ValueFn = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int], np.ndarray]


def _kairos(label_mode: str | None) -> ValueFn:
    def method(pool: np.ndarray, ref: np.ndarray, y: np.ndarray, y_ref: np.ndarray, seed: int) -> np.ndarray:
        from kairos_curate.valuation import kairos_values

        res = kairos_values(pool, ref, "median", pool_labels=y, reference_labels=y_ref,
                            label_mode=label_mode, seed=seed)
        return np.asarray(res.values)

    return method


def _nearest_reference(pool: np.ndarray, ref: np.ndarray, y: np.ndarray, y_ref: np.ndarray, seed: int) -> np.ndarray:
    return -nearest_reference_distance(pool, ref)


def _random(pool: np.ndarray, ref: np.ndarray, y: np.ndarray, y_ref: np.ndarray, seed: int) -> np.ndarray:
    return np.asarray(np.random.default_rng(seed).random(pool.shape[0]))


def _knn_shapley(pool: np.ndarray, ref: np.ndarray, y: np.ndarray, y_ref: np.ndarray, seed: int) -> np.ndarray:
    from kairos_curate.valuation import knn_shapley

    return np.asarray(knn_shapley(pool, y, ref, y_ref, k=10))


METHODS: dict[str, tuple[ValueFn, bool]] = {
    # name: (value function, depends on the seed)
    "kairos_feature": (_kairos(None), False),
    "kairos_residual": (_kairos("residual"), False),
    "kairos_class_conditional": (_kairos("class_conditional"), False),
    "knn_shapley": (_knn_shapley, False),
    "nearest_reference": (_nearest_reference, False),
    "random": (_random, True),
}


def problem_masks(truth: pd.DataFrame) -> dict[str, np.ndarray]:
    """``{problem: (is_bad, included)}`` as stacked masks: each kind is scored against clean rows."""
    clean = ~truth["noisy"].to_numpy()
    kinds = {
        "any problem": truth["noisy"].to_numpy(),
        "pixel noise": (truth["corruption"] != "none").to_numpy(),
        "label flipped": truth["label_flipped"].to_numpy(),
        "off-task": truth["off_task"].to_numpy(),
    }
    return {name: np.stack([bad, bad | clean]) for name, bad in kinds.items() if bad.any()}


def run(params: dict[str, Any], root: str | Path = ".", progress: bool = True) -> dict[str, Any]:
    """Score every method on every problem kind; write tables, curves and metrics."""
    base = Path(root)
    scenario = load_scenario(base / PATHS.prepared, base / PATHS.truth)
    pool, ref = scenario.table("pool"), scenario.table("reference")
    truth = pool[["id"]].merge(scenario.truth, on="id", how="left")
    pool_x = aligned_embeddings(base / PATHS.embeddings / "pool.npz", pool["id"].to_numpy(dtype=str))
    ref_x = aligned_embeddings(base / PATHS.embeddings / "reference.npz", ref["id"].to_numpy(dtype=str))
    y, y_ref = pool["label"].to_numpy(), ref["label"].to_numpy()
    methods = parse_list(params["methods"], str, "benchmark.methods")
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"benchmark.methods: unknown {unknown}; known: {sorted(METHODS)}")
    seeds = [int(params["seed"]) + i for i in range(int(params["n_seeds"]))]
    masks = problem_masks(truth)

    rows, curves = [], {}
    for name in methods:
        fn, seeded = METHODS[name]
        for seed in seeds if seeded else seeds[:1]:
            start = time.perf_counter()
            values = fn(pool_x, ref_x, y, y_ref, seed)
            elapsed = time.perf_counter() - start
            suspicion = -values
            for problem, (bad, included) in masks.items():
                m = detection_metrics(suspicion[included], bad[included])
                rows.append({"method": name, "seed": seed, "problem": problem, "seconds": elapsed, **m})
            if seed == seeds[0]:
                curves[name] = detection_curve(suspicion, masks["any problem"][0])
    detail = pd.DataFrame(rows)
    summary_rows = []
    for (method, problem), group in detail.groupby(["method", "problem"], sort=False):
        row: dict[str, Any] = {"method": method, "problem": problem, "runs": len(group)}
        for metric in ("auroc", "average_precision", "precision_at_k_bad", "recall_at_k_bad", "seconds"):
            row[f"{metric}_mean"], row[f"{metric}_std"] = mean_std(group[metric])
        summary_rows.append(row)
    summary = pd.DataFrame(summary_rows)
    for name, frame in (("benchmark_detection_runs", detail), ("benchmark_detection", summary)):
        with atomic_path(base / PATHS.tables / f"{name}.csv") as tmp:
            frame.to_csv(tmp, index=False)
    curve_frame = pd.DataFrame([{"method": m, "inspected": x, "found": f}
                                for m, (xs, fs) in curves.items() for x, f in zip(xs, fs, strict=True)])
    with atomic_path(base / PATHS.tables / "benchmark_found_vs_inspected.csv") as tmp:
        curve_frame.to_csv(tmp, index=False)
    metrics = {"n_pool": len(pool), "n_bad": int(masks["any problem"][0].sum()), "seeds": seeds,
               "auroc": {f"{r['method']}/{r['problem']}": {"mean": r["auroc_mean"], "std": r["auroc_std"], "runs": r["runs"]}
                         for r in summary_rows}}
    write_json(base / PATHS.metrics / "benchmark.json", metrics)
    return {"detail": detail, "summary": summary, "curves": curves, "metrics": metrics}
