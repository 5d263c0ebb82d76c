"""Embedding stage: frozen pretrained image encoders, batched and cached.

>>> from kairos_curate.embedding import load_encoder, embed_source
>>> enc = load_encoder("efficientnet-lite0", image_size=96)  # doctest: +SKIP
>>> ids, X = embed_source(source, enc, cache_dir="data/cache/embeddings")  # doctest: +SKIP
"""

from kairos_curate.embedding.batch import (
    DEFAULT_SHARD_SIZE,
    default_num_workers,
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
    "DEFAULT_SHARD_SIZE",
    "KNOWN_SPECS",
    "EmbeddingCache",
    "Encoder",
    "Preprocessor",
    "default_num_workers",
    "embed_source",
    "file_sha256",
    "l2_normalize",
    "load_encoder",
    "resolve_device",
]
