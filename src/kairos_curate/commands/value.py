"""``kairos-curate value``: value a pool of embeddings against a reference with KAIROS.

Writes the per-sample table (``ValuationResult.to_frame``: b, a, feature_term, label_term, value,
loo, rank, keyed by id) and, with ``--top-k``/``--top-frac``, a selection JSON next to it
(``<out stem>.selection.json``) whose class histogram and warnings are also printed.

Every argument is checked before anything is read or computed, the values and the selection
are computed before anything is written, and outputs never replace an input (or, without
``--force``, an existing file).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

from kairos_curate.commands._engine import add_engine_arguments, engine_from_args
from kairos_curate.commands.common import (
    add_force_flag,
    check_count,
    check_device,
    check_fraction,
    check_inputs_exist,
    check_not_constant,
    check_same_dimension,
    check_seed,
    progress_enabled,
    suffix_choice,
)
from kairos_curate.config import parse_bandwidth
from kairos_curate.readers import read_labels

__all__ = ["read_labels", "register", "run"]

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
    p.add_argument("--lam", type=float, default=0.97, help="residual mode: weight of the feature term b - a")
    p.add_argument(
        "--combine",
        choices=["weighted", "rank", "zscore"],
        default="weighted",
        help="residual mode: combine raw terms (reference implementation) or scale-free ranks / z-scores",
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
        help="warn when a class gets less than this fraction of its proportional share of the selection",
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
    add_force_flag(p, "--out and its selection file")
    p.set_defaults(func=run, flag_names=FLAG_NAMES)


#: Library argument names -> the flags of this command (for messages from the library).
FLAG_NAMES = {
    "pool_labels": "--pool-labels",
    "reference_labels": "--reference-labels",
    "labels=...": "--pool-labels",
    "memory_budget_bytes": "--memory-budget-mb",
    "drop_fraction": "--drop-fraction",
    "min_class_share": "--min-class-share",
}


def _validate_arguments(args: argparse.Namespace) -> float | str:
    """Every check that needs no file: ranges, combinations, devices. Returns the bandwidth."""
    bandwidth = parse_bandwidth(args.bandwidth, "--bandwidth")
    suffix_choice(args.out, "--out", (".parquet", ".csv"))
    check_fraction(args.lam, "--lam")
    check_count(args.top_k, "--top-k")
    check_fraction(args.top_frac, "--top-frac", low_open=True)
    check_fraction(args.drop_fraction, "--drop-fraction", high_open=True)
    check_fraction(args.min_class_share, "--min-class-share")
    if not (math.isfinite(args.memory_budget_mb) and args.memory_budget_mb > 0):
        raise ValueError(f"--memory-budget-mb must be a positive number, got {args.memory_budget_mb:g}")
    check_seed(args.seed)
    selecting = args.top_k is not None or args.top_frac is not None
    if not selecting:
        for flag, value, default in (
            ("--policy", args.policy, "global"),
            ("--drop-fraction", args.drop_fraction, 0.0),
            ("--min-class-share", args.min_class_share, 0.5),
        ):
            if value != default:
                raise ValueError(f"{flag} only applies to a selection; add --top-k or --top-frac")
    if args.drop_fraction and args.policy != "herding":
        raise ValueError("--drop-fraction only applies to --policy herding")
    if args.policy in ("per_class", "herding") and selecting and args.pool_labels is None:
        raise ValueError(f"--policy {args.policy} needs --pool-labels (the class of every pool sample)")
    if args.policy == "herding" and selecting and args.reference_labels is None:
        raise ValueError("--policy herding needs --reference-labels (it herds towards each class's reference)")
    if args.label_mode != "none" and (args.pool_labels is None or args.reference_labels is None):
        raise ValueError(f"--label-mode {args.label_mode} needs --pool-labels and --reference-labels")
    if args.label_mode != "residual" and (args.lam != 0.97 or args.combine != "weighted"):
        raise ValueError("--lam and --combine only apply to --label-mode residual")
    check_device(args.device)
    return bandwidth


def _sidecar(out: Path) -> Path:
    return out.with_name(out.stem + ".selection.json")


def _check_paths(args: argparse.Namespace) -> None:
    """Inputs exist; outputs are not inputs and do not exist (unless --force)."""
    from kairos_curate.io import check_output_paths

    inputs: dict[str, Path | None] = {
        "--pool": args.pool,
        "--reference": args.reference,
        "--pool-labels": args.pool_labels,
        "--reference-labels": args.reference_labels,
    }
    check_inputs_exist(inputs)
    for flag in ("--pool", "--reference"):
        path = inputs[flag]
        if path is not None and path.suffix.lower() == ".npy" and path.with_suffix(".ids.txt").exists():
            inputs[f"{flag} ids"] = path.with_suffix(".ids.txt")
    outputs = {"--out": args.out, "--out (selection file)": _sidecar(args.out)}
    check_output_paths(outputs, inputs, force=args.force)


def run(args: argparse.Namespace) -> int:
    """Handler of ``kairos-curate value``."""
    bandwidth = _validate_arguments(args)
    _check_paths(args)

    from kairos_curate.io import atomic_path, load_embeddings, write_json
    from kairos_curate.selection import select
    from kairos_curate.valuation import kairos_values
    from kairos_curate.valuation.bandwidth import check_bandwidth

    out: Path = args.out
    pool_ids, pool = load_embeddings(args.pool, "--pool")
    ref_ids, reference = load_embeddings(args.reference, "--reference")
    check_same_dimension(pool, reference, args.pool, args.reference)
    check_not_constant(pool, "--pool", args.pool)
    if args.top_k is not None and args.top_k > pool.shape[0]:
        raise ValueError(
            f"--top-k {args.top_k} is larger than the pool ({pool.shape[0]} samples in "
            f"{args.pool}); use at most {pool.shape[0]} or --top-frac"
        )
    pool_labels = None if args.pool_labels is None else read_labels(args.pool_labels, pool_ids, "--pool-labels")
    ref_labels = (
        None if args.reference_labels is None else read_labels(args.reference_labels, ref_ids, "--reference-labels")
    )
    if isinstance(bandwidth, float):
        check_bandwidth(bandwidth, pool, reference, seed=args.seed, name="--bandwidth")
    label_mode = None if args.label_mode == "none" else args.label_mode
    progress = progress_enabled(args.progress, sys.stderr)
    engine = engine_from_args(args)
    value_fn: Any = kairos_values
    if engine.name != "local" or args.method != "exact":
        from functools import partial

        from kairos_curate.engine.valuation import value_with_engine

        value_fn = partial(value_with_engine, engine=engine, method=args.method, n_landmarks=args.landmarks)
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
    values = np.asarray(res.values, dtype=np.float64)
    if not np.isfinite(values).all():
        bad = int(np.flatnonzero(~np.isfinite(values))[0])
        raise ValueError(
            f"the values came out NaN/inf (e.g. pool row {bad}, id {pool_ids[bad]}) with "
            f"bandwidth {res.bandwidth:.4g}; nothing was written: try --bandwidth median"
        )
    if values.size > 1 and float(np.ptp(values)) == 0.0:
        raise ValueError(
            f"every pool sample got the same value ({values[0]:.6g}) with bandwidth "
            f"{res.bandwidth:.4g}: there is nothing to rank, and nothing was written; "
            "check that --pool holds different embeddings, or try --bandwidth median"
        )

    sel = None
    if args.top_k is not None or args.top_frac is not None:
        import warnings

        # --drop-fraction without --policy herding was refused in _validate_arguments
        policy_params = {"drop_fraction": args.drop_fraction} if args.policy == "herding" else {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # printed below from the result
            sel = select(
                res,
                args.top_k,
                frac=args.top_frac,
                policy=args.policy,
                labels=pool_labels,
                ids=pool_ids,
                reference_labels=ref_labels,
                embeddings=pool,
                reference=reference,
                min_class_share=args.min_class_share,
                device=args.device,
                seed=args.seed,
                engine=engine,
                **policy_params,
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
    sel_path = _sidecar(out)
    if sel is None:
        if sel_path.exists():  # only possible with --force: it described the table just replaced
            sel_path.unlink()
            print(f"removed {sel_path} (it belonged to the replaced {out})")
        return 0
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
