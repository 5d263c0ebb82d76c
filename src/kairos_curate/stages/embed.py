"""Stage ``embed``: embed pool, reference, test and the noisy pool with a frozen encoder.

The embedding cache is keyed by encoder, weights and image content, so the noisy pool (mostly
the same images) and reruns embed only what changed. With ``engine.name: ray`` every split is
embedded on Ray Data (:func:`kairos_curate.engine.embedding.embed_with_engine`; one encoder per
actor), into the same cache.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from kairos_curate.config import PATHS
from kairos_curate.data.scenario import load_pool_variant, load_scenario
from kairos_curate.io import save_embeddings, write_json
from kairos_curate.progress import progress_enabled
from kairos_curate.stages.params import EmbedParams, EmbedStage, EngineParams, load_stage_params

__all__ = ["SPLITS", "load", "run"]

SPLITS = ("pool", "reference", "test")


def load(params: Any = None) -> EmbedStage:
    """The stage's parameters, validated (``None``: read ``params.yaml``)."""
    return load_stage_params("embed", params)


def run(params: EmbedParams, root: str | Path = ".", engine: EngineParams | None = None) -> dict[str, Any]:
    """Embed every split on ``engine`` (default: this process); write ``data/embeddings/<split>.npz``
    and ``embed.json``; return the metrics."""
    from kairos_curate.embedding import embed_source, load_encoder

    base, engine = Path(root), engine or EngineParams()
    runner: Any = None
    if engine.name == "ray":
        from kairos_curate.engine import get_engine
        from kairos_curate.engine.embedding import EncoderSpec, embed_with_engine

        runner = get_engine("ray", engine.ray_address, num_cpus=engine.num_cpus)
        spec = EncoderSpec(params.encoder, weights=params.weights, image_size=params.image_size, device=params.device)
    scenario = load_scenario(base / PATHS.prepared)
    encoder = load_encoder(params.encoder, weights=params.weights, image_size=params.image_size, device=params.device)
    metrics: dict[str, Any] = {
        "encoder": encoder.name,
        "dim": int(encoder.dim),
        "device": str(encoder.device),
        "image_size": params.image_size,
        "normalize": params.normalize,
        "engine": engine.name,
    }
    variant = load_pool_variant(base / PATHS.noisy_pool).source()
    total_images, total_time = 0, 0.0
    try:
        for split, source in [*((s, scenario.source(s)) for s in SPLITS), ("pool_noisy", variant)]:
            start = time.perf_counter()
            if runner is None:
                ids, matrix = embed_source(
                    source,
                    encoder,
                    batch_size=params.batch_size,
                    normalize=params.normalize,
                    cache_dir=base / PATHS.embedding_cache,
                    progress=progress_enabled(),
                    desc=f"embed {split}",
                )
            else:
                ids, matrix = embed_with_engine(
                    source,
                    spec,
                    engine=runner,
                    batch_size=params.batch_size,
                    normalize=params.normalize,
                    cache_dir=base / PATHS.embedding_cache,
                    progress=progress_enabled(),
                    num_actors=engine.num_actors,
                    shard_size=engine.embed_shard_size,
                )
            elapsed = time.perf_counter() - start
            save_embeddings(base / PATHS.embeddings / f"{split}.npz", ids, matrix)
            metrics[f"{split}_images"] = len(source)
            metrics[f"{split}_seconds"] = elapsed
            total_images += len(source)
            total_time += elapsed
    finally:
        if runner is not None:
            runner.shutdown()  # only a local cluster this stage started
    metrics["images_per_second"] = total_images / max(total_time, 1e-9)
    write_json(base / PATHS.metrics / "embed.json", metrics)
    return metrics
