"""`kairos-curate value` end to end on temporary files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose

from kairos_curate.cli import main
from kairos_curate.io import save_embeddings
from kairos_curate.valuation import kairos_values


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    pool = rng.normal(size=(60, 5)).astype(np.float32)
    ref = rng.normal(size=(20, 5)).astype(np.float32)
    pool_ids = [f"p{i:03d}" for i in range(60)]
    ref_ids = [f"r{i:03d}" for i in range(20)]
    save_embeddings(tmp_path / "pool.npz", pool_ids, pool)
    save_embeddings(tmp_path / "ref.parquet", ref_ids, ref)
    y_pool = np.array(["ant", "bee", "wasp"])[rng.integers(0, 3, 60)]
    y_ref = np.array(["ant", "bee", "wasp"] * 7)[:20]
    # pool labels by id, shuffled rows; reference labels aligned by row
    order = rng.permutation(60)
    pd.DataFrame({"id": np.array(pool_ids)[order], "label": y_pool[order]}).to_csv(
        tmp_path / "pool_labels.csv", index=False
    )
    (tmp_path / "ref_labels.txt").write_text("\n".join(y_ref) + "\n")
    return tmp_path, pool, ref, pool_ids, y_pool, y_ref


def test_value_writes_table_matching_library(files, capsys):
    tmp, pool, ref, pool_ids, _, _ = files
    out = tmp / "out" / "values.parquet"
    rc = main(
        [
            "value",
            "--pool",
            str(tmp / "pool.npz"),
            "--reference",
            str(tmp / "ref.parquet"),
            "--out",
            str(out),
            "--bandwidth",
            "2.5",
            "--device",
            "cpu",
            "--no-progress",
        ]
    )
    assert rc == 0
    table = pd.read_parquet(out)
    res = kairos_values(pool, ref, 2.5, device="cpu")
    assert table.index.tolist() == pool_ids
    assert_allclose(table["value"].to_numpy(), res.values, rtol=1e-6)
    assert_allclose(table["loo"].to_numpy(), res.loo, rtol=1e-6)
    assert sorted(table["rank"]) == list(range(1, 61))
    assert not (out.parent / "values.selection.json").exists()
    assert "valued 60 pool samples" in capsys.readouterr().out


def test_value_label_mode_and_selection(files, capsys):
    tmp, pool, ref, pool_ids, y_pool, y_ref = files
    out = tmp / "values.csv"
    rc = main(
        [
            "value",
            "--pool",
            str(tmp / "pool.npz"),
            "--reference",
            str(tmp / "ref.parquet"),
            "--out",
            str(out),
            "--pool-labels",
            str(tmp / "pool_labels.csv"),
            "--reference-labels",
            str(tmp / "ref_labels.txt"),
            "--label-mode",
            "class_conditional",
            "--top-k",
            "9",
            "--policy",
            "per_class",
            "--device",
            "cpu",
            "--no-progress",
        ]
    )
    assert rc == 0
    table = pd.read_csv(out, index_col="id")
    res = kairos_values(
        pool,
        ref,
        pool_labels=y_pool,
        reference_labels=y_ref,
        label_mode="class_conditional",
        device="cpu",
    )
    assert_allclose(table["value"].to_numpy(), res.values, rtol=1e-5, atol=1e-7)
    assert table["label"].tolist() == y_pool.tolist()
    sel = json.loads((tmp / "values.selection.json").read_text())
    assert sel["policy"] == "per_class" and sel["k"] == 9
    assert sel["class_counts"] == {"ant": 3, "bee": 3, "wasp": 3}
    assert set(sel["ids"]) <= set(pool_ids)
    printed = capsys.readouterr().out
    assert "class histogram" in printed and "wasp" in printed


def test_value_global_selection_warns_on_missing_class(files, capsys):
    tmp, *_ = files
    rc = main(
        [
            "value",
            "--pool",
            str(tmp / "pool.npz"),
            "--reference",
            str(tmp / "ref.parquet"),
            "--out",
            str(tmp / "v.parquet"),
            "--pool-labels",
            str(tmp / "pool_labels.csv"),
            "--reference-labels",
            str(tmp / "ref_labels.txt"),
            "--top-k",
            "2",
            "--min-class-share",
            "1.0",
            "--device",
            "cpu",
            "--no-progress",
        ]
    )
    assert rc == 0
    sel = json.loads((tmp / "v.selection.json").read_text())
    assert sel["warnings"] and "below 100%" in sel["warnings"][0]
    assert "warning: class" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "msg"),
    [
        (["--bandwidth", "-1"], "--bandwidth must be a positive number"),
        (["--label-mode", "residual"], "needs --pool-labels and --reference-labels"),
        (["--out-missing"], None),
    ],
)
def test_value_user_errors(files, capsys, extra, msg):
    tmp, *_ = files
    argv = [
        "value",
        "--pool",
        str(tmp / "pool.npz"),
        "--reference",
        str(tmp / "ref.parquet"),
        "--out",
        str(tmp / "v.parquet"),
        "--device",
        "cpu",
        *extra,
    ]
    if msg is None:
        with pytest.raises(SystemExit):
            main(argv)
        return
    assert main(argv) == 2
    assert msg in capsys.readouterr().err
    assert not (tmp / "v.parquet").exists()


def test_value_missing_file_and_bad_labels(files, capsys):
    tmp, *_ = files
    assert (
        main(
            [
                "value",
                "--pool",
                str(tmp / "nope.npz"),
                "--reference",
                str(tmp / "ref.parquet"),
                "--out",
                str(tmp / "v.parquet"),
            ]
        )
        == 2
    )
    assert "nope.npz not found" in capsys.readouterr().err
    (tmp / "short.txt").write_text("a\nb\n")
    assert (
        main(
            [
                "value",
                "--pool",
                str(tmp / "pool.npz"),
                "--reference",
                str(tmp / "ref.parquet"),
                "--out",
                str(tmp / "v.parquet"),
                "--pool-labels",
                str(tmp / "short.txt"),
                "--device",
                "cpu",
            ]
        )
        == 2
    )
    assert "has 2 labels but there are 60 embedding rows" in capsys.readouterr().err


def test_value_help_lists_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["value", "--help"])
    text = capsys.readouterr().out
    for opt in (
        "--pool",
        "--reference",
        "--out",
        "--pool-labels",
        "--reference-labels",
        "--label-mode",
        "--lam",
        "--bandwidth",
        "--top-k",
        "--top-frac",
        "--policy",
        "--device",
        "--min-class-share",
        "--drop-fraction",
    ):
        assert opt in text


def test_cli_help_starts_without_torch():
    """`kairos-curate --help` registers every command; heavy libraries load in the handlers only."""
    import subprocess
    import sys

    code = (
        "import sys\nfrom kairos_curate.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "for name in ('audit', 'value', 'embed'):\n    try:\n        main([name, '--help'])\n"
        "    except SystemExit:\n        pass\nprint('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"


def test_bandwidth_text_is_parsed_in_one_place():
    from kairos_curate.config import parse_bandwidth

    assert parse_bandwidth("median", "--bandwidth") == "median"
    assert parse_bandwidth(" 0.5 ", "value.bandwidth") == 0.5
    for bad, msg in (
        ("wide", "'median' or a positive number"),
        ("-1", "positive number"),
        ("inf", "positive number"),
        (0, "positive number"),
    ):
        with pytest.raises(ValueError, match=msg):
            parse_bandwidth(bad, "value.bandwidth")
