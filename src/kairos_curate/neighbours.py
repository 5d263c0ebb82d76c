"""Near-duplicate search with FAISS: an exact flat index up to a size, IVF beyond.

Rows are L2-normalised, so inner product = cosine similarity. Pairs with
``cos(x_i, x_j) > threshold`` come from FAISS range search:

* ``"flat"`` (``IndexFlatIP``): exact, ``O(N^2 d)`` in BLAS, same pairs as the blockwise
  all-pairs scan of :func:`kairos_curate.audit.duplicate_scan` (up to float rounding at the
  threshold);
* ``"ivf"`` (``IndexIVFFlat``, ``nlist ~ 4 sqrt(N)`` cells, 10 k-means iterations on a seeded sample
  of ``16 nlist`` rows,
  ``nprobe`` cells searched per query): ``O(N (nprobe / nlist) N d)``; a near-duplicate pair is
  missed only when its two rows fall in cells that neither probes (recall measured in
  ``benchmarks/bench_scale.py``);
* ``"auto"``: flat up to ``exact_max`` rows, IVF beyond.

The audit (:func:`kairos_curate.audit.audit` through :func:`kairos_curate.issues.similar_pairs`,
and :func:`kairos_curate.audit.duplicate_scan` with ``method="auto"``) uses its own exact
blockwise scan up to 100,000 rows (upper triangle only: 2.7x faster than the flat index at
100,000 rows, measured) and the IVF index beyond (:func:`threshold_pairs`).

Each row's highest similarity to another row (the audit's ``near_duplicate_score``; its maximum
is the highest pairwise similarity) comes from a 2-nearest-neighbour search on the same index
(exact for flat, approximate for IVF).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_EXACT_MAX",
    "INDEXES",
    "duplicate_pairs",
    "faiss_available",
    "faiss_duplicate_scan",
    "threshold_pairs",
]

INDEXES = ("auto", "flat", "ivf")
#: Largest pool searched with the exact flat index by ``index="auto"``.
DEFAULT_EXACT_MAX = 100_000


def faiss_available() -> bool:
    """Whether :mod:`faiss` imports."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as err:  # pragma: no cover - faiss-cpu is in the dev extra
        raise ImportError(
            "near-duplicate search with FAISS needs faiss: pip install 'kairos-curate[scale]' "
            "(faiss-cpu), or use the blockwise scan (method='blocked')"
        ) from err
    return faiss


def _check_rows(x: np.ndarray) -> np.ndarray:
    x = np.array(x, dtype=np.float32, copy=True, order="C")
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"embeddings must be a non-empty (N, d) array, got shape {x.shape}")
    if not np.isfinite(x).all():
        bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
        raise ValueError(f"embeddings have NaN/inf in rows {bad[:5].tolist()}; drop or fix them")
    return x


def _normalised(embeddings: Any) -> np.ndarray:
    x = _check_rows(embeddings)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)


def _build(x: np.ndarray, index: str, nlist: int | None, nprobe: int, seed: int) -> Any:
    faiss = _faiss()
    d = x.shape[1]
    if index == "flat":
        idx = faiss.IndexFlatIP(d)
    else:
        n = x.shape[0]
        cells = int(nlist) if nlist else max(1, min(n // 39, round(4 * math.sqrt(n))))
        quantizer = faiss.IndexFlatIP(d)
        idx = faiss.IndexIVFFlat(quantizer, d, cells, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        sample = x[np.sort(rng.choice(n, min(n, 16 * cells), replace=False))]
        idx.cp.seed = int(seed)
        idx.cp.niter = 10  # coarse cells suffice: near-duplicates sit in the same or a probed cell
        idx.cp.min_points_per_centroid = 1
        idx.train(sample)
        idx.nprobe = min(int(nprobe), cells)
    idx.add(x)
    return idx


def threshold_pairs(
    rows: Any,
    threshold: float,
    *,
    index: str = "ivf",
    nlist: int | None = None,
    nprobe: int = 16,
    batch_size: int = 16_384,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pairs ``i < j`` with inner product above ``threshold``, and each row's best other row.

    The FAISS counterpart of the blockwise scan of :func:`kairos_curate.issues.similar_pairs`
    (same return values). Rows are used as given (unit or zero rows: the inner product is the
    cosine similarity; no renormalisation, so the similarities are the scan's up to float
    rounding).

    Parameters
    ----------
    rows
        ``(N, d)`` array with unit (or zero) rows.
    threshold
        A pair is returned when its inner product exceeds this.
    index
        ``"flat"`` (exact) or ``"ivf"`` (approximate; exact when ``nprobe >= nlist``).
    nlist, nprobe, batch_size, seed
        As in :func:`duplicate_pairs`.

    Returns
    -------
    i, j : numpy.ndarray
        The pairs (``i < j``), sorted by ``(i, j)``.
    similarity : numpy.ndarray
        Their inner products (float64).
    nearest : numpy.ndarray
        ``(N,)`` each row's highest inner product with another row (``-inf`` where none was
        found, e.g. a single row).
    """
    if index not in ("flat", "ivf"):
        raise ValueError(f"index must be 'flat' or 'ivf', got {index!r}")
    x = _check_rows(rows)
    n = x.shape[0]
    idx = _build(x, index, nlist, nprobe, seed)
    ii, jj, ss = [], [], []
    nearest = np.full(n, -np.inf)
    for lo in range(0, n, int(batch_size)):
        q = x[lo : lo + int(batch_size)]
        own = np.arange(lo, lo + q.shape[0])
        lims, dist, ids = idx.range_search(q, float(threshold))
        qi = np.repeat(own, np.diff(lims.astype(np.int64)))
        keep = ids > qi
        ii.append(qi[keep])
        jj.append(ids[keep].astype(np.int64))
        ss.append(dist[keep].astype(np.float64))
        if n > 1:
            dk, ik = idx.search(q, 2)
            other = np.where(ik[:, 0] == own, dk[:, 1], dk[:, 0])
            found = np.where(ik[:, 0] == own, ik[:, 1], ik[:, 0]) >= 0
            nearest[lo : lo + q.shape[0]] = np.where(found, other, -np.inf)
    i = np.concatenate(ii) if ii else np.zeros(0, dtype=np.int64)
    j = np.concatenate(jj) if jj else np.zeros(0, dtype=np.int64)
    s = np.concatenate(ss) if ss else np.zeros(0)
    order = np.lexsort((j, i))
    return i[order].astype(np.int64), j[order].astype(np.int64), s[order], nearest


def duplicate_pairs(
    embeddings: Any,
    threshold: float = 0.98,
    *,
    index: str = "auto",
    exact_max: int = DEFAULT_EXACT_MAX,
    nlist: int | None = None,
    nprobe: int = 16,
    batch_size: int = 16_384,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, float, str]:
    """All pairs ``i < j`` with cosine similarity above ``threshold``, via FAISS.

    Parameters
    ----------
    embeddings
        ``(N, d)`` array (normalised here; a zero row matches nothing).
    threshold
        Cosine similarity above which two rows are near-duplicates, in ``(-1, 1]``.
    index
        ``"auto"``, ``"flat"`` (exact) or ``"ivf"`` (approximate; see module docs).
    exact_max
        ``"auto"`` uses the flat index up to this many rows.
    nlist, nprobe
        IVF cells (default ``~4 sqrt(N)``) and cells probed per query.
    batch_size
        Queries per range search.
    seed
        Seed of the IVF training sample and k-means.

    Returns
    -------
    pairs : numpy.ndarray
        ``(P, 2)`` int64 row pairs with ``i < j``, sorted.
    sims : numpy.ndarray
        ``(P,)`` their similarities.
    max_similarity : float
        Highest similarity between two different rows (``nan`` for one row).
    index_used : str
        ``"flat"`` or ``"ivf"``.
    """
    if index not in INDEXES:
        raise ValueError(f"index must be one of {INDEXES}, got {index!r}")
    if not -1.0 < threshold <= 1.0:
        raise ValueError(f"threshold (dup_threshold) must be in (-1, 1], got {threshold}")
    x = _normalised(embeddings)
    n = x.shape[0]
    used = ("flat" if n <= int(exact_max) else "ivf") if index == "auto" else index
    i, j, s, nearest = threshold_pairs(
        x, threshold, index=used, nlist=nlist, nprobe=nprobe, batch_size=batch_size, seed=seed
    )
    best = float(nearest.max()) if n > 1 else -np.inf
    pairs = np.stack([i, j], axis=1).astype(np.int64)
    return pairs, s.astype(np.float32), (best if np.isfinite(best) else float("nan")), used


def faiss_duplicate_scan(embeddings: Any, threshold: float = 0.98, **kwargs: Any) -> tuple[list[np.ndarray], float]:
    """Near-duplicate groups (connected components, like
    :func:`kairos_curate.audit.duplicate_scan`) and the highest similarity, via FAISS.

    Keyword arguments go to :func:`duplicate_pairs`.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    pairs, _, best, _ = duplicate_pairs(embeddings, threshold, **kwargs)
    n = int(np.asarray(embeddings).shape[0])
    if pairs.shape[0] == 0:
        return [], best
    graph = coo_matrix((np.ones(pairs.shape[0]), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    linked = np.zeros(n, dtype=bool)
    linked[pairs.ravel()] = True
    groups: dict[int, list[int]] = {}
    for i in np.flatnonzero(linked).tolist():
        groups.setdefault(int(comp[i]), []).append(i)
    out = [np.asarray(sorted(g), dtype=np.int64) for g in groups.values() if len(g) > 1]
    out.sort(key=lambda g: (-g.size, int(g[0])))
    return out, best
