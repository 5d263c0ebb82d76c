"""Data audit: name the problem of each pool sample before it reaches training.

:func:`audit` values a pool against a clean reference with KAIROS and, in the spirit of
cleanlab's Datalab issue types, gives every pool sample a score, a conformal p-value and a flag
for each issue type (:data:`ISSUE_TYPES`; the statistics are in :mod:`kairos_curate.issues`):

* ``corrupted`` - pixel-level problems (noise, blur, too dark or light, little information, or
  an image that does not decode), each check against the clean reference's images;
* ``off_task`` - out of distribution: where the pool is dense and the reference is not (the
  KAIROS terms ``b`` and ``a`` as a log density ratio);
* ``mislabelled`` - the reference's kernel class posterior disagrees with the given label, with
  the suggested label and its posterior;
* ``near_duplicate`` - a group id and the copy to keep (the best-valued member); the pairs come
  from an exact blockwise scan up to :data:`kairos_curate.issues.EXACT_PAIRS_MAX` pool rows and
  from a FAISS IVF index beyond (:func:`kairos_curate.issues.similar_pairs`).

Every threshold is calibrated on the reference, cross-fitted (each reference point against the
others): a flag means "more extreme than all but a fraction ``alpha`` of the clean reference"
(see :func:`kairos_curate.issues.conformal_p`). The first three types are exclusive, in that
order (pixel evidence explains a distance from the reference; an off-task image has no right
task label to suggest); scores and p-values are kept for every sample. It writes

* ``flags.csv`` - one row per pool sample: ids, label and class name, value and rank, the
  ``issues`` found, for each type ``<type>_score`` (higher = worse), ``<type>_p`` and
  ``is_<type>``, the corruption kind, the suggested label with its confidence, the duplicate
  group and the copy to keep, ``flag`` (every reason, ``;``-joined: the issue types,
  ``near_duplicate_of:<id>``, ``low_value``) and ``keep`` (no reason at all);
* ``audit.html`` - a self-contained gallery (thumbnails inlined as base64 PNG) that opens with a
  summary per issue type and groups the cards by type, with class names.

:func:`kairos_curate.audit_scoring.score_audit` measures each type's flags against a
ground-truth table (precision, recall).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from kairos_curate.data.sources import ImageSource
from kairos_curate.io import atomic_path

__all__ = ["ISSUE_LABELS", "ISSUE_TYPES", "AuditResult", "audit", "duplicate_scan", "near_duplicate_groups"]

#: Issue types, in the precedence order of the exclusive flags (near_duplicate is independent).
ISSUE_TYPES = ("corrupted", "off_task", "mislabelled", "near_duplicate")

#: Share of the reference's most extreme values that the pixel checks' exponential tail is fitted to
#: (five checks share alpha, which a reference of a few hundred images cannot resolve otherwise).
PIXEL_TAIL_FIT = 0.1

#: Headings of the issue types in the gallery and the summaries.
ISSUE_LABELS = {
    "corrupted": "Corrupted (pixel-level problem)",
    "off_task": "Off-task / out of distribution",
    "mislabelled": "Likely mislabelled",
    "near_duplicate": "Near-duplicate",
}


@dataclass
class AuditResult:
    """What :func:`audit` found and wrote.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per pool sample (index ``id``): the KAIROS terms (``b``, ``a``,
        ``feature_term``, ``label_term``, ``value``, ``loo``, ``rank``), the issue columns of
        ``flags.csv`` (see the module docs), ``duplicate_group`` (-1 if none) and
        ``duplicate_of`` (the kept member of its group, empty for the kept one and others).
    groups : list of list of str
        Near-duplicate groups (ids, best-valued first), largest group first.
    html_path, flags_path : pathlib.Path
        The files written.
    bandwidth : float
        RBF sigma used for the values.
    label_mode : str or None
        Label mode used for the values.
    info : dict
        Counts and calibration details shown in the page's summary.
    issue_summary : pandas.DataFrame
        One row per issue type: ``issue_type``, ``label``, ``checked``, ``flagged``, ``rule``.
    """

    table: pd.DataFrame
    groups: list[list[str]]
    html_path: Path
    flags_path: Path
    bandwidth: float
    label_mode: str | None
    info: dict[str, Any] = field(default_factory=dict)
    issue_summary: pd.DataFrame = field(default_factory=pd.DataFrame)


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


def near_duplicate_groups(
    embeddings: np.ndarray,
    threshold: float = 0.98,
    *,
    block_size: int | None = None,
    memory_budget_bytes: int = 64 * 2**20,
    progress: bool = False,
) -> list[np.ndarray]:
    """Groups of rows whose cosine similarity exceeds ``threshold`` (connected components).

    See :func:`duplicate_scan`, which also returns the highest pairwise similarity.
    """
    return duplicate_scan(
        embeddings, threshold, block_size=block_size, memory_budget_bytes=memory_budget_bytes, progress=progress
    )[0]


def duplicate_scan(
    embeddings: np.ndarray,
    threshold: float = 0.98,
    *,
    block_size: int | None = None,
    memory_budget_bytes: int = 64 * 2**20,
    progress: bool = False,
    method: str = "auto",
) -> tuple[list[np.ndarray], float]:
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
            best = max(best, float(sims[:, hi - lo :].max()))
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


def _class_namer(class_names: Sequence[str] | Mapping[Any, str] | None) -> Any:
    """A function label -> display name (the label itself when no name is known)."""

    def name(label: Any) -> str:
        if label is None or (isinstance(label, float) and np.isnan(label)):
            return ""
        key = label.item() if isinstance(label, np.generic) else label
        if isinstance(class_names, Mapping):
            if key in class_names:
                return str(class_names[key])
            if str(key) in class_names:
                return str(class_names[str(key)])
        elif class_names is not None and isinstance(key, (int, np.integer)) and 0 <= int(key) < len(class_names):
            return str(class_names[int(key)])
        return str(key)

    return name


def _rows_of(images: ImageSource, ids: np.ndarray) -> np.ndarray:
    """Row of each id in ``images`` (-1 where it has none)."""
    lookup = {str(s): k for k, s in enumerate(images.ids.tolist())}
    return np.asarray([lookup.get(str(i), -1) for i in ids.tolist()], dtype=np.int64)


def _scan(images: ImageSource | None, rows: np.ndarray, progress: bool, desc: str) -> Any:
    from kairos_curate.issues import scan_images

    if images is None:
        return None
    present = np.flatnonzero(rows >= 0)
    scan = scan_images(
        lambda k: images.load_image(int(rows[present[k]])), int(present.size), progress=progress, desc=desc
    )
    # back to one entry per requested row (NaN / zero rows where there is no image)
    n = rows.shape[0]
    stats = {k: np.full(n, np.nan) for k in scan.stats}
    for k, v in scan.stats.items():
        stats[k][present] = v
    tiny = np.zeros((n, scan.tiny.shape[1]), dtype=np.float32)
    tiny[present] = scan.tiny
    failed = {int(present[k]): reason for k, reason in scan.failed.items()}
    return type(scan)(stats, tiny, failed)


def audit(
    pool_embeddings: np.ndarray,
    reference_embeddings: np.ndarray,
    images: ImageSource | None,
    ids: Any,
    labels: Any = None,
    reference_labels: Any = None,
    out_dir: str | Path = "audit",
    *,
    reference_images: ImageSource | None = None,
    reference_ids: Any = None,
    class_names: Sequence[str] | Mapping[Any, str] | None = None,
    alpha: float = 0.01,
    n_per_type: int = 24,
    n_lowest: int = 48,
    n_highest: int = 16,
    dup_threshold: float | None = None,
    flag_fraction: float | None = None,
    label_mode: str | None = "auto",
    bandwidth: float | str = "median",
    lam: float = 0.97,
    max_groups: int = 20,
    thumb_size: int = 64,
    title: str = "KAIROS data audit",
    device: str = "auto",
    seed: int = 0,
    progress: bool = False,
    engine: Any = None,
    method: str = "exact",
    n_landmarks: int = 1000,
) -> AuditResult:
    """Value a pool with KAIROS, name each sample's issues (calibrated on the reference), write a gallery.

    Parameters
    ----------
    pool_embeddings
        ``(N, d)`` pool embeddings.
    reference_embeddings
        ``(M, d)`` clean reference embeddings (same ``d``).
    images
        Pool images for the pixel checks, the pixel view of near-duplicates and the gallery: an
        :class:`~kairos_curate.data.sources.ImageSource` whose ids include the pool ids (extra
        ids are ignored), or ``None`` (no pixel checks, embedding-only near-duplicates, no
        pictures).
    ids
        ``N`` unique pool sample ids, in the order of ``pool_embeddings``.
    labels, reference_labels
        Optional labels (one per row). With both, values use a label mode (see ``label_mode``)
        and the ``mislabelled`` check runs. Pool classes absent from the reference are an error.
    out_dir
        Folder for ``audit.html`` and ``flags.csv`` (created).
    reference_images
        The clean reference's images, which calibrate the pixel checks and the pixel view of
        near-duplicates: in reference row order, or matched by ``reference_ids``. ``None``: the
        ``corrupted`` check is skipped (said so in the page) unless ``images`` holds the
        ``reference_ids``.
    reference_ids
        Ids of the reference rows, to find their images in ``reference_images`` (or ``images``).
    class_names
        Display names of the labels: a sequence indexed by integer label or a mapping label ->
        name. Default: the labels themselves.
    alpha
        Target share of clean samples flagged per issue type (each check's conformal p-value
        threshold; a type with ``K`` sub-checks uses ``alpha / K`` each). A reference of ``M``
        samples cannot resolve below ``1 / (M + 1)`` ("more extreme than every reference
        sample"), which is then used and reported.
    n_per_type
        Most severe samples shown per issue type in the gallery (all are in ``flags.csv``).
    n_lowest, n_highest
        Samples shown in the lowest- and highest-valued galleries.
    dup_threshold
        ``None`` (default): calibrated - two pool images are near-duplicates when their tiny
        grey thumbnails are more similar than any two distinct reference images are (or, without
        images, their embeddings). A number: a fixed cosine similarity of embeddings instead.
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
        Mismatched lengths, duplicate ids, bad counts or thresholds, labels on one side only
        with a label mode, pool classes missing from the reference, an image source that holds
        none of the pool ids, or reference images that do not match the reference.
    """
    from kairos_curate import issues as iss
    from kairos_curate.reporting.gallery import render_audit_html
    from kairos_curate.valuation import kairos_values
    from kairos_curate.valuation.labels import encode_labels

    pool = np.asarray(pool_embeddings)
    ref = np.asarray(reference_embeddings)
    id_arr = np.asarray([str(i) for i in ids])
    if pool.ndim != 2 or id_arr.shape[0] != pool.shape[0]:
        raise ValueError(
            f"ids has {id_arr.shape[0]} entries for pool embeddings of shape {pool.shape}; give one id per row"
        )
    if len(set(id_arr.tolist())) != id_arr.shape[0]:
        raise ValueError("pool ids must be unique")
    for name, value in (
        ("n_lowest", n_lowest),
        ("n_highest", n_highest),
        ("max_groups", max_groups),
        ("n_per_type", n_per_type),
    ):
        if int(value) < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    if thumb_size < 8:
        raise ValueError(f"thumb_size must be at least 8 pixels, got {thumb_size}")
    if flag_fraction is not None and not 0.0 <= flag_fraction <= 1.0:
        raise ValueError(f"flag_fraction must be in [0, 1], got {flag_fraction}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha (the share of clean samples flagged per issue type) must be in (0, 1), got {alpha}")
    if dup_threshold is not None and not -1.0 < dup_threshold <= 1.0:
        raise ValueError(f"dup_threshold must be in (-1, 1] or None (calibrated), got {dup_threshold}")
    if (labels is None) != (reference_labels is None) and label_mode not in (None, "auto"):
        raise ValueError("label modes need both labels (pool) and reference_labels")
    if label_mode == "auto":
        label_mode = "class_conditional" if labels is not None and reference_labels is not None else None
    if label_mode is not None and (labels is None or reference_labels is None):
        raise ValueError(f"label_mode {label_mode!r} needs both labels (pool) and reference_labels")
    n, m = id_arr.shape[0], int(ref.shape[0])
    matched = 0
    pool_rows = np.full(n, -1, dtype=np.int64)
    if images is not None:
        pool_rows = _rows_of(images, id_arr)
        matched = int((pool_rows >= 0).sum())
        if matched == 0:
            raise ValueError(
                f"the images hold none of the {n} pool ids (e.g. pool id {id_arr[0]!r}, image id "
                f"{next(iter(images.ids.tolist()), None)!r}); images are matched to embeddings by id"
            )
    ref_source = reference_images if reference_images is not None else (images if reference_ids is not None else None)
    ref_rows = np.full(m, -1, dtype=np.int64)
    if ref_source is not None:
        if reference_ids is not None:
            ref_id_arr = np.asarray([str(i) for i in reference_ids])
            if ref_id_arr.shape[0] != m:
                raise ValueError(f"reference_ids has {ref_id_arr.shape[0]} entries for {m} reference embeddings")
            ref_rows = _rows_of(ref_source, ref_id_arr)
            if reference_images is not None and (ref_rows < 0).any():
                missing = ref_id_arr[ref_rows < 0][:3].tolist()
                raise ValueError(
                    f"reference_images has no image for {(ref_rows < 0).sum()} reference id(s), e.g. {missing}"
                )
        elif len(ref_source) != m:
            raise ValueError(
                f"reference_images holds {len(ref_source)} images for {m} reference embeddings; "
                "give them in reference row order, or pass reference_ids to match them by id"
            )
        else:
            ref_rows = np.arange(m, dtype=np.int64)
    name_of = _class_namer(class_names)

    value_fn: Any = kairos_values
    if (engine is not None and getattr(engine, "name", engine) != "local") or method != "exact":
        from functools import partial

        from kairos_curate.engine.valuation import value_with_engine

        value_fn = partial(value_with_engine, engine=engine, method=method, n_landmarks=n_landmarks)
    res = value_fn(
        pool,
        ref,
        bandwidth,
        pool_labels=labels,
        reference_labels=reference_labels,
        label_mode=label_mode,
        lam=lam,
        device=device,
        seed=seed,
        progress=progress,
    )
    table = res.to_frame(id_arr)
    order = res.ranking(id_arr)  # best first
    rank = table["rank"].to_numpy()

    # ---- kernel terms: label-blind b for off-task, the reference's class posterior for labels
    has_labels = labels is not None and reference_labels is not None
    if has_labels:
        codes, ref_codes, classes = encode_labels(labels, reference_labels, n, m)
    else:
        codes, ref_codes, classes = np.zeros(n, np.int64), np.zeros(m, np.int64), np.asarray([0])
    n_classes = int(classes.shape[0])
    sigmas = [res.bandwidth]
    post_sigma = float("nan")
    post_scores: dict[float, float] = {}
    if has_labels and n_classes > 1 and m > n_classes:
        post_sigma, post_scores = iss.posterior_bandwidth(ref, ref_codes, n_classes, res.bandwidth)
        sigmas.append(post_sigma)
    terms = iss.kernel_terms(pool, ref, ref_codes, n_classes, sigmas, progress=progress)

    def threshold(n_checks: int, n_reference: int) -> float:
        return max(alpha / n_checks, 1.0 / (n_reference + 1))

    # off-task: log(b / a) against the reference's own (cross-fitted) ratio
    b_blind = terms.pool_class_sums[0].sum(1) / m
    a_blind = b_blind - res.feature_term
    off_stat = iss.off_task_statistic(b_blind, a_blind, n)
    if m >= 2:
        ref_stat = iss.off_task_statistic(
            terms.reference_class_sums[0].sum(1) / (m - 1), terms.reference_pool_mean[0], 0
        )
        off_p = iss.conformal_p(off_stat, ref_stat, "low")
        off_thr = threshold(1, m)
    else:
        off_p, off_thr = np.ones(n), 0.0

    # mislabelled: the given label's kernel posterior against the reference's (LOO) own-label posterior
    lab_p = np.ones(n)
    lab_score = np.full(n, np.nan)
    suggested = np.full(n, None, dtype=object)
    suggested_conf = np.full(n, np.nan)
    lab_checked = len(sigmas) > 1
    lab_thr = 0.0
    if lab_checked:
        post = iss.kernel_posteriors(terms.pool_class_sums[1])
        post_ref = iss.kernel_posteriors(terms.reference_class_sums[1])
        own = post[np.arange(n), codes]
        lab_p = iss.conformal_p(own, post_ref[np.arange(m), ref_codes], "low")
        lab_score = 1.0 - own
        best = post.argmax(1)
        suggested = np.asarray(
            [classes[c].item() if hasattr(classes[c], "item") else classes[c] for c in best], dtype=object
        )
        suggested_conf = post[np.arange(n), best]
        lab_thr = threshold(1, m)
        disagree = best != codes
    else:
        disagree = np.zeros(n, dtype=bool)

    # corrupted: pixel statistics against the reference images'
    pool_scan = _scan(images, pool_rows, progress, "pixel checks (pool)")
    ref_scan = _scan(ref_source, ref_rows, progress, "pixel checks (reference)") if ref_source is not None else None
    cor_checked = pool_scan is not None and ref_scan is not None and int((ref_rows >= 0).sum()) >= 2
    cor_p = np.ones(n)
    cor_score = np.full(n, np.nan)
    cor_kind = np.full(n, "", dtype=object)
    cor_thr = 0.0
    cor_rules: dict[str, str] = {}
    if ref_scan is not None and ref_scan.failed:
        bad = {str(ref_rows[k]): v for k, v in list(ref_scan.failed.items())[:3]}
        raise ValueError(
            f"{len(ref_scan.failed)} reference image(s) cannot be decoded (e.g. {bad}); the clean "
            "reference must be readable"
        )
    if cor_checked:
        assert pool_scan is not None and ref_scan is not None
        checks = list(iss.PIXEL_CHECKS.items())
        ps, zs = [], []
        ref_ok = ref_rows >= 0
        for check, (col, tail) in checks:
            ps.append(iss.conformal_p(pool_scan.stats[col], ref_scan.stats[col][ref_ok], tail, tail_fit=PIXEL_TAIL_FIT))
            zs.append(iss.robust_excess(pool_scan.stats[col], ref_scan.stats[col][ref_ok], tail))
            r = ref_scan.stats[col][ref_ok]
            cor_rules[check] = (
                f"{col} {'above' if tail == 'high' else 'below'} the reference's "
                f"{'max' if tail == 'high' else 'min'} {float(r.max() if tail == 'high' else r.min()):.3g}"
            )
        p_all, z_all = np.stack(ps), np.stack(zs)
        worst = np.lexsort((-z_all, p_all), axis=0)[0]  # the most extreme check of each sample
        cor_thr = alpha / len(checks)  # tail-fitted p-values resolve below 1 / (M + 1)
        cor_p = np.minimum(1.0, len(checks) * p_all.min(0))
        cor_score = z_all[worst, np.arange(n)]
        hit = p_all.min(0) <= cor_thr
        ranked = np.lexsort((-z_all, p_all), axis=0)  # per sample: checks, most extreme first
        for i in np.flatnonzero(hit).tolist():
            cor_kind[i] = ",".join(checks[k][0] for k in ranked[:, i].tolist() if p_all[k, i] <= cor_thr)
        for i in pool_scan.failed:
            cor_p[i], cor_score[i], cor_kind[i] = 0.0, np.inf, "unreadable"
        is_cor = (p_all.min(0) <= cor_thr) | (cor_kind == "unreadable")
    else:
        is_cor = np.zeros(n, dtype=bool)
        if pool_scan is not None:
            for i in pool_scan.failed:
                cor_p[i], cor_score[i], cor_kind[i] = 0.0, np.inf, "unreadable"
                is_cor[i] = True
    is_off = (off_p <= off_thr) & ~is_cor
    is_lab = (lab_p <= lab_thr) & disagree & ~is_cor & ~is_off if lab_checked else np.zeros(n, dtype=bool)

    # near-duplicates: tiny images (calibrated on the reference's images) or embeddings
    unit = np.asarray(pool, dtype=np.float32)
    unit = unit / np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
    ref_unit = np.asarray(ref, dtype=np.float32)
    ref_unit = ref_unit / np.maximum(np.linalg.norm(ref_unit, axis=1, keepdims=True), 1e-12)
    if dup_threshold is not None:
        dup_view, dup_thr, dup_rule = unit, float(dup_threshold), f"embedding cosine > {dup_threshold:g} (fixed)"
    elif pool_scan is not None and ref_scan is not None and int((ref_rows >= 0).sum()) >= 2:
        dup_view = pool_scan.tiny
        dup_thr = iss.distinct_similarity_bound(dup_view, ref_scan.tiny[ref_rows >= 0])
        dup_rule = (
            f"16x16 grey thumbnails more similar (cosine > {dup_thr:.4f}) than distinct images are "
            "(two reference images, or a pool and a reference image)"
        )
    elif m >= 2:
        dup_view, dup_thr = unit, iss.distinct_similarity_bound(unit, ref_unit)
        dup_rule = (
            f"embeddings more similar (cosine > {dup_thr:.4f}) than distinct samples are (two reference "
            "samples, or a pool and a reference sample)"
        )
    else:
        dup_view, dup_thr, dup_rule = unit, 0.98, "embedding cosine > 0.98 (too small a reference to calibrate)"
    pi, pj, _, nearest = iss.similar_pairs([dup_view], [dup_thr], progress=progress)
    uf = _UnionFind(n)
    for i, j in zip(pi.tolist(), pj.tolist(), strict=True):
        uf.union(i, j)
    members_of: dict[int, list[int]] = {}
    for i in np.unique(np.concatenate([pi, pj])).tolist():
        members_of.setdefault(uf.find(i), []).append(i)
    groups_idx = [
        np.asarray(sorted(g, key=lambda k: (rank[k], k)), dtype=np.int64) for g in members_of.values() if len(g) > 1
    ]
    groups_idx.sort(key=lambda g: (-g.size, int(rank[g[0]])))
    dup_group = np.full(n, -1, dtype=np.int64)
    dup_of = np.full(n, "", dtype=object)
    dup_keep = np.full(n, "", dtype=object)
    groups: list[list[str]] = []
    for g, members in enumerate(groups_idx):
        dup_group[members] = g
        dup_keep[members] = id_arr[members[0]]
        dup_of[members[1:]] = id_arr[members[0]]
        groups.append(id_arr[members].tolist())
    is_dup = dup_of != ""

    # low value (the former audit's flag, kept for the gallery and the report)
    n_flag = min(n, round(flag_fraction * n) if flag_fraction is not None else int(n_lowest))
    low = np.zeros(n, dtype=bool)
    if n_flag:
        low[order[n - n_flag :]] = True

    label_values = np.asarray(labels, dtype=object) if labels is not None else np.full(n, None, dtype=object)
    reasons: list[list[str]] = [[] for _ in range(n)]
    issues_of: list[list[str]] = [[] for _ in range(n)]
    for i in range(n):
        if is_cor[i]:
            reasons[i].append(f"corrupted:{cor_kind[i]}")
            issues_of[i].append("corrupted")
        if is_off[i]:
            reasons[i].append("off_task")
            issues_of[i].append("off_task")
        if is_lab[i]:
            reasons[i].append(f"mislabelled:{name_of(suggested[i])}")
            issues_of[i].append("mislabelled")
        if is_dup[i]:
            reasons[i].append(f"near_duplicate_of:{dup_of[i]}")
            issues_of[i].append("near_duplicate")
        if low[i]:
            reasons[i].append("low_value")
    if labels is not None:
        table["class_name"] = [name_of(v) for v in label_values]
    table["issues"] = [";".join(r) for r in issues_of]
    table["off_task_score"] = -off_stat
    table["off_task_p"] = off_p
    table["is_off_task"] = is_off
    table["corrupted_score"] = cor_score
    table["corrupted_p"] = cor_p
    table["is_corrupted"] = is_cor
    table["corruption"] = cor_kind.astype(str)
    table["mislabelled_score"] = lab_score
    table["mislabelled_p"] = lab_p
    table["is_mislabelled"] = is_lab
    table["suggested_label"] = suggested
    table["suggested_class_name"] = [name_of(v) for v in suggested]
    table["suggested_confidence"] = suggested_conf
    table["near_duplicate_score"] = np.where(np.isfinite(nearest), nearest, np.nan)
    table["is_near_duplicate"] = is_dup
    table["duplicate_group"] = dup_group
    table["duplicate_keep"] = dup_keep
    table["duplicate_of"] = dup_of
    table["low_value"] = low
    table["flag"] = [";".join(r) for r in reasons]
    table["keep"] = [not r for r in reasons]
    if pool_scan is not None:
        for col, values in pool_scan.stats.items():
            table[col] = values

    out = Path(out_dir)
    columns = [
        "id",
        *(["label", "class_name"] if labels is not None else []),
        "value",
        "rank",
        "issues",
        "off_task_score",
        "off_task_p",
        "is_off_task",
        "corrupted_score",
        "corrupted_p",
        "is_corrupted",
        "corruption",
        "mislabelled_score",
        "mislabelled_p",
        "is_mislabelled",
        "suggested_label",
        "suggested_class_name",
        "suggested_confidence",
        "near_duplicate_score",
        "is_near_duplicate",
        "duplicate_group",
        "duplicate_keep",
        "flag",
        "keep",
    ]
    flags = table.reset_index()[columns].sort_values("rank")
    flags_path = out / "flags.csv"
    with atomic_path(flags_path) as tmp:
        flags.to_csv(tmp, index=False)

    summary_rows = [
        {
            "issue_type": "corrupted",
            "label": ISSUE_LABELS["corrupted"],
            "checked": bool(cor_checked),
            "flagged": int(is_cor.sum()),
            "rule": (
                f"one of {len(iss.PIXEL_CHECKS)} pixel checks ({', '.join(iss.PIXEL_CHECKS)}) with a p-value "
                f"below {cor_thr:.2%} against the {int((ref_rows >= 0).sum())} reference images (exponential tail "
                f"beyond their most extreme {PIXEL_TAIL_FIT:.0%}; about {min(1.0, len(iss.PIXEL_CHECKS) * cor_thr):.1%}"
                " of clean images overall), or an image that does not decode"
                if cor_checked
                else "not checked: needs the pool's and the reference's images (only undecodable images flagged)"
            ),
        },
        {
            "issue_type": "off_task",
            "label": ISSUE_LABELS["off_task"],
            "checked": m >= 2,
            "flagged": int(is_off.sum()),
            "rule": (
                f"reference-to-pool density ratio log(b/a) below all but {off_thr:.2%} of the reference's own "
                "(leave-one-out), and not corrupted"
            ),
        },
        {
            "issue_type": "mislabelled",
            "label": ISSUE_LABELS["mislabelled"],
            "checked": bool(lab_checked),
            "flagged": int(is_lab.sum()),
            "rule": (
                f"the reference's kernel class posterior (sigma {post_sigma:.3g}, chosen by leave-one-out "
                f"likelihood) gives the label less than all but {lab_thr:.2%} of reference samples get for "
                "theirs, another class is more likely; not corrupted or off-task"
                if lab_checked
                else "not checked: needs pool labels and reference labels of at least two classes"
            ),
        },
        {
            "issue_type": "near_duplicate",
            "label": ISSUE_LABELS["near_duplicate"],
            "checked": True,
            "flagged": int(is_dup.sum()),
            "rule": f"{dup_rule}; {len(groups)} groups, the best-valued copy of each is kept",
        },
    ]
    issue_summary = pd.DataFrame(summary_rows)
    info: dict[str, Any] = {
        "pool": n,
        "reference": m,
        "dim": int(pool.shape[1]),
        "label_mode": label_mode or "none (feature value b - a)",
        "bandwidth": res.bandwidth,
        "posterior_bandwidth": post_sigma,
        "posterior_loo_loglik": post_scores,
        "mmd2": res.mmd2,
        "alpha": alpha,
        "low_value": int(n_flag),
        "flag_rule": (
            f"lowest {flag_fraction:.1%} of values" if flag_fraction is not None else f"the {n_flag} lowest values"
        ),
        "dup_threshold": dup_thr,
        "dup_rule": dup_rule,
        "dup_groups": len(groups),
        "max_similarity": float(np.nanmax(table["near_duplicate_score"])) if n > 1 else float("nan"),
        "dup_flagged": int(is_dup.sum()),
        "kept": int(table["keep"].sum()),
        "images": "none" if images is None else f"{matched} of {n} pool ids have an image",
        "reference_images": int((ref_rows >= 0).sum()),
        "unreadable": {str(id_arr[i]): r for i, r in (pool_scan.failed.items() if pool_scan is not None else [])},
        "corruption_rules": cor_rules,
        "issues": {str(t): int(c) for t, c in zip(issue_summary["issue_type"], issue_summary["flagged"], strict=True)},
    }
    html_path = out / "audit.html"
    render_audit_html(
        html_path,
        table,
        order,
        groups_idx=groups_idx,
        id_arr=id_arr,
        images=images,
        image_rows=pool_rows,
        issue_summary=issue_summary,
        n_per_type=int(n_per_type),
        n_lowest=int(n_lowest),
        n_highest=int(n_highest),
        max_groups=int(max_groups),
        thumb_size=int(thumb_size),
        info=info,
        title=title,
        embeddings=pool,
        progress=progress,
    )
    return AuditResult(
        table=table,
        groups=groups,
        html_path=html_path,
        flags_path=flags_path,
        bandwidth=res.bandwidth,
        label_mode=label_mode,
        info=info,
        issue_summary=issue_summary,
    )
