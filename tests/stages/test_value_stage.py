"""The value stage on a synthetic prepared pool: a selection that names its own valuation method
(the primary ``calibrated``) is made from that method's values, written next to the others."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from kairos_curate.io import save_embeddings
from kairos_curate.stages import value

from ..fake_datasets import stand_in_features, synthetic_scenario


def test_the_primary_selection_values_with_its_own_method(tmp_path):
    sc = synthetic_scenario(1)
    sc.save(tmp_path / "data/prepared", tmp_path / "data/truth/truth.parquet")
    feats = stand_in_features(sc.pixels)
    for split in ("pool", "reference"):
        m = sc.split_mask(split)
        save_embeddings(tmp_path / f"data/embeddings/{split}.npz", sc.samples.loc[m, "id"], feats[m])
    m = sc.split_mask("pool")
    noisy = feats[m] + 0.01 * np.random.default_rng(0).normal(size=feats[m].shape)
    save_embeddings(tmp_path / "data/embeddings/pool_noisy.npz", sc.samples.loc[m, "id"], noisy)
    params = value.load({"value": {"budget": 0.3}}).value  # the defaults: primary = calibrated
    assert params.primary == "calibrated"
    out = value.run(params, root=tmp_path)
    selections = json.loads((tmp_path / "data/values/selections.json").read_text())
    assert selections["method"] == "kairos_class_conditional"
    assert {n: selections[n]["method"] for n in ("global", "per_class", "herding", "calibrated")} == {
        "global": "kairos_class_conditional",
        "per_class": "kairos_class_conditional",
        "herding": "kairos_class_conditional",
        "calibrated": "kairos_calibrated",
    }
    cal = selections["calibrated"]
    assert cal["policy"] == "gated_cover" and len(cal["ids"]) == selections["k"]
    assert cal["info"]["gate_kept"] and cal["eligible"] <= sum(cal["info"]["gate_kept"].values())
    frame = pd.read_parquet(tmp_path / "data/values/values_kairos_calibrated.parquet")
    assert {"p_feature", "p_label", "value", "class_name"} <= set(frame.columns)
    assert (tmp_path / "data/values/values_noisy_kairos_calibrated.parquet").exists()
    metrics = json.loads((tmp_path / "reports/metrics/value.json").read_text())
    assert metrics["primary"] == "calibrated" and metrics["selections"]["calibrated"]["method"] == "kairos_calibrated"
    assert out["noisy"]["selections"]["calibrated"]["method"] == "kairos_calibrated"
