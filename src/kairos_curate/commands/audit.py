"""``kairos-curate audit``: name each pool sample's issue (off-task, corrupted, mislabelled,
near-duplicate), calibrated on the clean reference; a gallery grouped by issue type, and flags.

Writes ``<out>/audit.html`` (self-contained: thumbnails inlined) and ``<out>/flags.csv`` (one row
per pool sample: every issue type's score, p-value and flag), see :func:`kairos_curate.audit.audit`.

Every argument is checked before anything is read or computed; the two output files never
replace an input, nor (without ``--force``) an earlier audit.
"""

from __future__ import annotations

import argparse
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
)
from kairos_curate.config import parse_bandwidth
from kairos_curate.readers import IMAGE_SUFFIXES, load_image_source, read_label_table

__all__ = ["IMAGE_SUFFIXES", "load_image_source", "read_label_table", "register", "run"]

HELP = (
    "Audit a pool: off-task, corrupted, likely mislabelled and near-duplicate samples, "
    "calibrated on the clean reference; a gallery grouped by issue type, plus a flags CSV."
)

#: Library argument names -> the flags of this command (for messages from the library).
FLAG_NAMES = {
    "reference_labels": "--reference-labels",
    "flag_fraction": "--flag-fraction",
    "dup_threshold": "--dup-threshold",
    "thumb_size": "--thumb-size",
    "alpha": "--alpha",
    "n_per_type": "--per-type",
    "n_lowest": "--n-lowest",
    "n_highest": "--n-highest",
    "max_groups": "--max-groups",
    "class_names": "--class-names",
    "reference_images": "--reference-images",
}


def register(subparsers: Any) -> None:
    """Add the ``audit`` sub-command to the CLI's ``subparsers``."""
    p = subparsers.add_parser(
        "audit",
        help=HELP,
        description=HELP + " Every pool sample is valued with KAIROS against the clean reference "
        "(b = mean kernel to the reference, a = mean kernel to the pool, value = b - a, or a label "
        "mode) and gets, per issue type, a score, a conformal p-value and a flag: off_task (the "
        "density ratio log(b/a) lower than the reference's own), corrupted (pixel noise, blur, "
        "darkness, brightness or missing information beyond the reference images'; needs images of "
        "both), mislabelled (the reference's kernel class posterior prefers another class; needs "
        "labels; with the suggested class and its confidence), near_duplicate (group id and the "
        "copy to keep). Each threshold lets about --alpha of clean samples through. The lowest "
        "values are also flagged low_value. Train on the rows of flags.csv with keep == True.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--pool",
        required=True,
        type=Path,
        help="pool embeddings: .npz (ids, embeddings), .parquet (id, embedding) or .npy "
        "(ids from <name>.ids.txt, else row numbers)",
    )
    p.add_argument(
        "--reference", required=True, type=Path, help="clean reference embeddings, same formats and dimension as --pool"
    )
    p.add_argument(
        "--out", required=True, type=Path, help="output folder for audit.html and flags.csv (created if missing)"
    )
    p.add_argument(
        "--images",
        type=Path,
        default=None,
        help="thumbnails: an .npz with arrays 'ids' and 'pixels' (uint8 (N,H,W) or (N,H,W,3), "
        "e.g. data/prepared/pixels.npz; extra ids such as other splits are ignored), or a folder "
        "of image files matched to pool ids by relative path, relative path without "
        "extension, or file name stem. Reference ids found there calibrate the pixel checks. "
        "Without it: no pixel checks, embedding-only near-duplicates, no pictures",
    )
    p.add_argument(
        "--reference-images",
        type=Path,
        default=None,
        help="images of the reference (same formats as --images), when --images does not hold "
        "them; they calibrate the corrupted check and pixel near-duplicates",
    )
    p.add_argument(
        "--labels",
        type=Path,
        default=None,
        help="labels: .csv/.parquet with columns id,label (e.g. data/prepared/samples.parquet). "
        "Must cover every pool id; if it also covers every reference id it serves as "
        "--reference-labels too",
    )
    p.add_argument(
        "--reference-labels",
        type=Path,
        default=None,
        help="reference labels (.csv/.parquet with id,label) when --labels does not hold them",
    )
    p.add_argument(
        "--label-mode",
        choices=["auto", "none", "residual", "class_conditional"],
        default="auto",
        help="auto: class_conditional when pool and reference labels are both known, else none "
        "(value = b - a); residual: lam*(b-a) - (1-lam)*||onehot(y) - p(x)||",
    )
    p.add_argument(
        "--class-names",
        default=None,
        help="display names of integer labels: comma-separated in label order (e.g. 'ant,bee'), "
        "or a text file with one name per line",
    )
    p.add_argument(
        "--alpha",
        type=float,
        default=0.01,
        help="share of clean samples each issue type's threshold lets through (calibrated on "
        "the reference; a reference of M samples cannot go below 1/(M+1))",
    )
    p.add_argument("--per-type", type=int, default=24, help="most severe samples shown per issue type")
    p.add_argument("--n-lowest", type=int, default=48, help="lowest-valued samples shown in the gallery")
    p.add_argument("--n-highest", type=int, default=16, help="highest-valued samples shown for contrast")
    p.add_argument(
        "--flag-fraction",
        type=float,
        default=None,
        help="flag this fraction of the pool (lowest values) as low_value; default: flag "
        "exactly the --n-lowest samples shown",
    )
    p.add_argument(
        "--dup-threshold",
        default="auto",
        help="'auto': near-duplicates are pool images whose 16x16 grey thumbnails (without images: "
        "embeddings) are more similar than any two distinct reference images; or a fixed cosine "
        "similarity of embeddings",
    )
    p.add_argument(
        "--max-groups", type=int, default=20, help="near-duplicate groups shown in the page (flags.csv has all of them)"
    )
    p.add_argument("--thumb-size", type=int, default=64, help="longest side of a thumbnail in pixels")
    p.add_argument(
        "--bandwidth",
        default="median",
        help="RBF sigma: 'median' (median heuristic on a seeded pair sample) or a positive number",
    )
    p.add_argument("--lam", type=float, default=0.97, help="residual label mode: weight of b - a")
    p.add_argument("--title", default="KAIROS data audit", help="page title")
    p.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default="auto", help="where kernels run; auto = CUDA if available"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the median-heuristic pair sample")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show progress bars (default: when stderr is a terminal)",
    )
    add_engine_arguments(p, method=True)
    add_force_flag(p, "audit.html and flags.csv in --out")
    p.set_defaults(func=run, flag_names=FLAG_NAMES)


def _validate(args: argparse.Namespace) -> float | str:
    """Every check that needs no data: ranges, combinations, devices, paths."""
    from kairos_curate.io import check_output_paths

    bandwidth = parse_bandwidth(args.bandwidth, "--bandwidth")
    for flag, value in (
        ("--n-lowest", args.n_lowest),
        ("--n-highest", args.n_highest),
        ("--max-groups", args.max_groups),
    ):
        check_count(value, flag, minimum=0)
    check_count(args.thumb_size, "--thumb-size", minimum=8)
    check_count(args.per_type, "--per-type", minimum=0)
    check_fraction(args.flag_fraction, "--flag-fraction")
    _dup_threshold(args.dup_threshold)
    check_fraction(args.alpha, "--alpha", low_open=True)
    check_fraction(args.lam, "--lam")
    parse_class_names(args.class_names)
    check_seed(args.seed)
    if args.label_mode in ("residual", "class_conditional") and args.labels is None:
        raise ValueError(
            f"--label-mode {args.label_mode} needs --labels (and reference labels: "
            "--labels covering the reference ids too, or --reference-labels)"
        )
    if args.reference_labels is not None and args.labels is None:
        raise ValueError("--reference-labels needs --labels for the pool as well")
    check_device(args.device)
    inputs: dict[str, Path | None] = {
        "--pool": args.pool,
        "--reference": args.reference,
        "--labels": args.labels,
        "--reference-labels": args.reference_labels,
    }
    check_inputs_exist(inputs)
    for flag, path in (("--images", args.images), ("--reference-images", args.reference_images)):
        if path is not None:
            if not path.exists():
                raise FileNotFoundError(f"{flag} {path} not found; pass an .npz with ids+pixels or a folder of images")
            inputs[flag] = path
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise ValueError(
            f"--out {out} exists and is not a folder; --out names the folder that receives audit.html and flags.csv"
        )
    check_output_paths(
        {"--out (audit.html)": out / "audit.html", "--out (flags.csv)": out / "flags.csv"}, inputs, force=args.force
    )
    return bandwidth


def parse_class_names(text: str | None) -> list[str] | None:
    """``--class-names``: a comma-separated list, or a text file with one name per line."""
    if text is None:
        return None
    path = Path(text)
    if path.suffix.lower() in (".txt", ".csv") or path.exists():
        if not path.exists():
            raise FileNotFoundError(f"--class-names file {path} not found")
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    else:
        names = [part.strip() for part in text.split(",")]
    if not names or any(not n for n in names):
        raise ValueError(f"--class-names {text!r}: give non-empty names, comma-separated in label order")
    return names


def _dup_threshold(text: str) -> float | None:
    if str(text).strip().lower() == "auto":
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"--dup-threshold must be 'auto' or a cosine similarity in (-1, 1], got {text!r}") from None
    if not -1.0 < value <= 1.0:
        raise ValueError(f"--dup-threshold must be 'auto' or a cosine similarity in (-1, 1], got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    """Handler of ``kairos-curate audit``."""
    bandwidth = _validate(args)

    from kairos_curate.audit import audit
    from kairos_curate.io import load_embeddings
    from kairos_curate.valuation.bandwidth import check_bandwidth

    dup_threshold = _dup_threshold(args.dup_threshold)
    class_names = parse_class_names(args.class_names)
    pool_ids, pool = load_embeddings(args.pool, "--pool")
    ref_ids, reference = load_embeddings(args.reference, "--reference")
    check_same_dimension(pool, reference, args.pool, args.reference)
    check_not_constant(pool, "--pool", args.pool)
    labels = ref_labels = None
    if args.labels is not None:
        table = read_label_table(args.labels, "--labels")
        missing = [i for i in pool_ids.tolist() if i not in table]
        if missing:
            raise ValueError(f"--labels {args.labels} has no label for {len(missing)} pool id(s), e.g. {missing[:3]}")
        labels = np.asarray([table[i] for i in pool_ids.tolist()])
        if all(i in table for i in ref_ids.tolist()):
            ref_labels = np.asarray([table[i] for i in ref_ids.tolist()])
    if args.reference_labels is not None:
        table = read_label_table(args.reference_labels, "--reference-labels")
        missing = [i for i in ref_ids.tolist() if i not in table]
        if missing:
            raise ValueError(
                f"--reference-labels {args.reference_labels} has no label for {len(missing)} "
                f"reference id(s), e.g. {missing[:3]}"
            )
        ref_labels = np.asarray([table[i] for i in ref_ids.tolist()])
    mode: str | None = {"none": None}.get(args.label_mode, args.label_mode)
    if mode not in (None, "auto") and (labels is None or ref_labels is None):
        raise ValueError(
            f"--label-mode {args.label_mode} needs pool and reference labels "
            "(--labels covering both, or --labels and --reference-labels)"
        )
    if mode is None:
        labels_arg, ref_arg = labels, None
    else:
        labels_arg, ref_arg = (labels, ref_labels) if ref_labels is not None else (labels, None)
    if mode == "auto" and ref_arg is None:
        mode = None  # labels on one side only: feature values, labels still shown
    if isinstance(bandwidth, float):
        check_bandwidth(bandwidth, pool, reference, seed=args.seed, name="--bandwidth")
    images = None
    if args.images is not None:
        wanted = np.concatenate([pool_ids, ref_ids]) if args.reference_images is None else pool_ids
        images = load_image_source(args.images, np.asarray(list(dict.fromkeys(wanted.tolist()))), "--images")
    ref_images = (
        load_image_source(args.reference_images, ref_ids, "--reference-images")
        if args.reference_images is not None
        else None
    )
    if ref_images is not None and len(ref_images) != len(ref_ids):
        have = set(ref_images.ids.tolist())
        missing = [i for i in ref_ids.tolist() if i not in have]
        raise ValueError(
            f"--reference-images {args.reference_images} has no image for {len(missing)} reference "
            f"id(s), e.g. {missing[:3]}"
        )
    progress = progress_enabled(args.progress, sys.stderr)
    result = audit(
        pool,
        reference,
        images,
        pool_ids,
        labels=labels_arg,
        reference_labels=ref_arg,
        out_dir=args.out,
        reference_images=ref_images,
        reference_ids=ref_ids,
        class_names=class_names,
        alpha=args.alpha,
        n_per_type=args.per_type,
        n_lowest=args.n_lowest,
        n_highest=args.n_highest,
        dup_threshold=dup_threshold,
        flag_fraction=args.flag_fraction,
        label_mode=mode,
        bandwidth=bandwidth,
        lam=args.lam,
        max_groups=args.max_groups,
        thumb_size=args.thumb_size,
        title=args.title,
        device=args.device,
        seed=args.seed,
        progress=progress,
        engine=engine_from_args(args),
        method=args.method,
        n_landmarks=args.landmarks,
    )
    info = result.info
    print(
        f"audited {info['pool']} pool samples against {info['reference']} reference samples "
        f"(label mode {info['label_mode']}, bandwidth {info['bandwidth']:.4g}); images: {info['images']}, "
        f"reference images: {info['reference_images']}"
    )
    for _, row in result.issue_summary.iterrows():
        state = f"{int(row['flagged'])} flagged: " if row["checked"] else ""
        print(f"  {row['issue_type']:<15} {state}{row['rule']}")
    print(f"also {info['low_value']} low_value ({info['flag_rule']}); keep {info['kept']} of {info['pool']}")
    print(f"wrote {result.html_path} and {result.flags_path}")
    return 0
