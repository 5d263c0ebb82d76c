"""``gated_cover``: the near-duplicate rule, herding towards the retained pool (brute-force
greedy MMD), the gates (estimated / matched / fraction / flags / all), quotas, errors."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from kairos_curate.config import ParamsError
from kairos_curate.selection import POLICIES, select
from kairos_curate.selection import gated_cover as gc
from kairos_curate.valuation import ValuationResult
from kairos_curate.valuation.calibrated import calibrated_values


def rbf(a: np.ndarray, b: np.ndarray, sigma: float) -> np.ndarray:
    d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return np.exp(-d2 / (2.0 * sigma**2))


def mmd2(p: np.ndarray, q: np.ndarray, sigma: float) -> float:
    return float(rbf(p, p, sigma).mean() - 2 * rbf(p, q, sigma).mean() + rbf(q, q, sigma).mean())


def greedy_mmd(cand: np.ndarray, target: np.ndarray, quota: int, sigma: float) -> list[int]:
    """Brute force: each step adds the candidate that makes MMD^2(S, target) smallest."""
    picked: list[int] = []
    for _ in range(quota):
        scores = [math.inf if j in picked else mmd2(cand[[*picked, j]], target, sigma) for j in range(cand.shape[0])]
        picked.append(int(np.argmin(scores)))
    return picked


@pytest.fixture
def pool():
    """Three classes in 5-d, 30 reference images each; 40 pool rows a class."""
    rng = np.random.default_rng(0)
    centres = 3.0 * np.eye(5)[:3]
    y_ref = np.repeat([0, 1, 2], 30)
    ref = centres[y_ref] + rng.normal(size=(90, 5))
    y = np.repeat([0, 1, 2], 40)
    x = centres[y] + rng.normal(size=(120, 5))
    ids = np.array([f"s{i:03d}" for i in range(120)])
    return x, y, ref, y_ref, ids


def _select(values, k, x, y, ref, y_ref, ids, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return select(
            values,
            k,
            labels=y,
            ids=ids,
            reference_labels=y_ref,
            embeddings=x,
            reference=ref,
            bandwidth=kw.pop("bandwidth", 1.5),
            device="cpu",
            **kw,
        )


def test_registered_with_its_parameters():
    cls = POLICIES["gated_cover"]
    assert cls.needs_embeddings and cls.needs_labels
    assert cls.Params().model_dump() == {
        "keep": "estimated",
        "drop_fraction": 0.5,
        "flag_term": "issues",
        "cover": "pool",
        "dedup": True,
        "shortlist": 0.0,
    }


def test_duplicate_radius_and_near_duplicates_match_the_rule():
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(12, 4))
    d = [np.linalg.norm(ref[i] - ref[j]) for i in range(12) for j in range(12) if i != j]
    assert gc.duplicate_radius(ref) == pytest.approx(0.5 * min(d))
    assert gc.duplicate_radius(ref[:1]) == 0.0
    x = rng.normal(size=(30, 4))
    x[7] = x[2] + 1e-3
    x[20] = x[2] - 1e-3
    x[25] = x[11] + 1e-3
    order = rng.permutation(30)
    radius = 0.05
    want = np.array([any(np.linalg.norm(x[order[i]] - x[order[j]]) < radius for i in range(j)) for j in range(30)])
    assert_array_equal(gc.near_duplicates(x, order, radius), want)
    assert want.sum() == 3
    old = gc._BLOCK
    try:  # the blocked scan gives the same mask
        gc._BLOCK = 4
        assert_array_equal(gc.near_duplicates(x, order, radius), want)
    finally:
        gc._BLOCK = old


def test_herd_dense_is_greedy_mmd_to_the_target():
    rng = np.random.default_rng(2)
    cand = rng.normal(size=(15, 3))
    target_points = cand[:10]
    sigma = 1.1
    kcc = rbf(cand, cand, sigma)
    target = rbf(cand, target_points, sigma).mean(1)
    assert gc.herd_dense(kcc, target, 6).tolist() == greedy_mmd(cand, target_points, 6, sigma)
    assert gc.herd_dense(kcc, target, 40).size == 15


def test_cover_pool_herds_towards_the_retained_pool_of_each_class(pool):
    x, y, ref, y_ref, ids = pool
    values = np.random.default_rng(3).random(120)
    sel = _select(values, 30, x, y, ref, y_ref, ids, policy="gated_cover", keep="fraction", drop_fraction=0.25)
    assert sel.quotas == {0: 10, 1: 10, 2: 10} and len(sel) == 30
    for c in range(3):
        rows = np.flatnonzero(y == c)
        kept = rows[np.argsort(-values[rows], kind="stable")][:30]  # ceil(0.75 * 40)
        kept = np.sort(kept)  # ids are in row order here
        want = kept[greedy_mmd(x[kept], x[kept], 10, 1.5)]
        assert sel.indices[y[sel.indices] == c].tolist() == want.tolist()
    assert sel.info["gate_kept"] == {0: 30, 1: 30, 2: 30} and sel.info["duplicates_collapsed"] == 0
    assert sel.eligible.sum() == 90 and sel.eligible[sel.indices].all()


@pytest.mark.parametrize("dense_max", [gc.DENSE_MAX, 10])
def test_shortlist_picks_among_the_top_values_but_herds_towards_the_whole_retained_class(pool, monkeypatch, dense_max):
    monkeypatch.setattr(gc, "DENSE_MAX", dense_max)  # 10: the blocked kernels of a large class
    x, y, ref, y_ref, ids = pool
    values = np.random.default_rng(5).random(120)
    sel = _select(
        values, 30, x, y, ref, y_ref, ids, policy="gated_cover", keep="fraction", drop_fraction=0.25, shortlist=2
    )
    assert sel.info["shortlisted"] == {0: 20, 1: 20, 2: 20} and sel.info["candidates"] == {0: 30, 1: 30, 2: 30}
    for c in range(3):
        rows = np.flatnonzero(y == c)
        by_value = rows[np.argsort(-values[rows], kind="stable")]
        kept, short = np.sort(by_value[:30]), np.sort(by_value[:20])  # ceil(0.75 * 40), ceil(2 * 10)
        want = short[greedy_mmd(x[short], x[kept], 10, 1.5)]
        assert sel.indices[y[sel.indices] == c].tolist() == want.tolist()
    # a shortlist longer than the candidates changes nothing
    long = _select(
        values, 30, x, y, ref, y_ref, ids, policy="gated_cover", keep="fraction", drop_fraction=0.25, shortlist=5
    )
    plain = _select(values, 30, x, y, ref, y_ref, ids, policy="gated_cover", keep="fraction", drop_fraction=0.25)
    assert long.indices.tolist() == plain.indices.tolist()


def test_cover_reference_is_herding_towards_the_class_reference(pool):
    x, y, ref, y_ref, ids = pool
    sel = _select(np.zeros(120), 12, x, y, ref, y_ref, ids, policy="gated_cover", keep="all", cover="reference")
    for c in range(3):
        rows = np.flatnonzero(y == c)
        want = rows[greedy_mmd(x[rows], ref[y_ref == c], 4, 1.5)]
        assert sel.indices[y[sel.indices] == c].tolist() == want.tolist()
    herding = _select(np.zeros(120), 12, x, y, ref, y_ref, ids, policy="herding")
    assert sorted(herding.indices.tolist()) == sorted(sel.indices.tolist())  # the same target


def test_cover_random_is_seeded_and_stays_in_the_candidates(pool):
    x, y, ref, y_ref, ids = pool
    values = np.arange(120.0)
    a = _select(values, 30, x, y, ref, y_ref, ids, policy="gated_cover", keep="fraction", cover="random", seed=4)
    b = _select(values, 30, x, y, ref, y_ref, ids, policy="gated_cover", keep="fraction", cover="random", seed=4)
    c = _select(values, 30, x, y, ref, y_ref, ids, policy="gated_cover", keep="fraction", cover="random", seed=5)
    assert_array_equal(a.indices, b.indices) and not np.array_equal(a.indices, c.indices)
    assert a.eligible[a.indices].all() and a.eligible.sum() == 60
    rng = np.random.default_rng([4, 11])
    want = np.concatenate([rng.choice(np.flatnonzero(y == k)[20:], size=10, replace=False) for k in range(3)])
    assert_array_equal(a.indices, want)


def test_near_duplicates_are_collapsed_except_with_the_reference_cover(pool):
    x, y, ref, y_ref, ids = pool
    x = x.copy()
    x[41:50] = x[40] + 1e-4 * np.random.default_rng(5).normal(size=(9, 5))  # 9 copies of row 40 (class 1)
    sel = _select(np.zeros(120), 30, x, y, ref, y_ref, ids, policy="gated_cover", keep="all")
    assert sel.info["duplicates_collapsed"] == 9 and sel.info["collapsed_rows"] == list(range(41, 50))
    assert sel.info["candidates"][1] == 31 and sel.eligible.all()  # eligible is the gate (keep="all")
    assert not set(sel.indices.tolist()) & set(range(41, 50))
    # the copy with the smallest id stays: reversed ids keep row 49 instead
    rev = _select(np.zeros(120), 30, x, y, ref, y_ref, ids[::-1].copy(), policy="gated_cover", keep="all")
    assert rev.info["collapsed_rows"] == list(range(40, 49))
    plain = _select(np.zeros(120), 30, x, y, ref, y_ref, ids, policy="gated_cover", keep="all", dedup=False)
    ref_cover = _select(np.zeros(120), 30, x, y, ref, y_ref, ids, policy="gated_cover", keep="all", cover="reference")
    assert plain.info["duplicates_collapsed"] == ref_cover.info["duplicates_collapsed"] == 0


def test_estimated_gate_uses_the_calibrated_keep_counts():
    rng = np.random.default_rng(1)
    centres = 3.0 * np.eye(8)[:4]
    y_ref = np.repeat(np.arange(4), 30)
    ref = centres[y_ref] + rng.normal(size=(120, 8))
    y = np.repeat(np.arange(4), 120)
    x = centres[y] + rng.normal(size=(480, 8))
    x[:40] = 3.0 * np.eye(8)[6] + rng.normal(size=(40, 8))  # off-task rows shown as class 0
    res = calibrated_values(x, ref, y, y_ref)
    ids = np.array([f"r{i:03d}" for i in range(480)])
    other = rng.random(480)
    sel = _select(res, 96, x, y, ref, y_ref, ids, policy="gated_cover", bandwidth=None)
    assert sel.info["gate_kept"] == res.keep_counts and sum(sel.quotas.values()) == 96
    assert np.isin(sel.indices, np.arange(40)).sum() <= 1  # (almost) no off-task row selected
    plain = _select(res, 96, x, y, ref, y_ref, ids, policy="gated_cover", keep="all", bandwidth=None)
    assert np.isin(plain.indices, np.arange(40)).sum() >= 3  # ungated, the pool cover takes some
    for c, n_keep in res.keep_counts.items():
        rows = np.flatnonzero(y == c)
        top = set(rows[np.lexsort((ids[rows], -res.values[rows]))][:n_keep].tolist())
        assert set(np.flatnonzero(sel.eligible & (y == c)).tolist()) == top
    # matched: another method's values at the same per-class sizes (keys may be text, from JSON)
    counts = {str(c): n for c, n in res.keep_counts.items()}
    m = _select(other, 96, x, y, ref, y_ref, ids, policy="gated_cover", keep="matched", keep_counts=counts)
    assert m.info["gate_kept"] == res.keep_counts and m.eligible[m.indices].all()
    for c, n_keep in res.keep_counts.items():
        rows = np.flatnonzero(y == c)
        assert set(np.flatnonzero(m.eligible & (y == c)).tolist()) == set(
            rows[np.argsort(-other[rows])][:n_keep].tolist()
        )


def test_flags_gate_drops_the_flagged_rows(pool):
    x, y, ref, y_ref, ids = pool
    flags = np.zeros(120, dtype=bool)
    flags[::3] = True
    res = ValuationResult("confident_learning", values=np.ones(120), labels=y, terms={"issues": flags})
    sel = _select(res, 30, x, y, ref, y_ref, ids, policy="gated_cover", keep="flags")
    assert_array_equal(sel.eligible, ~flags) and not flags[sel.indices].any()
    assert sel.info["gate_kept"] == {c: int((~flags & (y == c)).sum()) for c in range(3)}


def test_quotas_sum_to_k_and_a_small_gate_gives_fewer(pool):
    x, y, ref, y_ref, ids = pool
    for k in (7, 30, 61):
        sel = _select(np.zeros(120), k, x, y, ref, y_ref, ids, policy="gated_cover", keep="all")
        assert len(sel) == k == sum(sel.quotas.values()) and len(set(sel.indices.tolist())) == k
    small = _select(
        np.zeros(120), 30, x, y, ref, y_ref, ids, policy="gated_cover", keep="matched", keep_counts={0: 3, 1: 40, 2: 40}
    )
    assert small.quotas == {0: 3, 1: 14, 2: 13} and small.class_counts[0] == 3


def test_a_large_class_herds_with_the_blocked_kernels_and_agrees(pool, monkeypatch):
    x, y, ref, y_ref, ids = pool
    dense = _select(np.zeros(120), 30, x, y, ref, y_ref, ids, policy="gated_cover", keep="all")
    monkeypatch.setattr(gc, "DENSE_MAX", 10)
    blocked = _select(np.zeros(120), 30, x, y, ref, y_ref, ids, policy="gated_cover", keep="all")
    assert blocked.indices.tolist() == dense.indices.tolist()


def test_errors_name_the_parameter_and_the_fix(pool):
    x, y, ref, y_ref, ids = pool
    with pytest.raises(
        ValueError, match=r"keep='estimated' needs a valuation result with info\['keep_counts'\].*kairos_calibrated"
    ):
        _select(np.zeros(120), 30, x, y, ref, y_ref, ids, policy="gated_cover")
    with pytest.raises(ValueError, match="keep='matched' needs keep_counts="):
        _select(np.zeros(120), 30, x, y, ref, y_ref, ids, policy="gated_cover", keep="matched")
    with pytest.raises(ValueError, match="keep_counts has no count for class 2"):
        _select(
            np.zeros(120), 30, x, y, ref, y_ref, ids, policy="gated_cover", keep="matched", keep_counts={0: 5, 1: 5}
        )
    with pytest.raises(ValueError, match="keep='flags' needs a valuation result with a boolean term 'issues'"):
        _select(np.zeros(120), 30, x, y, ref, y_ref, ids, policy="gated_cover", keep="flags")
    with pytest.raises(ValueError, match="drop_fraction must lie in"):
        _select(np.zeros(120), 30, x, y, ref, y_ref, ids, policy="gated_cover", keep="fraction", drop_fraction=1.0)
    with pytest.raises(ValueError, match=r"shortlist must be 0 \(off\) or at least 1"):
        _select(np.zeros(120), 30, x, y, ref, y_ref, ids, policy="gated_cover", keep="all", shortlist=0.5)
    with pytest.raises(ParamsError, match="cover"):
        _select(np.zeros(120), 30, x, y, ref, y_ref, ids, policy="gated_cover", cover="kept")
    with pytest.raises(ValueError, match="needs embeddings="):
        select(np.zeros(120), 30, policy="gated_cover", labels=y, reference_labels=y_ref)
