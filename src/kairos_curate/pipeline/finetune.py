"""Stage ``finetune``: train on Full / Random / KAIROS-curated / oracle subsets, 3 trials each.

Leakage rules (tested): pool, reference and test share no id and no image (content hash); the reference
is never trained on nor evaluated on; every split of a run is drawn from the selected pool rows
only. The oracle row is the only one that reads the ground truth, and it is labelled so.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from kairos_curate.config import PATHS, none_if_default, parse_list
from kairos_curate.data.scenario import Scenario, load_pool_variant, load_scenario
from kairos_curate.data.sources import ArrayImageSource, FileImageSource, ImageSource
from kairos_curate.evaluation import mean_std
from kairos_curate.io import atomic_path, write_json
from kairos_curate.training.backbones import load_backbone
from kairos_curate.training.finetune import FinetuneConfig, compute_stem_features, train_run

__all__ = ["build_subsets", "check_no_leakage", "run", "summarise", "top_fraction_per_class"]

METRICS = ("accuracy", "macro_f1", "auc", "train_time_s")


def check_no_leakage(scenario: Scenario) -> None:
    """Raise if two of pool, reference and test share an id or an image (by content hash)."""
    ids = {split: set(scenario.table(split)["id"]) for split in ("pool", "reference", "test")}
    for a, b in (("test", "pool"), ("test", "reference"), ("reference", "pool")):
        shared = ids[a] & ids[b]
        if shared:
            raise RuntimeError(f"leakage: {len(shared)} ids in both {a} and {b}, e.g. {sorted(shared)[:3]}")
    hashes = {split: set(scenario.content_hashes(split).tolist()) for split in ("pool", "reference", "test")}
    for a, b in (("test", "pool"), ("test", "reference"), ("reference", "pool")):
        if hashes[a] & hashes[b]:
            raise RuntimeError(f"leakage: {len(hashes[a] & hashes[b])} image(s) appear (by content hash) "
                               f"in both {a} and {b}")


def build_subsets(configs: Sequence[str], selections: dict[str, Any], pool_ids: np.ndarray, k: int,
                  random_draws: int, seed: int, truth: pd.DataFrame | None) -> dict[str, list[np.ndarray]]:
    """Pool row indices of every training subset: ``{config: [subset per draw]}``.

    ``full`` is the whole pool; ``random`` draws ``k`` rows ``random_draws`` times;
    ``kairos_<policy>`` is the value stage's selection with that policy; ``oracle`` draws ``k``
    rows among the truly clean ones (ground truth, for the ceiling only).
    """
    index = {sid: i for i, sid in enumerate(pool_ids.tolist())}
    rng = np.random.default_rng(seed)
    subsets: dict[str, list[np.ndarray]] = {}
    for name in configs:
        if name == "full":
            subsets[name] = [np.arange(pool_ids.size)]
        elif name == "random":
            subsets[name] = [np.sort(rng.choice(pool_ids.size, size=k, replace=False)) for _ in range(random_draws)]
        elif name.startswith("kairos_"):
            policy = name.removeprefix("kairos_")
            if policy not in selections:
                raise ValueError(f"finetune config {name!r}: the value stage made no {policy!r} selection "
                                 f"(value.policies has {sorted(selections)})")
            subsets[name] = [np.asarray([index[i] for i in selections[policy]["ids"]], dtype=np.int64)]
        elif name == "oracle":
            if truth is None:
                raise ValueError("the oracle config needs the truth table")
            clean = truth.set_index("id").loc[pool_ids, "noisy"].to_numpy() == False  # noqa: E712
            subsets[name] = [np.sort(rng.choice(np.flatnonzero(clean), size=min(k, int(clean.sum())), replace=False))]
        else:
            raise ValueError(f"unknown finetune config {name!r}; use full, random, kairos_<policy> or oracle")
    return subsets


def changed_rows(pool: ImageSource, variant: ImageSource) -> np.ndarray:
    """Rows whose image differs between the pool and a variant of it (same ids, same order)."""
    if isinstance(pool, ArrayImageSource) and isinstance(variant, ArrayImageSource):
        return np.flatnonzero((variant.pixels != pool.pixels).reshape(len(pool), -1).any(axis=1))
    if isinstance(pool, FileImageSource) and isinstance(variant, FileImageSource):
        # A variant points unchanged rows at the pool's own files; compare bytes only where not.
        return np.asarray([i for i, (a, b) in enumerate(zip(pool.paths, variant.paths, strict=True))
                           if a != b and pool.content_hash(i) != variant.content_hash(i)], dtype=np.int64)
    return np.asarray([i for i in range(len(pool)) if pool.content_hash(i) != variant.content_hash(i)],
                      dtype=np.int64)


def _variant_features(backbone: Any, pool_features: torch.Tensor, pool: ImageSource, variant: Any,
                      device: str) -> torch.Tensor:
    """Stem outputs of a pool variant: recomputed for the changed images, reused for the rest.

    Exact, because the stem is frozen and in eval mode: an unchanged image has the same output.
    """
    changed = changed_rows(pool, variant)
    out = pool_features.clone()
    if changed.size:
        out[torch.from_numpy(changed)] = compute_stem_features(backbone, variant.subset(changed), device=device,
                                                               progress=False)
    return out


def top_fraction_per_class(ordered: np.ndarray, labels: np.ndarray, fraction: float) -> np.ndarray:
    """The first ``fraction`` of each class's rows in ``ordered`` (best first), classes kept in proportion.

    A selection stores its rows best-first, but per-class and herding selections list one class
    after another, so a plain prefix would train on the first classes only.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"finetune.size_fractions must be in (0, 1], got {fraction}")
    rows = np.asarray(ordered, dtype=np.int64)
    keep = np.zeros(rows.size, dtype=bool)
    for label in np.unique(labels[rows]):
        members = np.flatnonzero(labels[rows] == label)
        keep[members[: max(1, round(fraction * members.size))]] = True
    return rows[keep]


def summarise(runs: pd.DataFrame, by: Sequence[str] = ("config", "method")) -> pd.DataFrame:
    """Mean and std (ddof=1) of every metric over trials (and random draws), one row per group."""
    rows = []
    for key, group in runs.groupby(list(by), sort=False):
        row: dict[str, Any] = dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True))
        row["runs"] = len(group)
        row["n_selected"] = int(group["n_selected"].iloc[0])
        for metric in METRICS:
            row[f"{metric}_mean"], row[f"{metric}_std"] = mean_std(group[metric])
        row["trainable_params"] = int(group["trainable_params"].iloc[0])
        rows.append(row)
    return pd.DataFrame(rows)


def poster_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The poster's table: Config, Method, N, runs and every metric as ``mean ± std`` strings."""
    out = pd.DataFrame({"Config": summary["config"].to_numpy(), "Method": summary["method"].to_numpy(),
                        "N": summary["n_selected"].astype(int).to_numpy(), "runs": summary["runs"].to_numpy()})
    for metric, label, fmt in (("accuracy", "Accuracy", "{:.3f}"), ("macro_f1", "F1 (macro)", "{:.3f}"),
                               ("auc", "AUC (OvR)", "{:.3f}"), ("train_time_s", "Train time (s)", "{:.2f}")):
        out[label] = [f"{fmt.format(m)} ± {fmt.format(s)}"
                      for m, s in zip(summary[f"{metric}_mean"], summary[f"{metric}_std"], strict=True)]
    return out


def run(params: dict[str, Any], root: str | Path = ".", progress: bool = True) -> dict[str, Any]:
    """Run the experiment grid; write run rows, the summary and ``reports/metrics/finetune.json``."""
    base = Path(root)
    scenario = load_scenario(base / PATHS.prepared, base / PATHS.truth)
    check_no_leakage(scenario)
    selections = json.loads((base / PATHS.values / "selections.json").read_text())
    methods = parse_list(params["methods"], str, "finetune.methods")
    configs = parse_list(params["configs"], str, "finetune.configs")
    sweep = parse_list(params.get("size_fractions", ""), float, "finetune.size_fractions")
    sweep_config = str(params.get("sweep_config", "kairos_per_class"))
    trials, seed = int(params["trials"]), int(params["seed"])

    pool_table, test_table = scenario.table("pool"), scenario.table("test")
    pool_ids = pool_table["id"].to_numpy(dtype=str)
    labels, test_labels = pool_table["label"].to_numpy(), test_table["label"].to_numpy()
    num_classes = len(scenario.class_names)
    k = int(selections["k"])
    subsets = build_subsets(configs, selections, pool_ids, k, int(params["random_draws"]), seed, scenario.truth)
    if sweep:
        if sweep_config not in subsets:
            raise ValueError(f"finetune.sweep_config {sweep_config!r} is not in finetune.configs")
        ordered = subsets[sweep_config][0]  # selections are stored best-first
        for frac in sweep:
            subsets[f"sweep:{frac:g}"] = [top_fraction_per_class(ordered, labels, frac)]

    backbone = load_backbone(str(params["backbone"]), none_if_default(params.get("weights")),
                             int(params["image_size"]))
    cache = base / PATHS.finetune_cache
    features = compute_stem_features(backbone, scenario.source("pool"), cache_dir=cache, progress=progress,
                                     desc="stem features (pool)", device=str(params.get("device", "auto")))
    test_features = compute_stem_features(backbone, scenario.source("test"), cache_dir=cache, progress=progress,
                                          desc="stem features (test)", device=str(params.get("device", "auto")))

    # The sizes sweep trains with the first method only; it traces one curve, not the whole grid.
    pools = {name: features for name in subsets}
    noisy_configs = parse_list(params.get("noisy_configs", ""), str, "finetune.noisy_configs")
    if noisy_configs:
        # Robustness to noise: the same pool with extra pixel noise, curated by its own valuation.
        variant = load_pool_variant(base / PATHS.noisy_pool, base / PATHS.noisy_truth)
        if not np.array_equal(variant.ids, pool_ids):
            raise ValueError(f"{base / PATHS.noisy_pool} does not match the pool; rerun `dvc repro prepare`")
        noisy_selections = json.loads((base / PATHS.values / "selections_noisy.json").read_text())
        noisy_features = _variant_features(backbone, features, scenario.source("pool"), variant.source(),
                                           str(params.get("device", "auto")))
        for name, draws in build_subsets(noisy_configs, noisy_selections, pool_ids, k, int(params["random_draws"]),
                                         seed, variant.truth).items():
            subsets[f"noisy:{name}"] = draws
            pools[f"noisy:{name}"] = noisy_features

    jobs = [(name, draw, rows, method, trial) for name, draws in subsets.items()
            for draw, rows in enumerate(draws)
            for method in (methods[:1] if name.startswith("sweep:") else methods) for trial in range(trials)]
    records = []
    for name, draw, rows, method, trial in tqdm(jobs, desc="fine-tuning runs", disable=not progress, unit="run"):
        config = FinetuneConfig(method=method, lora_rank=int(params["lora_rank"]), lora_alpha=int(params["lora_alpha"]),
                                lora_dropout=float(params["lora_dropout"]), lora_targets=str(params["lora_targets"]),
                                epochs=int(params["epochs"]), batch_size=int(params["batch_size"]),
                                learning_rate=float(params["learning_rate"]), device=str(params.get("device", "auto")))
        result = train_run(backbone, pools[name], labels, rows, test_features, test_labels, num_classes, config,
                           seed=seed + 1000 * draw + trial)
        records.append({"config": name, "method": method, "draw": draw, "trial": trial,
                        "n_selected": int(rows.size), "uses_ground_truth": name == "oracle", **result.as_dict()})
    runs = pd.DataFrame(records)
    main = runs[~runs["config"].str.startswith("sweep:")]
    summary = summarise(main)
    sweep_summary = summarise(runs[runs["config"].str.startswith("sweep:")]) if sweep else pd.DataFrame()
    tables = base / PATHS.tables
    for name, frame in (("finetune_runs", runs), ("finetune_summary", summary), ("finetune_sweep", sweep_summary)):
        with atomic_path(tables / f"{name}.csv") as tmp:
            frame.to_csv(tmp, index=False)
    metrics: dict[str, Any] = {
        "k": k, "pool_size": int(pool_ids.size), "trials": trials, "random_draws": int(params["random_draws"]),
        "trained_layers": backbone.cut, "stem_outputs_cached": True, "backbone": backbone.name,
        "results": {f"{r['config']}/{r['method']}": {m: {"mean": r[f"{m}_mean"], "std": r[f"{m}_std"]} for m in METRICS}
                    for r in summary.to_dict("records")},
    }
    write_json(base / PATHS.metrics / "finetune.json", metrics)
    return {"runs": runs, "summary": summary, "sweep": sweep_summary, "metrics": metrics}
