"""Embed an :class:`~kairos_curate.data.sources.ImageSource` in batches, with a resumable cache.

Data-loader workers decode and resize images into compact ``uint8`` arrays; the main process
normalises each batch on the model's device and runs the frozen encoder under
``torch.inference_mode`` (float16 autocast on CUDA). Rows come back in source order.

Every forward pass sees a full batch of ``batch_size`` images (a short last batch is padded
with copies of its first image, whose outputs are dropped): with some thread counts oneDNN
picks another convolution algorithm for another batch size, and an image's embedding would
then depend on which batch it fell in. Padded, an image gets bit-identical features whether it
was embedded in one run, in a resumed run or next to other images.

Resuming: with a cache folder, finished rows are written as a shard whenever ``shard_size``
rows are pending or ``flush_seconds`` have passed since the last write, and once more when the
run stops for any reason (an exception, ``KeyboardInterrupt``, or ``SystemExit`` raised by a
signal handler such as the CLI's SIGTERM handler). A re-run recomputes only what is missing.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
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

__all__ = [
    "DEFAULT_FLUSH_SECONDS",
    "DEFAULT_SHARD_SIZE",
    "EmbedReport",
    "EmbedStats",
    "ImageFailure",
    "default_cache_dir",
    "default_num_workers",
    "embed_images",
    "embed_source",
    "l2_normalize",
]

_log = logging.getLogger(__name__)

#: Most rows per cache shard (a shard is also written every ``DEFAULT_FLUSH_SECONDS``).
DEFAULT_SHARD_SIZE = 2048

#: Longest time finished rows wait in memory before they are written to the cache: the most
#: work a crash that skips every handler (SIGKILL, power loss) can lose.
DEFAULT_FLUSH_SECONDS = 5.0


def default_cache_dir() -> Path:
    """Where the CLI caches embeddings when ``--cache-dir`` is not given.

    ``$KAIROS_CACHE_DIR/embeddings`` if that variable is set, else
    ``$XDG_CACHE_HOME/kairos-curate/embeddings`` (``~/.cache/kairos-curate/embeddings``).
    """
    env = os.environ.get("KAIROS_CACHE_DIR")
    if env:
        return Path(env).expanduser() / "embeddings"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "kairos-curate" / "embeddings"


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


@dataclass(frozen=True)
class ImageFailure:
    """An image that could not be read: its row, id, file (if any) and the reason."""

    index: int
    id: str
    path: str
    reason: str


@dataclass
class EmbedStats:
    """Counters of one embedding run, updated while it runs (readable after an interruption).

    Attributes
    ----------
    total : int
        Images in the source.
    from_cache : int
        Rows found in the cache.
    computed : int
        Rows embedded by the encoder in this run (padding rows not counted).
    written : int
        Rows of this run written to the cache so far.
    failures : list of ImageFailure
        Unreadable images (skipped, or the one that stopped the run).
    cache_dir : Path or None
        The cache folder used.
    """

    total: int = 0
    from_cache: int = 0
    computed: int = 0
    written: int = 0
    failures: list[ImageFailure] = field(default_factory=list)
    cache_dir: Path | None = None


@dataclass
class EmbedReport:
    """Result of :func:`embed_images`: the embedded rows and the images that were skipped."""

    ids: np.ndarray
    embeddings: np.ndarray
    failures: list[ImageFailure]
    stats: EmbedStats


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
            pixels if type(source) is ArrayImageSource and pixels is not None and pixels.ndim == 3 else None
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
            return i, _Failure(UnreadableImageError(f"cannot load image id {sample_id} (index {i}): {err}"))


def _lower_priority(_worker_id: int) -> None:
    """CPU-only worker init: decode in the gaps instead of preempting torch's threads."""
    with contextlib.suppress(OSError):  # not permitted on some systems
        os.nice(10)


def _collate(items: list[tuple[int, Any]]) -> tuple[np.ndarray, Any, list[tuple[int, BaseException]]]:
    good = [(i, arr) for i, arr in items if not isinstance(arr, _Failure)]
    failed = [(i, arr.error) for i, arr in items if isinstance(arr, _Failure)]
    idx = np.fromiter((i for i, _ in good), dtype=np.int64, count=len(good))
    batch = torch.from_numpy(np.stack([arr for _, arr in good])) if good else None
    return idx, batch, failed


def _encode_padded(encoder: Encoder, batch: torch.Tensor, batch_size: int) -> np.ndarray:
    """Encode ``batch`` as part of a full batch of ``batch_size`` rows (see module docs)."""
    n = int(batch.shape[0])
    if n < batch_size:
        pad = batch[:1].expand(batch_size - n, *batch.shape[1:])
        batch = torch.cat([batch, pad])
    return encoder.encode_uint8(batch).cpu().numpy()[:n]


def _failure(source: ImageSource, index: int, ids: np.ndarray, err: BaseException) -> ImageFailure:
    paths = getattr(source, "paths", None)
    path = str(paths[index]) if paths is not None else ""
    return ImageFailure(int(index), str(ids[index]), path, str(err))


def embed_images(
    source: ImageSource,
    encoder: Encoder,
    *,
    batch_size: int = 64,
    num_workers: int | None = None,
    normalize: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    desc: str = "embed",
    shard_size: int = DEFAULT_SHARD_SIZE,
    flush_seconds: float = DEFAULT_FLUSH_SECONDS,
    skip_unreadable: bool = False,
    stats: EmbedStats | None = None,
) -> EmbedReport:
    """Embed every readable image of ``source``; optionally skip and report unreadable ones.

    Parameters
    ----------
    source, encoder, batch_size, num_workers, normalize, progress, desc
        As in :func:`embed_source`.
    cache_dir : path, optional
        Embedding cache folder (:mod:`kairos_curate.embedding.cache`); cached rows are not
        recomputed and finished rows are written as they complete (see module docs).
    shard_size : int
        Most rows per cache shard.
    flush_seconds : float
        Write pending rows to the cache at least this often.
    skip_unreadable : bool
        ``True``: an image that cannot be read or decoded is left out and reported in
        :attr:`EmbedReport.failures`; ``False``: the first one stops the run (after the rows
        finished so far were written to the cache).
    stats : EmbedStats, optional
        Updated in place while the run goes, so a caller can report progress after an
        interruption.

    Returns
    -------
    EmbedReport
        ``ids``/``embeddings`` of the embedded rows in source order (every row unless some
        were skipped), and the failures.

    Raises
    ------
    UnreadableImageError, FileNotFoundError
        An image cannot be read and ``skip_unreadable`` is false (the message names it).
    ValueError
        Bad arguments, or ``cache_dir`` is a file.
    """
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    if num_workers is not None and int(num_workers) < 0:
        raise ValueError(f"num_workers must be >= 0 or None (auto); got {num_workers}")
    if int(shard_size) < 1:
        raise ValueError(f"shard_size must be >= 1; got {shard_size}")
    if not float(flush_seconds) > 0:
        raise ValueError(f"flush_seconds must be > 0; got {flush_seconds}")
    if cache_dir is not None and Path(cache_dir).exists() and not Path(cache_dir).is_dir():
        raise ValueError(f"cache_dir {cache_dir} is a file, not a folder; give a folder for the cache")
    stats = EmbedStats() if stats is None else stats
    ids = np.asarray([str(i) for i in source.ids])
    n = len(source)
    if ids.shape[0] != n:
        raise ValueError(f"source has {n} images but {ids.shape[0]} ids")
    stats.total = n
    stats.cache_dir = None if cache_dir is None else Path(cache_dir)
    out = np.zeros((n, encoder.dim), dtype=np.float32)
    ok = np.ones(n, dtype=bool)
    todo = np.arange(n, dtype=np.int64)

    def fail(index: int, err: BaseException) -> None:
        stats.failures.append(_failure(source, index, ids, err))
        ok[index] = False
        if not skip_unreadable:
            raise err

    cache: EmbeddingCache | None = None
    hashes: list[str] = [""] * n
    if cache_dir is not None and n:
        for i in tqdm(range(n), desc=f"{desc}: hashing", unit="img", disable=not progress or n < 2000):
            try:
                hashes[i] = str(source.content_hash(i))
            except OSError as err:  # missing or unreadable file
                fail(i, err)
        cache = EmbeddingCache(Path(cache_dir), encoder.fingerprint, encoder.dim)
        valid = np.flatnonzero(ok)
        found, cached = cache.lookup(ids[valid], [hashes[i] for i in valid])
        out[valid[found]] = cached[found]
        stats.from_cache = int(found.sum())
        todo = valid[~found]

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
        last_flush = time.monotonic()

        def flush(count: int) -> None:
            nonlocal pending, n_pending, last_flush
            assert cache is not None
            rows = np.concatenate(pending)
            head, tail = rows[:count], rows[count:]
            cache.write_shard(ids[head], [hashes[i] for i in head], out[head])
            stats.written += int(head.size)
            pending = [tail] if tail.size else []
            n_pending = int(tail.size)
            last_flush = time.monotonic()

        with tqdm(total=n, initial=n - int(todo.size), desc=desc, unit="img", disable=not progress) as bar:
            try:
                for idx, batch, failed in loader:
                    if batch is not None:
                        out[idx] = _encode_padded(encoder, batch, int(batch_size))
                        stats.computed += int(idx.size)
                        bar.update(int(idx.size))
                        if cache is not None:
                            pending.append(idx)
                            n_pending += int(idx.size)
                            while n_pending >= shard_size:
                                flush(int(shard_size))
                            if n_pending and time.monotonic() - last_flush >= flush_seconds:
                                flush(n_pending)
                    for i, load_error in failed:
                        bar.update(1)
                        fail(int(i), load_error)
            except BaseException:
                # Keep every finished row, whatever stopped the run (error, Ctrl-C, SIGTERM).
                if cache is not None and n_pending:
                    try:
                        flush(n_pending)
                    except Exception as flush_error:  # never hide the original error
                        _log.warning("could not write the last embedding cache shard: %s", flush_error)
                raise
            if cache is not None and n_pending:
                flush(n_pending)

    if normalize and n:
        out = l2_normalize(out)
    keep = np.flatnonzero(ok)
    return EmbedReport(ids=ids[keep], embeddings=out[keep], failures=list(stats.failures), stats=stats)


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
    *,
    flush_seconds: float = DEFAULT_FLUSH_SECONDS,
    stats: EmbedStats | None = None,
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
        Most rows per cache shard.
    flush_seconds : float
        Finished rows are written to the cache at least this often (and when the run stops).
    stats : EmbedStats, optional
        Counters updated while the run goes (see :class:`EmbedStats`).

    Returns
    -------
    ids : np.ndarray of str, shape (N,)
        ``source.ids``, in source order.
    embeddings : np.ndarray of float32, shape (N, encoder.dim)
        Row ``i`` embeds image ``i``.

    Raises
    ------
    UnreadableImageError, FileNotFoundError
        An image cannot be read; the message names its file and/or id. Rows finished before
        it are in the cache (when there is one).
    """
    report = embed_images(
        source,
        encoder,
        batch_size=batch_size,
        num_workers=num_workers,
        normalize=normalize,
        cache_dir=cache_dir,
        progress=progress,
        desc=desc,
        shard_size=shard_size,
        flush_seconds=flush_seconds,
        skip_unreadable=False,
        stats=stats,
    )
    return report.ids, report.embeddings
