"""Pool variants per noise setting: what each setting changes, and that only corrupted rows are embedded."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from kairos_curate.data.noise_settings import parse_setting
from kairos_curate.study.detection import problem_masks


def test_parse_setting_known_forms_and_errors():
    assert parse_setting("gaussian_0.5").level == 0.5
    assert parse_setting("motion_blur_5").family == "motion_blur"
    spec = parse_setting("flip_confusable_20")
    assert (spec.family, spec.mode, spec.level) == ("flip", "confusable", 20.0)
    for bad in ("gaussian_x", "flip_uniform_0", "flip_sideways_10", "blur"):
        with pytest.raises(ValueError, match=r"compare\.settings"):
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
    assert_allclose(v.y[clean], truth["true_label"].to_numpy()[rows][clean])  # flipped base rows restored


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
