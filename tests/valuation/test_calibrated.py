"""``kairos_calibrated``: brute-force float64 checks of every formula (witness, label statistic,
label bandwidth, smoothed and leave-one-out p-values, Storey's pi, the combination) and the
properties that matter (a clean pool keeps almost all; planted off-task and flipped rows drop)."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from kairos_curate.config import ParamsError
from kairos_curate.valuation import METHODS, ValuationInputs, value
from kairos_curate.valuation.calibrated import (
    LABEL_BANDWIDTH_GRID,
    calibrated_values,
    crossfit_label_statistics,
    label_bandwidth,
    label_statistics,
    silverman_bandwidth,
    smoothed_loo_p,
    smoothed_p,
    smoothed_p_by_class,
    storey_clean_share,
    witness_statistics,
)


def k(u: np.ndarray, v: np.ndarray, sigma: float) -> float:
    return math.exp(-float(((u - v) ** 2).sum()) / (2.0 * sigma**2))


def silverman_loop(r: list[float]) -> float:
    sd = statistics.stdev(r) if len(r) > 1 else 0.0
    q = np.percentile(r, [25, 75])
    iqr = (q[1] - q[0]) / 1.34
    s = min(sd, iqr) if iqr > 0 else sd
    return max(0.9 * s * len(r) ** -0.2, 1e-12)


def smoothed_p_loop(t: float, r: list[float]) -> float:
    h = silverman_loop(r)
    phi = sum(0.5 * (1.0 + math.erf((t - rj) / (h * math.sqrt(2.0)))) for rj in r)
    return (0.5 + phi) / (len(r) + 1)


@pytest.fixture(scope="module")
def small():
    """Three classes in 4-d; the pool has a few off-task rows (class 0) and flipped rows."""
    rng = np.random.default_rng(3)
    centres = np.array([[0.0, 0, 0, 0], [3.0, 0, 0, 0], [0.0, 3.0, 0, 0]])
    yr = np.repeat([0, 1, 2], 7)
    z = centres[yr] + 0.6 * rng.normal(size=(21, 4))
    y = np.repeat([0, 1, 2], 12)
    x = centres[y] + 0.6 * rng.normal(size=(36, 4))
    x[:3] = np.array([0.0, 0, 4.0, 0]) + 0.3 * rng.normal(size=(3, 4))  # off-task, shown as 0
    x[12:14] = centres[2] + 0.6 * rng.normal(size=(2, 4))  # flipped: class 2 shown as 1
    return x, y, z, yr


def test_silverman_and_smoothed_p_match_a_direct_loop():
    rng = np.random.default_rng(0)
    r = rng.normal(size=23)
    t = np.concatenate([rng.normal(size=9) * 2, [-40.0, 40.0]])
    assert silverman_bandwidth(r) == pytest.approx(silverman_loop(r.tolist()), rel=1e-12)
    assert_allclose(smoothed_p(t, r), [smoothed_p_loop(v, r.tolist()) for v in t], rtol=1e-12)
    # far below / above the whole reference: the limits 1/2 / (M+1) and (M + 1/2) / (M+1)
    assert smoothed_p(np.array([-1e6]), r)[0] == pytest.approx(0.5 / 24)
    assert smoothed_p(np.array([1e6]), r)[0] == pytest.approx(23.5 / 24)
    # continuous and strictly increasing between the calibration values: no ties
    grid = np.linspace(-3, 3, 200)
    assert (np.diff(smoothed_p(grid, r)) > 0).all()
    # a constant calibration set (IQR and sd 0) falls back to the tiny bandwidth: a step
    assert_allclose(smoothed_p(np.array([0.0, 2.0]), np.ones(4)), [0.5 / 5, 4.5 / 5])


def test_smoothed_p_by_class_and_leave_one_out_match_loops():
    rng = np.random.default_rng(1)
    ref, ref_c = rng.normal(size=15), np.repeat([0, 1, 2], 5)
    t, codes = rng.normal(size=12), np.tile([0, 1, 2], 4)
    want = [smoothed_p_loop(t[i], ref[ref_c == codes[i]].tolist()) for i in range(12)]
    assert_allclose(smoothed_p_by_class(t, codes, ref, ref_c), want, rtol=1e-12)
    loo = [smoothed_p_loop(ref[i], [ref[j] for j in range(15) if j != i and ref_c[j] == ref_c[i]]) for i in range(15)]
    assert_allclose(smoothed_loo_p(ref, ref_c), loo, rtol=1e-12)


def test_witness_statistics_match_brute_force(small):
    x, y, z, yr = small
    sigma = 1.3
    v, rv = witness_statistics(x, y, z, yr, sigma)
    for i in range(x.shape[0]):
        b = np.mean([k(x[i], z[j], sigma) for j in range(z.shape[0]) if yr[j] == y[i]])
        a = np.mean([k(x[i], x[j], sigma) for j in range(x.shape[0]) if y[j] == y[i] and j != i])
        assert v[i] == pytest.approx(b - a, abs=1e-12)
    for i in range(z.shape[0]):
        b = np.mean([k(z[i], z[j], sigma) for j in range(z.shape[0]) if yr[j] == yr[i] and j != i])
        a = np.mean([k(z[i], x[j], sigma) for j in range(x.shape[0]) if y[j] == yr[i]])
        assert rv[i] == pytest.approx(b - a, abs=1e-12)


def test_witness_over_retained_rows_matches_brute_force(small):
    x, y, z, yr = small
    sigma = 1.3
    kept = np.random.default_rng(5).uniform(size=x.shape[0]) > 0.4
    kept[y == 2] = False  # a class with nothing retained: a = 0
    v, rv = witness_statistics(x, y, z, yr, sigma, retained=kept)
    for i in range(x.shape[0]):
        b = np.mean([k(x[i], z[j], sigma) for j in range(z.shape[0]) if yr[j] == y[i]])
        others = [k(x[i], x[j], sigma) for j in range(x.shape[0]) if y[j] == y[i] and j != i and kept[j]]
        assert v[i] == pytest.approx(b - (np.mean(others) if others else 0.0), abs=1e-12)
    for i in range(z.shape[0]):
        b = np.mean([k(z[i], z[j], sigma) for j in range(z.shape[0]) if yr[j] == yr[i] and j != i])
        pool = [k(z[i], x[j], sigma) for j in range(x.shape[0]) if y[j] == yr[i] and kept[j]]
        assert rv[i] == pytest.approx(b - (np.mean(pool) if pool else 0.0), abs=1e-12)
    # every row retained is the plain witness
    plain = witness_statistics(x, y, z, yr, sigma)
    for got, want in zip(witness_statistics(x, y, z, yr, sigma, retained=np.ones(36, bool)), plain, strict=True):
        assert_allclose(got, want, rtol=1e-13)


def test_revalue_recomputes_the_witness_over_the_kept_rows(small):
    x, y, z, yr = small
    first = calibrated_values(x, z, y, yr, bandwidth=1.3)
    again = calibrated_values(x, z, y, yr, bandwidth=1.3, revalue=1)
    kept = np.zeros(36, bool)
    for c in range(3):
        rows = [i for i in range(36) if y[i] == c]
        rows.sort(key=lambda i: (-first.values[i], i))
        kept[rows[: first.keep_counts[c]]] = True
    v, rv = witness_statistics(x, y, z, yr, 1.3, retained=kept)
    pf = [smoothed_p_loop(v[i], rv[yr == y[i]].tolist()) for i in range(36)]
    assert_allclose(again.p_feature, pf, rtol=1e-10)
    assert_allclose(again.p_label, first.p_label, rtol=1e-13)  # the label statistic stays
    assert_allclose(again.terms["witness"], v, rtol=1e-13)
    _, rlab = label_statistics(x, y, z, yr, label_bandwidth(z, yr, 1.3))
    ref_min = np.minimum(smoothed_loo_p(rv, yr), smoothed_loo_p(rlab, yr))
    pl = again.p_label
    want = [smoothed_p_loop(min(pf[i], pl[i]), ref_min[yr == y[i]].tolist()) for i in range(36)]
    assert_allclose(again.values, want, rtol=1e-10)
    assert again.keep_counts == {c: int((again.values[y == c] > 0.1).sum()) for c in range(3)}
    assert again.params["revalue"] == 1 and first.params["revalue"] == 0
    with pytest.raises(ValueError, match="revalue must be a whole number"):
        calibrated_values(x, z, y, yr, revalue=-1)
    with pytest.raises(ValueError, match=r"level must lie in \(0, 1\)"):
        calibrated_values(x, z, y, yr, level=1.0)
    with pytest.raises(ValueError, match="combine must be"):
        calibrated_values(x, z, y, yr, combine="fisher")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="keep_rule must be"):
        calibrated_values(x, z, y, yr, keep_rule="bh")  # type: ignore[arg-type]


def test_label_statistics_match_brute_force(small):
    x, y, z, yr = small
    s = 0.7
    lab, rlab = label_statistics(x, y, z, yr, s)

    def posterior(u, shown, skip=None):
        means = [np.mean([k(u, z[j], s) for j in range(z.shape[0]) if yr[j] == c and j != skip]) for c in range(3)]
        return math.log(means[shown]) - math.log(sum(means))

    assert_allclose(lab, [posterior(x[i], y[i]) for i in range(x.shape[0])], atol=1e-12)
    assert_allclose(rlab, [posterior(z[i], yr[i], skip=i) for i in range(z.shape[0])], atol=1e-12)
    # the flipped rows (class-2 images shown as 1) get the lowest label statistic of class 1
    ones = np.flatnonzero(y == 1)
    assert set(ones[np.argsort(lab[ones])[:2]].tolist()) == {12, 13}


def test_label_bandwidth_maximises_the_reference_leave_one_out_likelihood(small):
    _, _, z, yr = small
    sigma = 2.0

    def loo_loglik(s):
        total = 0.0
        for i in range(z.shape[0]):
            means = [np.mean([k(z[i], z[j], s) for j in range(z.shape[0]) if yr[j] == c and j != i]) for c in range(3)]
            total += math.log(means[yr[i]]) - math.log(sum(means))
        return total / z.shape[0]

    scores = [loo_loglik(m * sigma) for m in LABEL_BANDWIDTH_GRID]
    assert label_bandwidth(z, yr, sigma) == pytest.approx(LABEL_BANDWIDTH_GRID[int(np.argmax(scores))] * sigma)
    assert label_bandwidth(z, yr, sigma, grid=(0.5,)) == pytest.approx(1.0)


def test_storey_clean_share_matches_its_formula():
    p = np.array([0.9, 0.8, 0.1, 0.05, 0.7, 0.6, 0.2, 0.3, 0.01, 0.55])
    codes = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    # class 0: 2 of 4 above 1/2 -> 0.5 / 0.5 = 1; class 1: 3 of 6 -> 1 (capped); class 2: empty -> 1
    assert_allclose(storey_clean_share(p, codes, 3), [1.0, 1.0, 1.0])
    p2 = np.array([0.9, 0.1, 0.2, 0.3, 0.7, 0.6, 0.2, 0.3, 0.01, 0.05])
    assert_allclose(storey_clean_share(p2, codes, 2), [min(1, 0.25 / 0.5), min(1, (2 / 6) / 0.5)])


def test_calibrated_values_combine_the_gates_as_documented(small):
    x, y, z, yr = small
    res = calibrated_values(x, z, y.astype(str), yr.astype(str), bandwidth=1.3)  # string labels
    v, rv = witness_statistics(x, y, z, yr, 1.3)
    sl = label_bandwidth(z, yr, 1.3)
    lab, rlab = label_statistics(x, y, z, yr, sl)
    pf = [smoothed_p_loop(v[i], rv[yr == y[i]].tolist()) for i in range(36)]
    pl = [smoothed_p_loop(lab[i], rlab[yr == y[i]].tolist()) for i in range(36)]
    assert_allclose(res.p_feature, pf, rtol=1e-10)
    assert_allclose(res.p_label, pl, rtol=1e-10)
    ref_min = np.minimum(smoothed_loo_p(rv, yr), smoothed_loo_p(rlab, yr))
    want = [smoothed_p_loop(min(pf[i], pl[i]), ref_min[yr == y[i]].tolist()) for i in range(36)]
    assert_allclose(res.values, want, rtol=1e-10)
    assert res.bandwidth == 1.3 and res.label_bandwidth == pytest.approx(sl)
    share = storey_clean_share(res.values, y, 3)
    assert res.clean_share == pytest.approx({str(c): share[c] for c in range(3)})
    # the default gate: every row whose p-value exceeds level = 0.1
    assert res.keep_counts == {str(c): sum(1 for i in range(36) if y[i] == c and want[i] > 0.1) for c in range(3)}
    storey = calibrated_values(x, z, y, yr, bandwidth=1.3, keep_rule="storey")
    assert_allclose(storey.values, want, rtol=1e-10)  # the rule sizes the gate, nothing else
    assert storey.keep_counts == {c: round(share[c] * 12) for c in range(3)}
    one = calibrated_values(x, z, y, yr, bandwidth=1.3, gates="feature", level=0.3)
    assert_allclose(one.values, pf, rtol=1e-10)
    assert one.keep_counts == {c: sum(1 for i in range(36) if y[i] == c and pf[i] > 0.3) for c in range(3)}
    assert_allclose(calibrated_values(x, z, y, yr, bandwidth=1.3, gates="label").values, pl, rtol=1e-10)
    both = calibrated_values(x, z, y, yr, bandwidth=1.3, combine="min")
    assert_allclose(both.values, np.minimum(pf, pl), rtol=1e-10)  # each gate must pass on its own
    assert both.keep_counts == {c: sum(1 for i in range(36) if y[i] == c and min(pf[i], pl[i]) > 0.1) for c in range(3)}


def _scenario(seed: int, n_off: int = 0, n_flip: int = 0, n_per: int = 120):
    """Four classes of clean Gaussian blobs in 8-d; optional off-task rows (class 0) and flips (1 -> 0)."""
    rng = np.random.default_rng(seed)
    centres = 3.0 * np.eye(8)[:4]
    yr = np.repeat(np.arange(4), 30)
    z = centres[yr] + rng.normal(size=(120, 8))
    y = np.repeat(np.arange(4), n_per)
    x = centres[y] + rng.normal(size=(y.size, 8))
    bad = np.zeros(y.size, dtype=bool)
    zero = np.flatnonzero(y == 0)
    if n_off:
        x[zero[:n_off]] = 3.0 * np.eye(8)[6] + rng.normal(size=(n_off, 8))  # another "species"
        bad[zero[:n_off]] = True
    if n_flip:
        rows = zero[n_off : n_off + n_flip]
        x[rows] = centres[1] + rng.normal(size=(n_flip, 8))  # class-1 images shown as 0
        bad[rows] = True
    return x, y, z, yr, bad


def test_a_clean_pool_keeps_almost_everything():
    x, y, z, yr, _ = _scenario(0)
    res = calibrated_values(x, z, y, yr)
    # Storey's pi is noisy with 30 reference images a class (its p-values share that reference)
    assert min(res.clean_share.values()) >= 0.6
    assert sum(res.keep_counts.values()) >= 0.9 * y.size
    assert 0.35 < float(np.mean(res.values)) < 0.65  # calibrated: roughly uniform on clean rows


@pytest.mark.parametrize(("n_off", "n_flip"), [(40, 0), (0, 40), (25, 25)])
def test_planted_off_task_and_flipped_blocks_are_dropped(n_off, n_flip):
    x, y, z, yr, bad = _scenario(1, n_off, n_flip)
    zero = np.flatnonzero(y == 0)
    res = calibrated_values(x, z, y, yr, keep_rule="storey")
    n_keep = res.keep_counts[0]
    assert abs((zero.size - n_keep) - bad.sum()) <= 25  # the estimated bad count is about right
    dropped = zero[np.argsort(res.values[zero])][: zero.size - n_keep]
    assert bad[dropped].sum() >= 0.9 * bad.sum()
    assert min(res.clean_share[c] for c in (1, 2, 3)) >= 0.8
    # the level gate drops what falls below p = 0.1: most planted rows, few clean ones elsewhere
    level = calibrated_values(x, z, y, yr)
    dropped = zero[level.values[zero] <= 0.1]
    assert level.keep_counts[0] == zero.size - dropped.size
    assert bad[dropped].sum() >= 0.8 * bad.sum()
    assert min(level.keep_counts[c] for c in (1, 2, 3)) >= 0.85 * 120


def test_gated_cover_on_the_level_gate_keeps_exactly_the_rows_above_the_level():
    # the primary selection's gate as measured in the study: rows with p > 0.1 compete, no others
    import warnings

    from kairos_curate.selection import select

    x, y, z, yr, _ = _scenario(1, 25, 25)
    res = calibrated_values(x, z, y, yr)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sel = select(
            res,
            120,
            policy="gated_cover",
            labels=y,
            reference_labels=yr,
            embeddings=x,
            reference=z,
            device="cpu",
            dedup=False,
        )
    assert sel.eligible is not None
    assert_array_equal(sel.eligible, res.values > 0.1)
    assert (res.values[sel.indices] > 0.1).all() and len(sel) == 120


def test_row_chunks_give_the_same_values(small, monkeypatch):
    from kairos_curate.valuation import calibrated

    x, y, z, yr = small
    whole = calibrated_values(x, z, y, yr, bandwidth=1.3)
    monkeypatch.setattr(calibrated, "_CHUNK_BYTES", 8 * 21 * 5)  # 5 rows a chunk
    chunked = calibrated_values(x, z, y, yr, bandwidth=1.3)
    for name in ("witness", "label_statistic", "p_feature", "p_label"):
        assert_allclose(chunked.terms[name], whole.terms[name], rtol=1e-12, atol=1e-15)
    assert_allclose(chunked.values, whole.values, rtol=1e-12)


def test_registered_method_and_errors():
    x, y, z, yr, _ = _scenario(2, n_per=20)
    cls = METHODS["kairos_calibrated"]
    assert cls.family == "kairos" and cls.needs_labels
    inputs = ValuationInputs(x, y, z, yr, seed=0, device="cpu")
    res = value("kairos_calibrated", inputs, {"gates": "label", "bandwidth": 2.0})
    assert res.params == {
        "bandwidth": 2.0,
        "gates": "label",
        "label_model": "parzen",
        "revalue": 0,
        "keep_rule": "level",
        "level": 0.1,
        "combine": "calibrated_min",
    }
    assert res.info["gates"] == "label"
    assert set(res.terms) == {"witness", "label_statistic", "p_feature", "p_label"}
    with pytest.raises(ParamsError, match="gates"):
        value("kairos_calibrated", inputs, {"gates": "both_gates"})
    with pytest.raises(ValueError, match="needs pool and reference labels"):
        value("kairos_calibrated", ValuationInputs(x, None, z, None))
    with pytest.raises(ValueError, match="needs pool_labels and reference_labels"):
        calibrated_values(x, z, y, None)
    with pytest.raises(ValueError, match="class 3 has 1 image"):
        calibrated_values(x, z[:91], y, yr[:91])
    with pytest.raises(ValueError, match="absent from reference_labels"):
        calibrated_values(x, z[yr < 3], y, yr[yr < 3])
    with pytest.raises(ValueError, match="gates must be"):
        calibrated_values(x, z, y, yr, gates="min")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="label_model must be"):
        calibrated_values(x, z, y, yr, label_model="knn")  # type: ignore[arg-type]
    with pytest.raises(ParamsError, match="label_model"):
        value("kairos_calibrated", inputs, {"label_model": "knn"})


def test_crossfit_label_statistics_match_a_fold_loop(small):
    """Out-of-fold log p(shown | x) over pool + reference, folds and model as documented."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    x, y, z, yr = small
    lab, rlab = crossfit_label_statistics(x, y, z, yr, 3, n_folds=3, pca_dim=None, seed=4)
    feats, labels = np.concatenate([x, z]), np.concatenate([y, yr])
    want = np.zeros(labels.size)
    for train, held in StratifiedKFold(3, shuffle=True, random_state=4).split(feats, labels):
        model = LogisticRegression(max_iter=300).fit(feats[train], labels[train])
        proba = model.predict_proba(feats[held])
        want[held] = np.log([proba[j, list(model.classes_).index(labels[i])] for j, i in enumerate(held)])
    assert_allclose(lab, want[: x.shape[0]], rtol=1e-8, atol=1e-10)
    assert_allclose(rlab, want[x.shape[0] :], rtol=1e-8, atol=1e-10)
    with pytest.raises(ValueError, match="fewer than its 20 folds"):
        crossfit_label_statistics(x, y, z, yr, 3, n_folds=20)


def test_crossfit_label_model_is_the_label_gate_and_catches_planted_flips():
    x, y, z, yr, bad = _scenario(1, 0, 40)
    res = calibrated_values(x, z, y, yr, label_model="crossfit", gates="label")
    lab, rlab = crossfit_label_statistics(x, y, z, yr, 4, seed=0)
    assert_allclose(res.terms["label_statistic"], lab)
    pl = [smoothed_p_loop(lab[i], rlab[yr == y[i]].tolist()) for i in range(y.size)]
    assert_allclose(res.values, pl, rtol=1e-10)
    assert res.info["label_model"] == "crossfit" and res.params["label_model"] == "crossfit"
    zero = np.flatnonzero(y == 0)
    dropped = zero[np.argsort(res.values[zero])][: int(bad.sum())]
    assert bad[dropped].mean() >= 0.9
