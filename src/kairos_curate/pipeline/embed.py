"""Stage ``embed``: embed pool, reference and test images with a frozen pretrained encoder."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from kairos_curate.config import PATHS, none_if_default, parse_bool
from kairos_curate.data.scenario import Scenario, load_pool_variant, load_scenario
from kairos_curate.io import load_embeddings, save_embeddings, write_json

__all__ = ["load_split_embeddings", "nearest_reference_distance", "projection_figure", "run"]

SPLITS = ("pool", "reference", "test")


def run(params: dict[str, Any], root: str | Path = ".", progress: bool = True) -> dict[str, Any]:
    """Embed every split of the prepared scenario; write ``data/embeddings/<split>.npz``.

    Args:
        params: the ``embed`` section (encoder, weights, image_size, batch_size, normalize, device).
        root: project root.
        progress: show progress bars.

    Returns:
        The metrics written to ``reports/metrics/embed.json``.
    """
    from kairos_curate.embedding import embed_source, load_encoder

    base = Path(root)
    normalize = parse_bool(params["normalize"], "embed.normalize")
    scenario = load_scenario(base / PATHS.prepared)
    encoder = load_encoder(str(params["encoder"]), weights=none_if_default(params.get("weights")),
                           image_size=int(params["image_size"]), device=str(params.get("device", "auto")))
    metrics: dict[str, Any] = {"encoder": encoder.name, "dim": int(encoder.dim), "device": str(encoder.device),
                               "image_size": int(params["image_size"]), "normalize": normalize}
    total_images, total_time = 0, 0.0
    # The noisy pool variant shares most images with the pool: the content-keyed cache embeds only
    # the images its extra noise changed.
    variant = load_pool_variant(base / PATHS.noisy_pool).source()
    for split, source in [*((s, scenario.source(s)) for s in SPLITS), ("pool_noisy", variant)]:
        start = time.perf_counter()
        ids, matrix = embed_source(source, encoder, batch_size=int(params["batch_size"]),
                                   normalize=normalize, cache_dir=base / PATHS.embedding_cache,
                                   progress=progress, desc=f"embed {split}")
        elapsed = time.perf_counter() - start
        save_embeddings(base / PATHS.embeddings / f"{split}.npz", ids, matrix)
        metrics[f"{split}_images"] = len(source)
        metrics[f"{split}_seconds"] = elapsed
        total_images += len(source)
        total_time += elapsed
    metrics["images_per_second"] = total_images / max(total_time, 1e-9)
    write_json(base / PATHS.metrics / "embed.json", metrics)
    return metrics


def load_split_embeddings(root: str | Path = ".") -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{split: (ids, embeddings)}`` for pool, reference and test."""
    base = Path(root)
    return {split: load_embeddings(base / PATHS.embeddings / f"{split}.npz") for split in SPLITS}


def nearest_reference_distance(pool: np.ndarray, reference: np.ndarray, block: int = 2048) -> np.ndarray:
    """Euclidean distance from each pool row to its nearest reference row (blocked, float64)."""
    ref = np.asarray(reference, dtype=np.float64)
    ref_sq = (ref**2).sum(axis=1)
    out = np.empty(pool.shape[0])
    for lo in range(0, pool.shape[0], block):
        x = np.asarray(pool[lo:lo + block], dtype=np.float64)
        d2 = (x**2).sum(axis=1)[:, None] + ref_sq[None, :] - 2.0 * x @ ref.T
        out[lo:lo + block] = np.sqrt(np.maximum(d2.min(axis=1), 0.0))
    return out


def truth_groups(scenario: Scenario, truth: pd.DataFrame) -> np.ndarray:
    """Ground-truth category of every pool row: clean / pixel noise / label flipped / off-task."""
    pool = scenario.table("pool")[["id"]].merge(truth, on="id", how="left")
    groups = np.full(len(pool), "clean", dtype=object)
    groups[pool["corruption"].to_numpy() != "none"] = "pixel noise"
    groups[pool["label_flipped"].to_numpy()] = "label flipped"
    groups[pool["off_task"].to_numpy()] = "off-task"
    return groups.astype(str)


def projection_figure(embeddings: dict[str, tuple[np.ndarray, np.ndarray]], scenario: Scenario,
                      method: str = "tsne", max_points: int = 1500, seed: int = 0) -> Figure:
    """Pool vs reference in 2-D (t-SNE or PCA), coloured by source and by shown class."""
    import matplotlib.pyplot as plt
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    from kairos_curate.reporting.plots import embedding_scatter

    rng = np.random.default_rng(seed)
    pool_x = embeddings["pool"][1]
    ref_x = embeddings["reference"][1]
    keep = np.sort(rng.choice(pool_x.shape[0], size=min(max_points, pool_x.shape[0]), replace=False))
    x = np.concatenate([pool_x[keep], ref_x])
    source = np.array(["pool"] * keep.size + ["reference"] * ref_x.shape[0])
    labels = np.concatenate([scenario.table("pool")["class_name"].to_numpy()[keep],
                             scenario.table("reference")["class_name"].to_numpy()])
    reduced = PCA(n_components=min(50, x.shape[1], x.shape[0]), random_state=seed).fit_transform(x)
    if method == "tsne":
        points = TSNE(n_components=2, init="pca", random_state=seed,
                      perplexity=min(30.0, max(5.0, x.shape[0] / 10))).fit_transform(reduced)
    elif method == "pca":
        points = reduced[:, :2]
    else:
        raise ValueError(f"method must be 'tsne' or 'pca', got {method!r}")
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    embedding_scatter(points, source, ax=axes[0], title=f"{method.upper()}: pool vs reference",
                      order=["pool", "reference"])
    embedding_scatter(points, labels, ax=axes[1], title=f"{method.upper()}: shown class",
                      order=scenario.class_names)
    fig.tight_layout()
    return fig
