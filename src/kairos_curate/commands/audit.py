"""``kairos-curate audit``: a gallery of low-valued and near-duplicate pool samples, and flags.

Writes ``<out>/audit.html`` (self-contained: thumbnails inlined) and ``<out>/flags.csv``
(``id, [label,] value, rank, flag, keep``), see :func:`kairos_curate.audit.audit`.

Every argument is checked before anything is read or computed; the two output files never
replace an input, nor (without ``--force``) an earlier audit.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

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

HELP = "Audit a pool: gallery of the lowest-valued and near-duplicate samples, plus a flags CSV."

#: Library argument names -> the flags of this command (for messages from the library).
FLAG_NAMES = {"reference_labels": "--reference-labels", "flag_fraction": "--flag-fraction",
              "dup_threshold": "--dup-threshold", "thumb_size": "--thumb-size",
              "n_lowest": "--n-lowest", "n_highest": "--n-highest", "max_groups": "--max-groups"}


def register(subparsers: Any) -> None:
    """Add the ``audit`` sub-command to the CLI's ``subparsers``."""
    p = subparsers.add_parser(
        "audit", help=HELP,
        description=HELP + " Every pool sample is valued with KAIROS against the clean reference "
        "(b = mean kernel to the reference, a = mean kernel to the pool, value = b - a, or a label "
        "mode); the lowest values are flagged low_value; near-duplicates (embedding cosine "
        "similarity above --dup-threshold) are grouped and all but the best-valued member of each "
        "group are flagged near_duplicate_of:<id>. Train on the rows of flags.csv with keep == True.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--pool", required=True, type=Path,
                   help="pool embeddings: .npz (ids, embeddings), .parquet (id, embedding) or .npy "
                   "(ids from <name>.ids.txt, else row numbers)")
    p.add_argument("--reference", required=True, type=Path,
                   help="clean reference embeddings, same formats and dimension as --pool")
    p.add_argument("--out", required=True, type=Path,
                   help="output folder for audit.html and flags.csv (created if missing)")
    p.add_argument("--images", type=Path, default=None,
                   help="thumbnails: an .npz with arrays 'ids' and 'pixels' (uint8 (N,H,W) or (N,H,W,3), "
                   "e.g. data/prepared/pixels.npz; extra ids such as other splits are ignored), or a folder "
                   "of image files matched to pool ids by relative path, relative path without "
                   "extension, or file name stem. Without it the gallery has no pictures")
    p.add_argument("--labels", type=Path, default=None,
                   help="labels: .csv/.parquet with columns id,label (e.g. data/prepared/samples.parquet). "
                   "Must cover every pool id; if it also covers every reference id it serves as "
                   "--reference-labels too")
    p.add_argument("--reference-labels", type=Path, default=None,
                   help="reference labels (.csv/.parquet with id,label) when --labels does not hold them")
    p.add_argument("--label-mode", choices=["auto", "none", "residual", "class_conditional"], default="auto",
                   help="auto: class_conditional when pool and reference labels are both known, else none "
                   "(value = b - a); residual: lam*(b-a) - (1-lam)*||onehot(y) - p(x)||")
    p.add_argument("--n-lowest", type=int, default=48, help="lowest-valued samples shown in the gallery")
    p.add_argument("--n-highest", type=int, default=16, help="highest-valued samples shown for contrast")
    p.add_argument("--flag-fraction", type=float, default=None,
                   help="flag this fraction of the pool (lowest values) as low_value; default: flag "
                   "exactly the --n-lowest samples shown")
    p.add_argument("--dup-threshold", type=float, default=0.98,
                   help="cosine similarity of embeddings above which two pool samples are near-duplicates")
    p.add_argument("--max-groups", type=int, default=20,
                   help="near-duplicate groups shown in the page (flags.csv has all of them)")
    p.add_argument("--thumb-size", type=int, default=64, help="longest side of a thumbnail in pixels")
    p.add_argument("--bandwidth", default="median",
                   help="RBF sigma: 'median' (median heuristic on a seeded pair sample) or a positive number")
    p.add_argument("--lam", type=float, default=0.97, help="residual label mode: weight of b - a")
    p.add_argument("--title", default="KAIROS data audit", help="page title")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="where kernels run; auto = CUDA if available")
    p.add_argument("--seed", type=int, default=0, help="seed of the median-heuristic pair sample")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show progress bars (default: when stderr is a terminal)")
    add_force_flag(p, "audit.html and flags.csv in --out")
    p.set_defaults(func=run, flag_names=FLAG_NAMES)


def _validate(args: argparse.Namespace) -> float | str:
    """Every check that needs no data: ranges, combinations, devices, paths."""
    from kairos_curate.io import check_output_paths

    bandwidth = parse_bandwidth(args.bandwidth, "--bandwidth")
    for flag, value in (("--n-lowest", args.n_lowest), ("--n-highest", args.n_highest),
                        ("--max-groups", args.max_groups)):
        check_count(value, flag, minimum=0)
    check_count(args.thumb_size, "--thumb-size", minimum=8)
    check_fraction(args.flag_fraction, "--flag-fraction")
    check_fraction(args.dup_threshold, "--dup-threshold", low=-1.0, low_open=True)
    check_fraction(args.lam, "--lam")
    check_seed(args.seed)
    if args.label_mode in ("residual", "class_conditional") and args.labels is None:
        raise ValueError(f"--label-mode {args.label_mode} needs --labels (and reference labels: "
                         "--labels covering the reference ids too, or --reference-labels)")
    if args.reference_labels is not None and args.labels is None:
        raise ValueError("--reference-labels needs --labels for the pool as well")
    check_device(args.device)
    inputs: dict[str, Path | None] = {"--pool": args.pool, "--reference": args.reference,
                                      "--labels": args.labels, "--reference-labels": args.reference_labels}
    check_inputs_exist(inputs)
    if args.images is not None:
        if not args.images.exists():
            raise FileNotFoundError(f"--images {args.images} not found; pass an .npz with ids+pixels "
                                    "or a folder of images")
        inputs["--images"] = args.images
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder; --out names the folder that "
                         "receives audit.html and flags.csv")
    check_output_paths({"--out (audit.html)": out / "audit.html", "--out (flags.csv)": out / "flags.csv"},
                       inputs, force=args.force)
    return bandwidth


def run(args: argparse.Namespace) -> int:
    """Handler of ``kairos-curate audit``."""
    bandwidth = _validate(args)

    from kairos_curate.audit import audit
    from kairos_curate.io import load_embeddings
    from kairos_curate.valuation.bandwidth import check_bandwidth

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
            raise ValueError(f"--reference-labels {args.reference_labels} has no label for {len(missing)} "
                             f"reference id(s), e.g. {missing[:3]}")
        ref_labels = np.asarray([table[i] for i in ref_ids.tolist()])
    mode: str | None = {"none": None}.get(args.label_mode, args.label_mode)
    if mode not in (None, "auto") and (labels is None or ref_labels is None):
        raise ValueError(f"--label-mode {args.label_mode} needs pool and reference labels "
                         "(--labels covering both, or --labels and --reference-labels)")
    if mode is None:
        labels_arg, ref_arg = labels, None
    else:
        labels_arg, ref_arg = (labels, ref_labels) if ref_labels is not None else (labels, None)
    if mode == "auto" and ref_arg is None:
        mode = None  # labels on one side only: feature values, labels still shown
    if isinstance(bandwidth, float):
        check_bandwidth(bandwidth, pool, reference, seed=args.seed, name="--bandwidth")
    images = load_image_source(args.images, pool_ids, "--images") if args.images is not None else None
    progress = progress_enabled(args.progress, sys.stderr)
    result = audit(pool, reference, images, pool_ids, labels=labels_arg, reference_labels=ref_arg,
                   out_dir=args.out, n_lowest=args.n_lowest, n_highest=args.n_highest,
                   dup_threshold=args.dup_threshold, flag_fraction=args.flag_fraction, label_mode=mode,
                   bandwidth=bandwidth, lam=args.lam, max_groups=args.max_groups, thumb_size=args.thumb_size,
                   title=args.title, device=args.device, seed=args.seed, progress=progress)
    info = result.info
    print(f"audited {info['pool']} pool samples against {info['reference']} reference samples "
          f"(label mode {info['label_mode']}, bandwidth {info['bandwidth']:.4g}); images: {info['images']}")
    print(f"flagged {info['low_value']} low_value, {info['dup_flagged']} near-duplicates in "
          f"{info['dup_groups']} groups; keep {info['kept']} of {info['pool']}")
    print(f"wrote {result.html_path} and {result.flags_path}")
    return 0
