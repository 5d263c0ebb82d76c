"""Stage ``prepare``: build the default scenario and its exploratory tables and figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from kairos_curate.config import PATHS
from kairos_curate.data.scenario import Scenario, ScenarioConfig, build_scenario, class_counts
from kairos_curate.io import write_json
from kairos_curate.reporting.plots import image_grid

__all__ = ["class_overlap", "corruption_grid", "pixel_statistics", "run", "sample_grid"]


def run(params: dict[str, Any], root: str | Path = ".") -> Scenario:
    """Build the scenario from the ``scenario`` parameters and write it, its truth and metrics."""
    base = Path(root)
    scenario = build_scenario(ScenarioConfig.from_params(params))
    scenario.save(base / PATHS.prepared, base / PATHS.truth)
    counts = scenario.info["counts"]
    write_json(base / PATHS.metrics / "prepare.json", {
        **counts,
        "pool_noisy_fraction": counts["pool_noisy"] / counts["pool"],
        "pool_off_task_fraction": counts["pool_off_task"] / counts["pool"],
        "severity_unit_pixel_std": scenario.info["severity_unit_pixel_std"],
        "n_task_classes": len(scenario.class_names),
    })
    return scenario


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


def counts_table(scenario: Scenario) -> pd.DataFrame:
    """Images per task class and split (shown labels)."""
    return class_counts(scenario)
