"""Issue types of a pool, each with a score and a flag calibrated on the clean reference.

The pure numpy core behind :func:`kairos_curate.audit.audit` (in the spirit of cleanlab's
Datalab issue types). Every threshold is a conformal one: a statistic is computed for the pool
and, cross-fitted, for the clean reference (each reference point against the *other* reference
points), and a pool sample is flagged when its statistic is at least as extreme as all but a
fraction ``alpha`` of the clean reference's. So a clean sample drawn like the reference is
flagged with probability about ``alpha`` per issue type, whatever the encoder, the image size
or the data set; nothing is tuned to ground truth.

* **off-task / out-of-distribution** - the KAIROS terms ``b`` (mean kernel to the reference)
  and ``a`` (mean kernel to the pool) are kernel density estimates of the reference and the
  pool; ``log(b / a)`` is their log density ratio. Off-task samples sit where the pool is dense
  and the reference is not (:func:`off_task_statistic`).
* **likely mislabelled** - the kernel class posterior of the reference (class-conditional ``b``
  weighted by the reference's class counts, a Nadaraya-Watson classifier) at a bandwidth chosen
  by the reference's leave-one-out likelihood; flagged when the given label's posterior is
  unusually low and another class is more likely (:func:`kernel_posteriors`).
* **corrupted** - pixel statistics (noise level, sharpness, brightness, information), each
  compared one-sided with the reference's images (:func:`pixel_statistics`).
* **near-duplicate** - pairs similar both as tiny images and as embeddings beyond anything two
  distinct reference images reach (:func:`similar_pairs`: an exact blockwise scan up to
  :data:`EXACT_PAIRS_MAX` rows, a FAISS index beyond).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage
from tqdm import tqdm

from kairos_curate.valuation.distances import sq_dists

__all__ = [
    "EXACT_PAIRS_MAX",
    "PIXEL_CHECKS",
    "ImageScan",
    "KernelTerms",
    "conformal_p",
    "distinct_similarity_bound",
    "kernel_posteriors",
    "kernel_terms",
    "nearest_similarity",
    "off_task_statistic",
    "pixel_statistics_of",
    "posterior_bandwidth",
    "robust_excess",
    "scan_images",
    "similar_pairs",
]

#: Pixel checks: name -> (column of :func:`pixel_statistics`, tail that is suspicious).
PIXEL_CHECKS: dict[str, tuple[str, str]] = {
    "noisy": ("noise_sigma", "high"),
    "blurry": ("sharpness", "low"),
    "dark": ("brightness", "low"),
    "light": ("brightness", "high"),
    "low_information": ("entropy", "low"),
}

STAT_COLUMNS = ("noise_sigma", "sharpness", "brightness", "entropy")

#: Largest pool whose near-duplicate pairs :func:`similar_pairs` finds with its exact blockwise
#: scan (``O(N^2 d)``); beyond, a FAISS index (:mod:`kairos_curate.neighbours`) when faiss is
#: installed. At 100,000 rows the scan was 2.7x faster than FAISS's exact flat index and the IVF
#: index 5x faster than the scan with every pair found (``reports/benchmarks/scale.md``).
EXACT_PAIRS_MAX = 100_000

#: Longest side, in pixels, at which pixel statistics are computed (larger images are shrunk).
STATS_MAX_SIDE = 256


def conformal_p(
    pool_stat: np.ndarray, reference_stat: np.ndarray, tail: str = "low", tail_fit: float | None = None
) -> np.ndarray:
    """Conformal p-value of each pool statistic against the clean reference's.

    ``tail="low"``: ``p_i = (1 + #{j : r_j <= s_i}) / (M + 1)`` (small statistics are suspicious);
    ``tail="high"`` mirrors it. Under exchangeability of a clean pool sample with the reference,
    ``P(p <= alpha) <= alpha``; but ``p`` never goes below ``1 / (M + 1)``.

    ``tail_fit`` (a fraction, e.g. 0.1) resolves smaller p-values: beyond the ``k``-th most
    extreme reference value ``u`` (``k = max(5, ceil(tail_fit * M))``), ``p = k / (M + 1) *
    exp(-(s - u) / beta)`` with ``beta`` the mean excess of those ``k`` values over ``u`` (an
    exponential tail, continuous with the empirical p-value at ``u``). Needed when several
    checks share ``alpha`` (Bonferroni) and ``alpha / checks < 1 / (M + 1)``; it is only as good
    as the exponential model of the tail. NaN statistics get ``p = 1`` (never flagged).
    """
    s = np.asarray(pool_stat, dtype=np.float64)
    r = np.asarray(reference_stat, dtype=np.float64)
    r = np.sort(r[np.isfinite(r)])
    if r.size == 0:
        raise ValueError("the reference statistic has no finite value to calibrate against")
    if tail not in ("low", "high"):
        raise ValueError(f"tail must be 'low' or 'high', got {tail!r}")
    if tail == "low":  # mirror, so that large values are suspicious below
        s, r = -s, np.sort(-r)
    count = r.size - np.searchsorted(r, s, side="left")
    p = (1.0 + count) / (r.size + 1.0)
    if tail_fit is not None and r.size >= 5:
        k = min(r.size, max(5, int(np.ceil(tail_fit * r.size))))
        u = r[r.size - k]
        beta = max(float(np.mean(r[r.size - k :] - u)), 1e-9 * max(1.0, abs(u)))
        beyond = np.isfinite(s) & (s > u)
        p[beyond] = k / (r.size + 1.0) * np.exp(-(s[beyond] - u) / beta)
    p[~np.isfinite(s)] = 1.0
    return p


@dataclass
class KernelTerms:
    """Kernel sums of the pool and the reference against the reference, per class and bandwidth.

    Attributes
    ----------
    sigmas : tuple of float
        The bandwidths, in the order of the first axis of the arrays below.
    pool_class_sums : numpy.ndarray
        ``(S, N, C)``: ``sum_{j in class c} k(x_i, z_j)``.
    reference_class_sums : numpy.ndarray
        ``(S, M, C)``: the same for reference points, self excluded (cross-fitted).
    reference_pool_mean : numpy.ndarray
        ``(S, M)``: mean kernel of each reference point to the pool (its ``a``).
    """

    sigmas: tuple[float, ...]
    pool_class_sums: np.ndarray
    reference_class_sums: np.ndarray
    reference_pool_mean: np.ndarray


def kernel_terms(
    pool: np.ndarray,
    reference: np.ndarray,
    reference_codes: np.ndarray,
    n_classes: int,
    sigmas: Sequence[float],
    *,
    block_size: int = 2048,
    progress: bool = False,
) -> KernelTerms:
    """One blocked pass over the pool: per-class kernel sums to the reference for each sigma.

    Memory is ``block_size x M`` per bandwidth; the pool-pool sum ``a`` is not computed here
    (KAIROS already has it).
    """
    x = np.asarray(pool, dtype=np.float64)
    z = np.asarray(reference, dtype=np.float64)
    codes = np.asarray(reference_codes, dtype=np.int64)
    onehot = np.zeros((z.shape[0], n_classes))
    onehot[np.arange(z.shape[0]), codes] = 1.0
    sig = tuple(float(s) for s in sigmas)
    n, m = x.shape[0], z.shape[0]
    pool_sums = np.zeros((len(sig), n, n_classes))
    ref_pool = np.zeros((len(sig), m))
    for lo in tqdm(range(0, n, block_size), desc="kernel terms", disable=not progress, unit="block"):
        d2 = sq_dists(x[lo : lo + block_size], z)
        for s, sigma in enumerate(sig):
            k = np.exp(-d2 / (2.0 * sigma * sigma))
            pool_sums[s, lo : lo + block_size] = k @ onehot
            ref_pool[s] += k.sum(0)
    d2r = sq_dists(z, z)
    ref_sums = np.zeros((len(sig), m, n_classes))
    for s, sigma in enumerate(sig):
        k = np.exp(-d2r / (2.0 * sigma * sigma))
        np.fill_diagonal(k, 0.0)  # cross-fitted: a reference point never sees itself
        ref_sums[s] = k @ onehot
    return KernelTerms(sig, pool_sums, ref_sums, ref_pool / max(n, 1))


def off_task_statistic(b: np.ndarray, a: np.ndarray, n_pool: int, k_self: float = 1.0) -> np.ndarray:
    """``log b - log a`` with the self term removed from ``a`` (lower = more off-task).

    ``b`` is the mean kernel to the reference (reference density), ``a`` the KAIROS pool term
    (self included; pool density). Removing ``k(x, x) / N`` makes a pool sample comparable with a
    reference point, whose ``a`` never contains itself.
    """
    b = np.asarray(b, dtype=np.float64)
    a = np.asarray(a, dtype=np.float64)
    if n_pool > 1:
        a = (n_pool * a - k_self) / (n_pool - 1)
    tiny = np.finfo(np.float64).tiny
    return np.log(np.maximum(b, tiny)) - np.log(np.maximum(a, tiny))


def kernel_posteriors(class_sums: np.ndarray) -> np.ndarray:
    """Rows of per-class kernel sums normalised to class posteriors (uniform where all are 0)."""
    sums = np.asarray(class_sums, dtype=np.float64)
    total = sums.sum(-1, keepdims=True)
    uniform = np.full_like(sums, 1.0 / sums.shape[-1])
    return np.divide(sums, total, out=uniform, where=total > 0)


def posterior_bandwidth(
    reference: np.ndarray,
    reference_codes: np.ndarray,
    n_classes: int,
    base_sigma: float,
    factors: Sequence[float] = (1.0, 0.71, 0.5, 0.35, 0.25, 0.18, 0.125),
) -> tuple[float, dict[float, float]]:
    """Bandwidth of the kernel class posterior: the best leave-one-out log-likelihood of the
    reference's own labels over ``base_sigma * factors`` (the reference only: no pool label is
    trusted). Returns the chosen sigma and the mean log-likelihood per candidate."""
    z = np.asarray(reference, dtype=np.float64)
    codes = np.asarray(reference_codes, dtype=np.int64)
    onehot = np.zeros((z.shape[0], n_classes))
    onehot[np.arange(z.shape[0]), codes] = 1.0
    d2 = sq_dists(z, z)
    scores: dict[float, float] = {}
    for f in factors:
        sigma = float(base_sigma) * float(f)
        k = np.exp(-d2 / (2.0 * sigma * sigma))
        np.fill_diagonal(k, 0.0)
        post = kernel_posteriors(k @ onehot)
        own = post[np.arange(z.shape[0]), codes]
        scores[sigma] = float(np.mean(np.log(np.maximum(own, 1e-6))))
    best = max(scores, key=lambda s: (scores[s], s))
    return best, scores


# --------------------------------------------------------------------------------------------
# pixel statistics


def _grey(image: Image.Image, max_side: int) -> np.ndarray:
    img = image.convert("L")
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.BOX)
    return np.asarray(img, dtype=np.float64)


def pixel_statistics_of(image: Image.Image, max_side: int = STATS_MAX_SIDE) -> dict[str, float]:
    """Pixel statistics of one image (grey levels 0-255, longest side shrunk to ``max_side``).

    * ``noise_sigma`` - robust noise level: median absolute finest diagonal Haar coefficient
      over 0.6745 (Donoho's estimator); flat regions give 0, i.i.d. noise its std;
    * ``sharpness`` - variance of the Laplacian (cleanvision's blur check uses edge-filter
      variance likewise); low = blurry;
    * ``brightness`` - mean grey level;
    * ``entropy`` - Shannon entropy (bits) of the grey histogram; low = little information.
    """
    x = _grey(image, max_side)
    h, w = (x.shape[0] // 2) * 2, (x.shape[1] // 2) * 2
    if h >= 2 and w >= 2:
        q = x[:h, :w]
        hh = (q[0::2, 0::2] - q[0::2, 1::2] - q[1::2, 0::2] + q[1::2, 1::2]) / 2.0
        noise = float(np.median(np.abs(hh)) / 0.6745)
    else:
        noise = 0.0
    sharp = float(ndimage.laplace(x, mode="reflect").var()) if x.size > 1 else 0.0
    hist = np.bincount(np.clip(x, 0, 255).astype(np.int64).ravel(), minlength=256).astype(np.float64)
    p = hist[hist > 0] / hist.sum()
    return {
        "noise_sigma": noise,
        "sharpness": sharp,
        "brightness": float(x.mean()),
        "entropy": float(-(p * np.log2(p)).sum()),
    }


@dataclass
class ImageScan:
    """What one decoding pass over a set of images measured.

    Attributes
    ----------
    stats : dict of str to numpy.ndarray
        :func:`pixel_statistics_of` per image (NaN where the image could not be decoded).
    tiny : numpy.ndarray
        ``(n, size * size)`` float32 grey thumbnails, mean removed, unit norm (zero rows for
        failed or flat images): the pixel view of near-duplicate search.
    failed : dict of int to str
        Row -> why the image could not be decoded.
    """

    stats: dict[str, np.ndarray]
    tiny: np.ndarray
    failed: dict[int, str]


def scan_images(
    load: Callable[[int], Image.Image],
    n: int,
    *,
    tiny_size: int = 16,
    progress: bool = False,
    desc: str = "pixel checks",
    max_side: int = STATS_MAX_SIDE,
) -> ImageScan:
    """Decode ``load(0) .. load(n - 1)`` once: pixel statistics and tiny thumbnails of each."""
    stats: dict[str, np.ndarray] = {k: np.full(n, np.nan) for k in STAT_COLUMNS}
    tiny = np.zeros((n, tiny_size * tiny_size), dtype=np.float32)
    failed: dict[int, str] = {}
    for i in tqdm(range(n), desc=desc, disable=not progress, unit="img"):
        try:
            image = load(i)
            image.load()
            values = pixel_statistics_of(image, max_side)
            grey = image.convert("L")
        except (OSError, ValueError) as err:
            failed[i] = f"{type(err).__name__}: {err}"
            continue
        for k, v in values.items():
            stats[k][i] = v
        x = np.asarray(grey.resize((tiny_size, tiny_size), Image.Resampling.BOX), dtype=np.float64).ravel()
        x -= x.mean()
        norm = np.linalg.norm(x)
        if norm > 1e-9:
            tiny[i] = x / norm
    return ImageScan(stats, tiny, failed)


def robust_excess(pool_stat: np.ndarray, reference_stat: np.ndarray, tail: str) -> np.ndarray:
    """How far each pool statistic lies beyond the reference's median, towards ``tail``, in
    units of the reference's interquartile range (at least 1e-9); 0 on the other side."""
    r = np.asarray(reference_stat, dtype=np.float64)
    r = r[np.isfinite(r)]
    med = float(np.median(r))
    iqr = max(float(np.subtract(*np.percentile(r, [75, 25]))), 1e-9)
    s = np.asarray(pool_stat, dtype=np.float64)
    z = (s - med) / iqr if tail == "high" else (med - s) / iqr
    return np.where(np.isfinite(z), np.maximum(z, 0.0), 0.0)


def nearest_similarity(x: np.ndarray, z: np.ndarray | None = None, *, block_size: int = 2048) -> np.ndarray:
    """Cosine similarity of each row of ``x`` (unit rows) to its nearest other row of ``z``
    (``None``: of ``x`` itself, self excluded)."""
    x = np.asarray(x, dtype=np.float32)
    other = x if z is None else np.asarray(z, dtype=np.float32)
    best = np.full(x.shape[0], -np.inf, dtype=np.float64)
    for lo in range(0, x.shape[0], block_size):
        sims = x[lo : lo + block_size] @ other.T
        if z is None:
            rows = np.arange(sims.shape[0])
            sims[rows, lo + rows] = -np.inf
        best[lo : lo + block_size] = sims.max(1) if sims.shape[1] else -np.inf
    return best


def distinct_similarity_bound(pool_view: np.ndarray, reference_view: np.ndarray) -> float:
    """The highest similarity that distinct images reach, estimated without ground truth.

    The larger of (a) the highest similarity between two reference rows (a clean reference holds
    no copies) and (b) the ``1 - 1/M`` quantile of each pool row's similarity to its nearest
    reference row (pool and reference are disjoint; the quantile ignores the few pool rows that
    may be copies of reference rows). (b) brings the bound closer to what ``N`` pool rows reach
    among themselves than ``M`` reference rows alone would. Rows are unit vectors.
    """
    ref = np.asarray(reference_view, dtype=np.float32)
    m = ref.shape[0]
    within = float(nearest_similarity(ref).max()) if m >= 2 else -1.0
    cross = nearest_similarity(np.asarray(pool_view, dtype=np.float32), ref)
    cross = cross[np.isfinite(cross)]
    across = float(np.quantile(cross, 1.0 - 1.0 / max(m, 2))) if cross.size else -1.0
    return min(1.0, max(within, across))


def similar_pairs(
    views: Sequence[np.ndarray],
    thresholds: Sequence[float],
    *,
    block_size: int = 1024,
    progress: bool = False,
    exact_max: int | None = None,
    index: str = "ivf",
    nprobe: int = 16,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pairs ``i < j`` whose cosine similarity exceeds the threshold in *every* view.

    ``views`` are ``(N, d_v)`` arrays with unit (or zero) rows; the first view finds candidates,
    the others confirm them. Up to ``exact_max`` rows (default :data:`EXACT_PAIRS_MAX`) the
    candidates come from an exact blockwise scan (one GEMM per block against the rows from the
    block on, so memory is ``block_size x N``); beyond, when faiss is installed, from a FAISS
    range search (:func:`kairos_curate.neighbours.threshold_pairs`; ``index="ivf"`` with
    ``nprobe`` cells probed, or the exact ``"flat"`` index). Both give the same pairs when the
    index is exact (flat, or IVF probing every cell), up to float rounding at the threshold.

    Returns
    -------
    i, j : numpy.ndarray
        The linked pairs (``i < j``).
    similarity : numpy.ndarray
        Their similarity in the first view.
    nearest : numpy.ndarray
        ``(N,)`` each row's highest similarity to any other row in the first view (``-inf`` for a
        single row).
    """
    if not views or len(views) != len(thresholds):
        raise ValueError("give one threshold per view")
    first = np.asarray(views[0], dtype=np.float32)
    n = first.shape[0]
    limit = EXACT_PAIRS_MAX if exact_max is None else int(exact_max)
    if n > limit and n > 1:
        from kairos_curate.neighbours import faiss_available, threshold_pairs

        if faiss_available():
            i, j, s, nearest = threshold_pairs(first, thresholds[0], index=index, nprobe=nprobe, seed=seed)
            return _confirm(views, thresholds, i, j, s, nearest)
    nearest = np.full(n, -np.inf)
    ii: list[np.ndarray] = []
    jj: list[np.ndarray] = []
    ss: list[np.ndarray] = []
    for lo in tqdm(range(0, n, block_size), desc="near-duplicates", disable=not progress, unit="block"):
        hi = min(n, lo + block_size)
        sims = first[lo:hi] @ first[lo:].T
        rows = np.arange(hi - lo)
        sims[rows, rows] = -np.inf  # self pairs
        sims[np.tril_indices(hi - lo, k=-1)] = -np.inf  # pairs seen in the other order
        if sims.size:
            nearest[lo:hi] = np.maximum(nearest[lo:hi], sims.max(1))
            nearest[lo:] = np.maximum(nearest[lo:], sims.max(0))
        r, c = np.nonzero(sims > thresholds[0])
        ii.append(r + lo)
        jj.append(c + lo)
        ss.append(sims[r, c].astype(np.float64))
    i = np.concatenate(ii) if ii else np.zeros(0, np.int64)
    j = np.concatenate(jj) if jj else np.zeros(0, np.int64)
    s = np.concatenate(ss) if ss else np.zeros(0)
    return _confirm(views, thresholds, i, j, s, nearest)


def _confirm(
    views: Sequence[np.ndarray],
    thresholds: Sequence[float],
    i: np.ndarray,
    j: np.ndarray,
    s: np.ndarray,
    nearest: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Keep the candidate pairs of the first view that exceed the threshold in every other view."""
    for view, threshold in zip(views[1:], thresholds[1:], strict=True):
        v = np.asarray(view, dtype=np.float32)
        ok = np.einsum("ij,ij->i", v[i], v[j]) > threshold
        i, j, s = i[ok], j[ok], s[ok]
    return i.astype(np.int64), j.astype(np.int64), s, nearest
