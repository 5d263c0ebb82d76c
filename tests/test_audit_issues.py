"""Issue types of the audit: calibration on the reference, each type found on planted problems,
and the scoring against a truth table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFilter

from kairos_curate import issues as iss
from kairos_curate.audit import ISSUE_TYPES, audit
from kairos_curate.audit_scoring import score_audit
from kairos_curate.data.sources import ArrayImageSource, FileImageSource

from .conftest import requires_fashion_mnist


def test_conformal_p_is_valid_for_exchangeable_samples():
    """A clean sample drawn like the reference gets p <= alpha with probability <= alpha."""
    rng = np.random.default_rng(0)
    hits = []
    for _ in range(300):
        ref, pool = rng.normal(size=99), rng.normal(size=50)
        hits.append((iss.conformal_p(pool, ref, "low") <= 0.05).mean())
    assert np.mean(hits) <= 0.05 + 0.01
    assert np.mean(hits) >= 0.03  # and not vacuous
    p = iss.conformal_p(np.array([-10.0, 10.0, np.nan]), np.arange(9.0), "high")
    np.testing.assert_allclose(p, [1.0, 0.1, 1.0])
    np.testing.assert_allclose(iss.conformal_p(np.array([-10.0, 10.0]), np.arange(9.0), "low"), [0.1, 1.0])
    with pytest.raises(ValueError, match="tail"):
        iss.conformal_p(np.zeros(2), np.zeros(2), "both")


def test_tail_fitted_p_values_resolve_beyond_the_reference_and_stay_valid():
    rng = np.random.default_rng(8)
    ref = rng.exponential(size=200)
    p = iss.conformal_p(np.array([0.5, 6.0, 9.0, 12.0]), ref, "high", tail_fit=0.1)
    assert p[0] == iss.conformal_p(np.array([0.5]), ref, "high")[0]  # inside: the empirical p-value
    assert 1 / 201 > p[1] > p[2] > p[3] > 0  # beyond the reference's range: smaller, still ordered
    hits = [
        (iss.conformal_p(rng.exponential(size=400), rng.exponential(size=200), "high", tail_fit=0.1) <= 0.002).mean()
        for _ in range(100)
    ]
    assert np.mean(hits) <= 0.004  # about alpha for an exponential tail (0.002 here)
    low = iss.conformal_p(np.array([-5.0]), -ref, "low", tail_fit=0.1)
    np.testing.assert_allclose(low, iss.conformal_p(np.array([5.0]), ref, "high", tail_fit=0.1))


def test_kernel_terms_match_brute_force():
    rng = np.random.default_rng(1)
    x, z = rng.normal(size=(17, 4)), rng.normal(size=(9, 4))
    codes = np.arange(9) % 3
    terms = iss.kernel_terms(x, z, codes, 3, [0.7, 2.0], block_size=5)
    for s, sigma in enumerate((0.7, 2.0)):
        k = np.exp(-((x[:, None] - z[None]) ** 2).sum(-1) / (2 * sigma**2))
        kr = np.exp(-((z[:, None] - z[None]) ** 2).sum(-1) / (2 * sigma**2))
        np.fill_diagonal(kr, 0.0)
        for c in range(3):
            np.testing.assert_allclose(terms.pool_class_sums[s, :, c], k[:, codes == c].sum(1), rtol=1e-10)
            np.testing.assert_allclose(terms.reference_class_sums[s, :, c], kr[:, codes == c].sum(1), rtol=1e-10)
        np.testing.assert_allclose(terms.reference_pool_mean[s], k.mean(0), rtol=1e-10)


def test_similar_pairs_match_brute_force():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(30, 5))
    x[7] = x[3] + 1e-3
    x[20] = x[3] + 2e-3
    u = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    v = rng.normal(size=(30, 3)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    sims = u.astype(np.float64) @ u.T
    np.fill_diagonal(sims, -np.inf)
    for block in (1, 4, 30):
        i, j, _, nearest = iss.similar_pairs([u], [0.9], block_size=block)
        want = {(a, b) for a in range(30) for b in range(a + 1, 30) if sims[a, b] > 0.9}
        assert set(zip(i.tolist(), j.tolist(), strict=True)) == want
        np.testing.assert_allclose(nearest, sims.max(1), rtol=1e-5)
        i2, j2, _, _ = iss.similar_pairs([u, v], [0.9, 0.5], block_size=block)
        assert set(zip(i2.tolist(), j2.tolist(), strict=True)) == {(a, b) for a, b in want if v[a] @ v[b] > 0.5}


def _planted_unit_rows(n: int = 400, d: int = 16, seed: int = 4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    for src, dst in ((3, 7), (7, 20), (100, n - 1), (n // 2, n // 2 + 1), (n // 2, n // 2 + 2), (5, 6)):
        x[dst] = x[src] + 0.05 * rng.normal(size=d)
    x[9] = 0.0  # a zero row matches nothing
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0).astype(np.float32)


@pytest.mark.parametrize("index", ["flat", "ivf"])
def test_similar_pairs_with_faiss_above_the_exact_size_match_the_scan_and_brute_force(index):
    """With the exact size forced below the pool, FAISS finds the scan's pairs and nearest scores
    (IVF probes every cell at this size, so it is exact too)."""
    pytest.importorskip("faiss")
    u = _planted_unit_rows()
    v = u[:, ::-1].copy()  # a second view: the pairs' order of coordinates does not matter to it
    sims = u.astype(np.float64) @ u.T.astype(np.float64)
    np.fill_diagonal(sims, -np.inf)
    n = len(u)
    for threshold in (0.9, 0.6):
        want = {(a, b) for a in range(n) for b in range(a + 1, n) if sims[a, b] > threshold}
        assert len(want) >= 6
        scan = iss.similar_pairs([u], [threshold], block_size=64)
        ann = iss.similar_pairs([u], [threshold], exact_max=50, index=index)
        assert set(zip(scan[0].tolist(), scan[1].tolist(), strict=True)) == want
        assert np.array_equal(ann[0], scan[0]) and np.array_equal(ann[1], scan[1])  # same pairs, same order
        np.testing.assert_allclose(ann[2], scan[2], rtol=0, atol=1e-5)
        np.testing.assert_allclose(ann[3], scan[3], rtol=0, atol=1e-5)
        np.testing.assert_allclose(ann[3], sims.max(1), rtol=0, atol=1e-5)
        two = iss.similar_pairs([u, v], [threshold, 0.95], exact_max=50, index=index)
        two_scan = iss.similar_pairs([u, v], [threshold, 0.95])
        assert np.array_equal(two[0], two_scan[0]) and np.array_equal(two[1], two_scan[1])


def test_audit_near_duplicates_through_faiss_equal_the_scan(tmp_path, monkeypatch):
    """The audit's near-duplicate columns are the same with FAISS (exact size forced to 10 rows)."""
    pytest.importorskip("faiss")
    import kairos_curate.neighbours as nb

    u = _planted_unit_rows(n=120, d=8, seed=5)
    rng = np.random.default_rng(6)
    ref = rng.normal(size=(30, 8))
    ids = np.array([f"s{i:03d}" for i in range(len(u))])
    cols = ["near_duplicate_score", "is_near_duplicate", "duplicate_group", "duplicate_keep", "duplicate_of"]
    scan = audit(u, ref, None, ids, out_dir=tmp_path / "scan", dup_threshold=0.9, bandwidth=1.5, device="cpu")
    calls = []
    real = iss.similar_pairs

    def spy(*args, **kwargs):
        calls.append(len(args[0][0]))
        return real(*args, **kwargs)

    monkeypatch.setattr(iss, "EXACT_PAIRS_MAX", 10)
    monkeypatch.setattr(iss, "similar_pairs", spy)
    used = []
    real_pairs = nb.threshold_pairs

    def spy_pairs(*args, **kwargs):
        used.append(kwargs["index"])
        return real_pairs(*args, **kwargs)

    monkeypatch.setattr(nb, "threshold_pairs", spy_pairs)
    ann = audit(u, ref, None, ids, out_dir=tmp_path / "ann", dup_threshold=0.9, bandwidth=1.5, device="cpu")
    assert calls == [120] and used == ["ivf"]  # the audit went through FAISS
    assert scan.table["is_near_duplicate"].sum() >= 4
    pd.testing.assert_frame_equal(ann.table[cols[1:]], scan.table[cols[1:]])
    np.testing.assert_allclose(ann.table[cols[0]], scan.table[cols[0]], rtol=0, atol=1e-5)


def test_pixel_statistics_see_noise_blur_and_darkness():
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:64, 0:64]
    clean = ((np.sin(xx / 3.0) * np.cos(yy / 5.0) + 1) * 100 + 20).astype(np.uint8)
    img = Image.fromarray(clean)
    base = iss.pixel_statistics_of(img)
    noisy = iss.pixel_statistics_of(
        Image.fromarray(np.clip(clean + rng.normal(0, 30, clean.shape), 0, 255).astype(np.uint8))
    )
    blurred = iss.pixel_statistics_of(img.filter(ImageFilter.GaussianBlur(3)))
    dark = iss.pixel_statistics_of(Image.fromarray((clean // 8).astype(np.uint8)))
    flat = iss.pixel_statistics_of(Image.fromarray(np.full((64, 64), 128, np.uint8)))
    assert noisy["noise_sigma"] > 20 > 2 > base["noise_sigma"]
    assert blurred["sharpness"] < base["sharpness"] / 4
    assert dark["brightness"] < base["brightness"] / 4
    assert flat["entropy"] == 0.0 < base["entropy"]
    big = iss.pixel_statistics_of(Image.fromarray(np.zeros((1000, 600), np.uint8)))  # shrunk, still measured
    assert big["brightness"] == 0.0


def _clusters(rng, centres, n_each, spread=0.15):
    return np.concatenate([c + spread * rng.normal(size=(n_each, len(c))) for c in centres])


def _synthetic(seed: int = 0):
    """Two task classes and one off-task class in 6-d; 10 flipped labels; a planted copy."""
    rng = np.random.default_rng(seed)
    centres = np.eye(6)[:3] * 2.0  # class 0, class 1, off-task
    ref = _clusters(rng, centres[:2], 40)
    ref_labels = np.repeat([0, 1], 40)
    pool = _clusters(rng, centres, 100)
    labels = np.r_[np.repeat([0, 1], 100), np.zeros(100, dtype=int)]  # off-task carries label 0
    flipped = rng.choice(200, 10, replace=False)
    labels[flipped] = 1 - labels[flipped]
    pool[299] = pool[5] + 1e-4  # a near-copy in embedding space
    ids = np.array([f"s{i:03d}" for i in range(300)])
    truth = pd.DataFrame(
        {
            "id": ids,
            "off_task": np.arange(300) >= 200,
            "label_flipped": np.isin(np.arange(300), flipped),
            "corruption": "none",
            "true_label": np.r_[np.repeat([0, 1], 100), -np.ones(100, dtype=int)],
        }
    )
    return pool, ref, labels, ref_labels, ids, truth


def test_audit_names_off_task_and_mislabelled_samples(tmp_path):
    pool, ref, labels, ref_labels, ids, truth = _synthetic()
    res = audit(
        pool,
        ref,
        None,
        ids,
        labels=labels,
        reference_labels=ref_labels,
        out_dir=tmp_path,
        class_names=["ant", "bee"],
        alpha=0.02,
        device="cpu",
    )
    scores = score_audit(res.table, truth).set_index("issue_type")
    assert scores.loc["off_task", "recall"] >= 0.95 and scores.loc["off_task", "precision"] >= 0.9
    assert scores.loc["mislabelled", "recall"] >= 0.8 and scores.loc["mislabelled", "precision"] >= 0.7
    assert scores.loc["mislabelled", "suggestion_accuracy"] == 1.0
    t = res.table
    flipped = truth.loc[truth["label_flipped"], "id"]
    assert set(t.loc[flipped, "suggested_class_name"]) == {"ant", "bee"}
    assert (t["class_name"].isin(["ant", "bee"])).all()
    # exclusive in precedence order, scores for everyone
    assert not (t["is_off_task"] & t["is_mislabelled"]).any()
    assert t["off_task_p"].between(0, 1).all() and t["mislabelled_p"].between(0, 1).all()
    # the planted copy: one group, the best-valued member kept
    group = t.loc[["s005", "s299"]]
    assert group["duplicate_group"].nunique() == 1 and group["duplicate_group"].iloc[0] >= 0
    keep = group["rank"].idxmin()
    assert set(group["duplicate_keep"]) == {keep} and group["is_near_duplicate"].sum() == 1
    flags = pd.read_csv(res.flags_path)
    assert {f"is_{t_}" for t_ in ISSUE_TYPES} <= set(flags.columns)
    assert flags["issues"].fillna("").str.contains("off_task").sum() == int(t["is_off_task"].sum())


def test_a_clean_pool_is_rarely_flagged(tmp_path):
    """Pool drawn like the reference: about alpha of it flagged per type, not a fixed share."""
    rng = np.random.default_rng(4)
    centres = np.eye(5)[:2] * 2.0
    ref, pool = _clusters(rng, centres, 150), _clusters(rng, centres, 400)
    ref_labels, labels = np.repeat([0, 1], 150), np.repeat([0, 1], 400)
    res = audit(
        pool,
        ref,
        None,
        [f"p{i}" for i in range(800)],
        labels=labels,
        reference_labels=ref_labels,
        out_dir=tmp_path,
        alpha=0.02,
        device="cpu",
    )
    assert res.table["is_off_task"].mean() <= 0.05
    assert res.table["is_mislabelled"].mean() <= 0.01  # two well-separated classes
    assert res.table["is_near_duplicate"].mean() <= 0.01


def _image_pool(rng, n: int) -> np.ndarray:
    """Smooth random 32x32 images: blurred noise fields of varying contrast."""
    from scipy import ndimage

    fields = ndimage.gaussian_filter(rng.normal(size=(n, 32, 32)), sigma=(0, 1.2, 1.2))
    fields = fields / fields.std(axis=(1, 2), keepdims=True)
    return np.clip(128 + 45 * fields, 0, 255).astype(np.uint8)


def test_audit_finds_corrupted_images_calibrated_on_reference_images(tmp_path):
    rng = np.random.default_rng(5)
    from kairos_curate.data import corruptions

    ref_px, pool_px = _image_pool(rng, 120), _image_pool(rng, 200)
    bad = np.arange(0, 200, 10)  # 20 corrupted rows
    noisy = corruptions.gaussian_noise(pool_px, bad[:7], severity=0.5, rng=rng, unit_std=60.0).images
    blurred = corruptions.motion_blur(noisy, bad[7:14], length=7, angle=30.0).images
    blurred[bad[14:]] = 0  # black frames
    blurred[199] = np.clip(blurred[1].astype(int) + rng.integers(-2, 3, (32, 32)), 0, 255)  # a near-copy
    ids = np.array([f"p{i}" for i in range(200)])
    # embeddings are irrelevant to the pixel checks: random ones, pool like the reference
    pool_emb, ref_emb = rng.normal(size=(200, 8)), rng.normal(size=(120, 8))
    res = audit(
        pool_emb,
        ref_emb,
        ArrayImageSource(ids, blurred),
        ids,
        out_dir=tmp_path,
        reference_images=ArrayImageSource([f"r{i}" for i in range(120)], ref_px),
        alpha=0.01,
        device="cpu",
    )
    t = res.table
    truth = pd.DataFrame(
        {
            "id": ids,
            "off_task": False,
            "label_flipped": False,
            "corruption": np.where(np.isin(np.arange(200), bad), "x", "none"),
        }
    )
    s = score_audit(t, truth).set_index("issue_type")
    assert s.loc["corrupted", "recall"] == 1.0 and s.loc["corrupted", "precision"] >= 0.8
    kinds = t["corruption"].str.split(",")
    assert all(k[0] == "noisy" for k in kinds[ids[bad[:7]]])
    assert all("blurry" in k for k in kinds[ids[bad[7:14]]])
    assert all({"dark", "low_information"} <= set(k) for k in kinds[ids[bad[14:]]])
    # pixel view of near-duplicates: the planted copy and nothing else
    assert t.loc["p1", "duplicate_group"] == t.loc["p199", "duplicate_group"] >= 0
    assert t["is_near_duplicate"].sum() == 1 and t["duplicate_keep"].loc[["p1", "p199"]].nunique() == 1
    html = res.html_path.read_text()
    assert "Corrupted (pixel-level problem): " in html and "noise_sigma" in html


def test_unreadable_pool_image_is_flagged_not_fatal(tmp_path):
    rng = np.random.default_rng(6)
    paths = []
    for i, px in enumerate(_image_pool(rng, 12)):
        path = tmp_path / f"img{i}.png"
        Image.fromarray(px).save(path)
        paths.append(path)
    paths[3].write_bytes(b"not an image")
    ids = [f"i{i}" for i in range(12)]
    ref = ArrayImageSource([f"r{i}" for i in range(10)], _image_pool(rng, 10))
    res = audit(
        rng.normal(size=(12, 4)),
        rng.normal(size=(10, 4)),
        FileImageSource(ids, paths),
        ids,
        out_dir=tmp_path / "a",
        reference_images=ref,
        device="cpu",
    )
    row = res.table.loc["i3"]
    assert row["is_corrupted"] and row["corruption"] == "unreadable" and not row["keep"]
    assert "img3.png" not in res.info["unreadable"] and "i3" in res.info["unreadable"]
    assert "no image" in res.html_path.read_text()


def test_reference_images_must_match_the_reference(tmp_path):
    rng = np.random.default_rng(7)
    ids = [f"p{i}" for i in range(10)]
    with pytest.raises(ValueError, match="reference_images holds 3 images for 5"):
        audit(
            rng.normal(size=(10, 3)),
            rng.normal(size=(5, 3)),
            None,
            ids,
            out_dir=tmp_path,
            reference_images=ArrayImageSource(["a", "b", "c"], _image_pool(rng, 3)),
        )
    with pytest.raises(ValueError, match="alpha"):
        audit(rng.normal(size=(10, 3)), rng.normal(size=(5, 3)), None, ids, out_dir=tmp_path, alpha=0.0)
    with pytest.raises(ValueError, match="absent from reference_labels: 2"):
        audit(
            rng.normal(size=(10, 3)),
            rng.normal(size=(5, 3)),
            None,
            ids,
            labels=np.arange(10) % 3,
            reference_labels=np.arange(5) % 2,
            out_dir=tmp_path,
        )


def test_score_audit_counts_exactly():
    flags = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "is_off_task": [True, True, False, False],
            "is_corrupted": [False, False, True, False],
            "is_mislabelled": [False, False, False, True],
            "is_near_duplicate": [False] * 4,
            "off_task_score": [3.0, 2.0, 1.0, 0.0],
            "suggested_label": [None, None, None, 1],
        }
    )
    truth = pd.DataFrame(
        {
            "id": ["d", "c", "b", "a", "zz"],
            "off_task": [False, False, True, True, False],
            "label_flipped": [True, False, False, False, False],
            "corruption": ["none", "gaussian_noise", "none", "none", "none"],
            "true_label": [2, 0, 1, -1, 0],
            "noisy": [True, True, True, True, False],
        }
    )
    s = score_audit(flags, truth).set_index("issue_type")
    assert s.loc["off_task", ["n_true", "n_flagged", "true_positives"]].tolist() == [2, 2, 2]
    assert s.loc["off_task", "precision"] == 1.0 and s.loc["off_task", "recall"] == 1.0
    assert s.loc["off_task", "auroc"] == 1.0
    assert s.loc["corrupted", "precision"] == 1.0 and s.loc["mislabelled", "recall"] == 1.0
    assert s.loc["mislabelled", "suggestion_accuracy"] == 0.0  # suggested 1, truly 2
    assert np.isnan(s.loc["near_duplicate", "recall"]) and "not in the truth table" in s.loc["near_duplicate", "truth"]
    assert s.loc["any", "precision"] == 1.0 and s.loc["any", "recall"] == 1.0
    truth2 = truth.assign(duplicate_of=["", "", "", "b", ""])  # a is a copy of b
    s2 = score_audit(flags, truth2).set_index("issue_type")
    assert s2.loc["near_duplicate", "n_true"] == 2 and s2.loc["near_duplicate", "recall"] == 0.0
    grouped = flags.assign(duplicate_group=[0, 0, -1, -1], is_near_duplicate=[False, True, False, False])
    s3 = score_audit(grouped, truth2).set_index("issue_type")  # b kept, a flagged: both in the group
    assert s3.loc["near_duplicate", ["precision", "recall"]].tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="not in the truth table"):
        score_audit(flags, truth[truth["id"] != "a"])


@requires_fashion_mnist
def test_audit_of_a_small_real_pool_finds_each_injected_problem(small_scenario, tmp_path):
    """Real Fashion-MNIST pixels and EfficientNet-Lite0 embeddings (320-image pool)."""
    from kairos_curate.embedding import embed_source, load_encoder

    enc = load_encoder("efficientnet-lite0", image_size=64, device="cpu")
    pool, ref = small_scenario.table("pool"), small_scenario.table("reference")
    _, xp = embed_source(small_scenario.source("pool"), enc, progress=False)
    _, xr = embed_source(small_scenario.source("reference"), enc, progress=False)
    res = audit(
        xp,
        xr,
        small_scenario.source("pool"),
        pool["id"],
        labels=pool["label"].to_numpy(),
        reference_labels=ref["label"].to_numpy(),
        reference_images=small_scenario.source("reference"),
        class_names=small_scenario.class_names,
        out_dir=tmp_path,
        alpha=0.05,
        device="cpu",
    )
    s = score_audit(res.table, small_scenario.truth).set_index("issue_type")
    assert s.loc["corrupted", "recall"] >= 0.9 and s.loc["corrupted", "precision"] >= 0.5
    assert s.loc["off_task", "precision"] >= 0.5 and s.loc["off_task", "auroc"] >= 0.7
    assert s.loc["mislabelled", "precision"] >= 0.4 and s.loc["mislabelled", "auroc"] >= 0.8
    html = res.html_path.read_text()
    assert all(name in html for name in small_scenario.class_names)
