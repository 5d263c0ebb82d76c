"""``kairos-curate value``: value a pool of embeddings against a reference with KAIROS.

Writes the per-sample table (``KairosResult.to_frame``: b, a, feature_term, label_term, value,
loo, rank, keyed by id) and, with ``--top-k``/``--top-frac``, a selection JSON next to it
(``<out stem>.selection.json``) whose class histogram and warnings are also printed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from kairos_curate.commands._engine import add_engine_arguments, engine_from_args
from kairos_curate.config import parse_bandwidth

HELP = "Value every pool sample with KAIROS (MMD to the reference) and optionally select a subset."


def register(subparsers: Any) -> None:
    """Add the ``value`` sub-command to the CLI's ``subparsers``."""
    p = subparsers.add_parser(
        "value",
        help=HELP,
        description=HELP + " Values: b - a (closeness to the reference minus redundancy in the "
        "pool), higher = more valuable; loo: exact change of the biased MMD^2 when the sample is "
        "removed (positive = the sample helps).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--pool",
        required=True,
        type=Path,
        help="pool embeddings: .npz (ids, embeddings), .parquet (id, embedding) or "
        ".npy (ids from <name>.ids.txt, else row numbers)",
    )
    p.add_argument(
        "--reference",
        required=True,
        type=Path,
        help="clean reference embeddings, same formats and dimension as --pool",
    )
    p.add_argument(
        "--out",
        required=True,
        type=Path,
        help="output table (.parquet or .csv), written atomically",
    )
    p.add_argument(
        "--pool-labels",
        type=Path,
        default=None,
        help="pool labels: .csv/.parquet with columns id,label (matched by id) or "
        ".npy/.txt with one label per row in pool order",
    )
    p.add_argument(
        "--reference-labels",
        type=Path,
        default=None,
        help="reference labels, same formats as --pool-labels",
    )
    p.add_argument(
        "--label-mode",
        choices=["none", "residual", "class_conditional"],
        default="none",
        help="none: b - a; residual: lam*(b-a) - (1-lam)*||onehot(y) - p(x)|| with a "
        "logistic regression fitted on the reference; class_conditional: b and a "
        "computed within the sample's class (needs both label files)",
    )
    p.add_argument(
        "--lam", type=float, default=0.97, help="residual mode: weight of the feature term b - a"
    )
    p.add_argument(
        "--combine",
        choices=["weighted", "rank", "zscore"],
        default="weighted",
        help="residual mode: combine raw terms (reference implementation) or "
        "scale-free ranks / z-scores",
    )
    p.add_argument(
        "--bandwidth",
        default="median",
        help="RBF sigma: 'median' (median pairwise distance over a seeded sample of "
        "pool+reference pairs) or a positive number",
    )
    size = p.add_mutually_exclusive_group()
    size.add_argument(
        "--top-k",
        type=int,
        default=None,
        help="also select this many samples and write <out stem>.selection.json",
    )
    size.add_argument(
        "--top-frac",
        type=float,
        default=None,
        help="also select this fraction of the pool (0 < F <= 1)",
    )
    p.add_argument(
        "--policy",
        choices=["global", "per_class", "herding"],
        default="global",
        help="selection policy: global top-k; per_class quotas proportional to the "
        "reference class counts; herding: per-class greedy kernel herding towards "
        "each class's reference (the last two need labels)",
    )
    p.add_argument(
        "--drop-fraction",
        type=float,
        default=0.0,
        help="herding: first drop this lowest-valued fraction of each class",
    )
    p.add_argument(
        "--min-class-share",
        type=float,
        default=0.5,
        help="warn when a class gets less than this fraction of its proportional "
        "share of the selection",
    )
    p.add_argument(
        "--device",
        choices=["auto", "cpu", "cuda"],
        default="auto",
        help="where kernels run; auto = CUDA if available, else CPU",
    )
    p.add_argument(
        "--memory-budget-mb",
        type=float,
        default=256.0,
        help="bound on the kernel tile buffers in MiB",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the median-heuristic pair sample")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show a progress bar (default: when stderr is a terminal)",
    )
    add_engine_arguments(p, method=True)
    p.set_defaults(func=run)


def read_labels(path: Path, ids: np.ndarray, option: str) -> np.ndarray:
    """Read labels for rows with ``ids`` from ``path`` (see ``--pool-labels`` help)."""
    if not path.exists():
        raise FileNotFoundError(f"{option} file {path} not found")
    suffix = path.suffix.lower()
    if suffix in (".csv", ".parquet"):
        import pandas as pd

        table = pd.read_csv(path, dtype={"id": str}) if suffix == ".csv" else pd.read_parquet(path)
        if "id" not in table.columns or "label" not in table.columns:
            raise ValueError(
                f"{option} {path} must have columns 'id' and 'label'; found {list(table.columns)}"
            )
        if table["label"].isna().any():
            raise ValueError(f"{option} {path} has empty labels")
        mapping = dict(zip(table["id"].astype(str), table["label"], strict=True))
        missing = [i for i in ids if i not in mapping]
        if missing:
            raise ValueError(
                f"{option} {path} has no label for {len(missing)} id(s), e.g. "
                f"{missing[:5]}; give one row per embedding id"
            )
        return np.asarray([mapping[i] for i in ids])
    if suffix == ".npy":
        labels = np.load(path, allow_pickle=False)
    elif suffix == ".txt":
        labels = np.asarray(path.read_text().splitlines())
    else:
        raise ValueError(
            f"{option} {path}: unsupported type {suffix!r}; use .csv, .parquet .npy or .txt"
        )
    if labels.ndim != 1 or labels.shape[0] != ids.shape[0]:
        raise ValueError(
            f"{option} {path} has {labels.shape[0] if labels.ndim else 0} labels "
            f"but there are {ids.shape[0]} embedding rows; one label per row"
        )
    return labels


def run(args: argparse.Namespace) -> int:
    """Handler of ``kairos-curate value``."""
    from kairos_curate.io import atomic_path, load_embeddings, write_json
    from kairos_curate.valuation import kairos_values, select

    bandwidth = parse_bandwidth(args.bandwidth, "--bandwidth")
    out: Path = args.out
    if out.suffix.lower() not in (".parquet", ".csv"):
        raise ValueError(f"--out must end in .parquet or .csv, got {out}")
    pool_ids, pool = load_embeddings(args.pool)
    ref_ids, reference = load_embeddings(args.reference)
    pool_labels = (
        None
        if args.pool_labels is None
        else read_labels(args.pool_labels, pool_ids, "--pool-labels")
    )
    ref_labels = (
        None
        if args.reference_labels is None
        else read_labels(args.reference_labels, ref_ids, "--reference-labels")
    )
    label_mode = None if args.label_mode == "none" else args.label_mode
    if label_mode is not None and (pool_labels is None or ref_labels is None):
        raise ValueError(
            f"--label-mode {args.label_mode} needs --pool-labels and --reference-labels"
        )
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    engine = engine_from_args(args)
    scale = engine.name != "local" or args.method != "exact"
    value_fn: Any = kairos_values
    if scale:
        from functools import partial

        from kairos_curate.engine.valuation import value_with_engine

        value_fn = partial(
            value_with_engine, engine=engine, method=args.method, n_landmarks=args.landmarks
        )
    res = value_fn(
        pool,
        reference,
        bandwidth,
        pool_labels=pool_labels,
        reference_labels=ref_labels,
        label_mode=label_mode,
        lam=args.lam,
        combine=args.combine,
        device=args.device,
        memory_budget_bytes=int(args.memory_budget_mb * 2**20),
        seed=args.seed,
        progress=progress,
    )
    frame = res.to_frame(pool_ids)
    with atomic_path(out) as tmp:
        if out.suffix.lower() == ".csv":
            frame.to_csv(tmp)
        else:
            frame.to_parquet(tmp)
    print(
        f"valued {len(res)} pool samples against {reference.shape[0]} reference samples "
        f"(label mode {args.label_mode}, bandwidth {res.bandwidth:.6g}, "
        f"MMD^2 {res.mmd2:.6g}) -> {out}"
    )
    if args.top_k is None and args.top_frac is None:
        return 0
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # printed below from the result
        select_fn: Any = select
        if engine.name != "local" and args.policy == "herding":
            from kairos_curate.valuation.herding_scale import partitioned_herding

            def select_fn(values: Any, k: Any, **kw: Any) -> Any:
                return partitioned_herding(
                    kw["embeddings"], kw["labels"], kw["reference"], kw["reference_labels"],
                    k, frac=kw["frac"], values=values, ids=kw["ids"],
                    drop_fraction=kw["drop_fraction"], engine=engine, device=kw["device"],
                    seed=kw["seed"],
                )

        sel = select_fn(
            res,
            args.top_k,
            frac=args.top_frac,
            policy=args.policy,
            labels=pool_labels,
            ids=pool_ids,
            reference_labels=ref_labels,
            embeddings=pool,
            reference=reference,
            drop_fraction=args.drop_fraction,
            min_class_share=args.min_class_share,
            device=args.device,
            seed=args.seed,
        )
    sel_path = out.with_name(out.stem + ".selection.json")
    payload = sel.to_dict()
    payload.update(
        label_mode=args.label_mode,
        bandwidth=res.bandwidth,
        values_file=str(out),
        lam=args.lam,
        combine=args.combine,
    )
    write_json(sel_path, payload)
    print(f"selected {len(sel.indices)} samples (policy {sel.policy}) -> {sel_path}")
    if sel.class_counts:
        print("class histogram of the selection:")
        width = max(len(str(c)) for c in sel.class_counts)
        for c, n in sel.class_counts.items():
            print(f"  {c!s:<{width}}  {n}")
    for msg in sel.warnings:
        print(f"warning: {msg}", file=sys.stderr)
    return 0
