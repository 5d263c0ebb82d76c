"""The ``engine`` section: validated strictly, and the value stage's default path unchanged."""

from __future__ import annotations

import json

import numpy as np
import pytest

from kairos_curate.config import PATHS, ParamsError
from kairos_curate.stages.params import EngineParams, load_stage_params

from ..fake_datasets import make_value_project


def test_engine_defaults_are_the_single_process_path():
    for stage in ("embed", "value"):
        engine = load_stage_params(stage, {}).engine
        assert engine == EngineParams() and engine.name == "local" and engine.ray_address is None
    assert EngineParams().value_path("kairos", 10**9) == "local"


def test_engine_params_reject_bad_values():
    with pytest.raises(ParamsError, match=r"engine\.name"):
        load_stage_params("value", {"engine": {"name": "spark"}})
    with pytest.raises(ParamsError, match=r"engine\.nodes: unknown key"):
        load_stage_params("value", {"engine": {"nodes": 3}})
    with pytest.raises(ParamsError, match=r"engine\.shard_size"):
        load_stage_params("value", {"engine": {"shard_size": 0}})
    with pytest.raises(ParamsError, match=r"engine\.num_cpus"):
        load_stage_params("embed", {"engine": {"num_cpus": "2"}})
    with pytest.raises(ParamsError, match="set name: ray"):
        load_stage_params("value", {"engine": {"ray_address": "auto"}})
    ray = load_stage_params("embed", {"engine": {"name": "ray", "ray_address": "auto", "num_actors": 2}}).engine
    assert ray.name == "ray" and ray.ray_address == "auto" and ray.num_actors == 2


def test_value_path_follows_engine_and_pool_size():
    assert EngineParams(name="ray").value_path("kairos", 10) == "exact"
    assert EngineParams(name="ray").value_path("baseline", 10) == "local"  # no distributed baseline
    sketch = EngineParams(sketch_above=100)
    assert sketch.value_path("kairos", 100) == "local" and sketch.value_path("kairos", 101) == "nystrom"
    assert EngineParams(name="ray", sketch_above=100).value_path("kairos", 101) == "nystrom"


def test_value_stage_default_engine_is_todays_path(tmp_path):
    """engine: local (the default) gives exactly what `value()` gives; sketch_above switches to
    the Nyström sketch, which keeps the ranking on this small pool."""
    from scipy.stats import spearmanr

    from kairos_curate.stages import value as stage
    from kairos_curate.stages.inputs import load_prepared
    from kairos_curate.valuation import ValuationInputs, value

    make_value_project(tmp_path)
    params = stage.load({"value": {"method_params": {"bandwidth": 1.5}}}).value
    out = stage.run(params, tmp_path)
    data = load_prepared(tmp_path)
    direct = value(
        params.method,
        ValuationInputs(data.pool_x, data.pool_labels, data.ref_x, data.ref_labels, params.seed, ids=data.pool_ids),
        params.method_params,
    )
    assert np.array_equal(out["result"].values, direct.values)
    assert out["metrics"]["engine"] == "local" and out["metrics"]["value_path"] == "local"
    sketched = stage.run(params, tmp_path, engine=EngineParams(sketch_above=50, landmarks=60, shard_size=40))
    assert sketched["metrics"]["value_path"] == "nystrom"
    assert sketched["result"].method == params.method and sketched["result"].params == direct.params
    assert spearmanr(sketched["result"].values, direct.values)[0] > 0.95
    written = json.loads((tmp_path / PATHS.metrics / "value.json").read_text())
    assert written["value_path"] == "nystrom" and written["noisy_pool"]["value_path"] == "nystrom"
