"""The data audit: near-duplicate groups vs brute force, flags, gallery, and the CLI."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from kairos_curate.audit import audit, duplicate_scan, near_duplicate_groups
from kairos_curate.cli import main
from kairos_curate.data.sources import ArrayImageSource
from kairos_curate.io import save_embeddings
from kairos_curate.valuation import kairos_values


def _brute_groups(x: np.ndarray, threshold: float) -> list[list[int]]:
    """Connected components of the float64 cosine graph (full matrix; tiny inputs only)."""
    u = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = u.astype(np.float64) @ u.T.astype(np.float64)
    n = len(x)
    adj = (sims > threshold) & ~np.eye(n, dtype=bool)
    seen, groups = set(), []
    for i in range(n):
        if i in seen or not adj[i].any():
            continue
        stack, comp = [i], set()
        while stack:
            j = stack.pop()
            if j in comp:
                continue
            comp.add(j)
            stack.extend(np.flatnonzero(adj[j]).tolist())
        seen |= comp
        groups.append(sorted(comp))
    return sorted(groups, key=lambda g: (-len(g), g[0]))


def _data(seed: int = 0, n: int = 60, m: int = 20, d: int = 8):
    rng = np.random.default_rng(seed)
    pool = rng.normal(size=(n, d))
    # plant near-duplicates: rows 1, 2 copy row 0 (a chain via small noise); row 11 copies row 10
    pool[1] = pool[0] + 1e-3 * rng.normal(size=d)
    pool[2] = pool[1] + 1e-3 * rng.normal(size=d)
    pool[11] = pool[10] + 1e-3 * rng.normal(size=d)
    ref = rng.normal(size=(m, d)) + 0.5
    ids = np.array([f"s{i:03d}" for i in range(n)])
    return pool, ref, ids


@pytest.mark.parametrize("block_size", [1, 3, 7, None])
def test_near_duplicate_groups_match_brute_force(block_size):
    pool, _, _ = _data()
    for threshold in (0.999, 0.6):
        got = [g.tolist() for g in near_duplicate_groups(pool, threshold, block_size=block_size)]
        assert got == _brute_groups(pool, threshold)
    assert [g.tolist() for g in near_duplicate_groups(pool, 0.999, block_size=block_size)] == [[0, 1, 2], [10, 11]]


def test_duplicate_scan_max_similarity_is_the_largest_off_diagonal():
    pool, _, _ = _data(seed=4, n=23)
    u = pool / np.linalg.norm(pool, axis=1, keepdims=True)
    sims = u @ u.T
    np.fill_diagonal(sims, -np.inf)
    for block in (1, 5, 23):
        _, best = duplicate_scan(pool, 0.99, block_size=block)
        np.testing.assert_allclose(best, sims.max(), rtol=1e-5)


def test_near_duplicate_bad_input():
    with pytest.raises(ValueError, match="threshold"):
        near_duplicate_groups(np.ones((3, 2)), 1.5)
    bad = np.ones((3, 2))
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match=r"rows \[1\]"):
        near_duplicate_groups(bad)


def _source(ids: np.ndarray, seed: int = 0) -> ArrayImageSource:
    rng = np.random.default_rng(seed)
    return ArrayImageSource(ids, rng.integers(0, 255, (len(ids), 12, 12), dtype=np.uint8))


def test_audit_flags_and_gallery(tmp_path):
    pool, ref, ids = _data()
    res = audit(
        pool,
        ref,
        _source(ids),
        ids,
        out_dir=tmp_path / "a",
        n_lowest=5,
        n_highest=4,
        dup_threshold=0.999,
        bandwidth=1.5,
    )
    expected = kairos_values(pool, ref, 1.5)
    np.testing.assert_allclose(res.table["value"].to_numpy(), expected.values, rtol=1e-6, atol=1e-9)
    flags = pd.read_csv(res.flags_path)
    assert list(flags.columns)[:4] == ["id", "value", "rank", "issues"] and list(flags.columns)[-2:] == ["flag", "keep"]
    for issue in ("off_task", "corrupted", "mislabelled", "near_duplicate"):
        assert f"is_{issue}" in flags.columns and f"{issue}_score" in flags.columns
    assert (
        not flags["is_corrupted"].any() and not flags["is_mislabelled"].any()
    )  # no images of the reference, no labels
    assert flags["rank"].tolist() == sorted(flags["rank"].tolist())  # best first
    # low_value = the 5 lowest values
    lowest = set(ids[np.argsort(expected.values)[:5]])
    assert set(flags.loc[flags["flag"].fillna("").str.contains("low_value"), "id"]) == lowest
    # duplicates: the best-valued member of each group is kept, the others point to it
    for group in ([0, 1, 2], [10, 11]):
        best = ids[group[int(np.argmax(expected.values[group]))]]
        for i in group:
            row = flags.set_index("id").loc[ids[i]]
            flag = "" if pd.isna(row["flag"]) else row["flag"]
            assert row["duplicate_keep"] == best
            if ids[i] == best:
                assert "near_duplicate_of" not in flag and not row["is_near_duplicate"]
            else:
                assert f"near_duplicate_of:{best}" in flag and not row["keep"] and row["is_near_duplicate"]
    assert res.groups[0][0] == ids[[0, 1, 2][int(np.argmax(expected.values[[0, 1, 2]]))]]
    off = set(flags.loc[flags["is_off_task"], "id"])
    assert flags["keep"].sum() == len(ids) - len(
        lowest | off | {ids[i] for g in res.groups for i in range(len(ids)) if ids[i] in g[1:]}
    )
    html = res.html_path.read_text()
    # 5 lowest + 4 highest + 5 group members + the off-task cards, each one inlined PNG
    assert len(re.findall(r"src='data:image/png;base64,", html)) == 5 + 4 + 5 + len(off)
    assert "Lowest-valued 5 samples" in html and "Near-duplicate groups: 2 (2 shown" in html
    assert "not checked: needs the pool&#x27;s and the reference&#x27;s images" in html
    assert "<script" not in html and "src='http" not in html


def test_audit_label_mode_and_flag_fraction(tmp_path):
    pool, ref, ids = _data(seed=1)
    rng = np.random.default_rng(1)
    y, y_ref = rng.integers(0, 2, len(ids)), np.repeat([0, 1], len(ref) // 2)
    res = audit(
        pool,
        ref,
        None,
        ids,
        labels=y,
        reference_labels=y_ref,
        out_dir=tmp_path,
        flag_fraction=0.1,
        dup_threshold=0.999999,
    )
    assert res.label_mode == "class_conditional"
    expected = kairos_values(pool, ref, "median", pool_labels=y, reference_labels=y_ref, label_mode="class_conditional")
    np.testing.assert_allclose(res.table["label_term"].to_numpy(), expected.label_term, rtol=1e-6, atol=1e-9)
    flags = pd.read_csv(tmp_path / "flags.csv")
    assert "label" in flags.columns
    assert flags["flag"].fillna("").str.contains("low_value").sum() == round(0.1 * len(ids))
    html = (tmp_path / "audit.html").read_text()
    assert "label term" in html and "no image" in html and "<img" not in html


def test_audit_bad_input(tmp_path):
    pool, ref, ids = _data()
    with pytest.raises(ValueError, match="one id per row"):
        audit(pool, ref, None, ids[:-1], out_dir=tmp_path)
    with pytest.raises(ValueError, match="none of the"):
        audit(pool, ref, _source(np.array([f"x{i}" for i in range(5)])), ids, out_dir=tmp_path)
    with pytest.raises(ValueError, match="both labels"):
        audit(pool, ref, None, ids, labels=np.zeros(len(ids)), out_dir=tmp_path, label_mode="residual")
    with pytest.raises(ValueError, match="flag_fraction"):
        audit(pool, ref, None, ids, out_dir=tmp_path, flag_fraction=2.0)


def _write_inputs(tmp_path):
    pool, ref, ids = _data(seed=2)
    ref_ids = np.array([f"r{i:03d}" for i in range(len(ref))])
    save_embeddings(tmp_path / "pool.npz", ids, pool.astype(np.float32))
    save_embeddings(tmp_path / "ref.npz", ref_ids, ref.astype(np.float32))
    return pool, ref, ids, ref_ids


def test_cli_with_npz_images_holding_other_splits(tmp_path, capsys):
    _, _, ids, ref_ids = _write_inputs(tmp_path)
    all_ids = np.concatenate([ref_ids, ids])  # like data/prepared/pixels.npz: every split
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "pixels.npz", ids=all_ids, pixels=rng.integers(0, 255, (len(all_ids), 10, 10), dtype=np.uint8))
    labels = pd.DataFrame(
        {
            "id": np.concatenate([ids, ref_ids]),
            "label": np.concatenate([np.arange(len(ids)) % 2, np.arange(len(ref_ids)) % 2]),
        }
    )
    labels.to_csv(tmp_path / "labels.csv", index=False)
    code = main(
        [
            "audit",
            "--pool",
            str(tmp_path / "pool.npz"),
            "--reference",
            str(tmp_path / "ref.npz"),
            "--images",
            str(tmp_path / "pixels.npz"),
            "--labels",
            str(tmp_path / "labels.csv"),
            "--out",
            str(tmp_path / "out"),
            "--n-lowest",
            "6",
            "--n-highest",
            "3",
            "--no-progress",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "class_conditional" in out and f"{len(ids)} of {len(ids)} pool ids have an image" in out
    assert f"reference images: {len(ref_ids)}" in out  # the npz's reference ids calibrate the pixel checks
    assert "corrupted       not checked" not in out
    flags = pd.read_csv(tmp_path / "out" / "flags.csv")
    assert set(flags["id"]) == set(ids)
    assert len(re.findall("data:image/png", (tmp_path / "out" / "audit.html").read_text())) >= 9


def test_cli_with_an_image_folder(tmp_path):
    _, _, ids, _ = _write_inputs(tmp_path)
    folder = tmp_path / "imgs" / "sub"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for sid in ids[:30]:  # half the pool has files: the rest shows a placeholder
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / f"{sid}.png")
    code = main(
        [
            "audit",
            "--pool",
            str(tmp_path / "pool.npz"),
            "--reference",
            str(tmp_path / "ref.npz"),
            "--images",
            str(tmp_path / "imgs"),
            "--out",
            str(tmp_path / "o"),
            "--n-lowest",
            "60",
            "--n-highest",
            "0",
            "--max-groups",
            "0",
            "--per-type",
            "0",
            "--no-progress",
        ]
    )
    assert code == 0
    html = (tmp_path / "o" / "audit.html").read_text()
    assert len(re.findall("data:image/png", html)) == 30 and html.count("no image") == 30


@pytest.mark.parametrize("option", ["--pool", "--images", "--labels"])
def test_cli_missing_files_are_clear_errors(tmp_path, capsys, option):
    _write_inputs(tmp_path)
    args = {
        "--pool": str(tmp_path / "pool.npz"),
        "--reference": str(tmp_path / "ref.npz"),
        "--out": str(tmp_path / "o"),
    }
    args[option] = str(tmp_path / "nope.npz")
    argv = ["audit", *[x for kv in args.items() for x in kv], "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "nope.npz" in err and "not found" in err and "Traceback" not in err


def test_cli_help_explains_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["audit", "--help"])
    text = capsys.readouterr().out
    for option in (
        "--pool",
        "--reference",
        "--out",
        "--images",
        "--labels",
        "--reference-labels",
        "--label-mode",
        "--n-lowest",
        "--n-highest",
        "--flag-fraction",
        "--dup-threshold",
        "--max-groups",
        "--thumb-size",
        "--bandwidth",
        "--lam",
        "--title",
        "--device",
        "--seed",
        "--progress",
        "--reference-images",
        "--class-names",
        "--alpha",
        "--per-type",
    ):
        assert option in text
    assert len(re.findall(r"\n  --", text)) >= 23


def test_image_folder_matches_ids_by_relative_path(tmp_path):
    from kairos_curate.commands.audit import load_image_source

    for rel in ("ants/a1.jpg", "bees/a1.png", "bees/b2.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (5, 5), (1, 2, 3)).save(tmp_path / rel)
    # relative path with and without extension; an ambiguous stem ("a1") matches nothing
    source = load_image_source(tmp_path, np.array(["ants/a1.jpg", "bees/a1", "b2", "a1"]))
    assert source.ids.tolist() == ["ants/a1.jpg", "bees/a1", "b2"]
    assert [p.relative_to(tmp_path).as_posix() for p in source.paths] == ["ants/a1.jpg", "bees/a1.png", "bees/b2.png"]
    with pytest.raises(ValueError, match="no image file matches"):
        load_image_source(tmp_path, np.array(["zzz"]))


def test_cli_dimension_mismatch_is_a_clear_error(tmp_path, capsys):
    _, ref, _, ref_ids = _write_inputs(tmp_path)
    save_embeddings(tmp_path / "ref.npz", ref_ids, np.hstack([ref, ref]).astype(np.float32))
    code = main(
        [
            "audit",
            "--pool",
            str(tmp_path / "pool.npz"),
            "--reference",
            str(tmp_path / "ref.npz"),
            "--out",
            str(tmp_path / "o"),
            "--no-progress",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "--pool has dimension" in err and "same encoder" in err
