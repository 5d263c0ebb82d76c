"""The method comparison: downstream rows of a variant, and a tiny full run of the compare stage."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from kairos_curate.data.noise_settings import parse_setting
from kairos_curate.io import save_embeddings
from kairos_curate.selection import SelectionSpec
from kairos_curate.stages import compare
from kairos_curate.study.downstream import downstream_rows
from kairos_curate.valuation import ValuationResult

from ..fake_datasets import N_CLASSES, stand_in_features, synthetic_scenario

SELECTIONS = {
    name: SelectionSpec(name, name, {"drop_fraction": 0.5} if name == "herding" else {})
    for name in ("global", "per_class", "herding")
}


def test_downstream_rows_oracle_full_and_perfect_values(builder_and_calls):
    builder, _, sc = builder_and_calls
    v = builder.build(parse_setting("mix"), 0)
    ref = sc.table("reference")
    ref_x = stand_in_features(sc.pixels[sc.split_mask("reference")])
    seen: list[int] = []

    def probe(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        seen.append(x.shape[0])
        return {"accuracy": 1.0, "macro_f1": 1.0}

    perfect = -v.bad.astype(float)  # an ideal valuation: every bad row lowest
    rows = pd.DataFrame(
        downstream_rows(
            v,
            {"perfect": ValuationResult("perfect", perfect)},
            ref_x,
            ref["label"].to_numpy(),
            probe,
            budget=0.3,
            selections=SELECTIONS,
            random_draws=3,
            n_classes=N_CLASSES,
            seed=0,
        )
    )
    k = round(0.3 * v.y.size)
    assert rows.loc[rows["method"] == "perfect", "bad_share"].eq(0).all()
    assert (rows.loc[rows["method"] == "random_k", "k"] == k).all() and (rows["method"] == "random_k").sum() == 3
    oracle = rows[rows["method"].str.startswith("oracle")].iloc[0]
    assert oracle["bad_share"] == 0 and oracle["k"] == k
    full = rows[rows["method"] == "full pool"].iloc[0]
    assert full["k"] == v.y.size and full["bad_share"] == pytest.approx(v.bad.mean())
    assert rows["min_class_count"].min() >= 0 and len(seen) == len(rows)


def test_a_selection_with_its_own_method_runs_once_on_that_method(builder_and_calls):
    builder, _, sc = builder_and_calls
    v = builder.build(parse_setting("mix"), 0)
    ref = sc.table("reference")
    ref_x = stand_in_features(sc.pixels[sc.split_mask("reference")])
    specs = {
        "per_class": SELECTIONS["per_class"],
        "calibrated": SelectionSpec("calibrated", "gated_cover", {}, "kairos_calibrated"),
    }
    rows = pd.DataFrame(
        downstream_rows(
            v,
            {"a": ValuationResult("a", np.zeros(v.y.size)), "b": ValuationResult("b", np.ones(v.y.size))},
            ref_x,
            ref["label"].to_numpy(),
            lambda x, y: {"accuracy": 1.0, "macro_f1": 1.0},
            budget=0.3,
            selections=specs,
            random_draws=1,
            n_classes=N_CLASSES,
            seed=0,
            include_baselines=False,
        )
    )
    assert sorted(zip(rows["method"], rows["policy"], strict=True)) == [
        ("a", "per_class"),
        ("b", "per_class"),
        ("kairos_calibrated", "calibrated"),
    ]
    assert (rows["k"] == round(0.3 * v.y.size)).all()


# ----------------------------------------------------------------------------- tiny full run


def test_run_writes_every_declared_table(tmp_path, monkeypatch):
    sc = synthetic_scenario(1)
    sc.save(tmp_path / "data/prepared", tmp_path / "data/truth/truth.parquet")
    feats = stand_in_features(sc.pixels)
    for split in ("pool", "reference", "test"):
        m = sc.split_mask(split)
        save_embeddings(tmp_path / f"data/embeddings/{split}.npz", sc.samples.loc[m, "id"], feats[m])
    monkeypatch.setattr(compare, "cached_embedder", lambda params, base: lambda ids, px: stand_in_features(px))
    params = compare.load(
        {
            "compare": dict(
                methods=[
                    "kairos_feature",
                    "kairos_class_conditional",
                    "knn_shapley",
                    "lava",
                    "confident_learning",
                    "random",
                ],
                settings=["default", "gaussian_1", "flip_uniform_20", "off_task", "mix"],
                n_seeds=2,
                seed=0,
                base_size=90,
                noise_fraction=0.2,
                random_draws=2,
                downstream_settings=["default", "mix"],
                removal_setting="mix",
                removal_fractions=[0, 0.25],
                probe_dim=8,
                threads=1,
            ),
            "embed": dict(encoder="fake", image_size=8, batch_size=8, device="cpu"),
            "value": {
                "budget": 0.3,
                "selections": {
                    "global": {"policy": "global"},
                    "per_class": {"policy": "per_class"},
                    "herding": {"policy": "herding", "drop_fraction": 0.5},
                },
            },
        }
    )
    out = compare.run(params, root=tmp_path)
    tables = tmp_path / "reports/tables"
    det = pd.read_csv(tables / "compare_detection.csv")
    for col in (
        "method",
        "problem",
        "runs",
        "auroc_mean",
        "auroc_std",
        "average_precision_mean",
        "average_precision_std",
        "seconds_mean",
        "seconds_std",
    ):
        assert col in det.columns
    # deterministic methods run once on the default pool, seeded ones once per seed
    runs = det[det["problem"] == "any problem"].set_index("method")["runs"]
    assert runs["kairos_feature"] == 1 and runs["random"] == 2
    settings = pd.read_csv(tables / "compare_noise_settings.csv")
    assert set(settings["setting"]) == {
        "default",
        "gaussian_1",
        "flip_uniform_20",
        "off_task",
        "mix",
    }
    winners = pd.read_csv(tables / "compare_winners.csv")
    assert "random" not in set(winners["winner"]) and len(winners) == 5
    down = pd.read_csv(tables / "compare_downstream.csv")
    assert {"oracle_k (uses truth)", "full pool", "random_k"} <= set(down["method"])
    assert set(down["setting"]) == {"default", "mix"}
    removal = pd.read_csv(tables / "compare_point_removal.csv")
    assert set(removal["remove"]) == {"high", "low"}
    assert len(pd.read_csv(tables / "compare_found_vs_inspected.csv")) > 0
    metrics = json.loads((tmp_path / "reports/metrics/compare.json").read_text())
    assert metrics["settings"][0] == "default" and "default/kairos_feature" in metrics["auroc"]
    assert out["tables"].summary.shape[0] == det.shape[0]


def test_load_rejects_unknown_names_naming_the_key():
    from kairos_curate.config import ParamsError

    with pytest.raises(ParamsError, match=r"compare\.methods: unknown valuation method 'lavaa'"):
        compare.load({"compare": {"methods": ["kairos_feature", "lavaa"]}})
    with pytest.raises(ParamsError, match=r"value\.selections\.h\.policy: unknown selection policy"):
        compare.load({"value": {"selections": {"h": {"policy": "herd"}}}})
    with pytest.raises(ValueError, match=r"compare\.settings: cannot read 'gauss_3'"):
        compare.load({"compare": {"settings": ["default", "gauss_3"]}})


def test_plan_rejects_settings_it_does_not_run():
    from kairos_curate.study.comparison import ComparisonPlan

    with pytest.raises(ValueError, match="downstream_settings"):
        ComparisonPlan(
            methods=["kairos_feature"],
            settings=[parse_setting("default")],
            seeds=[0],
            downstream_settings=["mix"],
            removal_setting="default",
            removal_fractions=[0.0],
            selections=SELECTIONS,
            budget=0.2,
            random_draws=1,
        )
