"""``gated_cover``: gate each class by its values, collapse near copies, cover what is left.

Herding towards a class's reference already maximises closeness to the reference minus the
redundancy with what it has picked, so KAIROS values barely change *its* choice; the values
have to decide something herding does not do. Here they decide which pool is covered:

1. **gate** (``keep``): per class, keep the rows a gate lets in -

   * ``estimated``: the ``keep_counts`` of the valuation result (``kairos_calibrated``: the rows
     whose p-value exceeds its ``level``, or with ``keep_rule="storey"`` as many as Storey's
     estimate of the class's clean share says are clean), highest values first;
   * ``matched``: the caller's ``keep_counts`` (``select(..., keep_counts=...)``), highest values
     of whatever method was given first - the "same gate size" control for other methods;
   * ``fraction``: all but the lowest ``drop_fraction`` of each class (rounded down);
   * ``flags``: rows the result does *not* flag in its boolean term ``flag_term`` (confident
     learning's ``issues``);
   * ``all``: no gate.

   Ties in value are broken by id.
2. **near duplicates** (``dedup``): within a class, a row closer than half the smallest distance
   between two reference images (distinct clean images) to a row with a smaller id is a copy;
   copies are dropped, whether or not the row they copy passed the gate. Not applied with
   ``cover="reference"`` (herding towards the reference does not reproduce the pool's density).
3. **quotas**: proportional to the reference's class counts, capped by each class's candidates.
4. **shortlist** (``shortlist``, off at 0): with ``r > 0``, only the ``ceil(r q_c)`` highest-valued
   candidates of a class with quota ``q_c`` may be picked, while the herding target stays the
   whole retained class: at a small budget the subset comes from the most plausibly clean rows
   but still spreads over what the gate kept.
5. **cover** (``cover``): fill each class's quota from its candidates by greedy kernel herding
   towards the *retained pool* of the class (``pool``: target ``mu = mean_{i in kept} phi(x_i)``,
   the plausibly clean pool rather than the few reference prototypes), towards the class's
   reference (``reference``: the ``herding`` policy's target), or uniformly at random
   (``random``; one generator seeded ``[seed, 11]``, classes in order). Herding step ``t`` takes
   ``argmin_j 2 sum_{s in S} k(x_j, s) + k(x_j, x_j) - 2 (t + 1) <mu, phi(x_j)>``, ties to the
   smallest id.

The choice's ``eligible`` mask is the gate; ``info`` has the per-class gate sizes
(``gate_kept``), the candidates left after the collapse (``candidates``), the collapsed rows
(``collapsed_rows``, ``duplicates_collapsed``) and the radius used.

Kernels use the valuation's bandwidth (else the median heuristic). A class of at most
:data:`DENSE_MAX` rows gets its float64 kernel matrix once (exact; one row per pick is then a
lookup); a larger class herds through the blocked float32 tiles of :func:`.herding.herd_rows`
(bounded memory, CPU or CUDA).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from kairos_curate.selection.base import (
    PolicyChoice,
    PolicyParams,
    SelectionContext,
    SelectionPolicy,
    candidates_by_class,
    class_quotas,
    py_scalar,
    register_policy,
)
from kairos_curate.selection.herding import herd_rows
from kairos_curate.valuation.bandwidth import median_bandwidth
from kairos_curate.valuation.distances import sq_dists
from kairos_curate.valuation.kernels import as_float64_matrix, check_same_dim

__all__ = [
    "DENSE_MAX",
    "GatedCover",
    "GatedCoverParams",
    "duplicate_radius",
    "herd_dense",
    "near_duplicates",
]

#: Largest class (rows) whose float64 kernel matrix is built in one piece (128 MiB).
DENSE_MAX = 4096
_BLOCK = 2048


class GatedCoverParams(PolicyParams):
    """``gated_cover``'s parameters (see the module docs)."""

    #: Which rows of each class compete: ``estimated``, ``matched``, ``fraction``, ``flags``, ``all``.
    keep: Literal["estimated", "all", "matched", "fraction", "flags"] = "estimated"
    #: ``keep="fraction"`` only: drop this lowest-valued share of each class.
    drop_fraction: float = 0.5
    #: ``keep="flags"`` only: the result's boolean term whose ``True`` rows are dropped.
    flag_term: str = "issues"
    #: Herd towards the retained ``pool``, the class's ``reference``, or draw at ``random``.
    cover: Literal["pool", "reference", "random"] = "pool"
    #: Collapse near duplicates before covering (never with ``cover="reference"``).
    dedup: bool = True
    #: Pick only among the ``ceil(shortlist * quota)`` highest-valued candidates of a class (0: all).
    shortlist: float = 0.0


def duplicate_radius(reference: np.ndarray) -> float:
    """Half the smallest distance between two reference rows (0 with fewer than two rows)."""
    z = np.asarray(reference, dtype=np.float64)
    if z.shape[0] < 2:
        return 0.0
    d = np.sqrt(sq_dists(z, z))
    np.fill_diagonal(d, np.inf)
    return 0.5 * float(d.min())


def near_duplicates(x: np.ndarray, order: np.ndarray, radius: float) -> np.ndarray:
    """Copies among the rows ``order`` of ``x``: a row closer than ``radius`` to an earlier row
    of ``order`` (so the first of each group stays). Returns a mask over ``order``."""
    xs = np.asarray(x[order], dtype=np.float64)
    n = xs.shape[0]
    copy = np.zeros(n, dtype=bool)
    if radius <= 0 or n < 2:
        return copy
    for start in range(0, n, _BLOCK):
        stop = min(start + _BLOCK, n)
        d = np.sqrt(sq_dists(xs[:stop], xs[start:stop]))  # earlier rows x this block
        earlier = np.arange(stop)[:, None] < np.arange(start, stop)[None, :]
        copy[start:stop] = ((d < radius) & earlier).any(0)
    return copy


def herd_dense(kernel: np.ndarray, target: np.ndarray, quota: int) -> np.ndarray:
    """Greedy kernel herding on a precomputed candidate kernel matrix.

    Step ``t`` takes ``argmin_j 2 sum_{s in S} K[j, s] + K[j, j] - 2 (t + 1) target[j]`` among the
    rows not taken (ties to the first row); ``target[j] = <mu, phi(x_j)>``. Returns positions in
    pick order.
    """
    n = kernel.shape[0]
    running = np.zeros(n)
    taken = np.zeros(n, dtype=bool)
    diag = np.diag(kernel)
    picks = np.empty(min(int(quota), n), dtype=np.int64)
    for t in range(picks.size):
        score = 2.0 * running + diag - 2.0 * (t + 1) * target
        score[taken] = np.inf
        j = int(np.argmin(score))
        picks[t] = j
        taken[j] = True
        running += kernel[:, j]
    return picks


def _count_for(counts: Mapping[Any, Any], c: Any, where: str) -> int:
    """``counts[c]``, also when the keys are the classes as text (counts read from JSON)."""
    if c in counts:
        return int(counts[c])
    by_text = {str(key): n for key, n in counts.items()}
    if str(c) in by_text:
        return int(by_text[str(c)])
    raise ValueError(f"policy gated_cover: {where} has no count for class {c!r} (it has {sorted(by_text)})")


@register_policy
class GatedCover(SelectionPolicy):
    """Per-class value gate, near-duplicate collapse, then herding towards the retained pool."""

    name = "gated_cover"
    description = "per-class value gate + near-duplicate collapse + herding towards the retained pool"
    needs_embeddings = True
    Params = GatedCoverParams

    def __init__(self, params: Any = None) -> None:
        super().__init__(params)
        if not 0.0 <= self.params.drop_fraction < 1.0:
            raise ValueError(f"policy gated_cover: drop_fraction must lie in [0, 1), got {self.params.drop_fraction}")
        if not (self.params.shortlist == 0.0 or self.params.shortlist >= 1.0):
            raise ValueError(
                f"policy gated_cover: shortlist must be 0 (off) or at least 1 (candidates per pick), "
                f"got {self.params.shortlist}"
            )

    def _gate(self, ctx: SelectionContext, by_class: dict[Any, np.ndarray]) -> dict[Any, np.ndarray]:
        """Class -> rows let in by ``keep`` (highest values first)."""
        keep = self.params.keep
        if keep == "all":
            return by_class
        if keep == "fraction":
            share = 1.0 - self.params.drop_fraction
            return {c: rows[: math.ceil(len(rows) * share)] for c, rows in by_class.items()}
        if keep == "flags":
            terms = {} if ctx.result is None else ctx.result.terms
            if terms.get(self.params.flag_term) is None:
                raise ValueError(
                    f"policy gated_cover: keep='flags' needs a valuation result with a boolean term "
                    f"{self.params.flag_term!r} (e.g. method confident_learning's 'issues'); pass the "
                    f"result to select(), or set flag_term (the result has {sorted(terms)})"
                )
            flags = np.asarray(terms[self.params.flag_term], dtype=bool)
            return {c: rows[~flags[rows]] for c, rows in by_class.items()}
        if keep == "estimated":
            counts = None if ctx.result is None else ctx.result.info.get("keep_counts")
            if counts is None:
                raise ValueError(
                    "policy gated_cover: keep='estimated' needs a valuation result with "
                    "info['keep_counts'] (value with method kairos_calibrated and pass the result to "
                    "select()); for other values use keep='matched' with keep_counts=, or "
                    "keep='fraction' / 'all'"
                )
            where = "the result's info['keep_counts']"
        else:
            counts = ctx.keep_counts
            if counts is None:
                raise ValueError(
                    "policy gated_cover: keep='matched' needs keep_counts= (class -> rows to keep) "
                    "given to select(), e.g. the info['keep_counts'] of a kairos_calibrated result"
                )
            where = "keep_counts"
        gated = {}
        for c, rows in by_class.items():
            n_keep = _count_for(counts, c, where) if rows.size else 0
            if n_keep < 0:
                raise ValueError(f"policy gated_cover: {where} for class {py_scalar(c)!r} is negative ({n_keep})")
            gated[c] = rows[:n_keep]
        return gated

    def choose(self, ctx: SelectionContext, k: int) -> PolicyChoice:
        """Gate, collapse near copies, allocate quotas, cover each class."""
        if ctx.embeddings is None or ctx.reference is None or ctx.reference_labels is None:
            raise ValueError("policy='gated_cover' needs embeddings=, reference= and reference_labels=")
        x = as_float64_matrix(ctx.embeddings, "embeddings")
        z = as_float64_matrix(ctx.reference, "reference")
        check_same_dim(x.shape[1], z.shape[1], "embeddings")
        y_ref = ctx.reference_labels
        if y_ref.shape != (z.shape[0],):
            raise ValueError(f"reference_labels has {y_ref.shape[0]} labels but reference has {z.shape[0]} rows")
        by_class, notes = candidates_by_class(ctx)
        gated = self._gate(ctx, by_class)
        dedup = self.params.dedup and self.params.cover != "reference"
        radius = duplicate_radius(z) if dedup else 0.0
        sigma = median_bandwidth(x, z, seed=ctx.seed) if ctx.bandwidth is None else float(ctx.bandwidth)
        candidates: dict[Any, np.ndarray] = {}
        members: dict[Any, np.ndarray] = {}
        kernels: dict[Any, np.ndarray] = {}
        collapsed: list[np.ndarray] = []
        for c, rows in gated.items():
            rows = np.sort(rows)
            mem = by_class[c][np.argsort(ctx.ids[by_class[c]], kind="stable")]  # class rows by id
            members[c] = mem
            if dedup and mem.size <= DENSE_MAX:
                sq = sq_dists(x[mem], x[mem])
                earlier = np.triu(np.sqrt(sq) < radius, 1)  # row i before row j in id order
                copies = mem[earlier.any(0)]
                if self.params.cover == "pool":  # reuse the distances for the class kernel, in place
                    np.multiply(sq, -(1.0 / (2 * sigma * sigma)), out=sq)
                    kernels[c] = np.exp(sq, out=sq)
            elif dedup:
                copies = mem[near_duplicates(x, mem, radius)]
            else:
                copies = np.zeros(0, dtype=np.int64)
            kept = np.setdiff1d(rows, copies)
            collapsed.append(np.setdiff1d(rows, kept))
            candidates[c] = kept[np.argsort(ctx.ids[kept], kind="stable")]
        quotas, more = class_quotas(ctx, k, candidates)
        picks = self._shortlist(gated, candidates, quotas)
        chosen = self._cover(ctx, x, z, y_ref, sigma, picks, candidates, members, kernels, quotas)
        eligible = np.zeros(ctx.n, dtype=bool)  # the gate (copies collapsed later are still in it)
        for rows in gated.values():
            eligible[rows] = True
        copies_out = np.sort(np.concatenate(collapsed)) if collapsed else np.zeros(0, dtype=np.int64)
        info = {
            "keep": self.params.keep,
            "cover": self.params.cover,
            "gate_kept": {py_scalar(c): int(v.size) for c, v in gated.items()},
            "candidates": {py_scalar(c): int(v.size) for c, v in candidates.items()},
            "shortlisted": {py_scalar(c): int(v.size) for c, v in picks.items()},
            "duplicates_collapsed": int(copies_out.size),
            "collapsed_rows": [int(i) for i in copies_out],
            "duplicate_radius": float(radius),
        }
        return PolicyChoice(indices=chosen, quotas=quotas, notes=notes + more, info=info, eligible=eligible)

    def _shortlist(
        self, gated: dict[Any, np.ndarray], candidates: dict[Any, np.ndarray], quotas: dict[Any, int]
    ) -> dict[Any, np.ndarray]:
        """Class -> the rows herding may pick (id order): all candidates, or the ``shortlist``
        highest-valued ones per quota slot."""
        r = self.params.shortlist
        if r == 0.0:
            return candidates
        out = {}
        for c, cand in candidates.items():
            by_value = gated[c][np.isin(gated[c], cand)]  # the gate's order: highest values first
            top = by_value[: math.ceil(r * quotas.get(c, 0))]
            out[c] = cand[np.isin(cand, top)]  # keeps the candidates' id order
        return out

    def _cover(
        self,
        ctx: SelectionContext,
        x: np.ndarray,
        z: np.ndarray,
        y_ref: np.ndarray,
        sigma: float,
        picks: dict[Any, np.ndarray],
        candidates: dict[Any, np.ndarray],
        members: dict[Any, np.ndarray],
        kernels: dict[Any, np.ndarray],
        quotas: dict[Any, int],
    ) -> np.ndarray:
        """Fill each class's quota from its ``picks`` (in id order) by the ``cover`` rule; the pool
        target is the class's whole retained ``candidates``."""
        cover = self.params.cover
        rng = np.random.default_rng([int(ctx.seed), 11])
        shift = z.mean(axis=0)
        out = []
        for c, cand in picks.items():
            q = quotas.get(c, 0)
            if q <= 0 or cand.size == 0:
                continue
            if cover == "random":
                out.append(rng.choice(np.sort(cand), size=min(q, cand.size), replace=False))
                continue
            target_rows = x[candidates[c]] if cover == "pool" else z[y_ref == c]
            if target_rows.shape[0] == 0:
                raise ValueError(f"class {py_scalar(c)!r} has no reference points; cover='reference' needs them")
            if members[c].size > DENSE_MAX:
                out.append(cand[herd_rows(x[cand], target_rows, q, sigma, shift, ctx.device)])
                continue
            if c in kernels:  # the class kernel (built for the duplicate scan), restricted
                by_row = np.argsort(members[c])
                pos = by_row[np.searchsorted(members[c], cand, sorter=by_row)]
                kcc = kernels[c][np.ix_(pos, pos)]
            else:
                kcc = np.exp(-(1.0 / (2 * sigma * sigma)) * sq_dists(x[cand], x[cand]))
            if cover == "pool" and cand.size == candidates[c].size:
                target = kcc @ np.ones(cand.size) / cand.size
            elif cover == "pool" and c in kernels:  # shortlisted picks, the whole retained class as target
                tpos = by_row[np.searchsorted(members[c], candidates[c], sorter=by_row)]
                target = kernels[c][np.ix_(pos, tpos)].mean(1)
            else:
                target = np.exp(-(1.0 / (2 * sigma * sigma)) * sq_dists(x[cand], target_rows)).mean(1)
            out.append(cand[herd_dense(kcc, target, q)])
        return np.concatenate(out).astype(np.int64) if out else np.zeros(0, dtype=np.int64)
