"""Stage ``value``: KAIROS values of every pool sample and the curated selections.

Reads only what a user has: pool and reference embeddings and the pool's (possibly noisy)
labels. The ground-truth table is not a dependency of this stage.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from kairos_curate.config import PATHS, none_if_default, parse_bandwidth, parse_list
from kairos_curate.data.scenario import load_scenario
from kairos_curate.io import atomic_path, load_embeddings, write_json

__all__ = ["aligned_embeddings", "run"]


def aligned_embeddings(path: Path, ids: np.ndarray) -> np.ndarray:
    """Embedding rows of ``path`` in the order of ``ids`` (error if any id is missing)."""
    file_ids, matrix = load_embeddings(path)
    index = {sid: i for i, sid in enumerate(file_ids.tolist())}
    missing = [sid for sid in ids.tolist() if sid not in index]
    if missing:
        raise ValueError(f"{path} lacks embeddings for {len(missing)} samples (e.g. {missing[:3]}); "
                         "rerun `dvc repro embed`")
    return matrix[[index[sid] for sid in ids.tolist()]]


def run(params: dict[str, Any], root: str | Path = ".", progress: bool = True) -> dict[str, Any]:
    """Value the pool and its noisy variant, select with each policy, write values, selections, metrics.

    Outputs for the pool: ``values.parquet``, ``selections.json``; for the noisy variant (same ids,
    extra pixel noise): ``values_noisy.parquet``, ``selections_noisy.json``.
    """
    base = Path(root)
    out = _value_pool(params, base, "pool", "", progress)
    noisy = _value_pool(params, base, "pool_noisy", "_noisy", progress)
    metrics = {**out["metrics"], "noisy_pool": noisy["metrics"]}
    write_json(base / PATHS.metrics / "value.json", metrics)
    return {**out, "metrics": metrics, "noisy": noisy}


def _value_pool(params: dict[str, Any], base: Path, embedding_name: str, suffix: str,
                progress: bool) -> dict[str, Any]:
    from kairos_curate.valuation import kairos_values, select

    scenario = load_scenario(base / PATHS.prepared)  # no truth table: selection never sees it
    pool, ref = scenario.table("pool"), scenario.table("reference")
    pool_ids = pool["id"].to_numpy(dtype=str)
    pool_x = aligned_embeddings(base / PATHS.embeddings / f"{embedding_name}.npz", pool_ids)
    ref_x = aligned_embeddings(base / PATHS.embeddings / "reference.npz", ref["id"].to_numpy(dtype=str))
    label_mode = none_if_default(params.get("label_mode"))
    seed = int(params["seed"])

    start = time.perf_counter()
    result = kairos_values(pool_x, ref_x, parse_bandwidth(params["bandwidth"], "value.bandwidth"),
                           pool_labels=pool["label"].to_numpy(), reference_labels=ref["label"].to_numpy(),
                           label_mode=label_mode, lam=float(params["lam"]), seed=seed, progress=progress)
    value_seconds = time.perf_counter() - start
    frame = result.to_frame(pool_ids).reset_index()
    frame["class_name"] = frame["id"].map(dict(zip(pool["id"], pool["class_name"], strict=True)))
    with atomic_path(base / PATHS.values / f"values{suffix}.parquet") as tmp:
        frame.to_parquet(tmp, index=False)

    k = max(1, round(float(params["top_frac"]) * pool_ids.size))
    selections: dict[str, Any] = {"k": k, "label_mode": label_mode or "none", "bandwidth": result.bandwidth}
    histograms = {}
    for policy in parse_list(params["policies"], str, "value.policies"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # recorded in the selection and printed below instead
            chosen = select(result, k, policy=policy, labels=pool["label"].to_numpy(), ids=pool_ids,
                            reference_labels=ref["label"].to_numpy(), embeddings=pool_x, reference=ref_x,
                            min_class_share=float(params["min_class_share"]), seed=seed,
                            # herding alone ignores the values; dropping each class's lowest-valued
                            # fraction first is what makes it a KAIROS selection
                            drop_fraction=float(params.get("herding_drop", 0.0)) if policy == "herding" else 0.0)
        for message in chosen.warnings:
            print(f"WARNING [{embedding_name}, {policy}]: {message}")
        selections[policy] = chosen.to_dict()
        histograms[policy] = {scenario.class_names[int(c)]: int(n) for c, n in chosen.class_counts.items()}
    write_json(base / PATHS.values / f"selections{suffix}.json", selections)

    metrics = {
        "bandwidth": result.bandwidth, "label_mode": label_mode or "none", "k": k, "pool_size": int(pool_ids.size),
        "value_seconds": value_seconds,
        "selections": {policy: {
            "smallest_class_count": min(hist.values()),
            "classes_missing": sum(1 for n in hist.values() if n == 0),
            "warnings": len(selections[policy]["warnings"]),
        } for policy, hist in histograms.items()},
    }
    return {"result": result, "frame": frame, "selections": selections, "histograms": histograms,
            "metrics": metrics}


def histogram_table(histograms: dict[str, dict[str, int]], reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """Class histogram of every selection side by side (plus the reference's counts)."""
    table = pd.DataFrame(histograms)
    if reference is not None:
        table.insert(0, "reference", reference["class_name"].value_counts().reindex(table.index).fillna(0).astype(int))
    return table
