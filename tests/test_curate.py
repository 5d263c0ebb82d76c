"""``kairos-curate curate`` end to end on real PNG/JPEG folders (one corrupt file, one empty class),
its refusals, manifests, the dry run, and training on its curated manifest."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from kairos_curate.cli import main
from kairos_curate.curate import (
    MARKER,
    CurateError,
    curate,
    curated_source,
    parse_budget,
    read_image_set,
)

from .conftest import requires_fashion_mnist

ENC = ["--image-size", "32", "--device", "cpu", "--no-progress"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory, small_scenario):
    """The small real scenario as ImageFolder trees: PNG pool with a few JPEGs, a corrupt file, an
    empty class folder and a stray text file; a PNG reference; a PNG test set."""
    from kairos_curate.data.export import export_image_folders

    root = tmp_path_factory.mktemp("images")
    paths = export_image_folders(root, small_scenario)
    pool = paths["pool"]
    for png in sorted(pool.rglob("*.png"))[::25]:  # some JPEGs among the PNGs
        Image.open(png).convert("RGB").save(png.with_suffix(".jpg"), quality=90)
        png.unlink()
    (pool / "Dress" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    (pool / "Empty class").mkdir()
    (pool / "Trouser" / "notes.txt").write_text("not an image")
    return paths


def _cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.getbasetemp() / "embedding-cache")


@requires_fashion_mnist
def test_curate_cli_end_to_end_on_image_folders(folders, tmp_path, tmp_path_factory, capsys):
    from torchvision.datasets import ImageFolder

    out, links = tmp_path / "curated", tmp_path / "train"
    code = main(
        [
            "curate",
            "--pool",
            str(folders["pool"]),
            "--reference",
            str(folders["reference"]),
            "--budget",
            "0.25",
            "--out",
            str(out),
            "--link-dir",
            str(links),
            "--cache-dir",
            _cache(tmp_path_factory),
            *ENC,
        ]
    )
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "broken.jpg" in printed and "1 unreadable pool image" in printed  # listed with the reason
    assert "'Empty class'" in printed  # the empty class is named
    curated = pd.read_csv(out / "curated.csv")
    n_files = sum(1 for p in folders["pool"].rglob("*") if p.suffix in (".png", ".jpg"))
    assert len(curated) == n_files  # every image file, the unreadable one too
    assert list(curated.columns) == ["id", "path", "label", "selected", "order", "value", "rank", "issues", "reason"]
    readable = n_files - 1
    k = round(0.25 * readable)
    assert curated["selected"].sum() == k
    assert curated.loc[curated["selected"], "order"].tolist() == list(range(1, k + 1))  # selection order first
    broken = curated.set_index("id").loc["Dress/broken.jpg"]
    assert not broken["selected"] and broken["reason"].startswith("dropped: unreadable image")
    assert curated["reason"].str.match(r"^(kept|dropped): ").all()
    assert curated.loc[curated["selected"], "reason"].str.startswith("kept: pick").all()
    values = pd.read_csv(out / "values.csv")
    assert {"b", "a", "value", "loo", "rank", "selected"} <= set(values.columns) and len(values) == readable
    unreadable = pd.read_csv(out / "unreadable.csv")
    assert unreadable["id"].tolist() == ["Dress/broken.jpg"] and unreadable["reason"].str.len().min() > 5
    flags = pd.read_csv(out / "audit" / "flags.csv")
    assert len(flags) == readable and "is_off_task" in flags.columns
    assert (out / "audit" / "audit.html").exists() and (out / "summary.json").exists()
    # the link tree is an ImageFolder of exactly the selected files
    ds = ImageFolder(str(links))
    assert len(ds) == k
    assert set(ds.classes) == set(curated.loc[curated["selected"], "label"])
    assert all(p.is_symlink() for p in links.rglob("*.*") if p.name != MARKER)
    # classes with reference images: every one gets its share (herding, per-class quotas)
    assert curated.loc[curated["selected"], "label"].nunique() == 6


@requires_fashion_mnist
def test_curate_refuses_to_overwrite_and_force_replaces_only_its_own_output(
    folders, tmp_path, tmp_path_factory, capsys
):
    args = [
        "curate",
        "--pool",
        str(folders["pool"]),
        "--reference",
        str(folders["reference"]),
        "--budget",
        "40",
        "--cache-dir",
        _cache(tmp_path_factory),
        "--no-audit",
        *ENC,
    ]
    user_dir = tmp_path / "mine"
    user_dir.mkdir()
    (user_dir / "thesis.txt").write_text("precious")
    assert main([*args, "--out", str(user_dir)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main([*args, "--out", str(user_dir), "--force"]) == 2
    assert "not written by kairos-curate" in capsys.readouterr().err
    assert (user_dir / "thesis.txt").read_text() == "precious"
    out = tmp_path / "out"
    assert main([*args, "--out", str(out)]) == 0
    first = pd.read_csv(out / "curated.csv")
    assert main([*args, "--out", str(out)]) == 2  # a second run needs --force
    assert main([*args, "--out", str(out), "--force", "--budget", "30"]) == 0
    assert pd.read_csv(out / "curated.csv")["selected"].sum() == 30 != first["selected"].sum()
    # outputs inside an input, or containing one, are refused
    for bad in (folders["pool"] / "out", folders["reference"], folders["pool"].parent):
        capsys.readouterr()
        assert main([*args, "--out", str(bad)]) == 2
        assert "--out" in capsys.readouterr().err
    assert main([*args, "--out", str(tmp_path / "o2"), "--link-dir", str(folders["reference"] / "x")]) == 2
    assert "--link-dir" in capsys.readouterr().err and not (folders["reference"] / "x").exists()


@requires_fashion_mnist
def test_dry_run_writes_nothing(folders, tmp_path, capsys):
    out = tmp_path / "dry"
    code = main(
        [
            "curate",
            "--pool",
            str(folders["pool"]),
            "--reference",
            str(folders["reference"]),
            "--budget",
            "10%",
            "--out",
            str(out),
            "--link-dir",
            str(tmp_path / "links"),
            "--dry-run",
            *ENC,
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "dry run" in text and "select " in text and "gated_cover" in text and "link the" in text
    assert "kairos_calibrated for the selection" in text
    assert not out.exists() and not (tmp_path / "links").exists()


def _write_class_folder(root, classes, n, seed):
    rng = np.random.default_rng(seed)
    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(root / c / f"{i}.png")


def test_pool_classes_missing_from_the_reference_are_named(tmp_path):
    _write_class_folder(tmp_path / "pool", ["ant", "bee", "wasp"], 3, 0)
    _write_class_folder(tmp_path / "ref", ["ant", "bee"], 2, 1)
    (tmp_path / "ref" / "wasp").mkdir()  # an empty reference class does not count
    with pytest.raises(CurateError, match=r"missing from the reference: 'wasp' \(3 pool image"):
        curate(tmp_path / "pool", tmp_path / "ref", tmp_path / "out", budget=2, dry_run=True, log=lambda _: None)


def test_manifests_read_like_folders(tmp_path):
    _write_class_folder(tmp_path / "imgs", ["ant", "bee"], 3, 2)
    rows = [{"path": f"imgs/{c}/{i}.png", "label": c} for c in ("ant", "bee") for i in range(3)]
    pd.DataFrame(rows).to_csv(tmp_path / "pool.csv", index=False)
    csv = read_image_set(tmp_path / "pool.csv")
    assert csv.kind == "manifest" and csv.table["id"].tolist()[0] == "imgs/ant/0.png"
    assert all(p.startswith(str(tmp_path)) for p in csv.table["path"])
    pd.DataFrame(rows).assign(id=[f"s{i}" for i in range(6)]).to_parquet(tmp_path / "pool.parquet")
    pq = read_image_set(tmp_path / "pool.parquet")
    assert pq.table["id"].tolist() == [f"s{i}" for i in range(6)] and pq.classes == ["ant", "bee"]
    folder = read_image_set(tmp_path / "imgs")
    assert folder.table["path"].tolist() == csv.table["path"].tolist()
    pd.DataFrame([{"file": "x.png", "label": "a"}]).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(CurateError, match=r"lacks column\(s\) \['path'\]"):
        read_image_set(tmp_path / "bad.csv")
    pd.DataFrame([{"path": "imgs/ant/0.png", "label": ""}]).to_csv(tmp_path / "nolabel.csv", index=False)
    with pytest.raises(CurateError, match="without a label"):
        read_image_set(tmp_path / "nolabel.csv")
    with pytest.raises(CurateError, match="does not exist"):
        read_image_set(tmp_path / "nope")


def test_parse_budget():
    assert parse_budget("500", 1000) == 500 and parse_budget(500, 1000) == 500
    assert parse_budget("0.3", 1000) == 300 and parse_budget(0.3, 1000) == 300
    assert parse_budget("30%", 1000) == 300 and parse_budget("1.0", 7) == 7
    for bad in ("0", "-3", "1.5", "2000", "abc", "0%"):
        with pytest.raises(CurateError, match="--budget"):
            parse_budget(bad, 1000)


@requires_fashion_mnist
def test_curated_manifest_trains_through_the_finetune_code(folders, tmp_path, tmp_path_factory):
    from kairos_curate.training.backbones import load_backbone
    from kairos_curate.training.finetune import FinetuneConfig, compute_stem_features, train_run

    res = curate(
        folders["pool"],
        folders["reference"],
        tmp_path / "c",
        budget=0.3,
        image_size=32,
        device="cpu",
        cache_dir=_cache(tmp_path_factory),
        run_audit=False,
        progress=False,
        log=lambda _: None,
    )
    assert res.selected["selected"].all() and len(res.selected) == res.k
    source, labels, classes = curated_source(res.paths["curated"])
    assert len(source) == res.k and classes == sorted(res.pool.table["label"].unique())
    test = read_image_set(folders["test"], "test")
    test_labels = np.asarray([classes.index(c) for c in test.table["label"]])
    backbone = load_backbone("efficientnet-lite0", image_size=32)
    features = compute_stem_features(backbone, source, progress=False)
    test_features = compute_stem_features(backbone, test.source(), progress=False)
    run = train_run(
        backbone,
        features,
        labels,
        np.arange(len(source)),
        test_features,
        test_labels,
        len(classes),
        FinetuneConfig(epochs=2, batch_size=32),
        seed=0,
    )
    assert run.n_train + run.n_val == res.k
    assert run.accuracy > 1.5 / len(classes)  # well above chance on the clean test folder


def test_force_never_removes_an_input(tmp_path):
    _write_class_folder(tmp_path / "pool", ["ant"], 2, 3)
    _write_class_folder(tmp_path / "ref", ["ant"], 2, 4)
    (tmp_path / MARKER).write_text("")  # even a marker above the inputs does not make them removable
    with pytest.raises(CurateError, match="contains the --pool input"):
        curate(tmp_path / "pool", tmp_path / "ref", tmp_path, budget=1, force=True, log=lambda _: None)
    assert (tmp_path / "pool" / "ant" / "0.png").exists()


def test_curate_help_explains_every_option_and_starts_light():
    import subprocess
    import sys

    code = (
        "import sys\nfrom kairos_curate.cli import main\ntry:\n    main(['curate', '--help'])\n"
        "except SystemExit:\n    pass\nprint('torch' in sys.modules, 'pandas' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    for option in (
        "--pool",
        "--reference",
        "--out",
        "--budget",
        "--link-dir",
        "--link-mode",
        "--policy",
        "--policy-param",
        "--encoder",
        "--image-size",
        "--cache-dir",
        "--force",
        "--dry-run",
        "--no-audit",
        "--alpha",
        "--progress",
        "--engine",
        "--ray-address",
        "ImageFolder",
        "manifest",
    ):
        assert option in out
    assert out.strip().splitlines()[-1] == "False False"


def test_reasons_name_collapsed_near_copies_and_the_gate():
    from kairos_curate.curate import _reasons
    from kairos_curate.selection import Selection

    values = pd.DataFrame({"value": [0.9, 0.8, 0.7, 0.1]}, index=pd.Index(["a", "b", "c", "d"], name="id"))
    sel = Selection(
        indices=np.array([0]),
        ids=np.array(["a"]),
        class_counts={"x": 1},
        policy="gated_cover",
        info={"collapsed_rows": [1]},
        eligible=np.array([True, True, True, False]),
    )
    reasons, order = _reasons(values, sel, np.array(["x"] * 4), 1, None)
    assert order.tolist() == [1, 0, 0, 0] and reasons[0].startswith("kept: pick 1 of 1 by gated_cover")
    assert reasons[1].startswith("dropped: near copy of another sample of its class, collapsed by gated_cover")
    assert reasons[2].startswith("dropped: not picked by gated_cover within the budget")
    assert reasons[3].startswith("dropped: did not pass the value gate of gated_cover")
