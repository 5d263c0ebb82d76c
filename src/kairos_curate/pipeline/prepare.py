"""Stage ``prepare``: build the default scenario and its exploratory tables and figures."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from kairos_curate.config import PATHS, parse_list
from kairos_curate.data.scenario import (
    PoolVariant,
    Scenario,
    ScenarioConfig,
    add_pool_noise,
    build_scenario,
    class_counts,
)
from kairos_curate.data.sources import ArrayImageSource
from kairos_curate.io import write_json
from kairos_curate.reporting.plots import image_grid

__all__ = ["build", "class_overlap", "corruption_grid", "coverage_table", "noisy_variant", "pixel_statistics", "run", "sample_grid"]


NOISY_VARIANT_KEYS = ("noisy_variant_fraction", "noisy_variant_severities")

#: ``scenario.source`` values: the offline default and the poster's real datasets.
SOURCES = ("fashion_mnist", "inaturalist")


def build(params: dict[str, Any], root: str | Path = ".", progress: bool = True) -> Scenario:
    """Build the scenario that ``scenario.source`` names, from the ``scenario`` parameters.

    ``params.yaml`` holds the keys of both sources; each builder takes the keys it knows and
    the other source's keys are ignored. A key neither knows is an error (a typo).
    """
    from kairos_curate.data.real_scenario import RealScenarioConfig, build_real_scenario

    base = Path(root)
    source = str(params.get("source", "fashion_mnist"))
    if source not in SOURCES:
        raise ValueError(f"scenario.source must be one of {SOURCES}; got {source!r}")
    fm_keys, real_keys = set(ScenarioConfig.__dataclass_fields__), set(RealScenarioConfig.__dataclass_fields__)
    unknown = set(params) - fm_keys - real_keys - set(NOISY_VARIANT_KEYS) - {"source"}
    if unknown:
        raise ValueError(f"unknown scenario parameter(s) {sorted(unknown)}; known: "
                         f"{sorted(fm_keys | real_keys | set(NOISY_VARIANT_KEYS) | {'source'})}")
    if source == "fashion_mnist":
        return build_scenario(ScenarioConfig.from_params({k: v for k, v in params.items() if k in fm_keys}))
    out = base / PATHS.prepared
    # Corrupted copies from an earlier build are this stage's own output: start clean.
    shutil.rmtree(out / "images", ignore_errors=True)
    config = RealScenarioConfig.from_params({k: v for k, v in params.items() if k in real_keys})
    return build_real_scenario(config, out, root=base, progress=progress)


def run(params: dict[str, Any], root: str | Path = ".", progress: bool = True) -> Scenario:
    """Build the scenario from the ``scenario`` parameters and write it, its truth and metrics.

    Also writes the noisy pool variant (the same pool with extra Gaussian pixel noise on
    ``noisy_variant_fraction`` of its clean images) used by the robustness-to-noise experiments.
    """
    base = Path(root)
    scenario = build(params, base, progress=progress)
    scenario.save(base / PATHS.prepared, base / PATHS.truth)
    shutil.rmtree(base / PATHS.noisy_pool / "images", ignore_errors=True)
    variant = noisy_variant(scenario, params, image_dir=base / PATHS.noisy_pool / "images")
    variant.save(base / PATHS.noisy_pool, base / PATHS.noisy_truth)
    counts = scenario.info["counts"]
    write_json(base / PATHS.metrics / "prepare.json", {
        "source": str(params.get("source", "fashion_mnist")),
        **counts,
        "pool_noisy_fraction": counts["pool_noisy"] / counts["pool"],
        "pool_off_task_fraction": counts["pool_off_task"] / counts["pool"],
        "severity_unit_pixel_std": scenario.info["severity_unit_pixel_std"],
        "n_task_classes": len(scenario.class_names),
        "noisy_variant": variant.info,
        **{k: scenario.info[k] for k in ("skipped", "pool_dropped_equal_to_reference_or_test", "taxonomy_version")
           if k in scenario.info},
    })
    return scenario


def noisy_variant(scenario: Scenario, params: dict[str, Any], image_dir: str | Path | None = None) -> PoolVariant:
    """The noisy pool variant described by ``noisy_variant_*`` parameters (seeded by ``seed``)."""
    return add_pool_noise(scenario, float(params.get("noisy_variant_fraction", 0.3)),
                          parse_list(params.get("noisy_variant_severities", "0.5,1"), float,
                                     "scenario.noisy_variant_severities"),
                          seed=int(params["seed"]) + 1, image_dir=image_dir)


def class_overlap(scenario: Scenario) -> pd.DataFrame:
    """Pool composition per shown label: genuine images vs off-task images carrying that label.

    The poster's class-overlap table: which pool categories the reference covers and how much of
    each pool category is really something else. Uses the truth table (EDA only).
    """
    pool = scenario.table("pool").merge(scenario.truth[["id", "off_task", "origin"]], on="id")
    ref = scenario.table("reference")["class_name"].value_counts()
    rows = []
    for name in scenario.class_names:
        sub = pool[pool["class_name"] == name]
        off = sub[sub["off_task"]]
        rows.append({
            "class": name,
            "reference images": int(ref.get(name, 0)),
            "pool images": len(sub),
            "genuine": int((~sub["off_task"]).sum()),
            "off-task": len(off),
            "off-task sources": _top_counts(off["origin"]),
        })
    return pd.DataFrame(rows)


def coverage_table(scenario: Scenario) -> pd.DataFrame | None:
    """For real datasets, the poster's mapping table: per task category the iNaturalist images and
    species mapped to it and the reference images (``status`` flags gaps); ``None`` otherwise."""
    records = scenario.info.get("coverage")
    if not records:
        return None
    table = pd.DataFrame(records).set_index("category")
    table["pool_species"] = table["pool_species"].astype("Int64")
    return table


def _top_counts(values: pd.Series, top: int = 6) -> str:
    counts = values.value_counts()
    text = ", ".join(f"{k} ({v})" for k, v in counts.head(top).items())
    return text + (f", ... ({counts.size - top} more)" if counts.size > top else "")


def pixel_statistics(scenario: Scenario, max_images: int = 200, seed: int = 0) -> pd.DataFrame:
    """Mean and std of pixel values per split (0-255 scale).

    Array scenarios use every image; file-backed ones a seeded sample of ``max_images`` per
    split (decoded as RGB), reported in the ``images`` column.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for split in ("pool", "reference", "test"):
        source = scenario.source(split)
        if isinstance(source, ArrayImageSource):
            px = source.pixels.astype(np.float64).ravel()
            n = len(source)
        else:
            pick = np.sort(rng.choice(len(source), size=min(max_images, len(source)), replace=False))
            px = np.concatenate([np.asarray(source.load_image(int(i)), dtype=np.float64).ravel() for i in pick])
            n = pick.size
        rows.append({"split": split, "images": n, "mean": px.mean(), "std": px.std(),
                     "min": px.min(), "max": px.max()})
    return pd.DataFrame(rows)


def _blank_like(images: list[np.ndarray]) -> np.ndarray:
    return np.zeros_like(images[0]) if images else np.zeros((8, 8), dtype=np.uint8)


def sample_grid(scenario: Scenario, split: str = "reference", per_class: int = 8, seed: int = 0) -> Figure:
    """``per_class`` random images of each task class in ``split``."""
    rng = np.random.default_rng(seed)
    table = scenario.table(split)
    chosen: list[int | None] = []
    for label in range(len(scenario.class_names)):
        rows = np.flatnonzero(table["label"].to_numpy() == label)
        pick: list[int | None] = list(rng.choice(rows, size=min(per_class, rows.size), replace=False))
        chosen.extend(pick + [None] * (per_class - len(pick)))
    shown = scenario.thumbnails(split, [i for i in chosen if i is not None])
    blank = _blank_like(shown)
    it = iter(shown)
    images = [next(it) if i is not None else blank for i in chosen]
    return image_grid(images, ncols=per_class, row_labels=scenario.class_names)


def corruption_grid(scenario: Scenario, per_kind: int = 8, seed: int = 0) -> Figure:
    """Pool images per ground-truth problem: clean, each noise severity, label flips, off-task."""
    rng = np.random.default_rng(seed)
    pool = scenario.table("pool").merge(scenario.truth, on="id")
    kinds: list[tuple[str, np.ndarray]] = [("clean", (~pool["noisy"]).to_numpy())]
    for sev in sorted(pool.loc[pool["corruption"] != "none", "severity"].unique()):
        kinds.append((f"noise {sev:g} std", ((pool["corruption"] == "gaussian_noise") & (pool["severity"] == sev)).to_numpy()))
    kinds.append(("label flipped", pool["label_flipped"].to_numpy()))
    kinds.append(("off-task", pool["off_task"].to_numpy()))
    picks = []
    for _, mask in kinds:
        rows = np.flatnonzero(mask)
        picks.append(rng.choice(rows, size=min(per_kind, rows.size), replace=False) if rows.size else np.array([], int))
    shown = iter(scenario.thumbnails("pool", np.concatenate(picks).astype(np.int64)))
    images: list[np.ndarray] = []
    titles, labels = [], []
    for (name, _), pick in zip(kinds, picks, strict=True):
        for i in pick:
            images.append(next(shown))
            titles.append(str(pool.loc[i, "class_name"]))
        labels.append(name)
        titles.extend([""] * (per_kind - pick.size))
        images.extend([None] * (per_kind - pick.size))  # type: ignore[list-item]
    blank = _blank_like([img for img in images if img is not None])
    return image_grid([img if img is not None else blank for img in images], titles, ncols=per_kind,
                      row_labels=labels)


GALLERY = (
    ("gaussian_noise", {"severity": 0.1}), ("gaussian_noise", {"severity": 0.5}),
    ("gaussian_noise", {"severity": 1.0}), ("gaussian_noise", {"severity": 3.0}),
    ("gaussian_noise", {"severity": 6.0}), ("gaussian_noise", {"severity": 9.0}),
    ("motion_blur", {"length": 3, "angle": 0.0}), ("motion_blur", {"length": 7, "angle": 45.0}),
    ("sensor_noise", {"photons": 50.0, "read_noise": 5.0}), ("sensor_noise", {"photons": 5.0, "read_noise": 10.0}),
    ("jpeg_artefacts", {"quality": 30}), ("jpeg_artefacts", {"quality": 5}),
)


def corruption_gallery(scenario: Scenario, n_images: int = 6, seed: int = 0) -> Figure:
    """Every pixel corruption at several severities, applied to the same clean reference images.

    Display only (the images shown are copies): it shows where each corruption starts to destroy
    the image. Gaussian severities are in units of the clean pool's pixel std; the poster's 3/6/9
    saturate on Fashion-MNIST, hence the milder levels.
    """
    from kairos_curate.data import corruptions

    rng = np.random.default_rng(seed)
    n_ref = int(scenario.split_mask("reference").sum())
    pick = np.sort(rng.choice(n_ref, size=min(n_images, n_ref), replace=False))
    chosen = np.stack(scenario.thumbnails("reference", pick, size=128))
    rows = np.arange(chosen.shape[0])
    unit = float(scenario.info["severity_unit_pixel_std"])
    images, labels = [chosen], ["clean"]
    for kind, kwargs in GALLERY:
        extra = {"unit_std": unit} if kind == "gaussian_noise" else {}
        result = corruptions.apply_corruption(kind, chosen, rows, rng, **kwargs, **extra)
        images.append(result.images)
        labels.append(kind.replace("_", " ") + " " + ", ".join(f"{k}={v:g}" for k, v in kwargs.items()))
    return image_grid(np.concatenate(images), ncols=chosen.shape[0], row_labels=labels)


def counts_table(scenario: Scenario) -> pd.DataFrame:
    """Images per task class and split (shown labels)."""
    return class_counts(scenario)
