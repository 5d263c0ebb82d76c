"""Runtime scaling of every valuation method with the pool size N (one log-log plot).

Each method of :data:`kairos_curate.valuation.METHODS` (plus ``kairos_rff``, the random
Fourier feature approximation of KAIROS with D = 2048) is timed on pools of growing size
``N = n_min, 2 n_min, 4 n_min, ...`` up to ``--n-max`` (default 256,000, which keeps the float64
copies of a 1280-d pool under ~3 GB; the poster's iNaturalist 2021 pool of 2.7M is reached by
extrapolating each line's slope, stated as such). A method drops out of the sweep once one call
takes longer than ``--budget`` seconds: the table says where each method stopped.

The pools are the real default embeddings when ``data/embeddings/pool.npz`` exists (rows drawn
with replacement plus a small jitter so no two rows coincide), else Gaussian vectors; the
reference is the real reference (or 240 Gaussian vectors). Labels come with the drawn rows.

Usage::

    python benchmarks/bench_methods_scaling.py     # writes reports/benchmarks/methods_scaling.{csv,json,png}

Threads: torch and BLAS use ``--threads`` threads (default 1; a shared 2-core machine is
oversubscribed otherwise). Numbers are wall times on this machine, best of ``--repeats``.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-min", type=int, default=500)
    p.add_argument("--n-max", type=int, default=256_000)
    p.add_argument("--budget", type=float, default=30.0, help="seconds per call before a method drops out")
    p.add_argument("--total-budget", type=float, default=600.0, help="seconds for the whole sweep")
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--methods", default="", help="comma-separated subset (default: all + kairos_rff)")
    p.add_argument("--out", type=Path, default=Path("reports/benchmarks/methods_scaling.csv"))
    return p.parse_args()


def _data(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from kairos_curate.config import PATHS
    from kairos_curate.io import load_embeddings

    pool_file, ref_file = PATHS.embeddings / "pool.npz", PATHS.embeddings / "reference.npz"
    samples = PATHS.prepared / "samples.parquet"
    if pool_file.exists() and ref_file.exists() and samples.exists():
        import pandas as pd

        table = pd.read_parquet(samples).set_index("id")["label"]
        ids, x = load_embeddings(pool_file)
        rids, z = load_embeddings(ref_file)
        y_all, y_ref = table.loc[ids].to_numpy(), table.loc[rids].to_numpy()
        rows = rng.integers(0, x.shape[0], size=n)
        pool = x[rows] + 0.01 * rng.normal(size=(n, x.shape[1])).astype(np.float32)
        return pool.astype(np.float32), y_all[rows], z.astype(np.float32), y_ref
    d, classes = 256, 6
    y = rng.integers(0, classes, size=n)
    y_ref = np.repeat(np.arange(classes), 40)
    centres = rng.normal(size=(classes, d))
    return (
        (centres[y] + rng.normal(size=(n, d))).astype(np.float32),
        y,
        (centres[y_ref] + rng.normal(size=(y_ref.size, d))).astype(np.float32),
        y_ref,
    )


def main() -> int:
    args = _parse()
    import torch
    from threadpoolctl import threadpool_limits

    from kairos_curate.io import atomic_path, write_json
    from kairos_curate.valuation import METHODS, ValuationInputs, rff_kairos_values, value

    torch.set_num_threads(args.threads)
    names = [m for m in args.methods.split(",") if m] or [*METHODS, "kairos_rff"]
    active = set(names)
    rows: list[dict[str, object]] = []
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    n = args.n_min
    with threadpool_limits(args.threads):
        while active and n <= args.n_max and time.perf_counter() - started < args.total_budget:
            pool, y, ref, y_ref = _data(n, rng)
            for name in names:
                if name not in active:
                    continue
                best = float("inf")
                for _ in range(args.repeats):
                    t0 = time.perf_counter()
                    if name == "kairos_rff":
                        rff_kairos_values(pool, ref, "median", n_features=2048, device="cpu")
                    else:
                        value(name, ValuationInputs(pool, y, ref, y_ref, seed=0))
                    best = min(best, time.perf_counter() - t0)
                rows.append({"method": name, "n": n, "seconds": best})
                print(f"{name:26s} N={n:>8d} {best:8.2f} s", flush=True)
                if best > args.budget:
                    active.discard(name)
                    print(
                        f"  {name} exceeded the {args.budget:.0f} s budget; it stops here",
                        flush=True,
                    )
            n *= 2
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    frame = pd.DataFrame(rows)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        frame.to_csv(tmp, index=False)
    fig, ax = plt.subplots(figsize=(7, 5))
    for name, grp in frame.groupby("method", sort=False):
        ax.loglog(grp["n"], grp["seconds"], marker="o", ms=3, label=name)
    ax.axhline(args.budget, color="grey", ls=":", lw=0.8, label=f"budget {args.budget:.0f} s")
    ax.set_xlabel("pool size N")
    ax.set_ylabel("wall time per call (s)")
    ax.set_title(f"Valuation runtime vs pool size ({args.threads} thread(s), {platform.processor() or 'CPU'})")
    ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    with atomic_path(args.out.with_suffix(".png")) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    last = frame.groupby("method").agg(n_max=("n", "max"), seconds_at_n_max=("seconds", "last"))
    write_json(
        args.out.with_suffix(".json"),
        {
            "threads": args.threads,
            "budget_s": args.budget,
            "total_budget_s": args.total_budget,
            "machine": platform.platform(),
            "reference_size": len(y_ref),
            "stopped_at": {
                m: {"n": int(r["n_max"]), "seconds": float(r["seconds_at_n_max"])} for m, r in last.iterrows()
            },
            "sweep_seconds": time.perf_counter() - started,
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
