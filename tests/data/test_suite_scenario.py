"""Scenarios of the selection suite: overrides, each extra problem checked by brute force, seeding,
and the truth kept apart from what selection sees."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from kairos_curate.config import ParamsError
from kairos_curate.data.scenario_config import ExtraProblemsConfig, ScenarioConfig
from kairos_curate.data.suite_scenario import Split, suite_base, with_extra_problems
from tests.conftest import SMALL_SCENARIO, requires_fashion_mnist

pytestmark = requires_fashion_mnist

BASE = ScenarioConfig.from_params(SMALL_SCENARIO)
#: Task label -> another task label (a stand-in for the most-confused class).
CONFUSION = {c: (c + 1) % 6 for c in range(6)}


@pytest.fixture(scope="module")
def base():
    return suite_base("default", 0, BASE)


def test_overrides_and_the_study_seed_build_the_scenario(base):
    clean = suite_base(
        "clean", 0, BASE, {"pool_per_offtask_class": 0, "pixel_noise_fraction": 0.0, "label_flip_fraction": 0.0}
    )
    assert clean.truth.clean.all() and len(clean.pool) == 6 * SMALL_SCENARIO["pool_per_task_class"]
    assert base.seed == 0 and not base.truth.clean.all()
    counts = base.truth.counts()
    assert counts["off-task"] == 4 * SMALL_SCENARIO["pool_per_offtask_class"] and counts["near-duplicate"] == 0
    again, other = suite_base("default", 0, BASE), suite_base("default", 1, BASE)
    assert np.array_equal(again.pool.pixels, base.pool.pixels) and np.array_equal(again.pool.labels, base.pool.labels)
    assert not np.array_equal(other.pool.ids, base.pool.ids)  # the seed draws other images
    with pytest.raises(ParamsError, match="pool_per_task_clas"):
        suite_base("bad", 0, BASE, {"pool_per_task_clas": 3})


def test_what_selection_sees_carries_no_truth(base):
    assert {f.name for f in dataclasses.fields(Split)} == {"ids", "pixels", "labels"}
    # Off-task rows carry a plausible task label, flipped rows a wrong one: the shown labels say nothing.
    off = base.truth.kind == "off-task"
    assert (base.pool.labels[off] >= 0).all() and (base.truth.true_label[off] == -1).all()
    flipped = base.truth.kind == "label flipped"
    assert flipped.any() and (base.pool.labels[flipped] != base.truth.true_label[flipped]).all()


def _changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.flatnonzero((a != b).reshape(a.shape[0], -1).any(axis=1))


def test_pixel_extras_change_only_clean_rows_and_say_which(base):
    extras = ExtraProblemsConfig(motion_blur_fraction=0.1, sensor_noise_fraction=0.05)
    sc = with_extra_problems(base, extras)
    n = len(base.pool)
    blurred = np.flatnonzero(sc.truth.detail == "motion_blur")
    noisy = np.flatnonzero(sc.truth.detail == "sensor_noise")
    assert blurred.size == round(0.1 * n) and noisy.size == round(0.05 * n)
    assert base.truth.clean[blurred].all() and base.truth.clean[noisy].all()
    assert np.array_equal(_changed(sc.pool.pixels, base.pool.pixels), np.union1d(blurred, noisy))
    assert (sc.truth.kind[np.union1d(blurred, noisy)] == "pixel noise").all()
    assert np.array_equal(sc.pool.labels, base.pool.labels) and np.array_equal(sc.pool.ids, base.pool.ids)
    untouched = np.setdiff1d(np.arange(n), np.union1d(blurred, noisy))
    assert np.array_equal(sc.truth.kind[untouched], base.truth.kind[untouched])
    assert np.array_equal(base.pool.pixels, suite_base("default", 0, BASE).pool.pixels)  # input not modified


def test_confusable_flips_move_clean_labels_to_the_confused_class(base):
    sc = with_extra_problems(base, ExtraProblemsConfig(confusable_flip_fraction=0.3), confusion=CONFUSION)
    rows = np.flatnonzero(sc.pool.labels != base.pool.labels)
    assert rows.size == round(0.3 * base.truth.clean.sum())  # no class maps to itself here
    assert base.truth.clean[rows].all()
    assert all(sc.pool.labels[r] == CONFUSION[int(base.pool.labels[r])] for r in rows)
    assert np.array_equal(np.flatnonzero(sc.truth.detail == "flip_confusable"), rows)
    with pytest.raises(ValueError, match="confusion"):
        with_extra_problems(base, ExtraProblemsConfig(confusable_flip_fraction=0.3))


def test_rare_class_keeps_only_that_many_genuine_images(base):
    sandal = BASE.task_classes.index(5)
    sc = with_extra_problems(base, ExtraProblemsConfig(rare_class=5, rare_keep=7))
    genuine = (sc.truth.true_label == sandal) & (sc.truth.kind != "off-task")
    assert genuine.sum() == 7
    into = (base.truth.true_label != sandal) & (base.pool.labels == sandal)  # wrong labels pointing into Sandal
    assert set(base.pool.ids[into]) <= set(sc.pool.ids)
    others = ~((base.truth.true_label == sandal) & (base.truth.kind != "off-task"))
    assert set(base.pool.ids[others]) <= set(sc.pool.ids) <= set(base.pool.ids)  # only genuine Sandals left
    assert len(sc.pool) == others.sum() + 7
    with pytest.raises(ValueError, match="not a task class"):
        with_extra_problems(base, ExtraProblemsConfig(rare_class=2))


def test_near_duplicates_are_close_copies_of_clean_sources(base):
    sc = with_extra_problems(
        base, ExtraProblemsConfig(duplicate_sources_per_class=2, copies_per_source=3, near_duplicate_std=2.0)
    )
    n = len(base.pool)
    copies = np.flatnonzero(sc.truth.kind == "near-duplicate")
    assert np.array_equal(copies, np.arange(n, n + 6 * 2 * 3))
    assert np.array_equal(sc.pool.pixels[:n], base.pool.pixels)
    assert len(set(sc.pool.ids)) == len(sc.pool)
    src = sc.truth.duplicate_of[copies]
    assert (src >= 0).all() and (src < n).all() and base.truth.clean[src].all()
    assert np.array_equal(sc.pool.labels[copies], sc.pool.labels[src])
    diff = np.abs(sc.pool.pixels[copies].astype(int) - sc.pool.pixels[src].astype(int))
    assert diff.reshape(copies.size, -1).max(axis=1).min() > 0 and diff.mean() < 3  # near, never exact
    assert (np.bincount(sc.pool.labels[src], minlength=6) == 2 * 3).all()
    assert (sc.truth.duplicate_of[:n] == -1).all()


def test_extras_are_seeded_by_seed_and_name(base):
    extras = ExtraProblemsConfig(motion_blur_fraction=0.1, duplicate_sources_per_class=1, copies_per_source=2)
    a, b = with_extra_problems(base, extras), with_extra_problems(base, extras)
    assert np.array_equal(a.pool.pixels, b.pool.pixels) and np.array_equal(a.truth.kind, b.truth.kind)
    renamed = with_extra_problems(dataclasses.replace(base, name="other"), extras)
    assert not np.array_equal(renamed.truth.kind, a.truth.kind)
    assert with_extra_problems(base, ExtraProblemsConfig()) is base


@pytest.mark.parametrize(
    "bad",
    [
        {"motion_blur_fraction": 1.5},
        {"duplicate_sources_per_class": 2},
        {"rare_class": 12},
        {"motion_blur_fraction": 0.6, "sensor_noise_fraction": 0.6},
        {"near_duplicate_std": 0.0},
    ],
)
def test_extra_problem_config_is_checked(bad):
    with pytest.raises(ValueError):
        ExtraProblemsConfig(**bad)
