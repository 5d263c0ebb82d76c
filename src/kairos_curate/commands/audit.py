"""``kairos-curate audit``: a gallery of low-valued and near-duplicate pool samples, and flags.

Writes ``<out>/audit.html`` (self-contained: thumbnails inlined) and ``<out>/flags.csv``
(``id, [label,] value, rank, flag, keep``), see :func:`kairos_curate.audit.audit`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from kairos_curate.commands._engine import add_engine_arguments, engine_from_args
from kairos_curate.config import parse_bandwidth
from kairos_curate.data.sources import ArrayImageSource, FileImageSource

__all__ = ["load_image_source", "read_label_table", "register", "run"]

HELP = "Audit a pool: gallery of the lowest-valued and near-duplicate samples, plus a flags CSV."
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


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
    add_engine_arguments(p, method=True)
    p.set_defaults(func=run)


def read_label_table(path: Path, option: str) -> dict[str, Any]:
    """``{id: label}`` from a .csv/.parquet file with columns ``id`` and ``label``."""
    import pandas as pd

    if not path.exists():
        raise FileNotFoundError(f"{option} file {path} not found")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        table = pd.read_csv(path, dtype={"id": str})
    elif suffix == ".parquet":
        table = pd.read_parquet(path)
    else:
        raise ValueError(f"{option} {path}: unsupported type {suffix!r}; use .csv or .parquet with columns id,label")
    if "id" not in table.columns or "label" not in table.columns:
        raise ValueError(f"{option} {path} must have columns 'id' and 'label'; found {list(table.columns)}")
    if table["label"].isna().any():
        raise ValueError(f"{option} {path} has empty labels")
    return dict(zip(table["id"].astype(str), table["label"].tolist(), strict=True))


def load_image_source(path: Path, ids: np.ndarray) -> ArrayImageSource | FileImageSource:
    """Images for ``ids`` from an ``.npz`` (ids + pixels) or a folder of image files."""
    if not path.exists():
        raise FileNotFoundError(f"--images {path} not found; pass an .npz with ids+pixels or a folder of images")
    wanted = [str(i) for i in ids]
    if path.is_dir():
        files = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        by_key: dict[str, Path] = {}
        stems: dict[str, list[Path]] = {}
        for f in files:
            rel = f.relative_to(path).as_posix()
            by_key[rel] = f
            by_key.setdefault(rel.rsplit(".", 1)[0], f)
            stems.setdefault(f.stem, []).append(f)
        for stem, found in stems.items():
            if len(found) == 1:
                by_key.setdefault(stem, found[0])
        matched = [(i, by_key[i]) for i in wanted if i in by_key]
        if not matched:
            raise ValueError(f"--images folder {path}: no image file matches a pool id (e.g. {wanted[0]!r}); "
                             "name files <id>.<ext> or by their relative path")
        return FileImageSource([m[0] for m in matched], [m[1] for m in matched])
    if path.suffix.lower() != ".npz":
        raise ValueError(f"--images {path} must be an .npz file (ids, pixels) or a folder of images")
    with np.load(path, allow_pickle=False) as data:
        key = "pixels" if "pixels" in data.files else "images" if "images" in data.files else None
        if "ids" not in data.files or key is None:
            raise ValueError(f"--images {path} must hold arrays 'ids' and 'pixels'; found {data.files}")
        all_ids = np.asarray([str(i) for i in data["ids"]])
        index = {sid: k for k, sid in enumerate(all_ids.tolist())}
        rows = [index[i] for i in wanted if i in index]
        if not rows:
            raise ValueError(f"--images {path} holds none of the pool ids (e.g. {wanted[0]!r})")
        pixels = data[key][np.asarray(rows)]
    return ArrayImageSource(all_ids[rows], pixels)


def run(args: argparse.Namespace) -> int:
    """Handler of ``kairos-curate audit``."""
    from kairos_curate.audit import audit
    from kairos_curate.io import load_embeddings
    from kairos_curate.valuation.kernels import check_same_dim

    bandwidth = parse_bandwidth(args.bandwidth, "--bandwidth")
    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out} exists and is not a folder")
    pool_ids, pool = load_embeddings(args.pool)
    ref_ids, reference = load_embeddings(args.reference)
    check_same_dim(pool.shape[1], reference.shape[1], pool_name="--pool")
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
    images = load_image_source(args.images, pool_ids) if args.images is not None else None
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    result = audit(pool, reference, images, pool_ids, labels=labels_arg, reference_labels=ref_arg,
                   out_dir=args.out, n_lowest=args.n_lowest, n_highest=args.n_highest,
                   dup_threshold=args.dup_threshold, flag_fraction=args.flag_fraction, label_mode=mode,
                   bandwidth=bandwidth, lam=args.lam, max_groups=args.max_groups, thumb_size=args.thumb_size,
                   title=args.title, device=args.device, seed=args.seed, progress=progress,
                   engine=engine_from_args(args), method=args.method, n_landmarks=args.landmarks)
    info = result.info
    print(f"audited {info['pool']} pool samples against {info['reference']} reference samples "
          f"(label mode {info['label_mode']}, bandwidth {info['bandwidth']:.4g}); images: {info['images']}")
    print(f"flagged {info['low_value']} low_value, {info['dup_flagged']} near-duplicates in "
          f"{info['dup_groups']} groups; keep {info['kept']} of {info['pool']}")
    print(f"wrote {result.html_path} and {result.flags_path}")
    return 0
