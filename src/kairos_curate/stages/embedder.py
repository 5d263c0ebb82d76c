"""The ``embed`` section's encoder as a function of images, through the shared embedding cache.

Stages that embed images the ``embed`` stage never saw (the method comparison's corrupted
variants, the selection suite's scenarios) call :func:`cached_embedder`; an image already embedded
with the same encoder (same id and content hash) is read from ``data/cache/embeddings``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from kairos_curate.config import PATHS
from kairos_curate.stages.params import EmbedParams

__all__ = ["cached_embedder"]


def cached_embedder(params: EmbedParams, base: Path) -> Callable[[np.ndarray, Any], np.ndarray]:
    """``embed(ids, images) -> (N, d)`` with the section's encoder (loaded on first use); ``images``
    is a stacked array or a list of arrays of different sizes."""
    state: dict[str, Any] = {}

    def embed(ids: np.ndarray, pixels: Any) -> np.ndarray:
        from kairos_curate.data.sources import images_source
        from kairos_curate.embedding import embed_source, load_encoder

        if "encoder" not in state:
            state["encoder"] = load_encoder(
                params.encoder, weights=params.weights, image_size=params.image_size, device=params.device
            )
        _, x = embed_source(
            images_source(ids, pixels),
            state["encoder"],
            batch_size=params.batch_size,
            normalize=params.normalize,
            cache_dir=base / PATHS.embedding_cache,
            progress=False,
            num_workers=0,
        )
        return x

    return embed
