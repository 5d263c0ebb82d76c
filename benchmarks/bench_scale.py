"""Scale-out benchmark: valuation on a local Ray cluster, the Nyström sketch, herding at scale,
FAISS near-duplicates, and a scaling table for 10M / 100M images.

Parts (``--parts``, default all; each part's results are merged into the JSON, so parts can be
run separately):

* ``sketch`` - at N = 50,000, M = 4,000, d = 768: exact (single process) against the Nyström
  sketch (landmark counts and strategies, exact or sketched ``b``, label-blind and
  class-conditional, clustered and isotropic data) and random Fourier features; time ratio,
  Spearman, top-20% overlap, max error and the a-posteriori bound;
* ``ray`` - N = 10k, 100k (exact on one process, exact on Ray, sketch on Ray, errors against
  exact) and 1M (sketch on Ray; error against exact ``a``, ``b`` of a 2,000-point random
  subsample, computed on Ray over the whole pool): wall time, peak resident memory per Ray
  worker (sampled every 50 ms, includes object-store pages the worker touched);
* ``herding`` - per-class herding of 20% at N = 50,000: exact against partitioned
  (P = 2, 4, 8), random and per-class top-k: MMD^2 of each class's selection to that class's
  reference (mean over classes) and time;
* ``faiss`` - near-duplicate pairs at N = 100,000: blockwise all-pairs against FAISS flat
  and IVF (time, pairs, recall); IVF at 1M with ``KAIROS_BENCH_FAISS_1M=1``;
* ``scaling`` - 10M / 100M extrapolated from the measured per-entry, per-row and per-image
  rates (``reports/benchmarks/embed_ray.json`` for images).

Synthetic embeddings: :func:`benchmarks.synthetic.clustered_embeddings` (CLIP-like: unit
vectors, clusters, off-distribution points, near-duplicates). Writes
``reports/benchmarks/scale.json`` and ``scale.md``. ``--quick``: tiny sizes (smoke test).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parent))

from synthetic import clustered_embeddings

from kairos_curate.io import atomic_write, write_json

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "reports" / "benchmarks" / "scale.json"


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """``fn(*args, **kwargs)`` and its wall time in seconds."""
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def top_overlap(approx: np.ndarray, exact: np.ndarray, frac: float = 0.2) -> float:
    """Share of the exact top ``frac`` that the approximation also puts in its top ``frac``."""
    k = max(1, int(frac * len(exact)))
    return len(np.intersect1d(np.argsort(-approx)[:k], np.argsort(-exact)[:k])) / k


def compare(approx: np.ndarray, exact: np.ndarray) -> dict[str, float]:
    return {
        "spearman": float(spearmanr(approx, exact).statistic),
        "top20_overlap": top_overlap(approx, exact),
        "max_abs_err": float(np.abs(approx - exact).max()),
        "value_std": float(exact.std()),
    }


class WorkerMemory:
    """Peak RSS of every Ray worker process (``ray::`` in its title), sampled every 50 ms."""

    def __init__(self) -> None:
        self.peaks: dict[int, int] = {}

    def __enter__(self) -> WorkerMemory:
        import psutil

        self._psutil = psutil
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            for proc in self._psutil.process_iter(["pid", "name", "cmdline"]):
                try:
                    cmd = " ".join(proc.info["cmdline"] or [])
                    if cmd.startswith("ray::") or "default_worker.py" in cmd:
                        rss = proc.memory_info().rss
                        self.peaks[proc.info["pid"]] = max(self.peaks.get(proc.info["pid"], 0), rss)
                except (self._psutil.NoSuchProcess, self._psutil.AccessDenied):
                    continue
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, Any]:
        vals = sorted(self.peaks.values())
        return {
            "workers_seen": len(vals),
            "peak_rss_gib_max": (vals[-1] / 2**30) if vals else float("nan"),
            "peak_rss_gib_median": float(np.median(vals) / 2**30) if vals else float("nan"),
        }


# ----------------------------------------------------------------------------- parts


def part_sketch(quick: bool) -> dict[str, Any]:
    from kairos_curate.valuation import kairos_values, rff_kairos_values
    from kairos_curate.valuation.nystrom import nystrom_kairos_values

    n, m = (4000, 600) if quick else (50_000, 4000)
    d = 64 if quick else 768
    out: dict[str, Any] = {"n": n, "m": m, "d": d, "rows": []}
    datasets = {"clustered": clustered_embeddings(n, m, d)}
    if not quick:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_kairos import make_data

        datasets["isotropic mixture"] = make_data(n, m, d)
    for name, data in datasets.items():
        pool, ref = data["pool"], data["ref"]
        exact, t_exact = timed(kairos_values, pool, ref, device="cpu")
        sigma = exact.bandwidth
        base = {"data": name, "mode": "label-blind"}
        out["rows"].append({**base, "method": "exact", "seconds": t_exact, "time_ratio": 1.0})
        configs: list[tuple[str, dict[str, Any]]] = [
            ("nystrom m=1000 kmeans++ (default)", {}),
            ("nystrom m=500 kmeans++", {"n_landmarks": 500}),
            ("nystrom m=2000 kmeans++", {"n_landmarks": 2000}),
            ("nystrom m=1000 random", {"landmark_method": "random"}),
            ("nystrom m=1000, exact b", {"exact_b": True}),
        ]
        if name != "clustered" or quick:
            configs = configs[:1]
        for label, kw in configs:
            res, t = timed(nystrom_kairos_values, pool, ref, sigma, device="cpu", **kw)
            out["rows"].append(
                {
                    **base,
                    "method": label,
                    "seconds": t,
                    "time_ratio": t / t_exact,
                    **compare(res.values, exact.values),
                }
            )
        if name == "clustered":
            bounded = nystrom_kairos_values(pool, ref, sigma, device="cpu", bounds=True)
            err = np.abs(bounded.values - exact.values)
            bound = bounded.info["value_bound"]
            out["bound"] = {
                "holds_for_all": bool((err <= bound).all()),
                "bound_median": float(np.median(bound)),
                "bound_max": float(bound.max()),
                "error_median": float(np.median(err)),
                "error_max": float(err.max()),
                "residual_mean": bounded.info["residual_mean"],
            }
            for n_features in [2048] if quick else [2048, 8192]:
                res, t = timed(rff_kairos_values, pool, ref, sigma, n_features=n_features, device="cpu")
                out["rows"].append(
                    {
                        **base,
                        "method": f"rff D={n_features}",
                        "seconds": t,
                        "time_ratio": t / t_exact,
                        **compare(res.values, exact.values),
                    }
                )
            # class-conditional mode
            kw = dict(
                pool_labels=data["y_pool"],
                reference_labels=data["y_ref"],
                label_mode="class_conditional",
                device="cpu",
            )
            cc_exact, t_cc = timed(kairos_values, pool, ref, sigma, **kw)
            cc, t = timed(nystrom_kairos_values, pool, ref, sigma, **kw)
            cbase = {"data": name, "mode": "class-conditional"}
            out["rows"].append({**cbase, "method": "exact", "seconds": t_cc, "time_ratio": 1.0})
            out["rows"].append(
                {
                    **cbase,
                    "method": "nystrom m=1000 kmeans++ (default)",
                    "seconds": t,
                    "time_ratio": t / t_cc,
                    **compare(cc.values, cc_exact.values),
                }
            )
        print(json.dumps(out["rows"][-3:], indent=1), flush=True)
    return out


def _exact_subsample(
    engine: Any, shards: list[Any], ref: np.ndarray, sub: np.ndarray, sigma: float, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``a`` and ``b`` of the rows ``sub`` against the whole sharded pool, on the engine."""
    from kairos_curate.valuation.sharded import SpaceSpec, pair_task, reference_task

    spec = SpaceSpec(sigma, ref.mean(axis=0, dtype=np.float64), "cpu")
    sub_h = engine.put(sub)
    rows = engine.map(pair_task, [(spec, sub_h, None, s, None) for s in shards])
    a = np.sum([r["rows"] for r in rows], axis=0) / n
    (b,) = engine.map(reference_task, [(spec, sub_h, None, engine.put(ref), None)])
    return a, b["rows"] / ref.shape[0]


def part_ray(quick: bool, sizes: list[int]) -> dict[str, Any]:
    from kairos_curate.engine import get_engine
    from kairos_curate.valuation import kairos_values, median_bandwidth
    from kairos_curate.valuation.nystrom import NystromKairosState, select_landmarks
    from kairos_curate.valuation.sharded import ShardedKairosState

    d, m = (64, 500) if quick else (768, 4000)
    engine, t_start = timed(get_engine, "ray", num_cpus=2, object_store_bytes=6 * 2**30)
    out: dict[str, Any] = {
        "d": d,
        "m": m,
        "ray_start_seconds": t_start,
        "rows": [],
        "cluster": repr(engine),
    }
    for n in sizes:
        data = clustered_embeddings(n, m, d, seed=1)
        pool, ref = data["pool"], data["ref"]
        sigma = median_bandwidth(pool, ref, seed=0)
        exact_feasible = n <= 200_000
        exact = None
        if exact_feasible:
            exact, t = timed(kairos_values, pool, ref, sigma, device="cpu")
            out["rows"].append({"n": n, "run": "exact, one process (2 threads)", "seconds": t})
            with WorkerMemory() as mem:
                state_e, t_state = timed(ShardedKairosState.from_pool, pool, ref, sigma, engine=engine, device="cpu")
                res, t = timed(state_e.result)
                t += t_state
            out["rows"].append(
                {
                    "n": n,
                    "run": "exact on Ray (2 workers x 1 thread)",
                    "seconds": t,
                    **mem.summary(),
                    "max_abs_diff_vs_one_process": float(np.abs(res.values - exact.values).max()),
                    "shards": res.info["shards"],
                }
            )
            print(out["rows"][-1], flush=True)
        with WorkerMemory() as mem:
            start = time.perf_counter()
            lm = select_landmarks(pool, ref, 1000, seed=0)
            state = NystromKairosState(ref, sigma, lm, engine=engine, device="cpu")
            chunk = 65_536
            for s in range(0, n, chunk):
                state.update(pool[s : s + chunk])
            sketch = state.result()
            t = time.perf_counter() - start
        row: dict[str, Any] = {
            "n": n,
            "run": "nystrom m=1000 on Ray (2 workers)",
            "seconds": t,
            **mem.summary(),
        }
        if exact is not None:
            row.update(compare(sketch.values, exact.values))
            row["error_against"] = "exact values of all rows"
        else:
            rng = np.random.default_rng(7)
            idx = np.sort(rng.choice(n, 2000, replace=False))
            (a, b), t_sub = timed(
                _exact_subsample,
                engine,
                state._shards,
                ref,
                np.ascontiguousarray(pool[idx]),
                sigma,
                n,
            )
            row.update(compare(sketch.values[idx], b - a))
            row["error_against"] = (
                f"exact a, b of 2,000 random rows against the whole pool (computed on Ray in {t_sub:.0f} s)"
            )
        out["rows"].append(row)
        print(row, flush=True)
        del pool, data
    engine.shutdown()
    return out


def _class_mmd2(x: np.ndarray, picks: np.ndarray, ref: np.ndarray, sigma: float) -> float:
    from kairos_curate.valuation.kernels import KernelSpace, cross_sums, self_sums

    space = KernelSpace.create(sigma, ref.mean(0), "cpu")
    ps, pr = space.prepare(x[picks]), space.prepare(ref)
    s = self_sums(space, ps).sum() / len(picks) ** 2
    c = cross_sums(space, ps, pr)[0].sum() / (len(picks) * len(ref))
    r = self_sums(space, pr).sum() / len(ref) ** 2
    return float(s - 2 * c + r)


def part_herding(quick: bool) -> dict[str, Any]:
    import warnings

    from kairos_curate.selection import select
    from kairos_curate.valuation import kairos_values

    n, m, d = (3000, 400, 32) if quick else (50_000, 4000, 768)
    data = clustered_embeddings(n, m, d, seed=2)
    pool, ref, y, y_ref = data["pool"], data["ref"], data["y_pool"], data["y_ref"]
    res = kairos_values(pool, ref, device="cpu")
    sigma = res.bandwidth
    k = n // 5
    out: dict[str, Any] = {"n": n, "m": m, "d": d, "k": k, "rows": []}
    classes = np.unique(y_ref)

    def score(sel: Any) -> float:
        vals = []
        for c in classes:
            picks = sel.indices[y[sel.indices] == c]
            vals.append(_class_mmd2(pool, picks, ref[y_ref == c], sigma))
        return float(np.mean(vals))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exact, t_exact = timed(
            select,
            res,
            k,
            policy="herding",
            labels=y,
            reference_labels=y_ref,
            embeddings=pool,
            reference=ref,
            device="cpu",
        )
        per_class = select(res, k, policy="per_class", labels=y, reference_labels=y_ref)
    mmd_exact = score(exact)
    out["rows"].append({"policy": "exact herding", "seconds": t_exact, "mmd2": mmd_exact, "ratio": 1.0})
    class_size = int(np.bincount(y).max())
    for parts in [2, 4, 8]:
        size = int(np.ceil(class_size / parts))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sel, t = timed(
                select,
                res,
                k,
                policy="herding",
                labels=y,
                reference_labels=y_ref,
                embeddings=pool,
                reference=ref,
                partition_size=size,
                device="cpu",
            )
        overlap = len(np.intersect1d(sel.indices, exact.indices)) / k
        out["rows"].append(
            {
                "policy": f"partitioned herding, P={parts} per class",
                "seconds": t,
                "mmd2": score(sel),
                "ratio": score(sel) / mmd_exact,
                "overlap_with_exact": overlap,
            }
        )
        print(out["rows"][-1], flush=True)
    rng = np.random.default_rng(0)
    rand = select(rng.random(n), k, policy="per_class", labels=y, reference_labels=y_ref)
    for label, sel in [("per-class random", rand), ("per-class top-k by value", per_class)]:
        out["rows"].append(
            {
                "policy": label,
                "seconds": float("nan"),
                "mmd2": score(sel),
                "ratio": score(sel) / mmd_exact,
            }
        )
    return out


def part_faiss(quick: bool) -> dict[str, Any]:
    from kairos_curate.audit import duplicate_scan
    from kairos_curate.neighbours import duplicate_pairs

    n = 5000 if quick else 100_000
    d = 64 if quick else 768
    data = clustered_embeddings(n, 10, d, seed=3, duplicates=0.03)
    x = data["pool"]
    out: dict[str, Any] = {"n": n, "d": d, "threshold": 0.98, "rows": []}
    groups, t_blocked = timed(duplicate_scan, x, 0.98, method="blocked")
    out["rows"].append(
        {
            "method": "blockwise all-pairs (numpy GEMM, upper triangle)",
            "seconds": t_blocked,
            "groups": len(groups[0]),
        }
    )
    (flat, _, _, _), t_flat = timed(duplicate_pairs, x, 0.98, index="flat")
    truth = {tuple(p) for p in flat.tolist()}
    out["rows"].append(
        {
            "method": "FAISS IndexFlatIP range search (exact)",
            "seconds": t_flat,
            "pairs": len(truth),
            "recall": 1.0,
        }
    )
    for nprobe in (4, 16):
        (ivf, _, _, _), t = timed(duplicate_pairs, x, 0.98, index="ivf", nprobe=nprobe)
        found = {tuple(p) for p in ivf.tolist()}
        out["rows"].append(
            {
                "method": f"FAISS IVF, nprobe={nprobe}",
                "seconds": t,
                "pairs": len(found),
                "recall": len(found & truth) / max(1, len(truth)),
            }
        )
        print(out["rows"][-1], flush=True)
    if not quick and os.environ.get("KAIROS_BENCH_FAISS_1M"):
        big = clustered_embeddings(1_000_000, 10, d, seed=4, duplicates=0.03)["pool"]
        (pairs, _, _, _), t = timed(duplicate_pairs, big, 0.98, index="ivf", nprobe=4)
        out["rows"].append(
            {
                "method": "FAISS IVF, nprobe=4, N=1,000,000",
                "seconds": t,
                "pairs": int(pairs.shape[0]),
                "recall": float("nan"),
            }
        )
    return out


def part_scaling(report: dict[str, Any]) -> dict[str, Any]:
    """10M / 100M from measured rates (see the docs of the table in scale.md)."""
    ray_rows = {(r["n"], r["run"]): r for r in report.get("ray", {}).get("rows", [])}
    m, d = report.get("ray", {}).get("m", 4000), report.get("ray", {}).get("d", 768)
    exact_row = next(
        (r for (n, run), r in ray_rows.items() if run.startswith("exact on Ray") and n == 100_000),
        None,
    )
    sketch_row = next(
        (r for (n, run), r in ray_rows.items() if run.startswith("nystrom") and n == 1_000_000),
        None,
    )
    out: dict[str, Any] = {"rows": [], "basis": {}}
    if exact_row is None or sketch_row is None:
        return out
    n_e = exact_row["n"]
    entries = n_e * (n_e + 8192) / 2 + n_e * m  # kernel entries of the sharded exact run
    per_entry_worker = exact_row["seconds"] * 2 / entries  # 2 workers
    per_row_sketch = sketch_row["seconds"] * 2 / sketch_row["n"]
    emb = {}
    emb_path = ROOT / "reports" / "benchmarks" / "embed_ray.json"
    if emb_path.exists():
        emb = json.loads(emb_path.read_text())
    per_image = emb.get("ray", {}).get("seconds_per_image_per_worker")
    out["basis"] = {
        "exact_seconds_per_kernel_entry_per_worker": per_entry_worker,
        "exact_from": f"exact on Ray at N={n_e:,}, 2 workers (d={d}, M={m})",
        "sketch_seconds_per_row_per_worker": per_row_sketch,
        "sketch_from": f"Nystrom m=1000 on Ray at N={sketch_row['n']:,}, 2 workers",
        "embed_seconds_per_image_per_worker": per_image,
        "embed_from": "reports/benchmarks/embed_ray.json (EfficientNet-Lite0, CPU)",
    }
    for n in (10_000_000, 100_000_000):
        for p in (8, 64, 512):
            exact_s = (n * (n + 8192) / 2 + n * m) * per_entry_worker / p
            sketch_s = n * per_row_sketch / p
            embed_s = None if per_image is None else n * per_image / p
            out["rows"].append(
                {
                    "n": n,
                    "workers": p,
                    "exact_hours": exact_s / 3600,
                    "sketch_minutes": sketch_s / 60,
                    "embed_hours": None if embed_s is None else embed_s / 3600,
                }
            )
    return out


# ----------------------------------------------------------------------------- report


def _fmt(v: Any, spec: str = ".3f") -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    return format(v, spec)


def write_markdown(report: dict[str, Any], path: Path) -> None:
    L = [
        "# Scale-out benchmark",
        "",
        f"Machine: {report.get('cpu_count')} CPU cores shared with other jobs (1-min load "
        f"average {report.get('load_average', ['?'])[0]} at the last run); synthetic "
        "embeddings (`benchmarks/synthetic.py`: clustered unit vectors with off-distribution "
        "points and near-duplicates unless stated). All times are wall-clock seconds measured "
        "in the run that wrote this file; ratios compare runs of the same invocation.",
        "",
    ]
    if "sketch" in report:
        s = report["sketch"]
        L += [
            f"## Sketch vs exact (N={s['n']:,}, M={s['m']:,}, d={s['d']})",
            "",
            "| data | mode | method | seconds | time / exact | Spearman | top-20% overlap | max abs err |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in s["rows"]:
            L.append(
                f"| {r['data']} | {r['mode']} | {r['method']} | {r['seconds']:.2f} | "
                f"{r['time_ratio']:.3f} | {_fmt(r.get('spearman'), '.4f')} | "
                f"{_fmt(r.get('top20_overlap'), '.4f')} | {_fmt(r.get('max_abs_err'), '.2e')} |"
            )
        if "bound" in s:
            b = s["bound"]
            L += [
                "",
                f"A-posteriori bound (default sketch, clustered, label-blind): holds for every "
                f"point: {b['holds_for_all']}; bound median {b['bound_median']:.2e}, max "
                f"{b['bound_max']:.2e}; actual error median {b['error_median']:.2e}, max "
                f"{b['error_max']:.2e}; mean Nystrom residual r = {b['residual_mean']:.2e}.",
            ]
        L.append("")
    if "ray" in report:
        r = report["ray"]
        L += [
            f"## Valuation on a local Ray cluster (2 CPUs; d={r['d']}, M={r['m']:,})",
            "",
            f"Cluster start: {r['ray_start_seconds']:.1f} s ({r['cluster']}).",
            "",
            "| N | run | seconds | peak RSS / worker (GiB) | Spearman vs exact | top-20% overlap | max abs err | error measured on |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in r["rows"]:
            L.append(
                f"| {row['n']:,} | {row['run']} | {row['seconds']:.1f} | "
                f"{_fmt(row.get('peak_rss_gib_max'), '.2f')} | {_fmt(row.get('spearman'), '.4f')} | "
                f"{_fmt(row.get('top20_overlap'), '.4f')} | "
                f"{_fmt(row.get('max_abs_err', row.get('max_abs_diff_vs_one_process')), '.2e')} | "
                f"{row.get('error_against', 'one-process exact values' if 'max_abs_diff_vs_one_process' in row else '-')} |"
            )
        L.append("")
    if "herding" in report:
        h = report["herding"]
        L += [
            f"## Per-class herding at scale (N={h['n']:,}, k={h['k']:,} = 20%, d={h['d']})",
            "",
            "MMD^2 of each class's selection to that class's reference, mean over the 10 task classes "
            "(lower is better); ratio = MMD^2 / exact herding's.",
            "",
            "| policy | seconds | mean class MMD^2 | ratio to exact | overlap with exact picks |",
            "|---|---|---|---|---|",
        ]
        for row in h["rows"]:
            L.append(
                f"| {row['policy']} | {_fmt(row['seconds'], '.1f')} | {row['mmd2']:.3e} | "
                f"{row['ratio']:.3f} | {_fmt(row.get('overlap_with_exact'), '.3f')} |"
            )
        L.append("")
    if "faiss" in report:
        f = report["faiss"]
        L += [
            f"## Near-duplicates (cosine > {f['threshold']}, N={f['n']:,}, d={f['d']})",
            "",
            "| method | seconds | pairs / groups | recall of exact pairs |",
            "|---|---|---|---|",
        ]
        for row in f["rows"]:
            count = row.get("pairs", row.get("groups"))
            unit = "pairs" if "pairs" in row else "groups"
            L.append(
                f"| {row['method']} | {row['seconds']:.1f} | {count:,} {unit} | {_fmt(row.get('recall'), '.4f')} |"
            )
        L.append("")
    if report.get("scaling", {}).get("rows"):
        sc = report["scaling"]
        b = sc["basis"]
        L += [
            "## Scaling table (extrapolated)",
            "",
            "Measured here: "
            + "; ".join(
                [
                    f"exact {b['exact_seconds_per_kernel_entry_per_worker']:.2e} s per kernel entry per "
                    f"1-core worker ({b['exact_from']})",
                    f"sketch {b['sketch_seconds_per_row_per_worker']:.2e} s per pool row per worker "
                    f"({b['sketch_from']})",
                    (
                        "embedding "
                        + _fmt(b.get("embed_seconds_per_image_per_worker"), ".2e")
                        + f" s per image per worker ({b['embed_from']})"
                    ),
                ]
            )
            + ". Extrapolated: everything below, assuming perfect scaling over P workers of "
            "the same speed (no network or scheduling overhead, which the 2-worker runs include "
            "only locally). No GPU was available: GPU figures are not given; time the CUDA path "
            "with `benchmarks/bench_kairos.py --device cuda` and put its rate in place of the "
            "per-worker rates.",
            "",
            "| images | workers P | exact valuation (h) | Nystrom sketch (min) | embedding, CPU (h) |",
            "|---|---|---|---|---|",
        ]
        for row in sc["rows"]:
            L.append(
                f"| {row['n']:,} | {row['workers']} | {row['exact_hours']:,.1f} | "
                f"{row['sketch_minutes']:.2f} | {_fmt(row['embed_hours'], ',.1f')} |"
            )
        L.append("")
    with atomic_write(path, "w") as handle:
        handle.write("\n".join(L))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", default="sketch,ray,herding,faiss,scaling")
    parser.add_argument("--sizes", default="10000,100000,1000000", help="N of the Ray part")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    report: dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() else {}
    report["cpu_count"] = os.cpu_count()
    parts = args.parts.split(",")
    for part in parts:
        print(f"== {part}", flush=True)
        if part == "sketch":
            report["sketch"] = part_sketch(args.quick)
        elif part == "ray":
            sizes = [int(s) for s in args.sizes.split(",")]
            report["ray"] = part_ray(args.quick, [min(s, 20_000) for s in sizes] if args.quick else sizes)
        elif part == "herding":
            report["herding"] = part_herding(args.quick)
        elif part == "faiss":
            report["faiss"] = part_faiss(args.quick)
        elif part == "scaling":
            report["scaling"] = part_scaling(report)
        else:
            raise SystemExit(f"unknown part {part!r}")
        report["load_average"] = [round(v, 1) for v in os.getloadavg()]
        write_json(args.out, report)
        write_markdown(report, args.out.with_suffix(".md"))
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
