"""The benchmark stage: noise-setting variants, downstream rows, evaluation helpers, a tiny full run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from kairos_curate.data.scenario import Scenario
from kairos_curate.evaluation import probe_metrics, removal_curve, winner_table
from kairos_curate.io import save_embeddings
from kairos_curate.pipeline import benchmark
from kairos_curate.pipeline.benchmark import (
    VariantBuilder,
    downstream_rows,
    parse_setting,
    problem_masks,
)

N_CLASSES = 3


def _features(pixels: np.ndarray) -> np.ndarray:
    """A stand-in encoder: flattened pixels scaled to [0, 1] (deterministic, content-sensitive)."""
    return pixels.reshape(pixels.shape[0], -1).astype(np.float32) / 255.0


def _scenario(seed: int = 0) -> Scenario:
    """3 task classes with distinct 6x6 patterns; off-task images carry label 0; some pool noise/flips."""
    rng = np.random.default_rng(seed)
    patterns = rng.integers(0, 256, size=(N_CLASSES + 1, 6, 6))

    def draw(cls: np.ndarray) -> np.ndarray:
        return np.clip(patterns[cls] + rng.normal(0, 12, size=(cls.size, 6, 6)), 0, 255).astype(
            np.uint8
        )

    pool_cls = np.r_[np.repeat(np.arange(N_CLASSES), 40), np.full(24, N_CLASSES)]
    ref_cls, test_cls = np.repeat(np.arange(N_CLASSES), 8), np.repeat(np.arange(N_CLASSES), 10)
    pool_px, ref_px, test_px = draw(pool_cls), draw(ref_cls), draw(test_cls)
    off = pool_cls == N_CLASSES
    shown = np.where(off, 0, pool_cls)
    corrupt = np.zeros(pool_cls.size, dtype=object)
    corrupt[:] = "none"
    corrupt[[0, 41, 82]] = "gaussian_noise"
    pool_px[[0, 41, 82]] = rng.integers(0, 256, size=(3, 6, 6))
    flipped = np.zeros(pool_cls.size, dtype=bool)
    flipped[[5, 50]] = True
    shown[[5, 50]] = (shown[[5, 50]] + 1) % N_CLASSES
    ids = (
        [f"p{i:03d}" for i in range(pool_cls.size)]
        + [f"r{i:03d}" for i in range(ref_cls.size)]
        + [f"t{i:03d}" for i in range(test_cls.size)]
    )
    samples = pd.DataFrame(
        {
            "id": ids,
            "split": ["pool"] * pool_cls.size
            + ["reference"] * ref_cls.size
            + ["test"] * test_cls.size,
            "label": np.r_[shown, ref_cls, test_cls].astype(np.int64),
        }
    )
    samples["class_name"] = samples["label"].map(lambda c: f"c{c}")
    samples["source"] = "synthetic"
    truth = pd.DataFrame(
        {
            "id": ids[: pool_cls.size],
            "off_task": off,
            "origin": "x",
            "true_label": np.where(off, -1, pool_cls).astype(np.int64),
            "label_flipped": flipped,
            "corruption": corrupt.astype(str),
            "severity": np.where(corrupt != "none", 1.0, 0.0),
        }
    )
    truth["noisy"] = truth["off_task"] | truth["label_flipped"] | (truth["corruption"] != "none")
    return Scenario(
        samples=samples,
        pixels=np.concatenate([pool_px, ref_px, test_px]),
        truth=truth,
        class_names=[f"c{i}" for i in range(N_CLASSES)],
        info={"severity_unit_pixel_std": 80.0},
    )


@pytest.fixture
def builder_and_calls():
    sc = _scenario()
    calls: list[np.ndarray] = []

    def embed(ids: np.ndarray, pixels: np.ndarray) -> np.ndarray:
        calls.append(np.asarray(ids))
        return _features(pixels)

    split = {s: sc.split_mask(s) for s in ("pool", "reference", "test")}
    feats = _features(sc.pixels)
    builder = VariantBuilder(
        sc,
        feats[split["pool"]],
        feats[split["reference"]],
        feats[split["test"]],
        embed,
        base_size=90,
        noise_fraction=0.2,
    )
    return builder, calls, sc


def test_parse_setting_known_forms_and_errors():
    assert parse_setting("gaussian_0.5").level == 0.5
    assert parse_setting("motion_blur_5").family == "motion_blur"
    spec = parse_setting("flip_confusable_20")
    assert (spec.family, spec.mode, spec.level) == ("flip", "confusable", 20.0)
    for bad in ("gaussian_x", "flip_uniform_0", "flip_sideways_10", "blur"):
        with pytest.raises(ValueError, match=r"benchmark\.settings"):
            parse_setting(bad)


def test_problem_masks_score_each_kind_against_clean_rows():
    kind = np.array(["clean", "clean", "pixel noise", "off-task", "clean"])
    masks = problem_masks(kind)
    assert set(masks) == {"any problem", "pixel noise", "off-task"}
    bad, included = masks["off-task"]
    assert included.tolist() == [True, True, False, True, True] and bad[included].sum() == 1
    assert set(problem_masks(np.array(["clean", "label flipped"]))) == {"any problem"}


def test_base_excludes_pixel_noise_and_off_task_and_restores_true_labels(builder_and_calls):
    builder, _, sc = builder_and_calls
    truth = sc.truth
    assert not truth["off_task"].to_numpy()[builder.base_rows].any()
    assert (truth["corruption"].to_numpy()[builder.base_rows] == "none").all()
    v = builder.build(parse_setting("flip_uniform_10"), 0)
    pool_ids = sc.table("pool")["id"].to_numpy()
    rows = np.searchsorted(pool_ids, v.ids)
    clean = v.kind == "clean"
    assert_allclose(
        v.y[clean], truth["true_label"].to_numpy()[rows][clean]
    )  # flipped base rows restored


def test_pixel_setting_embeds_only_the_corrupted_rows(builder_and_calls):
    builder, calls, sc = builder_and_calls
    v = builder.build(parse_setting("gaussian_1"), 0)
    bad = v.kind == "pixel noise"
    assert bad.sum() == round(0.2 * 90) == v.embedded
    assert len(calls) == 1 and sorted(calls[0].tolist()) == sorted(v.ids[bad].tolist())
    pool_ids = sc.table("pool")["id"].to_numpy()
    rows = np.searchsorted(pool_ids, v.ids)
    assert_allclose(v.x[~bad], builder.pool_x[rows[~bad]])
    assert not np.isclose(v.x[bad], builder.pool_x[rows[bad]]).all(axis=1).any()
    again = builder.build(parse_setting("gaussian_1"), 0)
    assert_allclose(again.x, v.x) and np.array_equal(again.kind, v.kind)
    assert not np.array_equal(builder.build(parse_setting("gaussian_1"), 1).ids, v.ids)


def test_label_settings_change_no_pixels_and_follow_the_confusion_map(builder_and_calls):
    builder, calls, _ = builder_and_calls
    uniform = builder.build(parse_setting("flip_uniform_40"), 2)
    assert (uniform.kind == "label flipped").sum() == 36 and not calls
    conf = builder.build(parse_setting("flip_confusable_20"), 2)
    flipped = conf.kind == "label flipped"
    pool_ids = builder.pool["id"].to_numpy()
    true = builder.true_label[np.searchsorted(pool_ids, conf.ids)]
    assert flipped.sum() == 18
    assert all(conf.y[i] == builder.confusion[int(true[i])] for i in np.flatnonzero(flipped))
    assert (conf.y[~flipped] == true[~flipped]).all()


def test_off_task_and_mix_settings(builder_and_calls):
    builder, _, sc = builder_and_calls
    off = builder.build(parse_setting("off_task"), 0)
    assert (off.kind == "off-task").sum() == round(0.2 / 0.8 * 90)
    offtask_ids = set(sc.truth.loc[sc.truth["off_task"], "id"])
    assert set(off.ids[off.kind == "off-task"]) <= offtask_ids
    assert not set(off.ids[off.kind != "off-task"]) & offtask_ids
    mix = builder.build(parse_setting("mix"), 0)
    kinds = set(mix.kind.tolist())
    assert kinds == {"clean", "pixel noise", "label flipped", "off-task"}
    assert 0.15 <= mix.bad.mean() <= 0.25


def test_default_setting_is_the_prepared_pool(builder_and_calls):
    builder, _, sc = builder_and_calls
    v = builder.build(parse_setting("default"), 5)
    assert v.ids.tolist() == sc.table("pool")["id"].tolist()
    assert (v.kind != "clean").sum() == int(sc.truth["noisy"].sum())


def test_downstream_rows_oracle_full_and_perfect_values(builder_and_calls):
    builder, _, sc = builder_and_calls
    v = builder.build(parse_setting("mix"), 0)
    ref = sc.table("reference")
    ref_x = _features(sc.pixels[sc.split_mask("reference")])
    seen: list[int] = []

    def probe(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        seen.append(x.shape[0])
        return {"accuracy": 1.0, "macro_f1": 1.0}

    perfect = -v.bad.astype(float)  # an ideal valuation: every bad row lowest
    rows = pd.DataFrame(
        downstream_rows(
            v,
            {"perfect": perfect},
            ref_x,
            ref["label"].to_numpy(),
            probe,
            top_frac=0.3,
            policies=["global", "per_class", "herding"],
            random_draws=3,
            n_classes=N_CLASSES,
            seed=0,
        )
    )
    k = round(0.3 * v.y.size)
    assert rows.loc[rows["method"] == "perfect", "bad_share"].eq(0).all()
    assert (rows.loc[rows["method"] == "random_k", "k"] == k).all() and (
        rows["method"] == "random_k"
    ).sum() == 3
    oracle = rows[rows["method"].str.startswith("oracle")].iloc[0]
    assert oracle["bad_share"] == 0 and oracle["k"] == k
    full = rows[rows["method"] == "full pool"].iloc[0]
    assert full["k"] == v.y.size and full["bad_share"] == pytest.approx(v.bad.mean())
    assert rows["min_class_count"].min() >= 0 and len(seen) == len(rows)


# ----------------------------------------------------------------------------- evaluation helpers


def test_probe_metrics_on_separable_data_and_single_class():
    rng = np.random.default_rng(0)
    x = np.r_[rng.normal(-3, 0.3, size=(20, 2)), rng.normal(3, 0.3, size=(20, 2))]
    y = np.repeat([0, 1], 20)
    assert probe_metrics(x, y, x, y, 2)["accuracy"] == 1.0
    single = probe_metrics(x[:20], y[:20], x, y, 2)
    assert single["accuracy"] == pytest.approx(0.5)


def test_removal_curve_removes_the_right_rows():
    rng = np.random.default_rng(1)
    x = np.r_[rng.normal(-3, 0.3, size=(20, 2)), rng.normal(3, 0.3, size=(20, 2))]
    y = np.repeat([0, 1], 20)
    values = np.r_[np.zeros(20), np.ones(20)]  # class 1 most valuable
    high = removal_curve(values, x, y, x, y, [0.0, 0.5], 2, remove="high")
    low = removal_curve(values, x, y, x, y, [0.0, 0.5], 2, remove="low")
    assert [r["n_kept"] for r in high] == [40, 20]
    assert high[0]["accuracy"] == 1.0
    assert high[1]["accuracy"] == pytest.approx(0.5) and low[1]["accuracy"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="remove"):
        removal_curve(values, x, y, x, y, [0.1], 2, remove="middle")


def test_winner_table_matches_brute_force():
    frame = pd.DataFrame(
        {
            "setting": ["a"] * 3 + ["b"] * 3,
            "method": ["kairos_feature", "lava", "knn_shapley"] * 2,
            "auroc_mean": [0.9, 0.8, 0.7, 0.6, 0.95, 0.5],
            "auroc_std": 0.01,
        }
    )
    table = winner_table(frame).set_index("setting")
    assert table.loc["a", "winner"] == "kairos_feature" and table.loc[
        "a", "margin"
    ] == pytest.approx(0.1)
    assert table.loc["b", "winner"] == "lava" and table.loc[
        "b", "kairos_minus_other"
    ] == pytest.approx(-0.35)


# ----------------------------------------------------------------------------- tiny full run


def test_run_writes_every_declared_table(tmp_path, monkeypatch):
    sc = _scenario(1)
    sc.save(tmp_path / "data/prepared", tmp_path / "data/truth/truth.parquet")
    feats = _features(sc.pixels)
    for split in ("pool", "reference", "test"):
        m = sc.split_mask(split)
        save_embeddings(
            tmp_path / f"data/embeddings/{split}.npz", sc.samples.loc[m, "id"], feats[m]
        )
    monkeypatch.setattr(
        benchmark, "_encoder_embed", lambda params, base: lambda ids, px: _features(px)
    )
    params = dict(
        methods="kairos_feature,kairos_class_conditional,knn_shapley,lava,confident_learning,random",
        settings="default,gaussian_1,flip_uniform_20,off_task,mix",
        n_seeds=2,
        seed=0,
        base_size=90,
        noise_fraction=0.2,
        top_frac=0.3,
        policies="global,per_class,herding",
        random_draws=2,
        downstream_settings="default,mix",
        removal_setting="mix",
        removal_fractions="0,0.25",
        probe_dim=8,
        threads=1,
        encoder="fake",
        weights="none",
        image_size=8,
        batch_size=8,
        normalize=True,
        device="cpu",
    )
    out = benchmark.run(params, root=tmp_path, progress=False)
    tables = tmp_path / "reports/tables"
    det = pd.read_csv(tables / "benchmark_detection.csv")
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
    settings = pd.read_csv(tables / "benchmark_noise_settings.csv")
    assert set(settings["setting"]) == {
        "default",
        "gaussian_1",
        "flip_uniform_20",
        "off_task",
        "mix",
    }
    winners = pd.read_csv(tables / "benchmark_winners.csv")
    assert "random" not in set(winners["winner"]) and len(winners) == 5
    down = pd.read_csv(tables / "benchmark_downstream.csv")
    assert {"oracle_k (uses truth)", "full pool", "random_k"} <= set(down["method"])
    assert set(down["setting"]) == {"default", "mix"}
    removal = pd.read_csv(tables / "benchmark_point_removal.csv")
    assert set(removal["remove"]) == {"high", "low"}
    assert len(pd.read_csv(tables / "benchmark_found_vs_inspected.csv")) > 0
    metrics = json.loads((tmp_path / "reports/metrics/benchmark.json").read_text())
    assert metrics["settings"][0] == "default" and "default/kairos_feature" in metrics["auroc"]
    assert out["summary"].shape[0] == det.shape[0]


def test_run_rejects_unknown_names(tmp_path):
    base = dict(
        methods="kairos_feature",
        settings="default",
        n_seeds=1,
        seed=0,
        downstream_settings="default",
        removal_setting="default",
        policies="global",
        threads=0,
    )
    with pytest.raises(ValueError, match=r"benchmark\.methods"):
        benchmark.run({**base, "methods": "kairos_feature,lavaa"}, root=tmp_path)
    with pytest.raises(ValueError, match="downstream_settings"):
        benchmark.run({**base, "downstream_settings": "mix"}, root=tmp_path)
