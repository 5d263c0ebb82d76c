"""Brute-force float64 checks of the KAIROS core: b, a, values, LOO, label modes, incremental,
RFF, KNN-Shapley, bandwidth and bad input."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from numpy.testing import assert_allclose
from scipy.stats import spearmanr

from kairos_curate.valuation import (
    KairosState,
    kairos_values,
    knn_shapley,
    median_bandwidth,
    rff_kairos_values,
)
from kairos_curate.valuation.kernels import KernelSpace, choose_tile, self_sums


def rbf(a: np.ndarray, b: np.ndarray, sigma: float) -> np.ndarray:
    d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return np.exp(-d2 / (2.0 * sigma**2))


def mmd2(p: np.ndarray, z: np.ndarray, sigma: float) -> float:
    return float(rbf(p, p, sigma).mean() - 2 * rbf(p, z, sigma).mean() + rbf(z, z, sigma).mean())


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    pool = rng.normal(size=(83, 6))
    pool[:20] += 2.0  # an off-task cluster
    ref = rng.normal(size=(31, 6)) + 0.2
    return pool, ref


@pytest.mark.parametrize("block", [None, 7, 16])
def test_b_a_values_match_brute_force(data, block):
    pool, ref = data
    sigma = 1.7
    res = kairos_values(pool, ref, sigma, block_size=block, device="cpu")
    b = rbf(pool, ref, sigma).mean(1)
    a = rbf(pool, pool, sigma).mean(1)
    assert_allclose(res.b, b, rtol=1e-5, atol=1e-7)
    assert_allclose(res.a, a, rtol=1e-5, atol=1e-7)
    assert_allclose(res.values, b - a, rtol=1e-5, atol=1e-7)
    assert_allclose(res.feature_term, b - a, rtol=1e-5, atol=1e-7)
    assert res.label_term is None and res.label_mode is None
    assert res.bandwidth == sigma
    assert res.mmd2 == pytest.approx(mmd2(pool, ref, sigma), abs=1e-6)


def test_torch_input_and_float32_give_same_result(data):
    pool, ref = data
    r1 = kairos_values(pool, ref, 1.3, device="cpu")
    r2 = kairos_values(torch.from_numpy(pool).float(), torch.from_numpy(ref), 1.3, device="cpu")
    assert_allclose(r1.values, r2.values, atol=1e-6)


def test_loo_matches_brute_force_and_sign(data):
    pool, ref = data
    sigma = 1.5
    res = kairos_values(pool, ref, sigma, device="cpu", block_size=32)
    full = mmd2(pool, ref, sigma)
    brute = np.array([mmd2(np.delete(pool, i, 0), ref, sigma) - full for i in range(len(pool))])
    assert_allclose(res.loo, brute, rtol=1e-4, atol=1e-8)
    # off-task points (rows < 20): removing them brings the pool closer -> negative LOO
    assert res.loo[:20].mean() < 0 < res.loo[20:].mean()


def test_self_sums_upper_triangle_equals_full():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(45, 3))
    for tile in (1, 4, 10, 45, 64):
        space = KernelSpace.create(1.1, x.mean(0), "cpu", block_size=tile)
        assert_allclose(self_sums(space, space.prepare(x)), rbf(x, x, 1.1).sum(1), rtol=1e-5)


def test_choose_tile_respects_budget():
    dev = torch.device("cpu")
    t = choose_tile(2**20, dev)
    assert 2 * 4 * t * t <= 2**20
    assert choose_tile(2**40, dev) == 2048
    assert choose_tile(2**40, torch.device("cuda")) == 8192


def test_residual_mode_brute_force(data):
    from sklearn.linear_model import LogisticRegression

    pool, ref = data
    rng = np.random.default_rng(3)
    names = np.array(["wasp", "ant", "bee"])
    y_ref = names[rng.integers(0, 3, len(ref))]
    y_pool = names[rng.integers(0, 3, len(pool))]
    sigma, lam = 1.4, 0.9
    res = kairos_values(
        pool,
        ref,
        sigma,
        pool_labels=y_pool,
        reference_labels=y_ref,
        label_mode="residual",
        lam=lam,
        device="cpu",
    )
    model = LogisticRegression(max_iter=1000).fit(ref, y_ref)
    p = model.predict_proba(pool)
    onehot = (y_pool[:, None] == model.classes_[None, :]).astype(float)
    rnorm = np.linalg.norm(onehot - p, axis=1)
    feat = rbf(pool, ref, sigma).mean(1) - rbf(pool, pool, sigma).mean(1)
    assert_allclose(res.label_term, -rnorm, rtol=1e-6)
    assert_allclose(res.values, lam * feat - (1 - lam) * rnorm, rtol=1e-5, atol=1e-7)
    assert res.label_mode == "residual" and res.lam == lam
    frame = res.to_frame([f"s{i}" for i in range(len(pool))])
    assert list(frame["label"]) == list(y_pool)
    assert frame.index.name == "id" and frame["rank"].min() == 1


@pytest.mark.parametrize("combine", ["rank", "zscore"])
def test_scale_free_combination_is_invariant_to_rescaling_features(data, combine):
    pool, ref = data
    rng = np.random.default_rng(4)
    y_ref, y_pool = rng.integers(0, 2, len(ref)), rng.integers(0, 2, len(pool))
    kw = dict(
        pool_labels=y_pool,
        reference_labels=y_ref,
        label_mode="residual",
        lam=0.5,
        combine=combine,
        device="cpu",
    )
    res = kairos_values(pool, ref, 1.2, **kw)
    feat, lab = res.feature_term, res.label_term
    if combine == "rank":
        from scipy.stats import rankdata

        expect = 0.5 * rankdata(feat) / len(feat) + 0.5 * rankdata(lab) / len(lab)
    else:
        expect = 0.5 * (feat - feat.mean()) / feat.std() + 0.5 * (lab - lab.mean()) / lab.std()
    assert_allclose(res.values, expect, rtol=1e-9, atol=1e-12)
    # weighted combination is *not* scale free: the ranking changes with lam
    w1 = kairos_values(pool, ref, 1.2, **{**kw, "combine": "weighted", "lam": 0.99})
    w2 = kairos_values(pool, ref, 1.2, **{**kw, "combine": "weighted", "lam": 0.5})
    assert not np.array_equal(np.argsort(w1.values), np.argsort(w2.values))


def test_class_conditional_brute_force(data):
    pool, ref = data
    rng = np.random.default_rng(5)
    y_ref = rng.integers(0, 3, len(ref))
    y_pool = rng.integers(0, 3, len(pool))
    sigma = 1.6
    res = kairos_values(
        pool,
        ref,
        sigma,
        pool_labels=y_pool,
        reference_labels=y_ref,
        label_mode="class_conditional",
        device="cpu",
        block_size=8,
    )
    b = np.zeros(len(pool))
    a = np.zeros(len(pool))
    loo = np.zeros(len(pool))
    for c in range(3):
        p_c, z_c = pool[y_pool == c], ref[y_ref == c]
        b[y_pool == c] = rbf(p_c, z_c, sigma).mean(1)
        a[y_pool == c] = rbf(p_c, p_c, sigma).mean(1)
        full = mmd2(p_c, z_c, sigma)
        loo[y_pool == c] = [mmd2(np.delete(p_c, i, 0), z_c, sigma) - full for i in range(len(p_c))]
        assert res.class_mmd2[c] == pytest.approx(full, abs=1e-6)
    feat = rbf(pool, ref, sigma).mean(1) - rbf(pool, pool, sigma).mean(1)
    assert_allclose(res.b, b, rtol=1e-5)
    assert_allclose(res.a, a, rtol=1e-5)
    assert_allclose(res.values, b - a, rtol=1e-5, atol=1e-7)
    assert_allclose(res.feature_term, feat, rtol=1e-5, atol=1e-7)
    assert_allclose(res.label_term, (b - a) - feat, rtol=1e-5, atol=1e-6)
    assert_allclose(res.loo, loo, rtol=1e-4, atol=1e-8)


@pytest.mark.parametrize("mode", [None, "residual", "class_conditional"])
def test_incremental_update_equals_full_recompute(data, mode):
    pool, ref = data
    rng = np.random.default_rng(6)
    y_ref, y_pool = rng.integers(0, 3, len(ref)), rng.integers(0, 3, len(pool))
    labels = None if mode is None else y_pool
    kw = dict(
        reference_labels=None if mode is None else y_ref,
        label_mode=mode,
        device="cpu",
        block_size=9,
    )
    full = kairos_values(pool, ref, 1.5, pool_labels=labels, **kw)
    state = KairosState(ref, 1.5, **kw)
    for lo, hi in [(0, 30), (30, 31), (31, 83)]:
        state.update(pool[lo:hi], None if labels is None else labels[lo:hi])
    inc = state.result()
    assert state.n_pool == len(pool)
    for name in ("b", "a", "values", "loo", "feature_term"):
        assert_allclose(getattr(inc, name), getattr(full, name), rtol=1e-5, atol=1e-8)
    if mode is not None:
        assert_allclose(inc.label_term, full.label_term, rtol=1e-5, atol=1e-7)
    # and against the float64 brute force
    assert_allclose(inc.a, rbf(pool, pool, 1.5).mean(1) if mode != "class_conditional" else full.a, rtol=1e-5)


def test_median_bandwidth_convention():
    rng = np.random.default_rng(7)
    x, z = rng.normal(size=(12, 4)), rng.normal(size=(9, 4))
    both = np.vstack([x, z])
    d = np.sqrt(((both[:, None] - both[None]) ** 2).sum(-1))
    iu = np.triu_indices(len(both), 1)
    assert median_bandwidth(x, z) == pytest.approx(np.median(d[iu]), rel=1e-12)
    big = rng.normal(size=(400, 4))
    s1, s2 = (
        median_bandwidth(big, seed=1, max_pairs=500),
        median_bandwidth(big, seed=1, max_pairs=500),
    )
    assert s1 == s2
    all_d = np.sqrt(((big[:, None] - big[None]) ** 2).sum(-1))[np.triu_indices(400, 1)]
    assert s1 == pytest.approx(np.median(all_d), rel=0.1)
    assert kairos_values(x, z, device="cpu").bandwidth == pytest.approx(np.median(d[iu]))


def test_rff_converges_to_exact_as_d_grows(data):
    pool, ref = data
    exact = kairos_values(pool, ref, 1.5, device="cpu")
    errs, rhos = [], []
    for n_features in (64, 1024, 16384):
        e, r = [], []
        for seed in range(3):
            approx = rff_kairos_values(pool, ref, 1.5, n_features=n_features, seed=seed, device="cpu")
            assert approx.backend == "rff"
            e.append(np.abs(approx.b - exact.b).max() + np.abs(approx.a - exact.a).max())
            r.append(spearmanr(approx.values, exact.values).statistic)
        errs.append(np.mean(e))
        rhos.append(np.mean(r))
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 0.02
    assert rhos[2] > 0.95 and rhos[2] > rhos[0]


def test_rff_class_conditional_close_to_exact(data):
    pool, ref = data
    rng = np.random.default_rng(8)
    y_ref, y_pool = rng.integers(0, 2, len(ref)), rng.integers(0, 2, len(pool))
    kw = dict(pool_labels=y_pool, reference_labels=y_ref, label_mode="class_conditional")
    exact = kairos_values(pool, ref, 1.5, device="cpu", **kw)
    approx = rff_kairos_values(pool, ref, 1.5, n_features=16384, device="cpu", **kw)
    assert_allclose(approx.b, exact.b, atol=0.03)
    assert_allclose(approx.a, exact.a, atol=0.03)


def knn_utility(subset, pool, y_pool, z, y_z, k):
    if not subset:
        return 0.0
    idx = np.array(subset)
    total = 0.0
    for zj, yj in zip(z, y_z, strict=True):
        d = ((pool[idx] - zj) ** 2).sum(1)
        near = idx[np.lexsort((idx, d))][:k]
        total += (y_pool[near] == yj).sum() / k
    return total / len(z)


def brute_shapley(pool, y_pool, z, y_z, k):
    n = len(pool)
    phi = np.zeros(n)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        for size in range(n):
            w = math.factorial(size) * math.factorial(n - size - 1) / math.factorial(n)
            for s in itertools.combinations(others, size):
                phi[i] += w * (
                    knn_utility([*s, i], pool, y_pool, z, y_z, k) - knn_utility(list(s), pool, y_pool, z, y_z, k)
                )
    return phi


@pytest.mark.parametrize("k", [1, 2, 3, 8])
def test_knn_shapley_matches_brute_force(k):
    rng = np.random.default_rng(k)
    pool, z = rng.normal(size=(7, 3)), rng.normal(size=(4, 3))
    y_pool, y_z = rng.integers(0, 2, 7), rng.integers(0, 2, 4)
    got = knn_shapley(pool, y_pool, z, y_z, k=k, device="cpu", block_size=3)
    want = brute_shapley(pool, y_pool, z, y_z, k)
    assert_allclose(got, want, atol=1e-12)
    assert got.sum() == pytest.approx(knn_utility(list(range(7)), pool, y_pool, z, y_z, k))


def test_knn_shapley_string_labels_rank_mislabelled_low():
    rng = np.random.default_rng(0)
    centers = np.array([[0.0, 0.0], [6.0, 0.0]])
    y_pool = np.array(["a", "b"] * 20)
    pool = centers[(y_pool == "b").astype(int)] + rng.normal(size=(40, 2))
    y_pool[:4] = np.where(y_pool[:4] == "a", "b", "a")  # flipped labels
    y_z = np.array(["a", "b"] * 10)
    z = centers[(y_z == "b").astype(int)] + rng.normal(size=(20, 2))
    vals = knn_shapley(pool, y_pool, z, y_z, k=5, device="cpu")
    assert set(np.argsort(vals)[:4]) == {0, 1, 2, 3}


# ---------------------------------------------------------------- bad input


def test_nan_rows_are_named(data):
    pool, ref = data
    pool = pool.copy()
    pool[[3, 17]] = np.nan
    with pytest.raises(ValueError, match=r"pool has NaN or inf values in 2 row\(s\): 3, 17"):
        kairos_values(pool, ref, 1.0, device="cpu")
    ref = ref.copy()
    ref[5, 0] = np.inf
    with pytest.raises(ValueError, match=r"reference has NaN or inf.*: 5"):
        kairos_values(data[0], ref, 1.0, device="cpu")


@pytest.mark.parametrize(
    ("pool", "ref", "msg"),
    [
        (np.ones((4, 3)), np.ones((2, 5)), "pool has dimension 3 but reference has 5"),
        (np.ones((0, 3)), np.ones((2, 3)), "pool is empty"),
        (np.ones((4, 3)), np.ones((0, 3)), "reference is empty"),
        (np.ones(4), np.ones((2, 3)), "pool must be a 2-D"),
    ],
)
def test_shape_errors(pool, ref, msg):
    with pytest.raises(ValueError, match=msg):
        kairos_values(pool, ref, 1.0, device="cpu")


@pytest.mark.parametrize("bw", [0.0, -1.0, float("nan"), float("inf"), "mean"])
def test_bad_bandwidth(data, bw):
    with pytest.raises(ValueError, match="bandwidth"):
        kairos_values(*data, bw, device="cpu")


def test_label_errors(data):
    pool, ref = data
    y_ref = np.zeros(len(ref), dtype=int)
    with pytest.raises(ValueError, match="pool_labels has 5 labels but there are 83 rows"):
        kairos_values(
            pool,
            ref,
            1.0,
            pool_labels=np.zeros(5),
            reference_labels=y_ref,
            label_mode="residual",
            device="cpu",
        )
    with pytest.raises(ValueError, match="reference_labels has 3 labels"):
        kairos_values(
            pool,
            ref,
            1.0,
            pool_labels=np.zeros(83, int),
            reference_labels=[0, 1, 2],
            label_mode="class_conditional",
            device="cpu",
        )
    y_pool = np.zeros(len(pool), dtype=int)
    y_pool[[2, 9]] = 7
    with pytest.raises(ValueError, match=r"1 class\(es\) absent from reference_labels: 7"):
        kairos_values(
            pool,
            ref,
            1.0,
            pool_labels=y_pool,
            reference_labels=y_ref,
            label_mode="class_conditional",
            device="cpu",
        )
    with pytest.raises(ValueError, match="needs reference_labels"):
        kairos_values(pool, ref, 1.0, pool_labels=y_pool, label_mode="residual", device="cpu")
    with pytest.raises(ValueError, match="label_mode must be"):
        kairos_values(pool, ref, 1.0, label_mode="classwise", device="cpu")
    with pytest.raises(ValueError, match="lam must lie"):
        kairos_values(
            pool,
            ref,
            1.0,
            pool_labels=y_ref[:0].tolist() + [0] * 83,
            reference_labels=y_ref,
            label_mode="residual",
            lam=1.5,
            device="cpu",
        )


def test_incremental_errors(data):
    _, ref = data
    state = KairosState(ref, 1.0, device="cpu")
    with pytest.raises(ValueError, match="pool is empty"):
        state.result()
    with pytest.raises(ValueError, match="dimension 2 but reference has 6"):
        state.update(np.ones((3, 2)))
