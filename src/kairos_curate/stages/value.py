"""Stage ``value``: value every pool sample (the pool and its noisy variant) and make the named
selections of ``value.selections``.

Values come from ``value.method`` (``values.parquet``); a selection that names its own
``method`` (the primary ``calibrated``: ``gated_cover`` on ``kairos_calibrated``) is made from
that method's values, written next to them (``values_<method>.parquet``).

Reads only what a user has: embeddings and the pool's (possibly noisy) labels. The truth table
is not a dependency of this stage.

``engine`` (``params.yaml``) decides where the KAIROS methods compute: by default in this
process exactly as :func:`~kairos_curate.valuation.value` does; with ``engine.name: ray`` as
shard tasks on a Ray cluster (herding then runs one task per class there too), and above
``engine.sketch_above`` pool rows with the Nyström sketch (see :class:`EngineParams`).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from kairos_curate.config import PATHS
from kairos_curate.engine.valuation import value_routed
from kairos_curate.io import atomic_path, write_json
from kairos_curate.selection import select, subset_size
from kairos_curate.stages.inputs import load_prepared
from kairos_curate.stages.params import EngineParams, ValueParams, ValueStage, load_stage_params
from kairos_curate.stages.plugins import check_methods, selection_specs
from kairos_curate.valuation import ValuationInputs

__all__ = ["histogram_table", "load", "run"]


def load(params: Any = None) -> ValueStage:
    """The stage's parameters, validated (``None``: read ``params.yaml``), plug-ins checked."""
    stage = load_stage_params("value", params)
    check_methods({stage.value.method: stage.value.method_params}, "value.method")
    selection_specs(stage.value.selections)
    return stage


def run(params: ValueParams, root: str | Path = ".", engine: EngineParams | None = None) -> dict[str, Any]:
    """Value and select on the pool (``values.parquet``, ``selections.json``) and on the noisy
    pool (``*_noisy``) on ``engine`` (default: this process); write ``value.json``. Returns the
    outputs of both."""
    base, engine = Path(root), engine or EngineParams()
    runner: Any = None
    if engine.name == "ray":
        from kairos_curate.engine import get_engine

        runner = get_engine("ray", engine.ray_address, num_cpus=engine.num_cpus)
    try:
        out = _value_pool(params, base, "pool", "", engine, runner)
        noisy = _value_pool(params, base, "pool_noisy", "_noisy", engine, runner)
    finally:
        if runner is not None:
            runner.shutdown()  # only a local cluster this stage started
    metrics = {**out["metrics"], "noisy_pool": noisy["metrics"]}
    write_json(base / PATHS.metrics / "value.json", metrics)
    return {**out, "metrics": metrics, "noisy": noisy}


def _value_pool(
    params: ValueParams, base: Path, embeddings: str, suffix: str, engine: EngineParams, runner: Any
) -> dict[str, Any]:
    data = load_prepared(base, pool_embeddings=embeddings)  # no truth table: selection never sees it
    ids, labels, ref_labels = data.pool_ids, data.pool_labels, data.ref_labels
    inputs = ValuationInputs(data.pool_x, labels, data.ref_x, ref_labels, params.seed, ids=ids)
    class_names = data.scenario.table("pool")["class_name"].to_numpy()

    def value_with(method: str, method_params: dict[str, Any]) -> tuple[Any, str]:
        return value_routed(method, inputs, method_params, engine=engine, runner=runner, note=f"[{embeddings}]")

    result, path = value_with(params.method, params.method_params)
    frame = result.to_frame().reset_index()
    frame["class_name"] = class_names
    with atomic_path(base / PATHS.values / f"values{suffix}.parquet") as tmp:
        frame.to_parquet(tmp, index=False)

    k = subset_size(ids.size, frac=params.budget)
    selections: dict[str, Any] = {"k": k, "method": result.method, "bandwidth": result.info.get("bandwidth")}
    histograms = {}
    own: dict[str, Any] = {}  # a selection that names its own method is valued with it (once per method)
    for name, spec in selection_specs(params.selections).items():
        res = result
        if not spec.uses(params.method, params.method_params):
            assert spec.method is not None
            if spec.method not in own:
                own[spec.method] = value_with(spec.method, spec.method_params)[0]
                extra = own[spec.method].to_frame().reset_index()
                extra["class_name"] = class_names
                with atomic_path(base / PATHS.values / f"values{suffix}_{spec.method}.parquet") as tmp:
                    extra.to_parquet(tmp, index=False)
            res = own[spec.method]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # recorded in the selection and printed below instead
            chosen = select(
                res,
                k,
                policy=spec.policy_instance(),
                reference_labels=ref_labels,
                embeddings=data.pool_x,
                reference=data.ref_x,
                min_class_share=params.min_class_share,
                seed=params.seed,
                engine=runner,
            )
        for message in chosen.warnings:
            print(f"WARNING [{embeddings}, {name}]: {message}")
        selections[name] = {**chosen.to_dict(), "method": res.method}
        histograms[name] = {data.scenario.class_names[int(c)]: int(n) for c, n in chosen.class_counts.items()}
    write_json(base / PATHS.values / f"selections{suffix}.json", selections)
    metrics = {
        "method": result.method,
        "method_params": result.params,
        "bandwidth": result.info.get("bandwidth"),
        "label_mode": str(result.info.get("label_mode")),
        "k": k,
        "pool_size": int(ids.size),
        "value_seconds": result.seconds,
        "primary": params.primary,
        "engine": engine.name,
        "value_path": path,
        "selections": {
            name: {
                "policy": selections[name]["policy"],
                "method": selections[name]["method"],
                "smallest_class_count": min(hist.values()),
                "classes_missing": sum(1 for n in hist.values() if n == 0),
                "warnings": len(selections[name]["warnings"]),
            }
            for name, hist in histograms.items()
        },
    }
    return {"result": result, "frame": frame, "selections": selections, "histograms": histograms, "metrics": metrics}


def histogram_table(histograms: dict[str, dict[str, int]], reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """Class histogram of every selection side by side (plus the reference's counts)."""
    table = pd.DataFrame(histograms)
    if reference is not None:
        table.insert(0, "reference", reference["class_name"].value_counts().reindex(table.index).fillna(0).astype(int))
    return table
