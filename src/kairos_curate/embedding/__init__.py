"""Embedding stage: frozen pretrained image encoders, batched and cached.

>>> from kairos_curate.embedding import load_encoder, embed_source
>>> enc = load_encoder("efficientnet-lite0", image_size=96)  # doctest: +SKIP
>>> ids, X = embed_source(source, enc, cache_dir="data/cache/embeddings")  # doctest: +SKIP
"""

from kairos_curate.embedding.batch import (
    DEFAULT_FLUSH_SECONDS,
    DEFAULT_SHARD_SIZE,
    EmbedReport,
    EmbedStats,
    ImageFailure,
    default_cache_dir,
    default_num_workers,
    embed_images,
    embed_source,
    l2_normalize,
)
from kairos_curate.embedding.cache import EmbeddingCache
from kairos_curate.embedding.encoders import (
    KNOWN_SPECS,
    Encoder,
    Preprocessor,
    file_sha256,
    load_encoder,
    resolve_device,
)

__all__ = [
    "DEFAULT_FLUSH_SECONDS",
    "DEFAULT_SHARD_SIZE",
    "KNOWN_SPECS",
    "EmbedReport",
    "EmbedStats",
    "EmbeddingCache",
    "Encoder",
    "ImageFailure",
    "Preprocessor",
    "default_cache_dir",
    "default_num_workers",
    "embed_images",
    "embed_source",
    "file_sha256",
    "l2_normalize",
    "load_encoder",
    "resolve_device",
]
