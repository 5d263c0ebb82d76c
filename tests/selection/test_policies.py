"""Selection policies: global top-k, per-class quotas, kernel herding, class-share warnings."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from kairos_curate.selection import allocate_quotas, select
from kairos_curate.valuation import kairos_values


def rbf(a, b, sigma):
    d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return np.exp(-d2 / (2.0 * sigma**2))


def mmd2(p, z, sigma):
    return rbf(p, p, sigma).mean() - 2 * rbf(p, z, sigma).mean() + rbf(z, z, sigma).mean()


@pytest.fixture
def crowded():
    """Three task classes; off-task images ('other') crowd class 2's neighbourhood."""
    rng = np.random.default_rng(0)
    centers = np.array([[0.0, 0.0, 0.0], [6.0, 0.0, 0.0], [3.0, 3.0 * np.sqrt(3.0), 0.0]])
    y_ref = np.repeat([0, 1, 2], 10)
    ref = centers[y_ref] + 0.5 * rng.normal(size=(30, 3))
    y_pool = np.concatenate([np.repeat([0, 1, 2], 15), np.full(60, -1)])
    pool = np.vstack([centers[y_pool[:45]], np.repeat(centers[2:3], 60, axis=0)])
    pool += 0.5 * rng.normal(size=pool.shape)
    return pool, y_pool, ref, y_ref


def test_global_drops_crowded_class_and_warns(crowded):
    pool, y_pool, ref, y_ref = crowded
    res = kairos_values(pool, ref, device="cpu", pool_labels=y_pool)
    with pytest.warns(UserWarning, match="class 2: 0 of 15 selected"):
        sel = select(res, 15, reference_labels=y_ref)
    assert sel.class_counts == {-1: 0, 0: sel.class_counts[0], 1: sel.class_counts[1], 2: 0}
    assert any("class 2" in w for w in sel.warnings)
    order = np.lexsort((np.arange(len(pool)).astype(str), -res.values))
    np.testing.assert_array_equal(sel.indices, order[:15])


@pytest.mark.parametrize("policy", ["per_class", "herding"])
def test_per_class_and_herding_keep_every_class(crowded, policy):
    pool, y_pool, ref, y_ref = crowded
    res = kairos_values(pool, ref, device="cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sel = select(
            res,
            15,
            policy=policy,
            labels=y_pool,
            reference_labels=y_ref,
            embeddings=pool,
            reference=ref,
        )
    assert sel.class_counts[0] == sel.class_counts[1] == sel.class_counts[2] == 5
    assert sel.class_counts[-1] == 0
    assert sel.quotas == {0: 5, 1: 5, 2: 5}
    assert not any("below" in w for w in sel.warnings)
    assert any("outside the quota classes" in str(w.message) for w in caught)
    assert len(set(sel.indices.tolist())) == 15


def test_per_class_takes_top_values_within_class():
    rng = np.random.default_rng(1)
    vals = rng.normal(size=40)
    y = np.repeat(["a", "b"], 20)
    sel = select(vals, 10, policy="per_class", labels=y, reference_labels=["a"] * 3 + ["b"] * 2)
    assert sel.quotas == {"a": 6, "b": 4}
    for c, q in sel.quotas.items():
        idx = np.flatnonzero(y == c)
        want = set(idx[np.argsort(-vals[idx])][:q].tolist())
        assert set(sel.indices[y[sel.indices] == c].tolist()) == want
    assert np.all(np.diff(vals[sel.indices]) <= 0)


def test_global_ties_broken_by_id():
    vals = np.array([1.0, 2.0, 2.0, 2.0, 0.5])
    sel = select(vals, 2, ids=["e", "d", "b", "c", "a"])
    assert sel.ids.tolist() == ["b", "c"]
    assert sel.indices.tolist() == [2, 3]
    assert sel.class_counts == {} and sel.warnings == []


def test_frac_and_explicit_quotas():
    vals = np.arange(10.0)
    y = np.array([0] * 5 + [1] * 5)
    assert len(select(vals, frac=0.3).indices) == 3
    with pytest.warns(UserWarning, match="quota 7 exceeds its 5"):
        sel = select(vals, policy="per_class", labels=y, quotas={0: 7, 1: 1})
    assert sel.class_counts == {0: 5, 1: 1}


def test_allocate_quotas_proportional_and_capped():
    q = allocate_quotas(10, {"a": 1, "b": 1, "c": 1}, {"a": 100, "b": 100, "c": 100})
    assert sum(q.values()) == 10 and max(q.values()) - min(q.values()) <= 1
    q = allocate_quotas(10, {"a": 1, "b": 1}, {"a": 2, "b": 100})
    assert q == {"a": 2, "b": 8}
    q = allocate_quotas(10, {"a": 1, "b": 1}, {"a": 2, "b": 3})
    assert q == {"a": 2, "b": 3}


def test_herding_is_greedy_mmd_minimisation():
    rng = np.random.default_rng(2)
    pool = rng.normal(size=(25, 2))
    ref = rng.normal(size=(12, 2)) + 0.3
    y_pool, y_ref = rng.integers(0, 2, 25), rng.integers(0, 2, 12)
    sigma = 0.8
    sel = select(
        np.zeros(25),
        8,
        policy="herding",
        labels=y_pool,
        reference_labels=y_ref,
        embeddings=pool,
        reference=ref,
        bandwidth=sigma,
        device="cpu",
    )
    for c in (0, 1):
        picks = [i for i in sel.indices if y_pool[i] == c]
        cand = np.flatnonzero(y_pool == c)
        chosen: list[int] = []
        for p in picks:
            scores = {i: mmd2(pool[[*chosen, i]], ref[y_ref == c], sigma) for i in cand if i not in chosen}
            best = min(scores.values())
            assert scores[p] == pytest.approx(best, abs=1e-6)
            chosen.append(p)


def test_herding_is_more_diverse_than_top_values():
    """Near-duplicates of one prototype: herding spreads, top-k by b collapses."""
    rng = np.random.default_rng(3)
    ref = rng.normal(size=(40, 2))
    proto = np.zeros((20, 2)) + 0.01 * rng.normal(size=(20, 2))
    spread = rng.normal(size=(20, 2))
    pool = np.vstack([proto, spread])
    y = np.zeros(40, int)
    b = rbf(pool, ref, 1.0).mean(1)
    top = select(b, 6, labels=y)
    herd = select(
        b,
        6,
        policy="herding",
        labels=y,
        reference_labels=np.zeros(40, int),
        embeddings=pool,
        reference=ref,
        bandwidth=1.0,
    )
    assert mmd2(pool[herd.indices], ref, 1.0) < mmd2(pool[top.indices], ref, 1.0)
    assert (herd.indices >= 20).sum() > (top.indices >= 20).sum()


def test_herding_drop_fraction_excludes_lowest_values():
    rng = np.random.default_rng(4)
    pool, ref = rng.normal(size=(30, 2)), rng.normal(size=(10, 2))
    vals = rng.normal(size=30)
    y, y_ref = np.zeros(30, int), np.zeros(10, int)
    with pytest.warns(UserWarning, match="only 15 pool point"):
        sel = select(
            vals,
            20,
            policy="herding",
            labels=y,
            reference_labels=y_ref,
            embeddings=pool,
            reference=ref,
            drop_fraction=0.5,
            bandwidth=1.0,
        )
    lowest = set(np.argsort(vals)[:15].tolist())
    assert not lowest & set(sel.indices.tolist())
    assert len(sel.indices) == 15  # only 15 candidates left
    assert any("only 15 pool point(s) available" in w for w in sel.warnings)


def test_selection_errors():
    vals = np.arange(5.0)
    with pytest.raises(ValueError, match=r"k must lie in \[1, 5\]"):
        select(vals, 6)
    with pytest.raises(ValueError, match="either k or frac"):
        select(vals, 2, frac=0.5)
    with pytest.raises(ValueError, match="give the subset size"):
        select(vals)
    with pytest.raises(ValueError, match="needs the pool labels"):
        select(vals, 2, policy="per_class")
    with pytest.raises(ValueError, match="needs embeddings"):
        select(vals, 2, policy="herding", labels=np.zeros(5, int))
    with pytest.raises(
        ValueError, match=r"unknown selection policy .best.; known: gated_cover, global, herding, per_class"
    ):
        select(vals, 2, policy="best")
    with pytest.raises(ValueError, match="NaN/inf at rows"):
        select(np.array([1.0, np.nan]), 1)
    with pytest.raises(ValueError, match="labels has 3 entries"):
        select(vals, 2, labels=[0, 1, 2])
