"""Embedding behind the engine switch; the Ray path runs on Ray Data.

``engine="local"`` is :func:`kairos_curate.embedding.embed_source` unchanged. ``engine="ray"``
builds one Ray Data pipeline over the image manifest (the rows of an
:class:`~kairos_curate.data.sources.ImageSource`: ``id`` and ``path`` for files, a row index
for in-memory sources):

1. **read + hash + decode** (``map_batches`` tasks, CPU): read each file's bytes, take their
   SHA-1 (the source's content hash), drop rows whose ``(id, hash)`` is already in the cache
   (resumable), decode and resize/crop to ``uint8`` with the encoder's own
   :class:`~kairos_curate.embedding.Preprocessor`;
2. **encode** (``map_batches`` with an actor pool): each actor loads the frozen encoder once
   (one model per actor; one GPU per actor when the cluster has GPUs) and runs
   :meth:`~kairos_curate.embedding.Encoder.encode_uint8`;
3. **write** (``map_batches``, ``shard_size`` rows a batch): each batch becomes an atomically
   written Parquet shard ``shard-<hash>.parquet`` (columns ``id``, ``hash``, ``embedding``) in
   the same :class:`~kairos_curate.embedding.EmbeddingCache` folder the local path uses.

The driver then reads every row back from the cache in source order and L2-normalises as the
local path does, so both engines return the same numbers (equal up to the batch composition of
the float32 forward pass; tested) and each resumes the other's cache. Without ``cache_dir`` a
temporary cache folder is used and removed.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kairos_curate.data.sources import FileImageSource, ImageSource

__all__ = ["EncoderSpec", "embed_source_ray", "embed_with_engine"]


@dataclass(frozen=True)
class EncoderSpec:
    """The arguments of :func:`kairos_curate.embedding.load_encoder`, so workers can load it."""

    spec: str = "efficientnet-lite0"
    weights: str | None = None
    image_size: int | None = None
    device: str = "auto"
    pretrained: bool = True
    seed: int = 0
    channels_last: bool = True
    model_kwargs: dict[str, Any] = field(default_factory=dict)

    def load(self, device: str | None = None) -> Any:
        """Load the encoder (on ``device`` if given, else on :attr:`device`)."""
        from kairos_curate.embedding import load_encoder

        return load_encoder(
            self.spec,
            weights=self.weights,
            image_size=self.image_size,
            device=device or self.device,
            pretrained=self.pretrained,
            seed=self.seed,
            channels_last=self.channels_last,
            model_kwargs=dict(self.model_kwargs) or None,
        )


def embed_with_engine(
    source: ImageSource,
    encoder: EncoderSpec,
    *,
    engine: Any = "local",
    ray_address: str | None = None,
    batch_size: int = 64,
    normalize: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    num_actors: int | None = None,
    shard_size: int = 2048,
) -> tuple[np.ndarray, np.ndarray]:
    """Embed ``source`` on an engine; same return value as ``embed_source``.

    Parameters
    ----------
    source
        Images with ids (files or arrays).
    encoder
        Which encoder (loaded in-process for ``local``, once per actor for ``ray``).
    engine, ray_address
        ``"local"`` or ``"ray"`` (``ray_address=None`` starts a local cluster).
    batch_size, normalize, cache_dir, progress, shard_size
        As in :func:`kairos_curate.embedding.embed_source`.
    num_actors
        Ray: encoder actors (default: one per GPU, else CPUs - 1).
    """
    from kairos_curate.engine import get_engine

    eng = get_engine(engine, ray_address) if isinstance(engine, str) or engine is None else engine
    if eng.name == "local":
        from kairos_curate.embedding import embed_source

        return embed_source(
            source,
            encoder.load(),
            batch_size=batch_size,
            normalize=normalize,
            cache_dir=cache_dir,
            progress=progress,
            shard_size=shard_size,
        )
    return embed_source_ray(
        source,
        encoder,
        batch_size=batch_size,
        normalize=normalize,
        cache_dir=cache_dir,
        num_actors=num_actors,
        shard_size=shard_size,
        progress=progress,
    )


_SOURCES: dict[str, Any] = {}


def _source_from(ref_holder: list[Any]) -> Any:
    """The in-memory source behind an object ref, fetched once per worker process."""
    import ray

    ref = ref_holder[0]
    key = ref.hex()
    if key not in _SOURCES:
        _SOURCES.clear()
        _SOURCES[key] = ray.get(ref)
    return _SOURCES[key]


class _Hash:
    """Stage 1: the content hash of every row (SHA-1 of the file bytes, or the source's)."""

    def __init__(self, source_ref: list[Any] | None) -> None:
        self.source_ref = source_ref

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        source = None if self.source_ref is None else _source_from(self.source_ref)
        out = []
        for k, index in enumerate(batch["index"].tolist()):
            if source is None:
                path = Path(str(batch["path"][k]))
                try:
                    out.append(hashlib.sha1(path.read_bytes()).hexdigest())
                except FileNotFoundError:
                    raise FileNotFoundError(f"image file {path} (id {batch['id'][k]}) is missing") from None
            else:
                out.append(str(source.content_hash(int(index))))
        return {"index": batch["index"], "hash": np.asarray(out, dtype=object)}


class _Decode:
    """Stage 2: decode and resize/crop to ``uint8`` with the encoder's preprocessing."""

    def __init__(self, preprocess: Any, source_ref: list[Any] | None) -> None:
        self.preprocess = preprocess
        self.source_ref = source_ref

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        source = None if self.source_ref is None else _source_from(self.source_ref)
        pixels = []
        for k, index in enumerate(batch["index"].tolist()):
            if source is None:
                image = FileImageSource([str(batch["id"][k])], [str(batch["path"][k])]).load_image(0)
            else:
                image = source.load_image(int(index))
            pixels.append(self.preprocess.to_uint8(image))
        size = self.preprocess.image_size
        return {
            "index": batch["index"],
            "id": batch["id"],
            "hash": batch["hash"],
            "pixels": np.stack(pixels) if pixels else np.zeros((0, size, size, 3), np.uint8),
        }


class _EncodeActor:
    """Stage 2: one frozen encoder per actor."""

    def __init__(self, spec: EncoderSpec, threads: int) -> None:
        import torch

        torch.set_num_threads(max(1, int(threads)))
        self.encoder = spec.load()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        pixels = torch.from_numpy(np.ascontiguousarray(batch["pixels"]))
        emb = self.encoder.encode_uint8(pixels).cpu().numpy().astype(np.float32)
        return {"index": batch["index"], "id": batch["id"], "hash": batch["hash"], "embedding": emb}


class _WriteShard:
    """Stage 3: each batch becomes one Parquet shard of the embedding cache."""

    def __init__(self, root: str, fingerprint: str, dim: int) -> None:
        self.root, self.fingerprint, self.dim = root, fingerprint, dim

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from kairos_curate.embedding.cache import EmbeddingCache

        n = int(batch["index"].shape[0])
        if n:
            cache = EmbeddingCache(self.root, self.fingerprint, self.dim)
            cache.write_shard(
                batch["id"].astype(str),
                batch["hash"].astype(str),
                np.asarray(batch["embedding"], dtype=np.float32).reshape(n, self.dim),
                fmt="parquet",
            )
        return {"index": batch["index"]}


def _describe(spec: EncoderSpec) -> tuple[str, int, Any]:
    enc = spec.load()
    return enc.fingerprint, enc.dim, enc.preprocess


def embed_source_ray(
    source: ImageSource,
    encoder: EncoderSpec,
    *,
    batch_size: int = 64,
    normalize: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    num_actors: int | None = None,
    shard_size: int = 2048,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Embed ``source`` with Ray Data (see module docs); Ray must be initialised or startable.

    Returns ``(ids, embeddings)`` in source order, like
    :func:`kairos_curate.embedding.embed_source`.
    """
    import ray
    import ray.data

    from kairos_curate.embedding import l2_normalize
    from kairos_curate.embedding.cache import EmbeddingCache
    from kairos_curate.engine.ray_engine import RayEngine

    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    if int(shard_size) < 1:
        raise ValueError(f"shard_size must be >= 1; got {shard_size}")
    if not ray.is_initialized():
        RayEngine()
    ids = np.asarray([str(i) for i in source.ids])
    n = ids.shape[0]
    gpus = int(ray.cluster_resources().get("GPU", 0))
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    # the fingerprint comes from the workers' own environment (GPU -> fp16 autocast)
    describe = ray.remote(num_cpus=1, num_gpus=1 if gpus else 0)(_describe)
    fingerprint, dim, preprocess = ray.get(describe.remote(encoder))
    tmp = None
    if cache_dir is None:
        tmp = tempfile.mkdtemp(prefix="kairos-embed-")
        cache_dir = tmp
    cache_dir = os.path.abspath(cache_dir)  # workers write there, whatever their working folder
    try:
        cache = EmbeddingCache(Path(cache_dir), fingerprint, dim)
        cols: dict[str, np.ndarray] = {"index": np.arange(n, dtype=np.int64), "id": ids}
        source_ref = None
        if isinstance(source, FileImageSource):
            cols["path"] = np.asarray([os.path.abspath(p) for p in source.paths])
        else:
            source_ref = [ray.put(source)]
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = bool(progress)
        if not progress:
            logging.getLogger("ray.data").setLevel(logging.WARNING)
        hashes = np.empty(n, dtype=object)
        if n:
            blocks = max(1, min(n // max(1, int(batch_size)), 4 * cpus))
            table = _manifest(cols, blocks)
            hashed = table.map_batches(
                _Hash,
                fn_constructor_args=(source_ref,),
                batch_size=int(batch_size) * 4,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=min(cpus, blocks)),
                num_cpus=1,
            ).take_all()
            for row in hashed:
                hashes[int(row["index"])] = str(row["hash"])
        found, _ = cache.lookup(ids, hashes.tolist()) if n else (np.zeros(0, bool), None)
        todo = np.flatnonzero(~found)
        if todo.size:
            cols_todo = {k: v[todo] for k, v in cols.items()}
            cols_todo["hash"] = hashes[todo]
            blocks = max(1, min(todo.size // max(1, int(batch_size)), 4 * cpus))
            ds = _manifest(cols_todo, blocks)
            ds = ds.map_batches(
                _Decode,
                fn_constructor_args=(preprocess, source_ref),
                batch_size=int(batch_size),
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=min(blocks, max(1, cpus - 1) if not gpus else cpus)),
                num_cpus=1,
            )
            actors = int(num_actors) if num_actors else (gpus if gpus else max(1, cpus - 1))
            ds = ds.map_batches(
                _EncodeActor,
                fn_constructor_args=(encoder, 1 if not gpus else 2),
                batch_size=int(batch_size),
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=min(actors, blocks)),
                num_cpus=1 if not gpus else 0,
                num_gpus=1 if gpus else 0,
            )
            ds = ds.map_batches(
                _WriteShard,
                fn_constructor_args=(str(cache_dir), fingerprint, dim),
                batch_size=int(shard_size),
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=1),
                num_cpus=0,
            )
            ds.materialize()
        found, out = cache.lookup(ids, hashes.tolist())
        if not found.all():
            missing = ids[~found][:5].tolist()
            raise RuntimeError(f"{int((~found).sum())} images were not embedded, e.g. {missing}")
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    if normalize and n:
        out = l2_normalize(out)
    return ids, out


def _manifest(cols: dict[str, np.ndarray], blocks: int) -> Any:
    """A Ray dataset of the manifest columns in ``blocks`` Arrow blocks (rows in order)."""
    import pyarrow as pa
    import ray.data

    n = len(cols["index"])
    edges = np.linspace(0, n, blocks + 1).astype(int)
    tables = [
        pa.table(
            {k: pa.array(v[lo:hi].tolist(), type=pa.int64() if k == "index" else pa.string()) for k, v in cols.items()}
        )
        for lo, hi in itertools.pairwise(edges)
        if hi > lo
    ]
    return ray.data.from_arrow(tables)
