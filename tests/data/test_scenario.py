"""The default scenario: disjoint splits, pool-only corruption, seeded, with a separate truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from kairos_curate.data.fashion_mnist import load_fashion_mnist
from kairos_curate.data.scenario import ScenarioConfig, build_scenario, load_scenario, pixel_hashes

from ..conftest import SMALL_SCENARIO, requires_fashion_mnist

pytestmark = requires_fashion_mnist


def _raw_pixels(ids: pd.Series) -> np.ndarray:
    train, t10k = load_fashion_mnist("train"), load_fashion_mnist("t10k")
    out = []
    for sid in ids:
        split, index = sid.removeprefix("fmnist-").split("-")
        out.append((train if split == "train" else t10k).pixels[int(index)])
    return np.stack(out)


def test_counts_follow_the_config(small_scenario):
    counts = small_scenario.info["counts"]
    assert counts["pool"] == 6 * 40 + 4 * 20
    assert counts["reference"] == 6 * 10
    assert counts["test"] == 6 * 15
    assert counts["pool_off_task"] == 4 * 20
    assert counts["pool_pixel_noise"] == round(0.15 * counts["pool"])
    assert counts["pool_label_flipped"] == round(0.1 * 6 * 40)
    ref = small_scenario.table("reference")
    assert (ref["label"].value_counts() == 10).all()


def test_no_reference_or_test_image_in_the_pool_by_id_or_pixels(small_scenario):
    ids = {s: set(small_scenario.table(s)["id"]) for s in ("pool", "reference", "test")}
    assert not ids["pool"] & ids["reference"]
    assert not ids["pool"] & ids["test"]
    assert not ids["reference"] & ids["test"]
    hashes = {
        s: set(pixel_hashes(small_scenario.pixels[small_scenario.split_mask(s)])) for s in ("pool", "reference", "test")
    }
    assert not hashes["pool"] & hashes["reference"]
    assert not hashes["pool"] & hashes["test"]
    assert not hashes["reference"] & hashes["test"]
    # the reference is sampled without replacement: no repeated image
    assert len(hashes["reference"]) == len(ids["reference"])


def test_corruptions_touch_the_pool_only(small_scenario):
    for split in ("reference", "test"):
        table = small_scenario.table(split)
        assert np.array_equal(small_scenario.pixels[small_scenario.split_mask(split)], _raw_pixels(table["id"]))
    pool = small_scenario.table("pool").merge(small_scenario.truth, on="id")
    raw = _raw_pixels(pool["id"])
    changed = (small_scenario.pixels[small_scenario.split_mask("pool")] != raw).reshape(len(pool), -1).any(axis=1)
    assert np.array_equal(changed, (pool["corruption"] != "none").to_numpy())


def test_truth_is_consistent_with_the_labels_users_see(small_scenario):
    pool = small_scenario.table("pool").merge(small_scenario.truth, on="id")
    on_task = ~pool["off_task"]
    flipped = pool["label_flipped"]
    assert (pool.loc[on_task & ~flipped, "label"] == pool.loc[on_task & ~flipped, "true_label"]).all()
    assert (pool.loc[flipped, "label"] != pool.loc[flipped, "true_label"]).all()
    assert (pool.loc[pool["off_task"], "true_label"] == -1).all()
    # off-task images carry the configured wrong label: Pullover (2) and Shirt (6) -> T-shirt (task index 0)
    shirts = pool[pool["origin"].isin(["Pullover", "Shirt"]) & ~flipped]
    assert (shirts["label"] == 0).all()
    assert not (flipped & (pool["corruption"] != "none")).any()
    assert set(pool.columns) >= {"noisy", "severity"}
    assert (pool["noisy"] == (pool["off_task"] | flipped | (pool["corruption"] != "none"))).all()


def test_the_sample_table_carries_no_ground_truth(small_scenario):
    assert set(small_scenario.samples.columns) == {"id", "split", "label", "class_name", "source"}


def test_same_seed_same_scenario_other_seed_other_scenario():
    a = build_scenario(ScenarioConfig.from_params(SMALL_SCENARIO))
    b = build_scenario(ScenarioConfig.from_params(SMALL_SCENARIO))
    c = build_scenario(ScenarioConfig.from_params({**SMALL_SCENARIO, "seed": 4}))
    pd.testing.assert_frame_equal(a.samples, b.samples)
    assert np.array_equal(a.pixels, b.pixels)
    pd.testing.assert_frame_equal(a.truth, b.truth)
    assert set(a.table("pool")["id"]) != set(c.table("pool")["id"])


def test_save_and_load_round_trip_keeps_truth_separate(small_scenario, tmp_path):
    small_scenario.save(tmp_path / "prepared", tmp_path / "truth" / "truth.parquet")
    assert not (tmp_path / "prepared" / "truth.parquet").exists()
    loaded = load_scenario(tmp_path / "prepared")
    assert loaded.truth.empty
    pd.testing.assert_frame_equal(loaded.samples, small_scenario.samples)
    assert np.array_equal(loaded.pixels, small_scenario.pixels)
    with_truth = load_scenario(tmp_path / "prepared", tmp_path / "truth" / "truth.parquet")
    pd.testing.assert_frame_equal(with_truth.truth, small_scenario.truth)
    assert loaded.class_names == small_scenario.class_names


def test_missing_prepared_data_says_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="dvc repro prepare"):
        load_scenario(tmp_path)


def test_missing_fashion_mnist_says_how_to_install(tmp_path):
    with pytest.raises(FileNotFoundError, match="make setup"):
        load_fashion_mnist("train", tmp_path)


@pytest.mark.parametrize(
    "override, message",
    [
        ({"offtask_classes": [0, 2]}, "both task and off-task"),
        ({"offtask_labels": {2: 0}}, "no task label"),
        ({"pixel_noise_fraction": 1.5}, "pixel_noise_fraction"),
        ({"reference_per_class": 0}, "reference_per_class"),
        ({"pool_per_task_kls": 3}, r"scenario\.fashion_mnist\.pool_per_task_kls: unknown key"),
        ({"task_classes": [0, "x"]}, r"scenario\.fashion_mnist\.task_classes\.1: Input should be a valid integer"),
        (
            {"pool_per_task_class": "40"},
            r"scenario\.fashion_mnist\.pool_per_task_class: Input should be a valid integer",
        ),
        ({"pool_per_task_class": 10_000}, "only"),
    ],
)
def test_bad_scenario_parameters_are_named(override, message):
    with pytest.raises(ValueError, match=message):
        build_scenario(ScenarioConfig.from_params({**SMALL_SCENARIO, **override}))
