"""Stage ``embed``: embed pool, reference, test and the noisy pool with a frozen encoder.

The embedding cache is keyed by encoder, weights and image content, so the noisy pool (mostly
the same images) and reruns embed only what changed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from kairos_curate.config import PATHS
from kairos_curate.data.scenario import load_pool_variant, load_scenario
from kairos_curate.io import save_embeddings, write_json
from kairos_curate.progress import progress_enabled
from kairos_curate.stages.params import EmbedParams, EmbedStage, load_stage_params

__all__ = ["SPLITS", "load", "run"]

SPLITS = ("pool", "reference", "test")


def load(params: Any = None) -> EmbedStage:
    """The stage's parameters, validated (``None``: read ``params.yaml``)."""
    return load_stage_params("embed", params)


def run(params: EmbedParams, root: str | Path = ".") -> dict[str, Any]:
    """Embed every split; write ``data/embeddings/<split>.npz`` and ``embed.json``; return the metrics."""
    from kairos_curate.embedding import embed_source, load_encoder

    base = Path(root)
    scenario = load_scenario(base / PATHS.prepared)
    encoder = load_encoder(params.encoder, weights=params.weights, image_size=params.image_size,
                           device=params.device)
    metrics: dict[str, Any] = {"encoder": encoder.name, "dim": int(encoder.dim), "device": str(encoder.device),
                               "image_size": params.image_size, "normalize": params.normalize}
    variant = load_pool_variant(base / PATHS.noisy_pool).source()
    total_images, total_time = 0, 0.0
    for split, source in [*((s, scenario.source(s)) for s in SPLITS), ("pool_noisy", variant)]:
        start = time.perf_counter()
        ids, matrix = embed_source(source, encoder, batch_size=params.batch_size, normalize=params.normalize,
                                   cache_dir=base / PATHS.embedding_cache, progress=progress_enabled(),
                                   desc=f"embed {split}")
        elapsed = time.perf_counter() - start
        save_embeddings(base / PATHS.embeddings / f"{split}.npz", ids, matrix)
        metrics[f"{split}_images"] = len(source)
        metrics[f"{split}_seconds"] = elapsed
        total_images += len(source)
        total_time += elapsed
    metrics["images_per_second"] = total_images / max(total_time, 1e-9)
    write_json(base / PATHS.metrics / "embed.json", metrics)
    return metrics
