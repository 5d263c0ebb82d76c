"""Exploratory analysis of a scenario: tables of what the pool, reference and test hold.

Some tables read the truth table (class overlap, problem groups): they are for EDA and
evaluation only; no selection code calls them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from kairos_curate.data.scenario import Scenario, class_counts
from kairos_curate.data.sources import ArrayImageSource

__all__ = ["class_overlap", "counts_table", "coverage_table", "pixel_statistics", "projection", "truth_groups"]


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
        rows.append(
            {
                "class": name,
                "reference images": int(ref.get(name, 0)),
                "pool images": len(sub),
                "genuine": int((~sub["off_task"]).sum()),
                "off-task": len(off),
                "off-task sources": _top_counts(off["origin"]),
            }
        )
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
        rows.append({"split": split, "images": n, "mean": px.mean(), "std": px.std(), "min": px.min(), "max": px.max()})
    return pd.DataFrame(rows)


def counts_table(scenario: Scenario) -> pd.DataFrame:
    """Images per task class and split (shown labels)."""
    return class_counts(scenario)


def truth_groups(scenario: Scenario, truth: pd.DataFrame) -> np.ndarray:
    """Ground-truth category of every pool row: clean / pixel noise / label flipped / off-task."""
    pool = scenario.table("pool")[["id"]].merge(truth, on="id", how="left")
    groups = np.full(len(pool), "clean", dtype=object)
    groups[pool["corruption"].to_numpy() != "none"] = "pixel noise"
    groups[pool["label_flipped"].to_numpy()] = "label flipped"
    groups[pool["off_task"].to_numpy()] = "off-task"
    return groups.astype(str)


def projection(
    pool_x: np.ndarray, ref_x: np.ndarray, method: str = "tsne", max_points: int = 1500, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pool (a seeded sample of ``max_points``) and reference embeddings projected to 2-D.

    Returns ``(points, source, pool_rows)``: ``(n, 2)`` coordinates (t-SNE on the first 50
    principal components, or the first 2 principal components with ``method="pca"``), each
    point's source (``pool`` / ``reference``), and the pool rows sampled.
    """
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    if method not in ("tsne", "pca"):
        raise ValueError(f"method must be 'tsne' or 'pca', got {method!r}")
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(pool_x.shape[0], size=min(max_points, pool_x.shape[0]), replace=False))
    x = np.concatenate([pool_x[keep], ref_x])
    source = np.array(["pool"] * keep.size + ["reference"] * ref_x.shape[0])
    reduced = PCA(n_components=min(50, x.shape[1], x.shape[0]), random_state=seed).fit_transform(x)
    if method == "tsne":
        points = TSNE(
            n_components=2, init="pca", random_state=seed, perplexity=min(30.0, max(5.0, x.shape[0] / 10))
        ).fit_transform(reduced)
    else:
        points = reduced[:, :2]
    return points, source, keep
