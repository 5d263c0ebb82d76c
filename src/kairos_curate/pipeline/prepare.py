"""Stage ``prepare``: build the default scenario and its exploratory tables and figures."""

from __future__ import annotations

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
from kairos_curate.io import write_json
from kairos_curate.reporting.plots import image_grid

__all__ = ["class_overlap", "corruption_grid", "pixel_statistics", "run", "sample_grid"]


NOISY_VARIANT_KEYS = ("noisy_variant_fraction", "noisy_variant_severities")


def run(params: dict[str, Any], root: str | Path = ".") -> Scenario:
    """Build the scenario from the ``scenario`` parameters and write it, its truth and metrics.

    Also writes the noisy pool variant (the same pool with extra Gaussian pixel noise on
    ``noisy_variant_fraction`` of its clean images) used by the robustness-to-noise experiments.
    """
    base = Path(root)
    config = {k: v for k, v in params.items() if k not in NOISY_VARIANT_KEYS}
    scenario = build_scenario(ScenarioConfig.from_params(config))
    scenario.save(base / PATHS.prepared, base / PATHS.truth)
    variant = noisy_variant(scenario, params)
    variant.save(base / PATHS.noisy_pool, base / PATHS.noisy_truth)
    counts = scenario.info["counts"]
    write_json(base / PATHS.metrics / "prepare.json", {
        **counts,
        "pool_noisy_fraction": counts["pool_noisy"] / counts["pool"],
        "pool_off_task_fraction": counts["pool_off_task"] / counts["pool"],
        "severity_unit_pixel_std": scenario.info["severity_unit_pixel_std"],
        "n_task_classes": len(scenario.class_names),
        "noisy_variant": variant.info,
    })
    return scenario


def noisy_variant(scenario: Scenario, params: dict[str, Any]) -> PoolVariant:
    """The noisy pool variant described by ``noisy_variant_*`` parameters (seeded by ``seed``)."""
    return add_pool_noise(scenario, float(params.get("noisy_variant_fraction", 0.3)),
                          parse_list(params.get("noisy_variant_severities", "0.5,1"), float,
                                     "scenario.noisy_variant_severities"),
                          seed=int(params["seed"]) + 1)


def class_overlap(scenario: Scenario) -> pd.DataFrame:
    """Pool composition per shown label: genuine images vs off-task images carrying that label.

    The poster's class-overlap table: which pool categories the reference covers and how much of
    each pool category is really something else. Uses the truth table (EDA only).
    """
    pool = scenario.table("pool").merge(scenario.truth[["id", "off_task", "fashion_class"]], on="id")
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
            "off-task sources": ", ".join(f"{k} ({v})" for k, v in off["fashion_class"].value_counts().items()),
        })
    return pd.DataFrame(rows)


def pixel_statistics(scenario: Scenario) -> pd.DataFrame:
    """Mean and std of pixel values per split (0-255 scale)."""
    rows = []
    for split in ("pool", "reference", "test"):
        px = scenario.pixels[scenario.split_mask(split)].astype(np.float64)
        rows.append({"split": split, "images": px.shape[0], "mean": px.mean(), "std": px.std(),
                     "min": px.min(), "max": px.max()})
    return pd.DataFrame(rows)


def sample_grid(scenario: Scenario, split: str = "reference", per_class: int = 8, seed: int = 0) -> Figure:
    """``per_class`` random images of each task class in ``split``."""
    rng = np.random.default_rng(seed)
    table = scenario.table(split)
    pixels = scenario.pixels[scenario.split_mask(split)]
    chosen: list[int | None] = []
    for label in range(len(scenario.class_names)):
        rows = np.flatnonzero(table["label"].to_numpy() == label)
        pick: list[int | None] = list(rng.choice(rows, size=min(per_class, rows.size), replace=False))
        chosen.extend(pick + [None] * (per_class - len(pick)))
    blank = np.zeros_like(pixels[0])
    images = np.stack([pixels[i] if i is not None else blank for i in chosen])
    return image_grid(images, ncols=per_class, row_labels=scenario.class_names)


def corruption_grid(scenario: Scenario, per_kind: int = 8, seed: int = 0) -> Figure:
    """Pool images per ground-truth problem: clean, each noise severity, label flips, off-task."""
    rng = np.random.default_rng(seed)
    pool = scenario.table("pool").merge(scenario.truth, on="id")
    pixels = scenario.pixels[scenario.split_mask("pool")]
    kinds: list[tuple[str, np.ndarray]] = [("clean", (~pool["noisy"]).to_numpy())]
    for sev in sorted(pool.loc[pool["corruption"] != "none", "severity"].unique()):
        kinds.append((f"noise {sev:g} std", ((pool["corruption"] == "gaussian_noise") & (pool["severity"] == sev)).to_numpy()))
    kinds.append(("label flipped", pool["label_flipped"].to_numpy()))
    kinds.append(("off-task", pool["off_task"].to_numpy()))
    images, titles, labels = [], [], []
    for name, mask in kinds:
        rows = np.flatnonzero(mask)
        pick = rng.choice(rows, size=min(per_kind, rows.size), replace=False) if rows.size else np.array([], int)
        for i in pick:
            images.append(pixels[i])
            titles.append(str(pool.loc[i, "class_name"]))
        for _ in range(per_kind - pick.size):
            images.append(np.zeros_like(pixels[0]))
            titles.append("")
        labels.append(name)
    return image_grid(np.stack(images), titles, ncols=per_kind, row_labels=labels)


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
    ref = scenario.pixels[scenario.split_mask("reference")]
    chosen = ref[np.sort(rng.choice(ref.shape[0], size=min(n_images, ref.shape[0]), replace=False))]
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
