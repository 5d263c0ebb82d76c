"""Write the offline default scenario out as ImageFolder trees, to try ``kairos-curate curate``.

``python -m kairos_curate.data.export --out DIR`` builds the default scenario (Fashion-MNIST from
Debian's ``dataset-fashion-mnist``, :func:`kairos_curate.data.scenario.build_scenario` with the
given or default configuration) and writes

* ``DIR/pool/<class>/<id>.png`` - the noisy pool, filed under the label a user sees (off-task
  images under the plausible wrong task class, flipped labels under the wrong class, noisy
  pixels as they are);
* ``DIR/reference/<class>/<id>.png`` and ``DIR/test/<class>/<id>.png`` - clean;
* ``DIR/truth.csv`` - what was done to each pool image (evaluation only: ``id`` is the path
  relative to ``DIR/pool``, as ``curate`` names it; ``off_task``, ``label_flipped``,
  ``corruption``, ``severity``, ``true_label`` (a class name, empty for off-task), ``noisy``),
  to score the audit with :func:`kairos_curate.audit_scoring.score_audit`.

Class folder names are the Fashion-MNIST names with ``/`` replaced (``T-shirt_top``).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from kairos_curate.data.scenario import SPLITS, Scenario, ScenarioConfig, build_scenario
from kairos_curate.io import atomic_path

__all__ = ["export_image_folders", "folder_name", "main"]


def folder_name(class_name: str) -> str:
    """A class name as a folder name (``/`` and other unsafe characters become ``_``)."""
    return re.sub(r"[^A-Za-z0-9._ -]+", "_", class_name).strip(" .") or "_"


def export_image_folders(
    out: str | Path,
    scenario: Scenario | None = None,
    *,
    splits: Sequence[str] = SPLITS,
    image_format: str = "png",
    force: bool = False,
    progress: bool = False,
) -> dict[str, Path]:
    """Write ``scenario`` (default: the default scenario) as ImageFolder trees under ``out``.

    Parameters
    ----------
    out
        Output folder; must not exist or be empty, unless ``force`` (files of the same names are
        then replaced; nothing else is removed).
    scenario
        An array-backed scenario (default ``build_scenario(ScenarioConfig())``).
    splits
        Which of ``pool``, ``reference``, ``test`` to write.
    image_format
        ``"png"`` (lossless, default) or ``"jpeg"`` (quality 95).
    force
        Write into a non-empty ``out``.
    progress
        Show a progress bar.

    Returns
    -------
    dict
        ``split -> folder`` and ``"truth" -> truth.csv`` (when the pool is written).
    """
    target = Path(out).expanduser()
    if target.exists() and (not target.is_dir() or (any(target.iterdir()) and not force)):
        raise ValueError(f"--out {target} exists and is not empty; choose a new folder or pass --force")
    bad = [s for s in splits if s not in SPLITS]
    if bad:
        raise ValueError(f"unknown split(s) {bad}; choose from {list(SPLITS)}")
    if image_format not in ("png", "jpeg"):
        raise ValueError(f"image_format must be 'png' or 'jpeg', got {image_format!r}")
    sc = scenario if scenario is not None else build_scenario(ScenarioConfig())
    if sc.pixels is None:
        raise ValueError(
            "export_image_folders needs an array-backed scenario (the Fashion-MNIST default); a "
            "file-backed scenario already is a set of image files"
        )
    suffix = ".png" if image_format == "png" else ".jpg"
    paths: dict[str, Path] = {}
    rel_of: dict[str, str] = {}
    for split in splits:
        table = sc.table(split)
        pixels = sc.pixels[sc.split_mask(split)]
        root = target / split
        for row, image in tqdm(
            zip(table.itertuples(index=False), pixels, strict=True),
            total=len(table),
            desc=f"writing {split}",
            disable=not progress,
            unit="img",
        ):
            rel = f"{folder_name(str(row.class_name))}/{row.id}{suffix}"
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                if image_format == "png":
                    Image.fromarray(image).save(tmp, format="PNG")
                else:
                    Image.fromarray(image).save(tmp, format="JPEG", quality=95)
            if split == "pool":
                rel_of[str(row.id)] = rel
        paths[split] = root
    if "pool" in splits and not sc.truth.empty:
        truth = sc.truth.copy()
        names = sc.class_names
        truth["true_label"] = [folder_name(names[t]) if 0 <= t < len(names) else "" for t in truth["true_label"]]
        truth.insert(0, "scenario_id", truth["id"])
        truth["id"] = [rel_of[str(i)] for i in truth["scenario_id"]]
        paths["truth"] = target / "truth.csv"
        with atomic_path(paths["truth"]) as tmp:
            truth.to_csv(tmp, index=False)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m kairos_curate.data.export --out DIR``: the default scenario as image folders."""
    parser = argparse.ArgumentParser(
        prog="python -m kairos_curate.data.export",
        description="Write the offline default scenario (Fashion-MNIST, Debian's dataset-fashion-mnist) as "
        "ImageFolder trees DIR/{pool,reference,test}/<class>/<id>.png plus DIR/truth.csv (what was done to each "
        "pool image; evaluation only), to try `kairos-curate curate` on.",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder (new, or empty)")
    parser.add_argument("--splits", default=",".join(SPLITS), help="comma-separated: pool,reference,test")
    parser.add_argument("--format", choices=["png", "jpeg"], default="png", help="image file format")
    parser.add_argument("--seed", type=int, default=0, help="scenario seed")
    parser.add_argument(
        "--fashion-mnist-dir",
        default=None,
        help="folder with the four *-ubyte.gz files (default: Debian's package folder)",
    )
    parser.add_argument("--force", action="store_true", help="write into a non-empty --out")
    args = parser.parse_args(argv)
    try:
        config = ScenarioConfig(seed=args.seed, fashion_mnist_dir=args.fashion_mnist_dir)
        paths = export_image_folders(
            args.out,
            build_scenario(config),
            splits=[s.strip() for s in args.splits.split(",") if s.strip()],
            image_format=args.format,
            force=args.force,
            progress=sys.stderr.isatty(),
        )
    except (ValueError, FileNotFoundError) as err:
        print(f"export: error: {err}", file=sys.stderr)
        return 2
    for name, path in paths.items():
        count = sum(1 for _ in path.rglob("*.*")) if path.is_dir() else None
        print(f"{name}: {path}" + (f" ({count} images)" if count is not None else ""))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
