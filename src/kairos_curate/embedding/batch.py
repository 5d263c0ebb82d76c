"""Embed an :class:`~kairos_curate.data.sources.ImageSource` in batches, with a cache.

Data-loader workers decode and resize images into compact ``uint8`` arrays; the main process
normalises each batch on the model's device and runs the frozen encoder under
``torch.inference_mode`` (float16 autocast on CUDA). Rows come back in source order.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from kairos_curate.data.sources import ArrayImageSource, ImageSource, UnreadableImageError
from kairos_curate.embedding.cache import EmbeddingCache
from kairos_curate.embedding.encoders import Encoder, Preprocessor

__all__ = ["DEFAULT_SHARD_SIZE", "default_num_workers", "embed_source", "l2_normalize"]

#: Rows per cache shard: small enough that an interruption loses little work, large enough
#: that a 70k-image dataset is a few dozen files.
DEFAULT_SHARD_SIZE = 2048


def default_num_workers(device: torch.device) -> int:
    """Loader workers for ``device``: several to keep a GPU fed, none on the CPU.

    On the CPU, torch's intra-op threads already occupy every core during the forward pass;
    a worker process only preempts them (with 2 cores, one worker more than halved the
    throughput in ``benchmarks/bench_embed.py``), while decoding and resizing in the main
    process between batches costs a few percent of the forward pass. On CUDA up to 8 workers
    decode in parallel while the GPU computes.
    """
    cores = os.cpu_count() or 1
    if device.type == "cuda":
        return max(1, min(8, cores - 1))
    return 0


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Divide each row by its Euclidean norm (rows of norm below ``eps`` stay as they are)."""
    arr = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(arr.astype(np.float64), axis=1, keepdims=True)
    return (arr / np.maximum(norms, eps)).astype(np.float32)


class _Failure:
    """An exception raised while loading one image, carried back to the main process."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Images(Dataset[tuple[int, Any]]):
    def __init__(self, source: ImageSource, preprocess: Preprocessor, indices: np.ndarray) -> None:
        self.source = source
        self.preprocess = preprocess
        self.indices = indices
        pixels = getattr(source, "pixels", None)
        # exact type only: a subclass may override load_image
        self.grey_pixels = (
            pixels
            if type(source) is ArrayImageSource and pixels is not None and pixels.ndim == 3
            else None
        )

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def __getitem__(self, k: int) -> tuple[int, Any]:
        i = int(self.indices[k])
        try:
            if self.grey_pixels is not None:  # skip the RGB conversion: to_uint8 replicates
                return i, self.preprocess.to_uint8(Image.fromarray(self.grey_pixels[i]))
            return i, self.preprocess.to_uint8(self.source.load_image(i))
        except OSError as err:  # UnreadableImageError / FileNotFoundError already name the file
            return i, _Failure(err)
        except Exception as err:
            sample_id = self.source.ids[i]
            return i, _Failure(
                UnreadableImageError(f"cannot load image id {sample_id} (index {i}): {err}")
            )


def _lower_priority(_worker_id: int) -> None:
    """CPU-only worker init: decode in the gaps instead of preempting torch's threads."""
    with contextlib.suppress(OSError):  # not permitted on some systems
        os.nice(10)


def _collate(items: list[tuple[int, Any]]) -> tuple[np.ndarray, Any]:
    for _, arr in items:
        if isinstance(arr, _Failure):
            return np.zeros(0, dtype=np.int64), arr
    idx = np.fromiter((i for i, _ in items), dtype=np.int64, count=len(items))
    return idx, torch.from_numpy(np.stack([arr for _, arr in items]))


def embed_source(
    source: ImageSource,
    encoder: Encoder,
    batch_size: int = 64,
    num_workers: int | None = None,
    normalize: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    desc: str = "embed",
    shard_size: int = DEFAULT_SHARD_SIZE,
) -> tuple[np.ndarray, np.ndarray]:
    """Embed every image of ``source`` with ``encoder``.

    Parameters
    ----------
    source : ImageSource
        Images with unique string ids.
    encoder : Encoder
        From :func:`~kairos_curate.embedding.load_encoder`.
    batch_size : int
        Images per forward pass.
    num_workers : int, optional
        Data-loader worker processes; ``None`` picks :func:`default_num_workers`.
    normalize : bool
        L2-normalise each row (applied after the cache, which stores raw features).
    cache_dir : path, optional
        Embedding cache folder (see :mod:`kairos_curate.embedding.cache`); samples whose
        ``(id, content hash)`` is cached for this encoder's fingerprint are not recomputed.
    progress : bool
        Show a tqdm progress bar.
    desc : str
        Progress-bar label.
    shard_size : int
        Rows per cache shard; each shard is written as soon as it fills up.

    Returns
    -------
    ids : np.ndarray of str, shape (N,)
        ``source.ids``, in source order.
    embeddings : np.ndarray of float32, shape (N, encoder.dim)
        Row ``i`` embeds image ``i``.

    Raises
    ------
    UnreadableImageError, FileNotFoundError
        An image cannot be read; the message names its file and/or id.
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    if num_workers is not None and int(num_workers) < 0:
        raise ValueError(f"num_workers must be >= 0 or None (auto); got {num_workers}")
    if int(shard_size) < 1:
        raise ValueError(f"shard_size must be >= 1; got {shard_size}")
    ids = np.asarray([str(i) for i in source.ids])
    n = len(source)
    if ids.shape[0] != n:
        raise ValueError(f"source has {n} images but {ids.shape[0]} ids")
    out = np.zeros((n, encoder.dim), dtype=np.float32)
    todo = np.arange(n, dtype=np.int64)

    cache: EmbeddingCache | None = None
    hashes: list[str] = []
    if cache_dir is not None and n:
        hashes = [str(source.content_hash(i)) for i in range(n)]
        cache = EmbeddingCache(Path(cache_dir), encoder.fingerprint, encoder.dim)
        found, cached = cache.lookup(ids, hashes)
        out[found] = cached[found]
        todo = np.flatnonzero(~found)

    if todo.size:
        workers = default_num_workers(encoder.device) if num_workers is None else int(num_workers)
        loader = DataLoader(
            _Images(source, encoder.preprocess, todo),
            batch_size=int(batch_size),
            shuffle=False,
            num_workers=workers,
            collate_fn=_collate,
            pin_memory=encoder.device.type == "cuda",
            prefetch_factor=4 if workers > 0 else None,
            worker_init_fn=_lower_priority if encoder.device.type == "cpu" else None,
        )
        pending: list[np.ndarray] = []
        n_pending = 0

        def flush(count: int) -> None:
            nonlocal pending, n_pending
            assert cache is not None
            rows = np.concatenate(pending)
            head, tail = rows[:count], rows[count:]
            cache.write_shard(ids[head], [hashes[i] for i in head], out[head])
            pending = [tail] if tail.size else []
            n_pending = int(tail.size)

        with tqdm(
            total=n, initial=n - int(todo.size), desc=desc, unit="img", disable=not progress
        ) as bar:
            for idx, batch in loader:
                if isinstance(batch, _Failure):
                    raise batch.error
                out[idx] = encoder.encode_uint8(batch).cpu().numpy()
                bar.update(int(idx.size))
                if cache is not None:
                    pending.append(idx)
                    n_pending += int(idx.size)
                    while n_pending >= shard_size:
                        flush(int(shard_size))
        if cache is not None and n_pending:
            flush(n_pending)

    if normalize and n:
        out = l2_normalize(out)
    return ids, out
