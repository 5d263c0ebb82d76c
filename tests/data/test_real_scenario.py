"""The iNaturalist/Insects scenario source on fake trees: splits, leakage, corruptions, stages."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kairos_curate.config import ParamsError
from kairos_curate.data.real_scenario import RealScenarioConfig, build_real_scenario
from kairos_curate.data.scenario import (
    add_pool_noise,
    changed_rows,
    check_no_leakage,
    load_pool_variant,
    load_scenario,
)
from kairos_curate.data.sources import FileImageSource, ImageListSource, image_arrays
from kairos_curate.reporting import plots
from kairos_curate.stages import prepare
from kairos_curate.study import eda

from ..fake_datasets import CATEGORY_SPECIES, make_inat_tree, make_insects_tree, plant_copy

#: ``scenario.inaturalist`` of a small fake project (YAML types).
REAL = dict(
    inat_root="raw/inat",
    inat_split="train",
    inat_table=None,
    insects_root="raw/insects",
    insects_split=None,
    taxonomy=None,
    pool_size=0,
    offtask_label="random",
    verify=False,
    reference_per_class=5,
    test_per_class=8,
    pixel_noise_fraction=0.2,
    pixel_noise_severities=[1, 3],
    label_flip_fraction=0.1,
    seed=4,
)
#: The whole ``scenario`` section.
SCENARIO = {"source": "inaturalist", "inaturalist": REAL, "noisy_variant": {"fraction": 0.3, "severities": [0.5, 1]}}


def _sha(path: str | Path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> Path:
    """Fake datasets under <root>/raw, plus one pool image that is a byte copy of an Insects image."""
    root = tmp_path_factory.mktemp("real")
    make_inat_tree(root / "raw" / "inat", per_species=12, offtask_per_species=6)
    make_insects_tree(root / "raw" / "insects", per_class=14)
    # a duplicate inside the Insects set (must be counted once) ...
    plant_copy(root / "raw/insects/ants/0000.jpg", root / "raw/insects/ants/copy_of_0000.jpg")
    # ... and a pool image equal to an Insects image (must never enter the pool)
    doc = json.loads((root / "raw/inat/train.json").read_text())
    ant_dir = Path(doc["images"][0]["file_name"]).parent
    plant_copy(root / "raw/insects/bees/0003.jpg", root / "raw/inat" / ant_dir / "leak.jpg")
    doc["images"].append({"id": 9999, "file_name": str(ant_dir / "leak.jpg")})
    doc["annotations"].append({"id": 9999, "image_id": 9999, "category_id": 0})
    (root / "raw/inat/train.json").write_text(json.dumps(doc))
    return root


def _config(**overrides) -> RealScenarioConfig:
    return RealScenarioConfig.from_params({**REAL, **overrides})


@pytest.fixture(scope="module")
def built(trees):
    return build_real_scenario(_config(), trees / "prepared", root=trees, progress=False)


def test_splits_counts_and_labels(built):
    assert built.file_backed and built.pixels is None
    assert built.class_names == list(CATEGORY_SPECIES)  # taxonomy order, every reference class
    ref, test = built.table("reference"), built.table("test")
    assert ref["label"].value_counts().to_dict() == dict.fromkeys(range(4), 5)
    assert test["label"].value_counts().to_dict() == dict.fromkeys(range(4), 8)
    counts = built.info["counts"]
    assert counts["pool"] == 4 * 12 + 2 * 6  # the planted copy is dropped
    assert built.info["pool_dropped_equal_to_reference_or_test"] == 1
    pool = built.table("pool").merge(built.truth, on="id")
    assert pool["off_task"].sum() == 12 == counts["pool_off_task"]
    assert set(pool.loc[pool["off_task"], "origin"]) == {"Turdus migratorius", "Tenthredo arcuata"}
    assert pool["label"].between(0, 3).all()  # off-task images carry some task label
    assert (
        pool.loc[~pool["off_task"] & ~pool["label_flipped"], "label"]
        == pool.loc[~pool["off_task"] & ~pool["label_flipped"], "true_label"]
    ).all()
    assert counts["pool_pixel_noise"] == round(0.2 * counts["pool"])
    assert counts["pool_label_flipped"] == round(0.1 * (counts["pool"] - counts["pool_off_task"]))


def test_no_image_is_shared_between_splits(built, trees):
    ids = {s: set(built.table(s)["id"]) for s in ("pool", "reference", "test")}
    hashes = {s: set(built.content_hashes(s).tolist()) for s in ("pool", "reference", "test")}
    for a, b in (("pool", "reference"), ("pool", "test"), ("reference", "test")):
        assert not ids[a] & ids[b]
        assert not hashes[a] & hashes[b]
    # stored hashes are those of the files (a changed image changes the prepared output for DVC)
    assert built.samples["content_hash"].tolist() == [_sha(p) for p in built.samples["path"]]
    # the Insects duplicate is used at most once
    insects_hashes = [_sha(p) for p in built.table("reference")["path"]] + [
        _sha(p) for p in built.table("test")["path"]
    ]
    assert len(insects_hashes) == len(set(insects_hashes))
    check_no_leakage(built)


def test_leak_is_caught_by_content(built):
    samples = built.samples.copy()
    ref_path = samples.loc[samples["split"] == "reference", "path"].iloc[0]
    samples.loc[samples.index[samples["split"] == "test"][0], "path"] = ref_path
    leaky = type(built)(samples=samples, pixels=None, truth=built.truth, class_names=built.class_names, info=built.info)
    with pytest.raises(RuntimeError, match="content hash"):
        check_no_leakage(leaky)


def test_corruptions_write_copies_and_never_touch_user_files(built, trees):
    before = {p: _sha(p) for p in (trees / "raw").rglob("*.jpg")}
    pool = built.table("pool").merge(built.truth, on="id")
    noisy = pool[pool["corruption"] != "none"]
    assert len(noisy) > 0
    prepared = (trees / "prepared" / "images").resolve()
    for path in noisy["path"]:
        assert Path(path).resolve().parent == prepared and Path(path).suffix == ".png"
    for path in pool.loc[pool["corruption"] == "none", "path"]:
        assert (trees / "raw").resolve() in Path(path).resolve().parents
    # the copies differ from the originals they were made from
    frame = json.loads((trees / "raw/inat/train.json").read_text())
    by_id = {f"inat:{im['id']}": trees / "raw/inat" / im["file_name"] for im in frame["images"]}
    row = noisy.iloc[0]
    original = np.asarray(FileImageSource([row["id"]], [by_id[row["id"]]]).load_image(0))
    corrupted = np.asarray(FileImageSource([row["id"]], [row["path"]]).load_image(0))
    assert original.shape == corrupted.shape and not np.array_equal(original, corrupted)
    assert {p: _sha(p) for p in (trees / "raw").rglob("*.jpg")} == before


def test_seeded_and_modes(trees, tmp_path):
    a = build_real_scenario(_config(pixel_noise_fraction=0.0), tmp_path / "a", root=trees, progress=False)
    b = build_real_scenario(_config(pixel_noise_fraction=0.0), tmp_path / "b", root=trees, progress=False)
    pd.testing.assert_frame_equal(a.samples, b.samples)
    pd.testing.assert_frame_equal(a.truth, b.truth)
    dropped = build_real_scenario(
        _config(offtask_label="drop", pool_size=20), tmp_path / "c", root=trees, progress=False
    )
    assert len(dropped.table("pool")) == 20 and not dropped.truth["off_task"].any()


def test_save_load_roundtrip_and_relocation(built, trees, tmp_path):
    folder = trees / "prepared"
    built.save(folder, trees / "truth.parquet")
    stored = pd.read_parquet(folder / "samples.parquet")
    noisy_ids = set(built.truth.loc[built.truth["corruption"] != "none", "id"])
    assert all(not Path(p).is_absolute() for p in stored.loc[stored["id"].isin(noisy_ids), "path"])
    moved = tmp_path / "moved"
    shutil.copytree(folder, moved)
    loaded = load_scenario(moved, trees / "truth.parquet")
    source = loaded.source("pool")
    for i in range(len(source)):
        assert Path(source.paths[i]).exists()
    assert source.load_image(0).mode == "RGB"
    pd.testing.assert_frame_equal(loaded.truth, built.truth)


def test_noisy_variant_on_files(built, tmp_path):
    variant = add_pool_noise(built, 0.25, [0.5, 1.0], seed=9, image_dir=tmp_path / "noisy" / "images")
    variant.save(tmp_path / "noisy", tmp_path / "truth_noisy.parquet")
    loaded = load_pool_variant(tmp_path / "noisy", tmp_path / "truth_noisy.parquet")
    assert loaded.pixels is None and list(loaded.ids) == list(built.table("pool")["id"])
    added = set(
        np.flatnonzero(
            ((loaded.truth["corruption"] != "none") & (built.truth["corruption"] == "none")).to_numpy()
        ).tolist()
    )
    assert len(added) == variant.info["added"] > 0
    assert set(changed_rows(built.source("pool"), loaded.source()).tolist()) == added
    with pytest.raises(ValueError, match="image_dir"):
        add_pool_noise(built, 0.25, [0.5], seed=9)


def test_image_arrays_keep_native_sizes(built):
    arrays = image_arrays(built.source("pool"), [0, 1, 2, 3])
    assert isinstance(arrays, list) and len({a.shape for a in arrays}) > 1
    source = ImageListSource(["a", "b"], arrays[:2])
    assert source.load_image(1).size == (arrays[1].shape[1], arrays[1].shape[0])


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"insects_root": "raw/nowhere"}, r"scenario\.inaturalist\.insects_root"),
        ({"inat_root": "raw/nowhere"}, r"scenario\.inaturalist\.inat_root"),
        ({"reference_per_class": 10, "test_per_class": 10}, "reference_per_class"),
        ({"offtask_label": "keep"}, "offtask_label"),
        ({"test_per_class": 0}, "test_per_class"),
        ({"label_flip_fraction": 1.5}, "label_flip_fraction"),
    ],
)
def test_bad_configuration_names_the_parameter(trees, tmp_path, overrides, match):
    with pytest.raises((FileNotFoundError, ValueError), match=match):
        build_real_scenario(_config(**overrides), tmp_path, root=trees, progress=False)


def test_a_reference_class_without_pool_images_is_a_warned_gap(trees, tmp_path):
    import shutil as sh

    root = tmp_path / "gap"
    sh.copytree(trees / "raw", root / "raw")
    make_insects_tree(root / "raw" / "extra", per_class=14, seed=7)  # other images than the Insects tree
    sh.copytree(root / "raw/extra/ants", root / "raw/insects/ladybugs")  # a class no pool species maps to
    with pytest.warns(UserWarning, match="Ladybug"):
        sc = build_real_scenario(_config(), root / "prepared", root=root, progress=False)
    assert "Ladybug" in sc.class_names
    table = pd.DataFrame(sc.info["coverage"]).set_index("category")
    assert table.loc["Ladybug", "status"] == "reference only"


def test_unknown_parameter_and_source():
    with pytest.raises(ParamsError, match=r"scenario\.inaturalist\.inat_rot: unknown key"):
        prepare.load({"scenario": {**SCENARIO, "inaturalist": {**REAL, "inat_rot": "x"}}})
    with pytest.raises(ParamsError, match=r"scenario\.source: Input should be 'fashion_mnist' or 'inaturalist'"):
        prepare.load({"scenario": {**SCENARIO, "source": "imagenet"}})


def test_prepare_stage_and_eda_on_real_files(trees, tmp_path):
    root = tmp_path / "project"
    shutil.copytree(trees / "raw", root / "raw")
    scenario = prepare.run(prepare.load({"scenario": SCENARIO}).scenario, root)
    metrics = json.loads((root / "reports/metrics/prepare.json").read_text())
    assert metrics["source"] == "inaturalist" and metrics["pool"] == 60
    assert metrics["pool_dropped_equal_to_reference_or_test"] == 1
    assert (root / "data/prepared_noisy/pool_noisy.parquet").exists()
    loaded = load_scenario(root / "data/prepared", root / "data/truth/truth.parquet")
    overlap = eda.class_overlap(loaded)
    assert overlap["off-task"].sum() == metrics["pool_off_task"]
    coverage = eda.coverage_table(loaded)
    assert coverage is not None
    assert coverage.loc["Ant", "pool_count"] == 13 and coverage.loc["Ant", "pool_species"] == 1  # 12 + the leak
    assert coverage.loc["off-task", "status"] == "off-task" and coverage.loc["off-task", "pool_species"] == 2
    stats = eda.pixel_statistics(loaded)
    assert stats["std"].gt(0).all()
    for fig in (
        plots.sample_grid(loaded, "reference", per_class=3),
        plots.corruption_grid(loaded, per_kind=3),
        plots.corruption_gallery(loaded, n_images=2),
    ):
        assert fig.axes
    assert scenario.class_names == loaded.class_names


def test_noise_on_files_does_not_depend_on_the_chunk_size(built):
    from kairos_curate.data.scenario import noise_files

    source = built.source("pool")
    rows = np.asarray([1, 4, 7, 20, 33])
    outputs = []
    for chunk in (1, 2, 128):
        written: dict[int, np.ndarray] = {}
        changed = noise_files(source, rows, 1.0, 40.0, np.random.default_rng(3), written.__setitem__, chunk=chunk)
        assert changed.tolist() == rows.tolist()
        outputs.append(written)
    for other in outputs[1:]:
        for row in rows:
            np.testing.assert_array_equal(outputs[0][row], other[row])
