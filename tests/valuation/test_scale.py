"""Scale-out pieces that need no Ray: engine switch, Nyström sketch (brute force, bound,
accuracy), partitioned herding, FAISS near-duplicates, and the Ray-free default path."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.stats import spearmanr

from kairos_curate.audit import duplicate_scan
from kairos_curate.engine import LocalEngine, get_engine
from kairos_curate.engine.valuation import value_with_engine
from kairos_curate.selection import select
from kairos_curate.selection.herding import interleave
from kairos_curate.valuation import kairos_values
from kairos_curate.valuation.nystrom import (
    NystromKairosState,
    nystrom_kairos_values,
    select_landmarks,
)
from kairos_curate.valuation.sharded import ShardedKairosState


def rbf(a: np.ndarray, b: np.ndarray, sigma: float) -> np.ndarray:
    d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return np.exp(-d2 / (2.0 * sigma**2))


@pytest.fixture
def small():
    rng = np.random.default_rng(1)
    pool = rng.normal(size=(160, 5))
    pool[:30] += 2.5
    ref = rng.normal(size=(45, 5)) + 0.2
    return pool, ref, rng.integers(0, 3, 160), rng.integers(0, 3, 45)


def test_get_engine_names_and_errors():
    assert isinstance(get_engine("local"), LocalEngine)
    assert isinstance(get_engine(None), LocalEngine)
    engine = LocalEngine()
    assert get_engine(engine) is engine
    with pytest.raises(ValueError, match="engine must be one of"):
        get_engine("dask")
    with pytest.raises(ValueError, match="--engine ray"):
        get_engine("local", "auto")
    with pytest.raises(ValueError, match="method must be one of"):
        value_with_engine(np.ones((3, 2)), np.ones((2, 2)), 1.0, method="rff")


def test_default_path_never_imports_ray(tmp_path):
    code = (
        "import sys, numpy as np\n"
        "from kairos_curate.engine.valuation import value_with_engine\n"
        "from kairos_curate.valuation import kairos_values\n"
        "from kairos_curate.commands import value, embed, audit\n"
        "x = np.random.default_rng(0).normal(size=(40, 3))\n"
        "value_with_engine(x, x[:10], 1.0, engine='local', device='cpu')\n"
        "value_with_engine(x, x[:10], 1.0, engine='local', method='nystrom', n_landmarks=8,"
        " device='cpu')\n"
        "assert 'ray' not in sys.modules, 'ray imported on the local path'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("mode", [None, "residual", "class_conditional"])
def test_sharded_local_matches_brute_force(small, mode):
    pool, ref, y, y_ref = small
    sigma = 1.8
    res = (
        ShardedKairosState.from_pool(
            pool[:70],
            ref,
            sigma,
            pool_labels=y[:70],
            reference_labels=y_ref,
            label_mode=mode,
            shard_size=33,
            device="cpu",
        )
        .update(pool[70:], y[70:])
        .result()
    )
    exact = kairos_values(pool, ref, sigma, pool_labels=y, reference_labels=y_ref, label_mode=mode, device="cpu")
    assert_allclose(res.values, exact.values, rtol=0, atol=1e-6)
    assert_allclose(res.mmd2, exact.mmd2, rtol=1e-6)
    if mode == "class_conditional":
        for c in range(3):
            i, j = np.flatnonzero(y == c), np.flatnonzero(y_ref == c)
            assert_allclose(res.a[i], rbf(pool[i], pool[i], sigma).mean(1), rtol=1e-5)
            assert_allclose(res.b[i], rbf(pool[i], ref[j], sigma).mean(1), rtol=1e-5)
    else:
        assert_allclose(res.a, rbf(pool, pool, sigma).mean(1), rtol=1e-5)
        assert_allclose(res.b, rbf(pool, ref, sigma).mean(1), rtol=1e-5)


@pytest.mark.parametrize("mode", [None, "class_conditional"])
def test_nystrom_with_every_point_as_landmark_is_exact(small, mode):
    pool, ref, y, y_ref = small
    sigma = 2.0
    state = NystromKairosState(
        ref,
        sigma,
        np.vstack([pool, ref]),
        reference_labels=y_ref,
        label_mode=mode,
        rcond=1e-13,
        device="cpu",
        shard_size=50,
    )
    res = state.update(pool, y).result()
    exact = kairos_values(pool, ref, sigma, pool_labels=y, reference_labels=y_ref, label_mode=mode, device="cpu")
    assert res.backend == "nystrom" and res.info["rank"] == len(pool) + len(ref)
    assert_allclose(res.a, exact.a, rtol=0, atol=1e-6)
    assert_allclose(res.b, exact.b, rtol=0, atol=1e-6)
    assert_allclose(res.values, exact.values, rtol=0, atol=2e-6)


@pytest.mark.parametrize("mode", [None, "class_conditional"])
def test_nystrom_error_bound_holds(small, mode):
    pool, ref, y, y_ref = small
    sigma = 1.5
    lm = select_landmarks(pool, ref, 24, seed=2)
    res = (
        NystromKairosState(ref, sigma, lm, reference_labels=y_ref, label_mode=mode, bounds=True, device="cpu")
        .update(pool[:90], y[:90])
        .update(pool[90:], y[90:])
        .result()
    )
    exact = kairos_values(pool, ref, sigma, pool_labels=y, reference_labels=y_ref, label_mode=mode, device="cpu")
    key = "value_bound" if mode is None else "value_bound_cc"
    err = np.abs(res.values - exact.values)
    assert err.max() > 1e-4  # a real approximation
    assert (err <= res.info[key]).all()
    # brute-force residual r(x) = 1 - k(x, L) K_LL^-1 k(L, x)
    k_ll = rbf(lm, lm, sigma)
    g = rbf(pool, lm, sigma)
    r = 1.0 - np.einsum("ij,ij->i", g, np.linalg.solve(k_ll, g.T).T)
    assert_allclose(res.info["residual_mean"], r.mean(), rtol=1e-4, atol=1e-7)


def _clustered(n: int, m: int, d: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = 0.7 * rng.normal(size=(25, d)) / np.sqrt(d) + rng.normal(size=d) / np.sqrt(d)
    y = rng.integers(0, 25, n)
    pool = centres[y] + 0.35 * rng.normal(size=(n, d)) / np.sqrt(d)
    off = rng.random(n) < 0.05
    pool[off] = rng.normal(size=(off.sum(), d)) / np.sqrt(d) * 1.3
    y_ref = rng.integers(0, 5, m)
    ref = centres[y_ref] + 0.35 * rng.normal(size=(m, d)) / np.sqrt(d)
    return pool, ref, np.where(y < 5, y, rng.integers(0, 5, n)), y_ref


def _top_overlap(a: np.ndarray, b: np.ndarray, frac: float = 0.2) -> float:
    k = int(frac * len(a))
    return len(np.intersect1d(np.argsort(-a)[:k], np.argsort(-b)[:k])) / k


@pytest.mark.parametrize("mode", [None, "class_conditional"])
def test_nystrom_accuracy_at_ci_size(mode):
    pool, ref, y, y_ref = _clustered(4000, 600, 48)
    kw = dict(pool_labels=y, reference_labels=y_ref, label_mode=mode, device="cpu")
    exact = kairos_values(pool, ref, **kw)
    sketch = nystrom_kairos_values(pool, ref, n_landmarks=400, **kw)
    assert spearmanr(sketch.values, exact.values).statistic >= 0.99
    assert _top_overlap(sketch.values, exact.values) >= 0.98


def test_select_landmarks_shapes_and_seed(small):
    pool, ref, _, _ = small
    lm = select_landmarks(pool, ref, 20, seed=1)
    assert lm.shape == (20, 5)
    assert np.array_equal(lm, select_landmarks(pool, ref, 20, seed=1))
    assert any((np.abs(ref - row).sum(1) == 0).any() for row in lm[:10])  # reference half
    assert select_landmarks(pool, ref, 20, method="random").shape == (20, 5)
    with pytest.raises(ValueError, match="landmark method"):
        select_landmarks(pool, ref, 20, method="leverage")
    dup = np.repeat(pool[:3], 10, axis=0)  # D^2 sampling runs out of distinct points
    assert select_landmarks(dup, ref, 12, reference_share=0.0).shape == (12, 5)


def test_herding_partitions_large_classes_and_is_exact_when_unsplit(small):
    pool, ref, y, y_ref = small
    vals = np.random.default_rng(0).normal(size=len(pool))
    kw = dict(labels=y, reference_labels=y_ref, embeddings=pool, reference=ref, bandwidth=1.5, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exact = select(vals, 40, policy="herding", drop_fraction=0.2, **kw)
        same = select(vals, 40, policy="herding", drop_fraction=0.2, partition_size=10_000, **kw)
        split = select(vals, 40, policy="herding", partition_size=20, **kw)
    assert np.array_equal(same.indices, exact.indices) and same.quotas == exact.quotas
    assert "partitioned_classes" not in same.info and split.info["partitioned_classes"]
    assert len(set(split.indices.tolist())) == 40
    assert split.class_counts == {c: exact.quotas[c] for c in exact.quotas}
    with pytest.raises(ValueError, match="partition_size must be >= 1"):
        select(vals, 40, policy="herding", partition_size=0, **kw)


def test_interleave_round_robin():
    out = interleave([np.array([1, 2, 3]), np.array([10]), np.array([20, 21])])
    assert out.tolist() == [1, 10, 20, 2, 21, 3]


def test_faiss_flat_equals_blockwise_scan_and_ivf_finds_duplicates():
    pytest.importorskip("faiss")
    from kairos_curate.neighbours import duplicate_pairs

    rng = np.random.default_rng(4)
    x = rng.normal(size=(3000, 32)).astype(np.float32)
    src = rng.choice(3000, 200, replace=False)
    x[rng.choice(3000, 200, replace=False)] = x[src] + 0.01 * rng.normal(size=(200, 32))
    blocked = duplicate_scan(x, 0.98, method="blocked")
    flat = duplicate_scan(x, 0.98, method="faiss")
    assert len(blocked[0]) > 50
    assert [g.tolist() for g in flat[0]] == [g.tolist() for g in blocked[0]]
    assert flat[1] == pytest.approx(blocked[1], abs=1e-5)
    exact_pairs, _, _, used = duplicate_pairs(x, 0.98, index="flat")
    assert used == "flat"
    ivf_pairs, _, best, used = duplicate_pairs(x, 0.98, index="ivf", nprobe=4)
    assert used == "ivf" and best == pytest.approx(blocked[1], abs=1e-5)
    found = {tuple(p) for p in ivf_pairs.tolist()}
    truth = {tuple(p) for p in exact_pairs.tolist()}
    assert found <= truth and len(found) >= 0.95 * len(truth)
    with pytest.raises(ValueError, match="index must be"):
        duplicate_pairs(x, 0.98, index="hnsw")


def test_cli_value_nystrom_and_engine_errors(tmp_path, capsys):
    from kairos_curate.cli import main
    from kairos_curate.io import save_embeddings

    rng = np.random.default_rng(0)
    pool, ref = rng.normal(size=(120, 4)), rng.normal(size=(30, 4))
    save_embeddings(tmp_path / "p.npz", np.array([f"p{i}" for i in range(120)]), pool)
    save_embeddings(tmp_path / "r.npz", np.array([f"r{i}" for i in range(30)]), ref)
    common = ["value", "--pool", str(tmp_path / "p.npz"), "--reference", str(tmp_path / "r.npz"), "--device", "cpu"]
    assert main([*common, "--out", str(tmp_path / "v.csv"), "--method", "nystrom", "--landmarks", "150"]) == 0
    capsys.readouterr()
    # a fresh --out each time: an existing output is refused before the engine options are read
    assert main([*common, "--out", str(tmp_path / "v2.csv"), "--ray-address", "auto"]) == 2
    assert "--engine ray" in capsys.readouterr().err
    assert main([*common, "--out", str(tmp_path / "v3.csv"), "--method", "nystrom", "--landmarks", "0"]) == 2
    assert "--landmarks" in capsys.readouterr().err
