"""Tiny fake iNaturalist 2021 and Insects Image Dataset trees, built on the fly for tests.

Images are small JPEG "photos" of different sizes: a textured background and an ellipse whose
colour and shape depend on the category, so that even a randomly initialised encoder separates
the classes somewhat and the pipeline's numbers are not pure noise.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from kairos_curate.data.scenario import Scenario
from kairos_curate.io import write_json

# category -> (phylum, class, order, family, genus, species) of one iNaturalist species
CATEGORY_SPECIES = {
    "Ant": ("Arthropoda", "Insecta", "Hymenoptera", "Formicidae", "Camponotus", "Camponotus pennsylvanicus"),
    "Bee": ("Arthropoda", "Insecta", "Hymenoptera", "Apidae", "Apis", "Apis mellifera"),
    "Beetle": ("Arthropoda", "Insecta", "Coleoptera", "Carabidae", "Carabus", "Carabus nemoralis"),
    "Spider": ("Arthropoda", "Arachnida", "Araneae", "Araneidae", "Araneus", "Araneus diadematus"),
}
OFFTASK_SPECIES = [
    ("Chordata", "Aves", "Passeriformes", "Turdidae", "Turdus", "Turdus migratorius"),
    ("Arthropoda", "Insecta", "Hymenoptera", "Tenthredinidae", "Tenthredo", "Tenthredo arcuata"),
]
COLOURS = [(200, 40, 40), (230, 200, 30), (40, 90, 200), (40, 160, 60), (150, 60, 170), (240, 130, 20)]


def fake_photo(kind: int, seed: int) -> Image.Image:
    """A small RGB image of a class-dependent blob; its size varies with ``seed``."""
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(40, 72)), int(rng.integers(40, 72))
    background = rng.integers(60, 140, size=(h, w, 3), dtype=np.uint8)
    img = Image.fromarray(background)
    draw = ImageDraw.Draw(img)
    colour = tuple(int(np.clip(c + rng.integers(-25, 26), 0, 255)) for c in COLOURS[kind % len(COLOURS)])
    tall = kind % 2 == 0
    cx, cy = w / 2 + rng.integers(-4, 5), h / 2 + rng.integers(-4, 5)
    rx, ry = (w / 6, h / 2.6) if tall else (w / 2.6, h / 6)
    draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=colour)
    return img


def make_inat_tree(
    root: Path, per_species: int = 30, offtask_per_species: int = 10, split: str = "train", seed: int = 0
) -> dict:
    """The official iNaturalist 2021 layout (``<split>.json`` + ``<split>/<species dir>/*.jpg``)."""
    species = [(cat, row) for cat, row in CATEGORY_SPECIES.items()] + [("off-task", row) for row in OFFTASK_SPECIES]
    categories, images, annotations = [], [], []
    image_id = 0
    for c, (cat, (phylum, cls, order, family, genus, name)) in enumerate(species):
        dir_name = f"{c:05d}_Animalia_{phylum}_{cls}_{order}_{family}_{genus}_{name.split()[1]}"
        categories.append(
            {
                "id": c,
                "name": name,
                "kingdom": "Animalia",
                "phylum": phylum,
                "class": cls,
                "order": order,
                "family": family,
                "genus": genus,
                "image_dir_name": dir_name,
            }
        )
        n = per_species if cat != "off-task" else offtask_per_species
        for _ in range(n):
            file_name = f"{split}/{dir_name}/{image_id:08x}.jpg"
            path = root / file_name
            path.parent.mkdir(parents=True, exist_ok=True)
            fake_photo(c, seed * 100_003 + image_id).save(path, format="JPEG", quality=90)
            images.append({"id": image_id, "file_name": file_name})
            annotations.append({"id": image_id, "image_id": image_id, "category_id": c})
            image_id += 1
    doc = {"info": {}, "images": images, "annotations": annotations, "categories": categories}
    (root / f"{split}.json").write_text(json.dumps(doc))
    return doc


def make_insects_tree(root: Path, per_class: int = 20, seed: int = 1) -> dict[str, int]:
    """The Insects Image Dataset layout (plural class folders, as the real dataset names them)."""
    counts = {}
    for c, cat in enumerate(CATEGORY_SPECIES):
        folder = root / f"{cat.lower()}s"
        folder.mkdir(parents=True, exist_ok=True)
        for j in range(per_class):
            fake_photo(c, seed * 100_003 + 50_000 + 100 * c + j).save(folder / f"{j:04d}.jpg", format="JPEG")
        counts[cat] = per_class
    return counts


def plant_copy(src: Path, dest: Path) -> None:
    """Copy ``src`` byte for byte to ``dest`` (a leak or a duplicate the code must catch)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, dest)


# ----------------------------------------------------------------------------- a synthetic array scenario

N_CLASSES = 3


def stand_in_features(pixels: np.ndarray) -> np.ndarray:
    """A stand-in encoder: flattened pixels scaled to [0, 1] (deterministic, content-sensitive)."""
    return pixels.reshape(pixels.shape[0], -1).astype(np.float32) / 255.0


def synthetic_scenario(seed: int = 0) -> Scenario:
    """3 task classes with distinct 6x6 patterns; off-task images carry label 0; some pool noise/flips."""
    rng = np.random.default_rng(seed)
    patterns = rng.integers(0, 256, size=(N_CLASSES + 1, 6, 6))

    def draw(cls: np.ndarray) -> np.ndarray:
        return np.clip(patterns[cls] + rng.normal(0, 12, size=(cls.size, 6, 6)), 0, 255).astype(np.uint8)

    pool_cls = np.r_[np.repeat(np.arange(N_CLASSES), 40), np.full(24, N_CLASSES)]
    ref_cls, test_cls = np.repeat(np.arange(N_CLASSES), 8), np.repeat(np.arange(N_CLASSES), 10)
    pool_px, ref_px, test_px = draw(pool_cls), draw(ref_cls), draw(test_cls)
    off = pool_cls == N_CLASSES
    shown = np.where(off, 0, pool_cls)
    corrupt = np.zeros(pool_cls.size, dtype=object)
    corrupt[:] = "none"
    corrupt[[0, 41, 82]] = "gaussian_noise"
    pool_px[[0, 41, 82]] = rng.integers(0, 256, size=(3, 6, 6))
    flipped = np.zeros(pool_cls.size, dtype=bool)
    flipped[[5, 50]] = True
    shown[[5, 50]] = (shown[[5, 50]] + 1) % N_CLASSES
    ids = (
        [f"p{i:03d}" for i in range(pool_cls.size)]
        + [f"r{i:03d}" for i in range(ref_cls.size)]
        + [f"t{i:03d}" for i in range(test_cls.size)]
    )
    samples = pd.DataFrame(
        {
            "id": ids,
            "split": ["pool"] * pool_cls.size + ["reference"] * ref_cls.size + ["test"] * test_cls.size,
            "label": np.r_[shown, ref_cls, test_cls].astype(np.int64),
        }
    )
    samples["class_name"] = samples["label"].map(lambda c: f"c{c}")
    samples["source"] = "synthetic"
    truth = pd.DataFrame(
        {
            "id": ids[: pool_cls.size],
            "off_task": off,
            "origin": "x",
            "true_label": np.where(off, -1, pool_cls).astype(np.int64),
            "label_flipped": flipped,
            "corruption": corrupt.astype(str),
            "severity": np.where(corrupt != "none", 1.0, 0.0),
        }
    )
    truth["noisy"] = truth["off_task"] | truth["label_flipped"] | (truth["corruption"] != "none")
    return Scenario(
        samples=samples,
        pixels=np.concatenate([pool_px, ref_px, test_px]),
        truth=truth,
        class_names=[f"c{i}" for i in range(N_CLASSES)],
        info={"severity_unit_pixel_std": 80.0},
    )


def make_value_project(root: Path, seed: int = 0) -> Scenario:
    """A project tree the ``value`` stage can read: :func:`synthetic_scenario` saved under
    ``data/prepared`` and stand-in embeddings (pool, noisy pool, reference, test)."""
    from kairos_curate.config import PATHS
    from kairos_curate.io import save_embeddings

    scenario = synthetic_scenario(seed)
    scenario.save(root / PATHS.prepared, root / PATHS.truth)
    rng = np.random.default_rng(seed)
    for split in ("pool", "reference", "test"):
        rows = (scenario.samples["split"] == split).to_numpy()
        ids = scenario.samples["id"].to_numpy()[rows]
        features = stand_in_features(scenario.pixels[rows])
        save_embeddings(root / PATHS.embeddings / f"{split}.npz", ids, features)
        if split == "pool":
            noisy = features + rng.normal(0, 0.05, features.shape).astype(np.float32)
            save_embeddings(root / PATHS.embeddings / "pool_noisy.npz", ids, noisy)
    return scenario


def make_embed_project(root: Path, seed: int = 0) -> Scenario:
    """A project tree the ``embed`` stage can read: :func:`synthetic_scenario` under
    ``data/prepared`` and a noisy pool variant (a few pool images changed) under
    ``data/prepared_noisy``."""
    from kairos_curate.config import PATHS
    from kairos_curate.data.scenario import PoolVariant

    scenario = synthetic_scenario(seed)
    scenario.save(root / PATHS.prepared, root / PATHS.truth)
    pool = (scenario.samples["split"] == "pool").to_numpy()
    pixels = scenario.pixels[pool].copy()
    pixels[::7] = 255 - pixels[::7]
    PoolVariant(
        ids=scenario.samples["id"].to_numpy(dtype=str)[pool], pixels=pixels, truth=scenario.truth, info={}
    ).save(root / PATHS.noisy_pool, root / PATHS.noisy_truth)
    return scenario


# ----------------------------------------------------------------------------- a fake finished project (for the report)

METRICS = ("accuracy", "macro_f1", "auc", "train_time_s")


def png(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (20, 30, 3), dtype=np.uint8)).save(path)


def summary_row(
    subset: str,
    method: str,
    n: int,
    acc: float,
    f1: float,
    auc: float,
    time_s: float,
    std: float = 0.01,
    *,
    pool: str = "original",
    kind: str | None = None,
    fraction: float = 1.0,
) -> dict:
    """One row of ``finetune_summary.csv``."""
    kind = kind or (subset if subset in ("full", "random", "oracle") else "curated")
    row = {
        "pool": pool,
        "subset": subset,
        "kind": kind,
        "fraction": fraction,
        "method": method,
        "runs": 3,
        "n_selected": n,
        "trainable_params": 1000,
        "uses_ground_truth": kind == "oracle",
    }
    for metric, mean in zip(METRICS, (acc, f1, auc, time_s), strict=True):
        row[f"{metric}_mean"] = mean
        row[f"{metric}_std"] = std if metric != "train_time_s" else 0.1
    return row


def make_report_project(
    root: Path,
    *,
    curated_acc: float = 0.85,
    random_acc: float = 0.70,
    with_finetune: bool = True,
    with_sweep: bool = True,
    with_noise: bool = False,
) -> Path:
    """A fake project tree: the five stages' metrics, tables, figures and rendered notebooks."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "params.yaml").write_text("report:\n  title: x\n")
    m = root / "reports" / "metrics"
    write_json(
        m / "prepare.json",
        {
            "pool": 400,
            "pool_noisy": 120,
            "pool_noisy_fraction": 0.3,
            "pool_off_task": 60,
            "pool_pixel_noise": 40,
            "pool_label_flipped": 20,
            "reference": 60,
            "test": 90,
            "severity_unit_pixel_std": 89.0,
            "n_task_classes": 6,
        },
    )
    write_json(
        m / "embed.json",
        {"encoder": "efficientnet-lite0", "dim": 1280, "image_size": 96, "device": "cpu", "images_per_second": 300.0},
    )
    write_json(
        m / "value.json",
        {
            "bandwidth": 1.2,
            "k": 80,
            "label_mode": "class_conditional",
            "pool_size": 400,
            "method": "kairos_class_conditional",
            "primary": "per_class",
            "value_seconds": 0.5,
            "selections": {
                "per_class": {"policy": "per_class", "classes_missing": 0, "smallest_class_count": 10, "warnings": 0},
                "global": {"policy": "global", "classes_missing": 1, "smallest_class_count": 0, "warnings": 2},
            },
        },
    )
    write_json(
        m / "compare.json",
        {
            "n_pool": 400,
            "n_bad": 120,
            "seeds": [0, 1, 2],
            "methods": ["kairos_class_conditional", "knn_shapley", "random"],
            "auroc": {
                "kairos_class_conditional/any problem": {"mean": 0.91, "std": 0.0, "runs": 1},
                "random/any problem": {"mean": 0.5, "std": 0.01, "runs": 3},
            },
        },
    )
    tables = root / "reports" / "tables"
    tables.mkdir(parents=True, exist_ok=True)
    det = []
    for method, auroc in (("kairos_class_conditional", 0.91), ("knn_shapley", 0.95), ("random", 0.5)):
        for problem in ("any problem", "pixel noise", "label flipped"):
            det.append(
                {
                    "method": method,
                    "problem": problem,
                    "runs": 1,
                    "auroc_mean": auroc,
                    "auroc_std": 0.0,
                    "average_precision_mean": 0.5,
                    "average_precision_std": 0.0,
                    "precision_at_k_bad_mean": auroc - 0.1,
                    "precision_at_k_bad_std": 0.0,
                    "recall_at_k_bad_mean": 0.4,
                    "recall_at_k_bad_std": 0.0,
                    "seconds_mean": 0.1,
                    "seconds_std": 0.0,
                }
            )
    pd.DataFrame(det).to_csv(tables / "compare_detection.csv", index=False)
    if with_finetune:
        write_json(
            m / "finetune.json",
            {
                "k": 80,
                "pool_size": 400,
                "trials": 3,
                "random_draws": 5,
                "trained_layers": "conv_head + head",
                "stem_outputs_cached": True,
                "backbone": "efficientnet-lite0",
                "results": {},
            },
        )
        rows = [
            summary_row("full", "lora", 400, 0.80, 0.79, 0.980, 40.0),
            summary_row("random", "lora", 80, random_acc, 0.69, 0.950, 8.0),
            summary_row("per_class", "lora", 80, curated_acc, 0.84, 0.970, 8.0),
            summary_row("global", "lora", 80, 0.60, 0.55, 0.900, 8.0),
            summary_row("oracle", "lora", 80, 0.90, 0.89, 0.990, 8.0),
            summary_row("full", "partial", 400, 0.82, 0.81, 0.985, 50.0),
            summary_row("per_class", "partial", 80, 0.81, 0.80, 0.975, 10.0),
        ]
        if with_noise:
            rows.append(summary_row("full", "lora", 400, 0.75, 0.74, 0.96, 40.0, pool="noisy"))
            rows.append(summary_row("per_class", "lora", 80, 0.78, 0.77, 0.965, 8.0, pool="noisy"))
        pd.DataFrame(rows).to_csv(tables / "finetune_summary.csv", index=False)
        if with_sweep:
            pd.DataFrame(
                [
                    summary_row("per_class", "lora", 20, 0.84, 0.83, 0.96, 2.0, kind="sweep", fraction=0.25),
                    summary_row("per_class", "lora", 40, 0.86, 0.85, 0.97, 4.0, kind="sweep", fraction=0.5),
                    summary_row("per_class", "lora", 80, 0.85, 0.84, 0.97, 8.0, kind="sweep", fraction=1.0),
                ]
            ).to_csv(tables / "finetune_sweep.csv", index=False)
    for k, rel in enumerate(
        (
            "01_prepare/class_overlap.png",
            "02_embed/tsne.png",
            "03_value/value_terms.png",
            "04_compare/found_vs_inspected.png",
        )
    ):
        png(root / "reports" / "figures" / rel, k)
    nb = root / "reports" / "notebooks"
    nb.mkdir(parents=True, exist_ok=True)
    for k, stem in enumerate(("01_prepare", "02_embed", "03_value")):
        (nb / f"{stem}.ipynb").write_text(
            json.dumps(
                {
                    "cells": [],
                    "metadata": {"papermill": {"duration": 10.5 * (k + 1), "end_time": "2026-01-01T00:00:00"}},
                }
            )
        )
    return root
