"""Seeded synthetic embeddings for the scale benchmarks (no I/O).

``clustered`` imitates CLIP-like image embeddings rather than an isotropic Gaussian: unit
vectors that share a common direction (cosine similarity between unrelated images around
0.4-0.5), ``n_clusters`` clusters of different spreads with low-rank within-cluster structure;
the reference comes from the first ``n_task`` clusters (the task classes); the pool mixes task
images, off-task clusters, off-distribution points (random directions: blank, corrupt or
unrelated images) and near-duplicates of other pool rows. ``gaussian`` is the isotropic
mixture of ``bench_kairos.make_data``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["clustered_embeddings"]


def clustered_embeddings(
    n: int,
    m: int,
    d: int = 768,
    *,
    n_clusters: int = 60,
    n_task: int = 10,
    task_share: float = 0.4,
    off_distribution: float = 0.05,
    duplicates: float = 0.03,
    seed: int = 0,
    chunk: int = 65_536,
) -> dict[str, np.ndarray]:
    """Pool ``(n, d)`` and reference ``(m, d)`` float32 unit vectors with labels and flags.

    Returns a dict with ``pool``, ``ref``, ``y_pool`` (task class 0..n_task-1; off-task and
    off-distribution rows get a random task label, like other species filed under a task
    category), ``y_ref``, ``kind`` (0 task, 1 off-task, 2 off-distribution, 3 duplicate).
    """
    rng = np.random.default_rng(seed)
    common = rng.standard_normal(d)
    common /= np.linalg.norm(common)
    centres = rng.standard_normal((n_clusters, d))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    centres = 0.75 * common + 0.6 * centres
    rank = 16
    bases = rng.standard_normal((n_clusters, rank, d)) / np.sqrt(d * rank)
    spread = rng.uniform(0.3, 0.7, n_clusters)

    def draw(clusters: np.ndarray, g: np.random.Generator) -> np.ndarray:
        k = clusters.shape[0]
        low = np.einsum("kr,krd->kd", g.standard_normal((k, rank)), bases[clusters])
        iso = g.standard_normal((k, d)) / np.sqrt(d)
        x = centres[clusters] + spread[clusters, None] * (0.9 * low + 0.5 * iso)
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    y_ref = rng.integers(0, n_task, m)
    ref = draw(y_ref, rng)
    kind = rng.choice(
        4,
        size=n,
        p=[
            task_share,
            1 - task_share - off_distribution - duplicates,
            off_distribution,
            duplicates,
        ],
    )
    clusters = np.where(kind == 0, rng.integers(0, n_task, n), rng.integers(n_task, n_clusters, n))
    pool = np.empty((n, d), dtype=np.float32)
    for s in range(0, n, chunk):
        g = np.random.default_rng([seed, s])
        pool[s : s + chunk] = draw(clusters[s : s + chunk], g)
        off = np.flatnonzero(kind[s : s + chunk] == 2)
        if off.size:
            r = g.standard_normal((off.size, d)) + 0.5 * np.sqrt(d) * common
            pool[s + off] = (r / np.linalg.norm(r, axis=1, keepdims=True)).astype(np.float32)
    dup = np.flatnonzero(kind == 3)
    if dup.size:
        src = rng.choice(np.flatnonzero(kind != 3), size=dup.size)
        jitter = 0.02 * rng.standard_normal((dup.size, d)) / np.sqrt(d)
        x = pool[src] + jitter
        pool[dup] = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    y_pool = np.where(kind == 0, clusters, rng.integers(0, n_task, n))
    return {"pool": pool, "ref": ref, "y_pool": y_pool, "y_ref": y_ref, "kind": kind}
