"""Per-class kernel herding at scale: herd within random partitions, then merge.

Exact per-class herding (``select(policy="herding")``) computes one kernel row over the class's
candidates per pick: ``O(n_c q_c d)`` per class, quadratic in the pool when ``q_c`` is a
fraction of ``n_c`` (about 4 hours of GEMV for a 1M pool on two cores). Here each class's
candidates are cut into ``P = ceil(n_c / partition_size)`` seeded random partitions, each
partition herds its share of the quota towards the *whole* class reference, and the picks are
interleaved (first pick of every partition, then the second, ...). Cost ``O(n_c q_c d / P)``,
and the ``P`` partitions of all classes are independent tasks on the engine.

Quality: the selection's empirical measure is the size-weighted mean of the partitions', and
``MMD`` is convex, so ``MMD(selection, ref) <= max_p MMD(partition picks, ref)``; the loss
against exact herding (same quotas) is measured in ``benchmarks/bench_scale.py``. With
``P = 1`` (a class smaller than ``partition_size``) the picks are exactly those of
``select(policy="herding")``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import torch

from kairos_curate.valuation.bandwidth import median_bandwidth
from kairos_curate.valuation.kernels import (
    KernelSpace,
    as_float64_matrix,
    cross_sums,
    kernel_matrix,
)
from kairos_curate.valuation.result import KairosResult
from kairos_curate.valuation.selection import SelectionResult, allocate_quotas

__all__ = ["DEFAULT_PARTITION_SIZE", "herd", "partitioned_herding"]

#: Candidates per partition: herding 20% of 20,000 rows is ~50 GFLOP of GEMV.
DEFAULT_PARTITION_SIZE = 20_000


def herd(
    candidates: np.ndarray,
    reference: np.ndarray,
    quota: int,
    sigma: float,
    shift: np.ndarray,
    device: str = "auto",
) -> np.ndarray:
    """Greedy kernel herding of ``quota`` rows of ``candidates`` towards ``reference``.

    Step ``t`` picks ``argmin_x 2 sum_{s in S} k(x, s) + k(x, x) - 2 (t + 1) b(x)`` (ties: the
    first row), as in :func:`kairos_curate.valuation.select`. Returns row positions in order.
    """
    space = KernelSpace.create(sigma, shift, device)
    xc = space.prepare(candidates)
    b = torch.from_numpy(cross_sums(space, xc, space.prepare(reference))[0] / reference.shape[0])
    b = b.to(space.device)
    running = torch.zeros(candidates.shape[0], dtype=torch.float64, device=space.device)
    taken = torch.zeros(candidates.shape[0], dtype=torch.bool, device=space.device)
    picks = []
    for t in range(min(int(quota), candidates.shape[0])):
        score = 2.0 * running + 1.0 - 2.0 * (t + 1) * b
        score = score.masked_fill(taken, math.inf)
        j = int(torch.argmin(score))
        picks.append(j)
        taken[j] = True
        running += kernel_matrix(space, xc, (xc[0][j : j + 1], xc[1][j : j + 1]))[:, 0].double()
    return np.asarray(picks, dtype=np.int64)


def herd_lazy(
    candidates: np.ndarray,
    reference: np.ndarray,
    quota: int,
    sigma: float,
    shift: np.ndarray,
    device: str = "auto",
    batch: int = 64,
    shortlist: int = 512,
    certify: bool = False,
) -> np.ndarray:
    """Kernel herding with one ``n x batch`` GEMM per ``batch`` picks instead of one GEMV per pick.

    Exact herding (:func:`herd`) spends one kernel row over all candidates per pick, a
    memory-bound GEMV. Here the running sums ``sum_{s in S} k(x, s)`` of all candidates are
    brought up to date every ``batch`` picks by one GEMM; in between, the ``shortlist``
    candidates with the lowest scores are kept exact (one ``shortlist x 1`` kernel column per
    pick) and the next pick is the best of them.

    ``certify=True`` also checks every other candidate against the certified lower bound
    ``2 running_stale(x) + 1 - 2 (t + 1) b(x)`` of its score (kernel values are >= 0) and
    makes it exact, or ends the batch, when the bound reaches below the best exact score: the
    picks are then those of exact herding up to floating-point near-ties, but with a smooth
    kernel the bound is loose and the batches shrink to one pick (measured: slower than
    :func:`herd`). ``certify=False`` (default) skips the check: the picks can differ from exact
    herding when a candidate outside the shortlist would have won within a batch; the quality
    loss is measured in ``benchmarks/bench_scale.py``. Returns row positions in pick order.
    """
    space = KernelSpace.create(sigma, shift, device)
    dev = space.device
    xc = space.prepare(candidates)
    n = candidates.shape[0]
    b = torch.from_numpy(cross_sums(space, xc, space.prepare(reference))[0] / reference.shape[0])
    b = b.to(dev)
    running = torch.zeros(n, dtype=torch.float64, device=dev)
    taken = torch.zeros(n, dtype=torch.bool, device=dev)
    inf = torch.tensor(math.inf, dtype=torch.float64, device=dev)
    picks: list[int] = []
    pending: list[int] = []
    q = min(int(quota), n)

    def gather(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return xc[0][rows], xc[1][rows]

    while len(picks) < q:
        if pending:
            cols = gather(torch.tensor(pending, device=dev))
            for s0 in range(0, n, 8192):
                part = (xc[0][s0 : s0 + 8192], xc[1][s0 : s0 + 8192])
                running[s0 : s0 + 8192] += kernel_matrix(space, part, cols).double().sum(dim=1)
            pending = []
        t = len(picks)
        score = torch.where(taken, inf, 2.0 * running + 1.0 - 2.0 * (t + 1) * b)
        size = min(int(shortlist), n - t)
        short = torch.topk(score, size, largest=False).indices
        short_x = gather(short)
        exact_run = running[short].clone()
        in_short = torch.zeros(n, dtype=torch.bool, device=dev)
        in_short[short] = True
        while len(picks) < q and len(pending) < batch:
            t = len(picks)
            s_short = 2.0 * exact_run + 1.0 - 2.0 * (t + 1) * b[short]
            s_short = torch.where(taken[short], inf, s_short)
            best = int(torch.argmin(s_short))
            if not torch.isfinite(s_short[best]):
                break  # shortlist used up
            if certify:
                lower = 2.0 * running + 1.0 - 2.0 * (t + 1) * b
                lower = torch.where(taken | in_short, inf, lower)
                violators = torch.nonzero(lower <= s_short[best]).flatten()
                if violators.numel():
                    if violators.numel() > size:
                        break  # too stale: full update
                    extra = running[violators]
                    if pending:
                        cols = gather(torch.tensor(pending, device=dev))
                        extra = extra + kernel_matrix(space, gather(violators), cols).double().sum(
                            1
                        )
                    short = torch.cat([short, violators])
                    vx = gather(violators)
                    short_x = (torch.cat([short_x[0], vx[0]]), torch.cat([short_x[1], vx[1]]))
                    exact_run = torch.cat([exact_run, extra])
                    in_short[violators] = True
                    continue
            # ties: exact herding takes the smallest row among equal scores
            ties = torch.nonzero(s_short == s_short[best]).flatten()
            j = int(short[ties].min()) if ties.numel() > 1 else int(short[best])
            picks.append(j)
            pending.append(j)
            taken[j] = True
            exact_run += kernel_matrix(space, short_x, gather(torch.tensor([j], device=dev)))[
                :, 0
            ].double()
    return np.asarray(picks, dtype=np.int64)


def herd_lazy_32(
    candidates: np.ndarray,
    reference: np.ndarray,
    quota: int,
    sigma: float,
    shift: np.ndarray,
    device: str = "auto",
) -> np.ndarray:
    """:func:`herd_lazy` with ``batch=32, shortlist=1024`` (a task function)."""
    return herd_lazy(candidates, reference, quota, sigma, shift, device, batch=32, shortlist=1024)


def _interleave(parts: list[np.ndarray]) -> np.ndarray:
    """Round-robin merge: first element of every part, then the second, ..."""
    if not parts:
        return np.zeros(0, dtype=np.int64)
    longest = max(len(p) for p in parts)
    out = [p[i] for i in range(longest) for p in parts if i < len(p)]
    return np.asarray(out, dtype=np.int64)


def partitioned_herding(
    embeddings: Any,
    labels: Any,
    reference: Any,
    reference_labels: Any,
    k: int | None = None,
    *,
    frac: float | None = None,
    quotas: dict[Any, int] | None = None,
    values: np.ndarray | KairosResult | None = None,
    ids: Any = None,
    bandwidth: float | None = None,
    drop_fraction: float = 0.0,
    partition_size: int = DEFAULT_PARTITION_SIZE,
    engine: Any = None,
    device: str = "auto",
    seed: int = 0,
    lazy: bool = False,
) -> SelectionResult:
    """Per-class herding with quotas proportional to the reference classes, partitioned.

    Parameters
    ----------
    embeddings, labels
        ``(N, d)`` pool embeddings and their labels.
    reference, reference_labels
        Reference embeddings and labels (the classes and their shares).
    k, frac, quotas
        Subset size, fraction of the pool, or explicit label -> count (as in ``select``).
    values
        Optional values (array or :class:`KairosResult`): ``drop_fraction`` drops each class's
        lowest-valued rows first; a result also supplies the bandwidth.
    ids
        Sample ids (default row numbers); ties in herding go to the smallest id.
    bandwidth
        RBF sigma (default: the result's, else the median heuristic with ``seed``).
    partition_size
        Most candidates per partition; a class with more is split at random (``seed``).
    engine
        Engine for the partition tasks (default local).
    device
        Where each task's kernels run.
    lazy
        Herd each partition with :func:`herd_lazy` (one GEMM per 32 picks, shortlist of
        1,024; approximate) instead of :func:`herd` (exact).

    Returns
    -------
    SelectionResult
        ``policy == "herding"`` when no class was split, else ``"herding_partitioned"``.
    """
    from kairos_curate.engine import get_engine

    x = as_float64_matrix(embeddings, "embeddings")
    z = as_float64_matrix(reference, "reference")
    if x.shape[1] != z.shape[1]:
        raise ValueError(f"embeddings have dimension {x.shape[1]} but reference has {z.shape[1]}")
    n = x.shape[0]
    y = np.asarray(labels)
    y_ref = np.asarray(reference_labels)
    if y.shape != (n,):
        raise ValueError(f"labels has {y.shape[0] if y.ndim else 0} entries for {n} pool rows")
    if y_ref.shape != (z.shape[0],):
        raise ValueError(
            f"reference_labels has {y_ref.shape[0] if y_ref.ndim else 0} labels but reference "
            f"has {z.shape[0]} rows"
        )
    if (y.dtype.kind in "US") != (y_ref.dtype.kind in "US"):
        y, y_ref = y.astype(str), y_ref.astype(str)
    if int(partition_size) < 1:
        raise ValueError(f"partition_size must be a positive integer, got {partition_size}")
    if not 0.0 <= drop_fraction < 1.0:
        raise ValueError(f"drop_fraction must lie in [0, 1), got {drop_fraction}")
    if isinstance(values, KairosResult):
        if bandwidth is None:
            bandwidth = values.bandwidth
        vals = np.asarray(values.values, dtype=np.float64)
    else:
        vals = np.zeros(n) if values is None else np.asarray(values, dtype=np.float64)
    if vals.shape != (n,):
        raise ValueError(f"values has shape {vals.shape} for {n} pool rows")
    id_arr = np.arange(n).astype(str) if ids is None else np.asarray([str(i) for i in ids])
    if frac is not None:
        if not 0.0 < frac <= 1.0:
            raise ValueError(f"frac must lie in (0, 1], got {frac}")
        k = max(1, round(frac * n))
    if k is None and quotas is None:
        raise ValueError("give the subset size: k=<int>, frac=<float> or quotas=<dict>")
    sigma = median_bandwidth(x, z, seed=seed) if bandwidth is None else float(bandwidth)
    shift = z.mean(axis=0)

    classes, counts = np.unique(y_ref, return_counts=True)
    weights = {
        c.item() if hasattr(c, "item") else c: float(m)
        for c, m in zip(classes, counts, strict=True)
    }
    order = np.lexsort((id_arr, -vals))
    by_class = {c: order[y[order] == c] for c in weights}
    if drop_fraction:
        by_class = {c: v[: math.ceil(len(v) * (1.0 - drop_fraction))] for c, v in by_class.items()}
    capacity = {c: len(v) for c, v in by_class.items()}
    notes: list[str] = []
    if quotas is not None:
        used = {c: min(int(q), capacity.get(c, 0)) for c, q in quotas.items()}
    else:
        assert k is not None
        if not 1 <= int(k) <= n:
            raise ValueError(f"k must lie in [1, {n}] (the pool size), got {k}")
        used = allocate_quotas(int(k), weights, capacity)

    eng = get_engine(engine)
    calls: list[tuple[Any, ...]] = []
    layout: list[tuple[Any, np.ndarray]] = []  # (class, candidate rows of the partition)
    split = False
    ref_handles: dict[Any, Any] = {}
    for ci, (c, cand) in enumerate(by_class.items()):
        q = used.get(c, 0)
        if q <= 0 or cand.size == 0:
            continue
        ref_c = z[y_ref == c]
        if ref_c.shape[0] == 0:
            raise ValueError(f"class {c!r} has no reference points; herding needs them")
        cand = cand[np.argsort(id_arr[cand], kind="stable")]
        n_parts = math.ceil(cand.size / int(partition_size))
        if n_parts == 1:
            parts = [cand]
        else:
            split = True
            perm = np.random.default_rng([seed, ci]).permutation(cand.size)
            parts = [np.sort(p) for p in np.array_split(perm, n_parts)]
            parts = [cand[p] for p in parts]
        part_q = allocate_quotas(
            q,
            {i: float(len(p)) for i, p in enumerate(parts)},
            {i: len(p) for i, p in enumerate(parts)},
        )
        ref_handles[c] = eng.put(ref_c)
        for i, rows in enumerate(parts):
            if part_q[i] > 0:
                calls.append((eng.put(x[rows]), ref_handles[c], part_q[i], sigma, shift, device))
                layout.append((c, rows))
    results = eng.map(
        herd_lazy_32 if lazy else herd, calls, num_gpus=1.0 if eng.n_gpus() > 0 else 0.0
    )
    per_class: dict[Any, list[np.ndarray]] = {}
    for (c, rows), picks in zip(layout, results, strict=True):
        per_class.setdefault(c, []).append(rows[picks])
    chosen = (
        np.concatenate([_interleave(per_class[c]) for c in weights if c in per_class])
        if per_class
        else np.zeros(0, dtype=np.int64)
    )

    sel_labels = y[chosen]
    known = sorted(set(np.unique(y).tolist()) | set(weights), key=lambda v: (str(type(v)), v))
    class_counts = {c: int(np.sum(sel_labels == c)) for c in known}
    total_w = sum(weights.values())
    expected = {c: w / total_w for c, w in weights.items()}
    if quotas is not None:
        for c, q in quotas.items():
            if int(q) > capacity.get(c, 0):
                notes.append(
                    f"class {c!r}: quota {q} exceeds its {capacity.get(c, 0)} available "
                    "pool point(s); took all of them"
                )
    for msg in notes:
        warnings.warn(msg, UserWarning, stacklevel=2)
    return SelectionResult(
        indices=chosen,
        ids=id_arr[chosen],
        class_counts=class_counts,
        policy="herding_partitioned" if split else "herding",
        warnings=notes,
        quotas=used,
        expected_share=expected,
    )
