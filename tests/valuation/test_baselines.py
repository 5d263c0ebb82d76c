"""Baselines (LAVA, confident learning) and the uniform method registry, on cases with known answers."""

from __future__ import annotations

import itertools

import numpy as np
import ot
import pytest
from numpy.testing import assert_allclose
from sklearn.metrics import roc_auc_score

from kairos_curate.valuation import METHODS, ValuationInputs, value
from kairos_curate.valuation.confident_learning import confident_learning
from kairos_curate.valuation.lava import calibrated_gradient, label_distances, lava_values


def _blobs(rng: np.random.Generator, n_per: int, centres: np.ndarray, spread: float = 0.3):
    x = np.concatenate([c + spread * rng.normal(size=(n_per, centres.shape[1])) for c in centres])
    y = np.repeat(np.arange(centres.shape[0]), n_per)
    return x, y


CENTRES = np.array([[-4.0, 0.0], [4.0, 0.0], [0.0, 5.0]])


@pytest.fixture(scope="module")
def flipped_case():
    """Three separable 2-D classes; 4 pool labels flipped; a clean labelled reference."""
    rng = np.random.default_rng(0)
    x, y = _blobs(rng, 30, CENTRES)
    ref, y_ref = _blobs(rng, 12, CENTRES)
    bad = np.zeros(y.size, dtype=bool)
    flip = np.array([3, 40, 70, 85])
    y_shown = y.copy()
    y_shown[flip] = (y[flip] + 1) % 3
    bad[flip] = True
    return x, y_shown, ref, y_ref, bad


@pytest.fixture(scope="module")
def offtask_case():
    """Pool of the reference's two classes plus 8 points of a far cluster that carry class-0 labels."""
    rng = np.random.default_rng(1)
    x, y = _blobs(rng, 30, CENTRES[:2])
    far = np.array([0.0, -9.0]) + 0.3 * rng.normal(size=(8, 2))
    ref, y_ref = _blobs(rng, 15, CENTRES[:2])
    pool = np.concatenate([x, far])
    labels = np.concatenate([y, np.zeros(8, dtype=np.int64)])
    bad = np.r_[np.zeros(y.size, dtype=bool), np.ones(8, dtype=bool)]
    return pool, labels, ref, y_ref, bad


# ----------------------------------------------------------------------------- LAVA


def test_calibrated_gradient_matches_brute_force():
    f = np.random.default_rng(2).normal(size=7)
    brute = np.array([f[i] - sum(f[j] for j in range(7) if j != i) / 6 for i in range(7)])
    assert_allclose(calibrated_gradient(f), brute, rtol=1e-12, atol=1e-12)
    assert_allclose(calibrated_gradient(f + 5.0), brute, atol=1e-12)  # shift invariant


def test_label_distances_match_exhaustive_assignment():
    rng = np.random.default_rng(3)
    x, z = rng.normal(size=(6, 2)), rng.normal(size=(6, 2))
    y = np.array([0, 0, 0, 1, 1, 1])
    w = label_distances(x, y, z, y, np.array([0, 1]), max_per_class=None)
    for a, b in itertools.product(range(2), range(2)):
        xa, zb = x[y == a], z[y == b]
        cost = ((xa[:, None, :] - zb[None, :, :]) ** 2).sum(-1)
        best = min(np.mean([cost[i, p[i]] for i in range(3)]) for p in itertools.permutations(range(3)))
        assert_allclose(w[a, b], best, rtol=1e-10)


def test_lava_flags_flipped_labels(flipped_case):
    x, y, ref, y_ref, bad = flipped_case
    res = lava_values(x, y, ref, y_ref)
    assert set(np.argsort(res.values)[: bad.sum()]) == set(np.flatnonzero(bad))
    assert roc_auc_score(bad, -res.values) == 1.0


def test_lava_gradient_is_the_derivative_of_the_ot_cost():
    """Moving eps of mass onto point i (evenly from the others) changes the OT cost by eps * g_i."""
    rng = np.random.default_rng(4)
    x, z = rng.normal(size=(7, 3)), rng.normal(size=(5, 3))
    y, y_ref = np.array([0, 1, 0, 1, 0, 1, 0]), np.array([0, 1, 0, 1, 1])
    res = lava_values(x, y, z, y_ref, max_per_class=None)
    w = res.label_distance
    cost = ((x[:, None] - z[None]) ** 2).sum(-1) + w[y][:, y_ref]
    a, b = np.full(7, 1 / 7), np.full(5, 1 / 5)
    assert_allclose(ot.emd2(a, b, cost), res.ot_distance, rtol=1e-9)
    eps = 1e-6
    for i in range(7):
        d = -np.full(7, 1 / 6)
        d[i] = 1.0
        num = (ot.emd2(a + eps * d, b, cost) - ot.emd2(a - eps * d, b, cost)) / (2 * eps)
        assert_allclose(num, res.gradient[i], rtol=1e-4, atol=1e-6)


def test_lava_rejects_pool_class_missing_from_reference(flipped_case):
    x, y, ref, y_ref, _ = flipped_case
    with pytest.raises(ValueError, match="reference"):
        lava_values(x, np.where(y == 0, 9, y), ref, y_ref)


# ----------------------------------------------------------------------------- confident learning


def test_confident_learning_flags_flipped_labels(flipped_case):
    x, y, _, _, bad = flipped_case
    res = confident_learning(x, y, n_folds=3, pca_dim=None)
    assert set(np.argsort(res.values)[: bad.sum()]) == set(np.flatnonzero(bad))
    assert res.issues[bad].all() and res.issues.sum() <= bad.sum() + 2
    assert_allclose(res.pred_probs.sum(1), 1.0, rtol=1e-9)
    # self-confidence is the out-of-fold probability of the given label
    assert_allclose(res.values, res.pred_probs[np.arange(y.size), y], rtol=1e-9)


def test_confident_learning_explains_too_small_classes():
    x = np.random.default_rng(5).normal(size=(12, 2))
    y = np.r_[np.zeros(10, dtype=int), np.ones(2, dtype=int)]
    with pytest.raises(ValueError, match="n_folds"):
        confident_learning(x, y, n_folds=5)


# ----------------------------------------------------------------------------- registry

FEATURE_AWARE = [
    "kairos_feature",
    "kairos_residual",
    "kairos_class_conditional",
    "nearest_reference",
    "lava",
]
LABEL_AWARE = [
    "kairos_residual",
    "kairos_class_conditional",
    "knn_shapley",
    "lava",
    "confident_learning",
]


@pytest.mark.parametrize("name", FEATURE_AWARE)
def test_methods_rank_far_off_task_points_lowest(name, offtask_case):
    x, y, ref, y_ref, bad = offtask_case
    out = value(name, ValuationInputs(x, y, ref, y_ref, seed=0))
    assert out.values.shape == (y.size,) and out.seconds >= 0
    assert roc_auc_score(bad, -out.values) > 0.95


@pytest.mark.parametrize("name", LABEL_AWARE)
def test_label_aware_methods_rank_flipped_labels_lowest(name, flipped_case):
    x, y, ref, y_ref, bad = flipped_case
    out = value(name, ValuationInputs(x, y, ref, y_ref, seed=0))
    assert roc_auc_score(bad, -out.values) > 0.95


def test_feature_only_methods_cannot_see_label_flips(flipped_case):
    x, y, ref, y_ref, _ = flipped_case
    a = value("kairos_feature", ValuationInputs(x, y, ref, y_ref, seed=0)).values
    b = value("kairos_feature", ValuationInputs(x, (y + 1) % 3, ref, y_ref, seed=0)).values
    assert_allclose(a, b)


def test_random_is_seeded_and_chance_level(flipped_case):
    x, y, ref, y_ref, _ = flipped_case
    v0 = value("random", ValuationInputs(x, y, ref, y_ref, seed=0)).values
    assert_allclose(v0, value("random", ValuationInputs(x, y, ref, y_ref, seed=0)).values)
    assert not np.allclose(v0, value("random", ValuationInputs(x, y, ref, y_ref, seed=1)).values)
    assert METHODS["random"].seeded and not METHODS["kairos_feature"].seeded


def test_nearest_reference_is_minus_the_brute_force_distance(offtask_case):
    x, y, ref, y_ref, _ = offtask_case
    out = value("nearest_reference", ValuationInputs(x, y, ref, y_ref))
    brute = np.array([min(np.linalg.norm(p - r) for r in ref) for p in x])
    assert_allclose(out.values, -brute, rtol=1e-9)


def test_unknown_method_lists_the_known_ones(flipped_case):
    x, y, ref, y_ref, _ = flipped_case
    with pytest.raises(ValueError, match="kairos_feature"):
        value("nope", ValuationInputs(x, y, ref, y_ref))
