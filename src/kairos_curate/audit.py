"""Data audit: flag low-valued and near-duplicate pool samples before they reach training.

:func:`audit` values a pool against a clean reference with KAIROS, finds groups of
near-duplicates by cosine similarity of the embeddings (blockwise, never an ``N x N`` matrix),
and writes

* ``audit.html`` - a self-contained gallery (thumbnails inlined as base64 PNG) of the
  lowest-valued samples with every value term, the highest-valued for contrast, and the
  near-duplicate groups;
* ``flags.csv`` - one row per pool sample: ``id, value, rank, flag, keep`` (plus ``label`` when
  labels are given), where ``flag`` is empty, ``low_value``, ``near_duplicate_of:<id>`` or
  both joined by ``;``. Feed the ids with ``keep == True`` back into training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from kairos_curate.data.sources import ImageSource
from kairos_curate.io import atomic_path

__all__ = ["AuditResult", "audit", "duplicate_scan", "near_duplicate_groups"]


@dataclass
class AuditResult:
    """What :func:`audit` found and wrote.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per pool sample (index ``id``): the KAIROS terms (``b``, ``a``,
        ``feature_term``, ``label_term``, ``value``, ``loo``, ``rank``), ``flag``, ``keep``,
        ``duplicate_group`` (-1 if none) and ``duplicate_of`` (the kept member of its group).
    groups : list of list of str
        Near-duplicate groups (ids, best-valued first), largest group first.
    html_path, flags_path : pathlib.Path
        The files written.
    bandwidth : float
        RBF sigma used for the values.
    label_mode : str or None
        Label mode used for the values.
    info : dict
        Counts shown in the page's summary box.
    """

    table: pd.DataFrame
    groups: list[list[str]]
    html_path: Path
    flags_path: Path
    bandwidth: float
    label_mode: str | None
    info: dict[str, Any] = field(default_factory=dict)


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = np.arange(n)

    def find(self, i: int) -> int:
        root = i
        while self.parent[root] != root:
            root = int(self.parent[root])
        while self.parent[i] != root:
            self.parent[i], i = root, int(self.parent[i])
        return root

    def union(self, i: int, j: int) -> None:
        ri, rj = self.find(i), self.find(j)
        if ri != rj:
            self.parent[max(ri, rj)] = min(ri, rj)


def near_duplicate_groups(embeddings: np.ndarray, threshold: float = 0.98, *, block_size: int | None = None,
                          memory_budget_bytes: int = 64 * 2**20, progress: bool = False) -> list[np.ndarray]:
    """Groups of rows whose cosine similarity exceeds ``threshold`` (connected components).

    See :func:`duplicate_scan`, which also returns the highest pairwise similarity.
    """
    return duplicate_scan(embeddings, threshold, block_size=block_size, memory_budget_bytes=memory_budget_bytes,
                          progress=progress)[0]


def duplicate_scan(embeddings: np.ndarray, threshold: float = 0.98, *, block_size: int | None = None,
                   memory_budget_bytes: int = 64 * 2**20,
                   progress: bool = False, method: str = "auto") -> tuple[list[np.ndarray], float]:
    """Groups of rows whose cosine similarity exceeds ``threshold`` (connected components).

    Two rows are linked when ``cos(x_i, x_j) > threshold``; a group is a connected component of
    that graph with at least two rows. Computed in row blocks against the rows after the block
    start (upper triangle), one GEMM per block, so memory is ``block_size x N`` floats.

    Parameters
    ----------
    embeddings
        ``(N, d)`` array; rows are L2-normalised here (a zero row matches nothing).
    threshold
        Cosine similarity above which two rows are near-duplicates, in ``(-1, 1]``.
    block_size
        Rows per block; by default derived from ``memory_budget_bytes``.
    memory_budget_bytes
        Bound on one block of similarities (float32).
    progress
        Show a tqdm bar over the blocks.
    method
        ``"auto"``: this exact blockwise scan up to 100,000 rows, FAISS IVF beyond (when faiss
        is installed; see :mod:`kairos_curate.neighbours`); ``"faiss"`` (flat index up to
        100,000 rows, IVF beyond) or ``"blocked"``. Measured at 100,000 rows
        (``reports/benchmarks/scale.md``): this scan 2.7x faster than FAISS's exact flat index
        (which evaluates all N^2 pairs and a second pass for the highest similarity); IVF
        5x faster than this scan with full recall of the near-duplicate pairs.

    Returns
    -------
    groups : list of numpy.ndarray
        Row indices of each group (sorted), largest group first, ties by first index.
    max_similarity : float
        Highest cosine similarity between two different rows (``nan`` for a single row).
    """
    if method not in ("auto", "faiss", "blocked"):
        raise ValueError(f"method must be 'auto', 'faiss' or 'blocked', got {method!r}")
    n_rows = int(np.shape(embeddings)[0]) if np.ndim(embeddings) == 2 else 0
    if method == "faiss" or (method == "auto" and block_size is None and n_rows > 100_000):
        from kairos_curate.neighbours import faiss_available, faiss_duplicate_scan

        if method == "faiss" or faiss_available():
            return faiss_duplicate_scan(embeddings, threshold)
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] == 0:
        raise ValueError(f"embeddings must be a non-empty (N, d) array, got shape {x.shape}")
    if not np.isfinite(x).all():
        bad = np.flatnonzero(~np.isfinite(x).all(axis=1))
        raise ValueError(f"embeddings have NaN/inf in rows {bad[:5].tolist()}; drop or fix them")
    if not -1.0 < threshold <= 1.0:
        raise ValueError(f"threshold (dup_threshold) must be in (-1, 1], got {threshold}")
    n = x.shape[0]
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    if block_size is None:
        block_size = max(1, min(n, memory_budget_bytes // (4 * n)))
    if block_size < 1:
        raise ValueError(f"block_size must be positive, got {block_size}")
    uf = _UnionFind(n)
    linked = np.zeros(n, dtype=bool)
    best = -np.inf
    starts = range(0, n, block_size)
    for lo in tqdm(starts, desc="near-duplicates", disable=not progress, unit="block"):
        hi = min(n, lo + block_size)
        sims = x[lo:hi] @ x[lo:].T  # (block, N - lo): the block's rows against itself and later rows
        upper = np.triu(np.ones((hi - lo, hi - lo), dtype=bool), k=1)
        if sims.shape[1] > hi - lo:
            best = max(best, float(sims[:, hi - lo:].max()))
        if upper.any():
            best = max(best, float(sims[:, : hi - lo][upper].max()))
        rows, cols = np.nonzero(sims > threshold)
        cols = cols + lo
        rows = rows + lo
        keep = cols > rows
        for i, j in zip(rows[keep].tolist(), cols[keep].tolist(), strict=True):
            uf.union(i, j)
            linked[i] = linked[j] = True
    members: dict[int, list[int]] = {}
    for i in np.flatnonzero(linked).tolist():
        members.setdefault(uf.find(i), []).append(i)
    groups = [np.asarray(sorted(m), dtype=np.int64) for m in members.values() if len(m) > 1]
    groups.sort(key=lambda g: (-g.size, int(g[0])))
    return groups, (best if np.isfinite(best) else float("nan"))


def audit(pool_embeddings: np.ndarray, reference_embeddings: np.ndarray, images: ImageSource | None,
          ids: Any, labels: Any = None, reference_labels: Any = None, out_dir: str | Path = "audit", *,
          n_lowest: int = 48, n_highest: int = 16, dup_threshold: float = 0.98, flag_fraction: float | None = None,
          label_mode: str | None = "auto", bandwidth: float | str = "median", lam: float = 0.97,
          max_groups: int = 20, thumb_size: int = 64, title: str = "KAIROS data audit",
          device: str = "auto", seed: int = 0, progress: bool = False, engine: Any = None,
          method: str = "exact", n_landmarks: int = 1000) -> AuditResult:
    """Value a pool with KAIROS, flag low-valued and near-duplicate samples, write a gallery.

    Parameters
    ----------
    pool_embeddings
        ``(N, d)`` pool embeddings.
    reference_embeddings
        ``(M, d)`` clean reference embeddings (same ``d``).
    images
        Thumbnails for the gallery: an :class:`~kairos_curate.data.sources.ImageSource` whose ids
        include the pool ids (extra ids are ignored), or ``None`` for a gallery without images.
    ids
        ``N`` unique pool sample ids, in the order of ``pool_embeddings``.
    labels, reference_labels
        Optional labels (one per row). With both, values use a label mode (see ``label_mode``).
    out_dir
        Folder for ``audit.html`` and ``flags.csv`` (created).
    n_lowest, n_highest
        Samples shown in the lowest- and highest-valued galleries.
    dup_threshold
        Cosine similarity above which two pool embeddings are near-duplicates.
    flag_fraction
        Fraction of the pool (lowest values) flagged ``low_value``; ``None`` flags the
        ``n_lowest`` shown in the gallery.
    label_mode
        ``"auto"`` (``"class_conditional"`` when both label arrays are given, else ``None``),
        ``None``, ``"residual"`` or ``"class_conditional"``.
    bandwidth, lam, device, seed
        Passed to :func:`kairos_curate.valuation.kairos_values`.
    max_groups
        Near-duplicate groups shown in the page (all are in ``flags.csv``).
    thumb_size
        Longest side of a thumbnail in pixels.
    title
        Page title.
    progress
        Show progress bars.
    engine, method, n_landmarks
        Where and how values are computed (see :func:`kairos_curate.engine.valuation.value_with_engine`);
        the default (no engine, ``"exact"``) is :func:`~kairos_curate.valuation.kairos_values`.

    Returns
    -------
    AuditResult

    Raises
    ------
    ValueError
        Mismatched lengths, duplicate ids, bad counts or thresholds, labels on one side only,
        or an image source that holds none of the pool ids.
    """
    from kairos_curate.reporting.gallery import render_audit_html
    from kairos_curate.valuation import kairos_values

    pool = np.asarray(pool_embeddings)
    ref = np.asarray(reference_embeddings)
    id_arr = np.asarray([str(i) for i in ids])
    if pool.ndim != 2 or id_arr.shape[0] != pool.shape[0]:
        raise ValueError(f"ids has {id_arr.shape[0]} entries for pool embeddings of shape {pool.shape}; "
                         "give one id per row")
    if len(set(id_arr.tolist())) != id_arr.shape[0]:
        raise ValueError("pool ids must be unique")
    for name, value in (("n_lowest", n_lowest), ("n_highest", n_highest), ("max_groups", max_groups)):
        if int(value) < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    if thumb_size < 8:
        raise ValueError(f"thumb_size must be at least 8 pixels, got {thumb_size}")
    if flag_fraction is not None and not 0.0 <= flag_fraction <= 1.0:
        raise ValueError(f"flag_fraction must be in [0, 1], got {flag_fraction}")
    if (labels is None) != (reference_labels is None) and label_mode not in (None, "auto"):
        raise ValueError("label modes need both labels (pool) and reference_labels")
    if label_mode == "auto":
        label_mode = "class_conditional" if labels is not None and reference_labels is not None else None
    if label_mode is not None and (labels is None or reference_labels is None):
        raise ValueError(f"label_mode {label_mode!r} needs both labels (pool) and reference_labels")
    n = id_arr.shape[0]
    if images is not None:
        image_ids = {str(i) for i in images.ids}
        matched = sum(1 for i in id_arr.tolist() if i in image_ids)
        if matched == 0:
            raise ValueError(f"the images hold none of the {n} pool ids (e.g. pool id {id_arr[0]!r}, image id "
                             f"{next(iter(image_ids), None)!r}); images are matched to embeddings by id")

    value_fn: Any = kairos_values
    if (engine is not None and getattr(engine, "name", engine) != "local") or method != "exact":
        from functools import partial

        from kairos_curate.engine.valuation import value_with_engine

        value_fn = partial(value_with_engine, engine=engine, method=method, n_landmarks=n_landmarks)
    res = value_fn(pool, ref, bandwidth, pool_labels=labels, reference_labels=reference_labels,
                   label_mode=label_mode, lam=lam, device=device, seed=seed, progress=progress)
    table = res.to_frame(id_arr)
    order = res.ranking(id_arr)  # best first
    n_flag = min(n, round(flag_fraction * n) if flag_fraction is not None else int(n_lowest))
    low = order[n - n_flag:] if n_flag else np.array([], dtype=np.int64)

    groups_idx, max_sim = duplicate_scan(pool, dup_threshold, progress=progress)
    dup_group = np.full(n, -1, dtype=np.int64)
    dup_of = np.full(n, "", dtype=object)
    rank = table["rank"].to_numpy()
    groups: list[list[str]] = []
    for g, members in enumerate(groups_idx):
        members = members[np.argsort(rank[members], kind="stable")]  # best-valued first
        dup_group[members] = g
        dup_of[members[1:]] = id_arr[members[0]]
        groups_idx[g] = members
        groups.append(id_arr[members].tolist())

    reasons: list[list[str]] = [[] for _ in range(n)]
    for i in low.tolist():
        reasons[i].append("low_value")
    for i in np.flatnonzero(dup_of != "").tolist():
        reasons[i].append(f"near_duplicate_of:{dup_of[i]}")
    table["flag"] = [";".join(r) for r in reasons]
    table["keep"] = [not r for r in reasons]
    table["duplicate_group"] = dup_group
    table["duplicate_of"] = dup_of

    out = Path(out_dir)
    flags = table.reset_index()[["id", *(["label"] if "label" in table.columns else []),
                                 "value", "rank", "flag", "keep"]].sort_values("rank")
    flags_path = out / "flags.csv"
    with atomic_path(flags_path) as tmp:
        flags.to_csv(tmp, index=False)

    info: dict[str, Any] = {
        "pool": n, "reference": int(ref.shape[0]), "dim": int(pool.shape[1]),
        "label_mode": label_mode or "none (feature value b - a)", "bandwidth": res.bandwidth,
        "mmd2": res.mmd2, "low_value": int(n_flag), "flag_rule": (
            f"lowest {flag_fraction:.1%} of values" if flag_fraction is not None else f"the {n_flag} lowest values"),
        "dup_threshold": dup_threshold, "dup_groups": len(groups), "max_similarity": max_sim,
        "dup_flagged": int((dup_of != "").sum()), "kept": int(table["keep"].sum()),
        "images": "none" if images is None else f"{matched} of {n} pool ids have an image",
    }
    html_path = out / "audit.html"
    render_audit_html(html_path, table, order, groups_idx=groups_idx, id_arr=id_arr, images=images,
                      n_lowest=int(n_lowest), n_highest=int(n_highest), max_groups=int(max_groups),
                      thumb_size=int(thumb_size), info=info, title=title, embeddings=pool,
                      progress=progress)
    return AuditResult(table=table, groups=groups, html_path=html_path, flags_path=flags_path,
                       bandwidth=res.bandwidth, label_mode=label_mode, info=info)
