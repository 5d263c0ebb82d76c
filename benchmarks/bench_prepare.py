"""Cost of the file-backed ``prepare`` stage (iNaturalist/Insects source) on photo-sized images.

Builds a synthetic iNaturalist 2021 tree (official layout) and an Insects tree of JPEG images
the size of iNaturalist 2021's (longest side 500 px), then times, in one process:

* reading every file's bytes once (the naive floor: nothing can check content without it);
* ``build_real_scenario`` without synthetic corruption (adapter scan, SHA-1 of every file for
  the leakage rule, a 256-image sample for the severity unit);
* the noisy pool variant (30% of the pool: decode, Gaussian noise at 3/6/9 std, PNG copy).

Reports per-image costs, the build's ratio to the read floor, bytes written per noisy copy, and
a linear extrapolation to the poster's 36,355-image pool (labelled as such: not measured).

Usage::

    python benchmarks/bench_prepare.py        # writes reports/benchmarks/prepare.{json,md}
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

POSTER_POOL = 36_355
SPECIES = [  # (category or off-task, taxonomy fields)
    (
        "Ant",
        {
            "phylum": "Arthropoda",
            "class": "Insecta",
            "order": "Hymenoptera",
            "family": "Formicidae",
            "genus": "Camponotus",
            "name": "Camponotus pennsylvanicus",
        },
    ),
    (
        "Bee",
        {
            "phylum": "Arthropoda",
            "class": "Insecta",
            "order": "Hymenoptera",
            "family": "Apidae",
            "genus": "Apis",
            "name": "Apis mellifera",
        },
    ),
    (
        "Beetle",
        {
            "phylum": "Arthropoda",
            "class": "Insecta",
            "order": "Coleoptera",
            "family": "Carabidae",
            "genus": "Carabus",
            "name": "Carabus nemoralis",
        },
    ),
    (
        "Spider",
        {
            "phylum": "Arthropoda",
            "class": "Arachnida",
            "order": "Araneae",
            "family": "Araneidae",
            "genus": "Araneus",
            "name": "Araneus diadematus",
        },
    ),
    (
        "off-task",
        {
            "phylum": "Chordata",
            "class": "Aves",
            "order": "Passeriformes",
            "family": "Turdidae",
            "genus": "Turdus",
            "name": "Turdus migratorius",
        },
    ),
]


def _photo(rng: np.random.Generator) -> Image.Image:
    """A photo-like 500 x 375 (or 375 x 500) image: smooth colour field + texture, JPEG-friendly."""
    h, w = (375, 500) if rng.random() < 0.7 else (500, 375)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = rng.uniform(40, 200, size=3)
    slope = rng.uniform(-80, 80, size=(2, 3))
    img = base + yy[..., None] * slope[0] + xx[..., None] * slope[1] + rng.normal(0, 12, size=(h, w, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def _make_trees(root: Path, n_pool: int, insects_per_class: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    images, annotations, categories = [], [], []
    for c, (_, taxon) in enumerate(SPECIES):
        categories.append({"id": c, "kingdom": "Animalia", **taxon})
    for i in range(n_pool):
        c = i % len(SPECIES)
        name = f"train/{c:05d}_species/{i:08x}.jpg"
        (root / "inat" / name).parent.mkdir(parents=True, exist_ok=True)
        _photo(rng).save(root / "inat" / name, format="JPEG", quality=90)
        images.append({"id": i, "file_name": name})
        annotations.append({"id": i, "image_id": i, "category_id": c})
    (root / "inat" / "train.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    for cat, _ in SPECIES[:-1]:
        folder = root / "insects" / cat
        folder.mkdir(parents=True, exist_ok=True)
        for j in range(insects_per_class):
            _photo(rng).save(folder / f"{j:04d}.jpg", format="JPEG", quality=90)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="pool images in the synthetic tree")
    parser.add_argument("--insects-per-class", type=int, default=40)
    parser.add_argument("--out", type=Path, default=Path("reports/benchmarks/prepare.json"))
    args = parser.parse_args()

    from kairos_curate.data.real_scenario import RealScenarioConfig, build_real_scenario
    from kairos_curate.data.scenario import add_pool_noise
    from kairos_curate.io import atomic_write, write_json

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        _make_trees(root, args.n, args.insects_per_class, seed=0)
        generate_s = time.perf_counter() - start
        files = sorted(root.rglob("*.jpg"))
        total_bytes = sum(f.stat().st_size for f in files)

        start = time.perf_counter()
        for f in files:
            f.read_bytes()
        read_s = time.perf_counter() - start

        config = RealScenarioConfig(
            inat_root="inat",
            insects_root="insects",
            reference_per_class=20,
            test_per_class=20,
            pixel_noise_fraction=0.0,
            label_flip_fraction=0.0,
        )
        start = time.perf_counter()
        scenario = build_real_scenario(config, root / "prepared", root=root, progress=False)
        build_s = time.perf_counter() - start

        start = time.perf_counter()
        add_pool_noise(scenario, 0.3, [3.0, 6.0, 9.0], seed=1, image_dir=root / "noisy")
        variant_s = time.perf_counter() - start
        noisy_files = sorted((root / "noisy").glob("*.png"))
        noisy_bytes = sum(f.stat().st_size for f in noisy_files)

    n_pool = scenario.info["counts"]["pool"]
    per_file_build_ms = 1000 * build_s / len(files)
    per_noisy_ms = 1000 * variant_s / max(len(noisy_files), 1)
    result = {
        "machine": platform.processor() or platform.machine(),
        "pool_images": n_pool,
        "all_files": len(files),
        "mean_file_kib": total_bytes / len(files) / 1024,
        "generate_seconds": generate_s,
        "read_all_files_seconds": read_s,
        "build_seconds": build_s,
        "build_vs_read_ratio": build_s / read_s,
        "build_ms_per_file": per_file_build_ms,
        "noisy_variant_images": len(noisy_files),
        "noisy_variant_seconds": variant_s,
        "noisy_ms_per_image": per_noisy_ms,
        "noisy_png_mib_per_image": noisy_bytes / max(len(noisy_files), 1) / 2**20,
        "extrapolated_to_poster_pool": {
            "note": "linear extrapolation from this run, not measured (the build's fixed part, a 256-image "
            "sample for the severity unit, makes it an overestimate)",
            "pool_images": POSTER_POOL,
            "build_seconds": per_file_build_ms * POSTER_POOL / 1000,
            "noisy_variant_seconds": per_noisy_ms * 0.3 * POSTER_POOL / 1000,
            "noisy_variant_gib": noisy_bytes / max(len(noisy_files), 1) * 0.3 * POSTER_POOL / 2**30,
        },
    }
    write_json(args.out, result)
    ext = result["extrapolated_to_poster_pool"]
    lines = [
        "# prepare stage, file-backed (iNaturalist/Insects source)",
        "",
        f"Synthetic tree: {n_pool} pool + {len(files) - n_pool} Insects JPEGs, 500 x 375 px, "
        f"{result['mean_file_kib']:.0f} KiB each; {result['machine']}.",
        "",
        "| step | seconds | per image |",
        "|---|---|---|",
        f"| read every file once (floor) | {read_s:.2f} | {1000 * read_s / len(files):.2f} ms |",
        f"| build scenario (scan, SHA-1 of every file, unit sample) | {build_s:.2f} | {per_file_build_ms:.2f} ms |",
        f"| noisy variant, 30% of the pool (decode, noise, PNG) | {variant_s:.2f} | {per_noisy_ms:.1f} ms |",
        "",
        f"Build / read floor: {result['build_vs_read_ratio']:.1f}x. Noisy PNG copies: "
        f"{result['noisy_png_mib_per_image']:.2f} MiB each.",
        "",
        f"Linear extrapolation to the poster's {POSTER_POOL:,} pool images (not measured): build "
        f"{ext['build_seconds']:.0f} s, noisy variant {ext['noisy_variant_seconds']:.0f} s and "
        f"{ext['noisy_variant_gib']:.1f} GiB.",
    ]
    with atomic_write(args.out.with_suffix(".md"), "w") as handle:
        handle.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
