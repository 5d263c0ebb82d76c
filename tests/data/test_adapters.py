"""Tests of the iNaturalist / Insects adapters and the taxonomy mapping on tiny fake trees."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_array_equal
from PIL import Image

from kairos_curate.data.adapters import (
    COLUMNS,
    LoadedDataset,
    check_image,
    class_overlap,
    default_taxonomy_path,
    load_taxonomy,
)
from kairos_curate.data.inaturalist import load_inaturalist, load_inaturalist_table
from kairos_curate.data.insects import load_insects
from kairos_curate.data.sources import FileImageSource, UnreadableImageError

# (order, family, genus, species) -> expected category under the packaged mapping
SPECIES = [
    (
        "Arthropoda",
        "Insecta",
        "Hymenoptera",
        "Formicidae",
        "Camponotus",
        "Camponotus pennsylvanicus",
        "Ant",
    ),
    ("Arthropoda", "Insecta", "Hymenoptera", "Apidae", "Apis", "Apis mellifera", "Bee"),
    ("Arthropoda", "Insecta", "Hymenoptera", "Vespidae", "Vespula", "Vespula vulgaris", "Wasp"),
    ("Arthropoda", "Insecta", "Coleoptera", "Carabidae", "Carabus", "Carabus nemoralis", "Beetle"),
    (
        "Arthropoda",
        "Insecta",
        "Coleoptera",
        "Coccinellidae",
        "Coccinella",
        "Coccinella septempunctata",
        "Ladybug",
    ),
    (
        "Arthropoda",
        "Insecta",
        "Lepidoptera",
        "Nymphalidae",
        "Vanessa",
        "Vanessa cardui",
        "Butterfly",
    ),
    (
        "Arthropoda",
        "Insecta",
        "Orthoptera",
        "Acrididae",
        "Melanoplus",
        "Melanoplus differentialis",
        "Grasshopper",
    ),
    ("Arthropoda", "Arachnida", "Araneae", "Araneidae", "Araneus", "Araneus diadematus", "Spider"),
    ("Chordata", "Aves", "Passeriformes", "Turdidae", "Turdus", "Turdus migratorius", "off-task"),
    (
        "Arthropoda",
        "Insecta",
        "Hymenoptera",
        "Tenthredinidae",
        "Tenthredo",
        "Tenthredo sp",
        "off-task",
    ),
]


def _write_image(path: Path, seed: int, fmt: str = "PNG", rgb: bool = True) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shape = (8, 8, 3) if rgb else (8, 8)
    Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8)).save(path, format=fmt)


def _image_bytes(seed: int, fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


def _make_inat(root: Path, split: str = "train") -> dict:
    """A fake iNat 2021 split: two images per species, official layout."""
    categories, images, annotations = [], [], []
    for c, (phylum, cls, order, family, genus, species, _) in enumerate(SPECIES):
        dir_name = f"{c:05d}_Animalia_{phylum}_{cls}_{order}_{family}_{genus}_{species.split()[1]}"
        categories.append(
            {
                "id": c,
                "name": species,
                "common_name": species,
                "supercategory": "Insects",
                "kingdom": "Animalia",
                "phylum": phylum,
                "class": cls,
                "order": order,
                "family": family,
                "genus": genus,
                "specific_epithet": species.split()[1],
                "image_dir_name": dir_name,
            }
        )
        for k in range(2):
            image_id = 100 * c + k
            file_name = f"{split}/{dir_name}/{image_id:08x}.jpg"
            _write_image(root / file_name, seed=image_id, fmt="JPEG")
            images.append({"id": image_id, "file_name": file_name, "width": 8, "height": 8})
            annotations.append({"id": image_id, "image_id": image_id, "category_id": c})
    doc = {"info": {}, "images": images, "annotations": annotations, "categories": categories}
    (root / f"{split}.json").write_text(json.dumps(doc))
    return doc


def _expected_labels() -> dict[str, str]:
    return {row[5]: row[6] for row in SPECIES}


# ------------------------------------------------------------------ taxonomy


def test_packaged_taxonomy_loads_and_maps_most_specific() -> None:
    tax = load_taxonomy()
    assert tax.version
    assert set(tax.categories) >= {
        "Ant",
        "Bee",
        "Beetle",
        "Butterfly",
        "Grasshopper",
        "Ladybug",
        "Spider",
        "Wasp",
    }
    assert Path(tax.path) == default_taxonomy_path()
    for phylum, cls, order, family, genus, species, expected in SPECIES:
        taxon = {
            "phylum": phylum,
            "class": cls,
            "order": order,
            "family": family,
            "genus": genus,
            "species": species,
        }
        assert tax.map_taxon(taxon) == expected, species
    # case-insensitive, missing levels never match
    assert tax.map_taxon({"order": " coleoptera ", "family": "COCCINELLIDAE"}) == "Ladybug"
    assert tax.map_taxon({"family": "Formicidae"}) == "Ant"  # family alone identifies ants
    assert tax.map_taxon({"order": "Hymenoptera"}) == "off-task"  # order alone does not
    assert tax.map_taxon({"order": None, "family": float("nan")}) == "off-task"
    assert tax.reference_category("Ants") == "Ant"
    assert tax.reference_category("ladybug") == "Ladybug"
    assert tax.reference_category("Dragonflies") is None


def _write_yaml(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "tax.yaml"
    p.write_text(text)
    return p


BASE = "levels: [order, family, genus, species]\ncategories: [A, B]\n"


def test_user_taxonomy_species_rule_wins_and_version_kept(tmp_path: Path) -> None:
    p = _write_yaml(
        tmp_path,
        'version: "7"\n' + BASE + "off_task: other\nrules:\n"
        "  - {category: A, order: X}\n  - {category: B, species: X y}\n",
    )
    tax = load_taxonomy(p)
    assert tax.version == "7" and tax.off_task == "other"
    assert tax.map_taxon({"order": "X", "species": "X y"}) == "B"
    assert tax.map_taxon({"order": "X", "species": "X z"}) == "A"
    assert tax.map_taxon({"order": "Q"}) == "other"


def test_most_specific_rule_and_ties(tmp_path: Path) -> None:
    p = _write_yaml(
        tmp_path,
        "version: 1\n" + BASE + "rules:\n"
        "  - {category: B, family: F}\n"
        "  - {category: A, order: X, family: F}\n"
        "  - {category: A, order: X, genus: G}\n"
        "  - {category: B, family: F, genus: G}\n",
    )
    tax = load_taxonomy(p)
    # same most specific level (family): more conditions wins
    assert tax.map_taxon({"order": "X", "family": "F"}) == "A"
    assert tax.map_taxon({"order": "Y", "family": "F"}) == "B"
    # two genus-level rules with two conditions each, different categories: an error
    with pytest.raises(ValueError, match="equally specific"):
        tax.map_taxon({"order": "X", "family": "F", "genus": "G"})


@pytest.mark.parametrize(
    "text, match",
    [
        (BASE + "rules:\n  - {category: A, order: X}\n", "version"),
        ("version: 1\n" + BASE + "rules: []\n", "rules"),
        ("version: 1\n" + BASE + "rules:\n  - {category: C, order: X}\n", "not in `categories`"),
        ("version: 1\n" + BASE + "rules:\n  - {category: A, suborder: X}\n", "unknown level"),
        ("version: 1\n" + BASE + "rules:\n  - {category: A}\n", "no condition"),
        (
            "version: 1\n" + BASE + "rules:\n  - {category: A, order: X}\n  - {category: B, order: x}\n",
            "same conditions",
        ),
        ("version: 1\n" + BASE + "off_task: A\nrules:\n  - {category: A, order: X}\n", "off_task"),
        (
            "version: 1\n" + BASE + "rules:\n  - {category: A, order: X}\nreference_aliases: {as: Z}\n",
            "unknown category",
        ),
        ("version: [1\n", "not valid YAML"),
    ],
)
def test_bad_taxonomy_files(tmp_path: Path, text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        load_taxonomy(_write_yaml(tmp_path, text))


def test_missing_taxonomy_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="taxonomy mapping file"):
        load_taxonomy(tmp_path / "nope.yaml")


# ------------------------------------------------------------------ iNaturalist official layout


def test_inat_official_layout(tmp_path: Path) -> None:
    doc = _make_inat(tmp_path)
    ds = load_inaturalist(tmp_path)
    assert isinstance(ds, LoadedDataset) and isinstance(ds.images, FileImageSource)
    assert list(ds.frame.columns[: len(COLUMNS)]) == list(COLUMNS)
    assert len(ds) == len(doc["images"]) and ds.skipped == []
    expected = _expected_labels()
    for _, row in ds.frame.iterrows():
        assert row["label"] == expected[row["species"]]
        assert row["source"] == "inaturalist2021"
        assert Path(row["path"]).is_file()
    assert_array_equal(ds.images.ids, ds.frame["id"].to_numpy())
    assert set(ds.frame["id"]) == {f"inat:{im['id']}" for im in doc["images"]}
    # lazy image i is the file of row i
    i = 5
    img_id = int(ds.frame["id"][i].split(":")[1])
    file_name = next(im["file_name"] for im in doc["images"] if im["id"] == img_id)
    assert_array_equal(
        np.asarray(ds.images.load_image(i)),
        np.asarray(Image.open(tmp_path / file_name).convert("RGB")),
    )
    assert ds.label_counts()["off-task"] == 4
    assert ds.taxonomy_version == load_taxonomy().version
    # ids stable across loads
    assert_array_equal(load_inaturalist(tmp_path).frame["id"], ds.frame["id"])


def test_inat_skips_missing_corrupt_unannotated(tmp_path: Path) -> None:
    doc = _make_inat(tmp_path)
    first, second, third = doc["images"][:3]
    (tmp_path / first["file_name"]).unlink()
    (tmp_path / second["file_name"]).write_bytes(b"this is not a jpeg")
    doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] != third["id"]]
    doc["annotations"].append({"id": 9999, "image_id": doc["images"][3]["id"], "category_id": 12345})
    doc["annotations"] = [
        a for a in doc["annotations"] if not (a["image_id"] == doc["images"][3]["id"] and a["category_id"] != 12345)
    ]
    (tmp_path / "train.json").write_text(json.dumps(doc))

    with pytest.warns(UserWarning, match="skipped 3"):
        ds = load_inaturalist(tmp_path)  # no verify: the corrupt file is still listed
    reasons = {s.id: s.reason for s in ds.skipped}
    assert reasons[f"inat:{first['id']}"] == "missing file"
    assert reasons[f"inat:{third['id']}"] == "no annotation"
    assert "unknown category" in reasons[f"inat:{doc['images'][3]['id']}"]
    bad_row = int(np.flatnonzero(ds.frame["id"] == f"inat:{second['id']}")[0])
    with pytest.raises(UnreadableImageError):
        ds.images.load_image(bad_row)

    with pytest.warns(UserWarning, match="skipped 4"):
        ds_v = load_inaturalist(tmp_path, verify=True)
    reasons_v = {s.id: s.reason for s in ds_v.skipped}
    assert reasons_v[f"inat:{second['id']}"].startswith("unreadable image")
    assert len(ds_v) == len(doc["images"]) - 4
    assert f"inat:{second['id']}" not in set(ds_v.frame["id"])
    assert set(ds_v.skipped_frame().columns) == {"id", "path", "reason"}


def test_inat_missing_pieces(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="root folder"):
        load_inaturalist(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match=r"train\.json"):
        load_inaturalist(tmp_path)
    _make_inat(tmp_path, split="val")
    with pytest.raises(FileNotFoundError, match=r"train\.json"):
        load_inaturalist(tmp_path)  # only val present
    assert len(load_inaturalist(tmp_path, split="val")) == 2 * len(SPECIES)
    # json present but image folder absent
    (tmp_path / "val").rename(tmp_path / "elsewhere")
    with pytest.raises(FileNotFoundError, match="image folder"):
        load_inaturalist(tmp_path, split="val")


@pytest.mark.parametrize(
    "content, match",
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"images": []}), "COCO keys"),
        (json.dumps([1, 2]), "COCO keys"),
    ],
)
def test_inat_bad_json(tmp_path: Path, content: str, match: str) -> None:
    (tmp_path / "train.json").write_text(content)
    with pytest.raises(ValueError, match=match):
        load_inaturalist(tmp_path)


def test_inat_categories_restriction_and_custom_taxonomy(tmp_path: Path) -> None:
    _make_inat(tmp_path)
    ds = load_inaturalist(tmp_path, categories=["Ant", "Bee"])
    assert set(ds.frame["label"]) == {"Ant", "Bee", "off-task"}
    assert (ds.frame["label"] == "off-task").sum() == 2 * (len(SPECIES) - 2)
    p = _write_yaml(
        tmp_path,
        'version: "birds-1"\nlevels: [class, order, species]\ncategories: [Bird]\n'
        "rules:\n  - {category: Bird, class: Aves}\n",
    )
    ds2 = load_inaturalist(tmp_path, taxonomy=p)
    assert ds2.taxonomy_version == "birds-1"
    assert set(ds2.frame.loc[ds2.frame["label"] == "Bird", "species"]) == {"Turdus migratorius"}


# ------------------------------------------------------------------ iNaturalist exported table


def _export_rows(tmp_path: Path) -> pd.DataFrame:
    rows = []
    for k, (_phylum, cls, order, family, genus, species, _) in enumerate(SPECIES):
        rel = f"imgs/{k}.png"
        _write_image(tmp_path / rel, seed=k)
        rows.append(
            {
                "image_path": rel,
                "Species": species,
                "order": order,
                "family": family,
                "genus": genus,
                "class": cls,
            }
        )
    return pd.DataFrame(rows)


def test_inat_csv_export(tmp_path: Path) -> None:
    frame = _export_rows(tmp_path)
    frame.loc[len(frame)] = {
        "image_path": "imgs/absent.png",
        "Species": "Apis mellifera",
        "order": "Hymenoptera",
        "family": "Apidae",
        "genus": "Apis",
        "class": "Insecta",
    }
    frame.loc[len(frame)] = {
        "image_path": "imgs/0.png",
        "Species": None,
        "order": None,
        "family": None,
        "genus": None,
        "class": None,
    }
    csv = tmp_path / "export.csv"
    frame.to_csv(csv, index=False)
    with pytest.warns(UserWarning, match="skipped 2"):
        ds = load_inaturalist_table(csv)
    assert len(ds) == len(SPECIES)
    expected = _expected_labels()
    assert all(expected[s] == lab for s, lab in zip(ds.frame["species"], ds.frame["label"], strict=True))
    assert ds.frame["id"].iloc[0] == "inat:imgs/0.png"
    assert {s.reason for s in ds.skipped} == {"missing file", "no species"}
    assert {"order", "family", "genus", "class"} <= set(ds.frame.columns)
    assert np.asarray(ds.images.load_image(0)).shape == (8, 8, 3)


def test_inat_table_species_only_and_id_column(tmp_path: Path) -> None:
    frame = _export_rows(tmp_path)[["image_path", "Species"]]
    frame.insert(0, "image_id", [f"u{k}" for k in range(len(frame))])
    pq = tmp_path / "sub" / "export.parquet"
    pq.parent.mkdir()
    frame.to_parquet(pq)
    tax = _write_yaml(
        tmp_path,
        "version: 2\nlevels: [order, species]\ncategories: [Bee]\nrules:\n  - {category: Bee, species: apis mellifera}\n",
    )
    ds = load_inaturalist_table(pq, image_root=tmp_path, taxonomy=tax)
    assert list(ds.frame["id"]) == [f"inat:u{k}" for k in range(len(frame))]
    assert (ds.frame["label"] == "Bee").sum() == 1
    assert ds.frame.loc[ds.frame["label"] == "Bee", "species"].item() == "Apis mellifera"


def test_inat_table_with_bytes(tmp_path: Path) -> None:
    blobs = [_image_bytes(k) for k in range(3)]
    frame = pd.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "image": [
                {"bytes": blobs[0], "path": None},
                {"bytes": blobs[1], "path": None},
                {"bytes": b"garbage", "path": None},
                {"bytes": blobs[2], "path": None},
            ],
            "species": ["Apis mellifera", "Vanessa cardui", "Apis mellifera", None],
            "family": ["Apidae", "Nymphalidae", "Apidae", None],
            "order": ["Hymenoptera", "Lepidoptera", "Hymenoptera", None],
        }
    )
    pq = tmp_path / "hf.parquet"
    frame.to_parquet(pq)
    with pytest.raises(ValueError, match="extract_dir"):
        load_inaturalist_table(pq)
    out = tmp_path / "extracted"
    with pytest.warns(UserWarning, match="skipped 2"):
        ds = load_inaturalist_table(pq, extract_dir=out, verify=True)
    assert list(ds.frame["id"]) == ["inat:1", "inat:2"]
    assert list(ds.frame["label"]) == ["Bee", "Butterfly"]
    reasons = {s.id: s.reason for s in ds.skipped}
    assert reasons["inat:3"].startswith("unreadable image") and reasons["inat:4"] == "no species"
    for i, blob in enumerate(blobs[:2]):
        assert Path(ds.frame["path"][i]).read_bytes() == blob
        assert_array_equal(
            np.asarray(ds.images.load_image(i)),
            np.asarray(Image.open(io.BytesIO(blob)).convert("RGB")),
        )
    mtimes = [Path(p).stat().st_mtime_ns for p in ds.frame["path"]]
    with pytest.warns(UserWarning):
        again = load_inaturalist_table(pq, extract_dir=out, verify=True)
    assert [Path(p).stat().st_mtime_ns for p in again.frame["path"]] == mtimes  # reused


def test_inat_table_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="export table"):
        load_inaturalist_table(tmp_path / "none.csv")
    (tmp_path / "t.xlsx").write_text("x")
    with pytest.raises(ValueError, match="unsupported format"):
        load_inaturalist_table(tmp_path / "t.xlsx")
    with pytest.raises(ValueError, match="species column"):
        load_inaturalist_table(pd.DataFrame({"path": ["a.png"], "order": ["X"]}))
    with pytest.raises(ValueError, match="image path column"):
        load_inaturalist_table(pd.DataFrame({"species": ["A b"]}))
    with pytest.raises(ValueError, match="'file' not in the table"):
        load_inaturalist_table(pd.DataFrame({"species": ["A b"]}), path_column="file")
    _write_image(tmp_path / "a.png", 0)
    dup = pd.DataFrame({"id": [1, 1], "path": ["a.png", "a.png"], "species": ["A b", "A b"]})
    with pytest.raises(ValueError, match="not unique"):
        load_inaturalist_table(dup, image_root=tmp_path)


# ------------------------------------------------------------------ Insects Image Dataset


def _make_insects(root: Path) -> dict[str, int]:
    counts = {"Ants": 3, "bees": 2, "Ladybug": 2, "Spiders": 1}
    for k, (cls, n) in enumerate(counts.items()):
        for j in range(n):
            _write_image(root / cls / f"img_{j}.jpg", seed=10 * k + j, fmt="JPEG", rgb=j % 2 == 0)
    return counts


def test_insects_folder_tree(tmp_path: Path) -> None:
    counts = _make_insects(tmp_path)
    (tmp_path / "Ants" / "nested").mkdir()
    _write_image(tmp_path / "Ants" / "nested" / "deep.png", seed=99)
    (tmp_path / "Ants" / "notes.txt").write_text("hello")
    (tmp_path / "Ants" / ".DS_Store").write_bytes(b"\0")
    (tmp_path / "README.md").write_text("readme")
    with pytest.warns(UserWarning, match="skipped 2"):
        ds = load_insects(tmp_path)
    assert len(ds) == sum(counts.values()) + 1
    assert ds.label_counts().to_dict() == {"Ant": 4, "Bee": 2, "Ladybug": 2, "Spider": 1}
    assert "insects:Ants/nested/deep.png" in set(ds.frame["id"])
    assert "insects:bees/img_1.jpg" in set(ds.frame["id"])
    assert ds.frame["species"].isna().all() and (ds.frame["source"] == "insects").all()
    reasons = {s.id: s.reason for s in ds.skipped}
    assert reasons["insects:README.md"] == "not in a class folder"
    assert "not an image file" in reasons["insects:Ants/notes.txt"]
    img = ds.images.load_image(int(np.flatnonzero(ds.frame["id"] == "insects:bees/img_1.jpg")[0]))
    assert img.mode == "RGB" and img.size == (8, 8)


def test_insects_empty_class_and_corrupt_images(tmp_path: Path) -> None:
    _make_insects(tmp_path)
    (tmp_path / "Wasps").mkdir()
    with pytest.raises(ValueError, match=r"Wasps has no image files"):
        load_insects(tmp_path)
    (tmp_path / "Wasps" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    ds = load_insects(tmp_path)  # not verified: listed
    assert "insects:Wasps/broken.jpg" in set(ds.frame["id"])
    with (
        pytest.raises(ValueError, match=r"no readable image left in class folder\(s\) \['Wasps'\]"),
        pytest.warns(UserWarning),
    ):
        load_insects(tmp_path, verify=True)
    _write_image(tmp_path / "Wasps" / "good.png", seed=3)
    with pytest.warns(UserWarning, match="skipped 1"):
        ds = load_insects(tmp_path, verify=True)
    assert ds.skipped[0].id == "insects:Wasps/broken.jpg"
    assert ds.skipped[0].reason.startswith("unreadable image")
    assert (ds.frame["label"] == "Wasp").sum() == 1


def test_insects_unknown_class_and_class_map(tmp_path: Path) -> None:
    _make_insects(tmp_path / "train")
    _write_image(tmp_path / "train" / "Dragonfly" / "d.png", seed=1)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_insects(tmp_path / "nothing")
    with pytest.raises(ValueError, match="no class folders"):
        load_insects(tmp_path / "train" / "Ants")
    with pytest.warns(UserWarning, match=r"\['Dragonfly'\] name no task category"):
        ds = load_insects(tmp_path, split="train")
    assert (ds.frame["label"] == "Dragonfly").sum() == 1
    with pytest.raises(ValueError, match="Dragonfly"):
        load_insects(tmp_path, split="train", unknown_classes="error")
    ds2 = load_insects(tmp_path, split="train", class_map={"dragonfly": "Odonata", "Ants": "Formicid"})
    assert set(ds2.frame["label"]) == {"Odonata", "Formicid", "Bee", "Ladybug", "Spider"}


# ------------------------------------------------------------------ overlap, subset, helpers


def test_class_overlap_table(tmp_path: Path) -> None:
    _make_inat(tmp_path / "inat")
    _make_insects(tmp_path / "insects")
    _write_image(tmp_path / "insects" / "Dragonfly" / "d.png", seed=1)
    pool = load_inaturalist(tmp_path / "inat")
    with pytest.warns(UserWarning):
        ref = load_insects(tmp_path / "insects")
    table = class_overlap(pool, ref)
    # brute force
    for cat in table.index:
        assert table.loc[cat, "pool_count"] == sum(lab == cat for lab in pool.frame["label"])
        assert table.loc[cat, "reference_count"] == sum(lab == cat for lab in ref.frame["label"])
    assert table.index[-1] == "off-task"
    assert table.loc["Ant", "status"] == "both"
    assert table.loc["Butterfly", "status"] == "pool only"
    assert table.loc["Dragonfly", "status"] == "reference only"
    assert table.loc["off-task", "status"] == "off-task"
    assert table.loc["Beetle", "pool_species"] == 1
    assert table.loc["off-task", "pool_species"] == 2
    assert abs(table["pool_share"].sum() - 1.0) < 1e-12
    # plain label arrays work too (e.g. the Fashion-MNIST scenario)
    t2 = class_overlap(np.array(["a", "a", "b", "off-task"]), ["a", "c"])
    assert t2["pool_count"].to_dict() == {"a": 2, "b": 1, "c": 0, "off-task": 1}
    assert t2["pool_species"].isna().all()


def test_subset_and_restrict(tmp_path: Path) -> None:
    _make_inat(tmp_path)
    ds = load_inaturalist(tmp_path)
    mask = ds.frame["label"] != "off-task"
    sub = ds.subset(mask.to_numpy())
    assert len(sub) == int(mask.sum())
    assert_array_equal(sub.images.ids, sub.frame["id"].to_numpy())
    assert sub.images.paths[0] == Path(sub.frame["path"][0])
    r = ds.restrict_labels(["Spider"])
    assert set(r.frame["label"]) == {"Spider", "off-task"}
    assert set(ds.frame["label"]) != set(r.frame["label"])  # original untouched


def test_check_image(tmp_path: Path) -> None:
    _write_image(tmp_path / "ok.png", 0)
    good = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "d").mkdir()
    assert check_image(tmp_path / "ok.png") is None
    assert check_image(tmp_path / "none.png") == "missing file"
    assert check_image(tmp_path / "d") == "not a regular file"
    assert (check_image(tmp_path / "trunc.png") or "").startswith("unreadable image")
